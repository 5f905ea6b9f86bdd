"""Authentication (x509 client certificates, static token file, bootstrap tokens) and RBAC authorization."""

import base64
import collections
import csv
import datetime
import hmac
import os
import re
import threading

User = collections.namedtuple("User", "name uid groups extra")

ANONYMOUS = User("system:anonymous", "", ["system:unauthenticated"], {})
CONTROLLER = User("system:serviceaccount:kube-system:certificate-controller", "", [
    "system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"], {})

BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
BOOTSTRAP_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")


class Unauthorized(Exception):
    pass


def with_authenticated(name, uid, groups, extra=None):
    groups = list(groups or [])
    if "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return User(name, uid or "", groups, extra or {})


def user_from_peercert(cert):
    """CN and O of a verified peer certificate (``ssl.getpeercert()`` form)."""
    if not cert:
        return None
    common_name, orgs = None, []
    for rdn in cert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                common_name = value
            elif attr == "organizationName":
                orgs.append(value)
    if common_name is None:
        common_name = ""
    return with_authenticated(common_name, "", orgs)


class TokenFile:
    """The static token file, reloaded when it changes on disk (the real apiserver reads it once)."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.tokens = {}
        self.lock = threading.Lock()
        self.reload(strict=True)

    @staticmethod
    def parse(path):
        tokens = {}
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.reader(handle):
                if not record:
                    continue
                if len(record) < 3:
                    raise ValueError("token file '%s' must have at least 3 columns (token, user name, user uid), "
                                     "found %d" % (path, len(record)))
                if record[0] == "":
                    continue
                groups = record[3].split(",") if len(record) >= 4 else []
                tokens[record[0]] = (record[1], record[2], groups)
        return tokens

    def reload(self, strict=False):
        if not self.path or not os.path.exists(self.path):
            return
        mtime = os.stat(self.path).st_mtime_ns
        if mtime == self.mtime:
            return
        with self.lock:
            try:
                self.tokens = self.parse(self.path)
            except ValueError:
                if strict:
                    raise
                return
            self.mtime = mtime

    def lookup(self, token):
        self.reload()
        entry = self.tokens.get(token)
        if entry is None:
            return None
        return with_authenticated(entry[0], entry[1], entry[2])


def _secret_value(secret, key):
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return ""
    try:
        return base64.b64decode(raw).decode("utf-8", "replace")
    except ValueError:
        return ""


def bootstrap_user(token, get_secret):
    """The bootstrap-token user for ``token`` or None when the token is not accepted."""
    match = BOOTSTRAP_TOKEN.match(token)
    if not match:
        return None
    token_id, token_secret = match.group(1), match.group(2)
    secret = get_secret("kube-system", "bootstrap-token-" + token_id)
    if secret is None or secret["metadata"].get("deletionTimestamp"):
        return None
    if secret.get("type") != "bootstrap.kubernetes.io/token" or secret.get("data") is None:
        return None
    if not hmac.compare_digest(_secret_value(secret, "token-secret").encode(), token_secret.encode()):
        return None
    if _secret_value(secret, "token-id") != token_id:
        return None
    expiration = _secret_value(secret, "expiration")
    if expiration:
        try:
            when = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            if when.tzinfo is None:
                return None
        except ValueError:
            return None
        if datetime.datetime.now(datetime.timezone.utc) > when:
            return None
    if _secret_value(secret, "usage-bootstrap-authentication") != "true":
        return None
    groups = {"system:bootstrappers"}
    extra = _secret_value(secret, "auth-extra-groups")
    if extra:
        for group in extra.split(","):
            if not BOOTSTRAP_GROUP.match(group):
                return None
            groups.add(group)
    return with_authenticated("system:bootstrap:" + token_id, "", sorted(groups))


# --- RBAC -----------------------------------------------------------------------------------------

Attributes = collections.namedtuple(
    "Attributes", "user verb group version resource subresource name namespace path resource_request")


def _subject_matches(subject, user, binding_namespace):
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == "system:serviceaccount:%s:%s" % (namespace, subject.get("name"))
    return False


def _rule_allows(rule, attrs):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    combined = attrs.resource + ("/" + attrs.subresource if attrs.subresource else "")
    ok = False
    for res in rule.get("resources") or []:
        if res == "*" or res == combined:
            ok = True
        elif attrs.subresource and res == "*/" + attrs.subresource:
            ok = True
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    if names and attrs.name not in names:
        return False
    return True


def _allowed_reason(kind, binding, subject):
    meta = binding["metadata"]
    name = meta["name"] if kind == "ClusterRoleBinding" else "%s/%s" % (meta["name"], meta.get("namespace", ""))
    ref = binding.get("roleRef") or {}
    who = subject.get("name")
    if subject.get("kind") == "ServiceAccount":
        who = "%s/%s" % (subject.get("namespace") or meta.get("namespace", ""), subject.get("name"))
    return 'RBAC: allowed by %s "%s" of %s "%s" to %s "%s"' % (
        kind, name, ref.get("kind"), ref.get("name"), subject.get("kind"), who)


class Authorizer:
    def __init__(self, store):
        self.store = store

    def authorize(self, attrs):
        """(allowed, reason) following the RBAC authorizer; system:masters is always allowed."""
        if "system:masters" in attrs.user.groups:
            return True, ""
        errors = []
        for binding in self.store.list("clusterrolebindings")[1]:
            subject = next((s for s in binding.get("subjects") or [] if _subject_matches(s, attrs.user, "")), None)
            if subject is None:
                continue
            rules = self._role_rules(binding, "", errors)
            if any(_rule_allows(r, attrs) for r in rules):
                return True, _allowed_reason("ClusterRoleBinding", binding, subject)
        if attrs.namespace and attrs.resource_request:
            for binding in self.store.list("rolebindings", attrs.namespace)[1]:
                subject = next((s for s in binding.get("subjects") or []
                                if _subject_matches(s, attrs.user, attrs.namespace)), None)
                if subject is None:
                    continue
                rules = self._role_rules(binding, attrs.namespace, errors)
                if any(_rule_allows(r, attrs) for r in rules):
                    return True, _allowed_reason("RoleBinding", binding, subject)
        if errors:
            if len(errors) == 1:
                return False, "RBAC: " + errors[0]
            return False, "RBAC: [" + ", ".join(errors) + "]"
        return False, ""

    def _role_rules(self, binding, namespace, errors):
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self.store.get("clusterroles", "", ref.get("name"))
            if role is None:
                errors.append('clusterrole.rbac.authorization.k8s.io "%s" not found' % ref.get("name"))
                return []
            return role.get("rules") or []
        if ref.get("kind") == "Role" and namespace:
            role = self.store.get("roles", namespace, ref.get("name"))
            if role is None:
                errors.append('role.rbac.authorization.k8s.io "%s" not found' % ref.get("name"))
                return []
            return role.get("rules") or []
        return []

    def rules_for(self, user, namespace):
        """All rules applying to ``user`` in ``namespace`` (SelfSubjectRulesReview)."""
        rules, errors = [], []
        for binding in self.store.list("clusterrolebindings")[1]:
            if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                rules.extend(self._role_rules(binding, "", errors))
        if namespace:
            for binding in self.store.list("rolebindings", namespace)[1]:
                if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                    rules.extend(self._role_rules(binding, namespace, errors))
        return rules


def forbidden_message(attrs, qualified, reason=""):
    """The message of a 403 from the authorization filter, as the real server words it."""
    if not attrs.resource_request:
        msg = 'forbidden: User "%s" cannot %s path "%s"' % (attrs.user.name, attrs.verb, attrs.path)
    else:
        resource = attrs.resource + ("/" + attrs.subresource if attrs.subresource else "")
        head = qualified
        if attrs.name:
            head = '%s "%s"' % (qualified, attrs.name)
        scope = 'in the namespace "%s"' % attrs.namespace if attrs.namespace else "at the cluster scope"
        msg = '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            head, attrs.user.name, attrs.verb, resource, attrs.group, scope)
    if reason:
        msg += ": " + reason
    return msg


# --- bootstrap policy -----------------------------------------------------------------------------

SIGNERS = ["kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
           "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown"]


def _rule(verbs, groups=None, resources=None, names=None, urls=None):
    rule = {"verbs": verbs}
    if groups is not None:
        rule["apiGroups"] = groups
    if resources is not None:
        rule["resources"] = resources
    if names:
        rule["resourceNames"] = names
    if urls:
        rule["nonResourceURLs"] = urls
    return rule


def bootstrap_cluster_roles():
    cert = "certificates.k8s.io"
    roles = {
        "cluster-admin": [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])],
        "system:discovery": [_rule(["get"], urls=["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                  "/openapi", "/openapi/*", "/readyz", "/version", "/version/"])],
        "system:public-info-viewer": [_rule(["get"], urls=["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        "system:basic-user": [
            _rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
        ],
        "system:node-bootstrapper": [_rule(["create", "get", "list", "watch"], [cert], ["certificatesigningrequests"])],
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient": [
            _rule(["create"], [cert], ["certificatesigningrequests/nodeclient"])],
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": [
            _rule(["create"], [cert], ["certificatesigningrequests/selfnodeclient"])],
        "system:controller:certificate-controller": [
            _rule(["delete", "get", "list", "watch"], [cert], ["certificatesigningrequests"]),
            _rule(["update"], [cert], ["certificatesigningrequests/approval", "certificatesigningrequests/status"]),
            _rule(["approve"], [cert], ["signers"], ["kubernetes.io/kube-apiserver-client-kubelet"]),
            _rule(["sign"], [cert], ["signers"], ["kubernetes.io/kube-apiserver-client",
                                                  "kubernetes.io/kube-apiserver-client-kubelet",
                                                  "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown"]),
            _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
            _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        ],
    }
    for signer in SIGNERS:
        short = signer.split("/", 1)[1]
        roles["system:certificates.k8s.io:%s-approver" % short] = [_rule(["approve"], [cert], ["signers"], [signer])]
    return roles


def bootstrap_cluster_role_bindings():
    """(name, role, subjects) of the default bindings."""
    group = "rbac.authorization.k8s.io"
    return [
        ("cluster-admin", "cluster-admin", [{"kind": "Group", "apiGroup": group, "name": "system:masters"}]),
        ("system:discovery", "system:discovery", [{"kind": "Group", "apiGroup": group, "name": "system:authenticated"}]),
        ("system:basic-user", "system:basic-user", [{"kind": "Group", "apiGroup": group, "name": "system:authenticated"}]),
        ("system:public-info-viewer", "system:public-info-viewer", [
            {"kind": "Group", "apiGroup": group, "name": "system:authenticated"},
            {"kind": "Group", "apiGroup": group, "name": "system:unauthenticated"}]),
        ("system:controller:certificate-controller", "system:controller:certificate-controller", [
            {"kind": "ServiceAccount", "name": "certificate-controller", "namespace": "kube-system"}]),
    ]


# --- escalation prevention -------------------------------------------------------------------------

def _atomic(rules):
    out = []
    for rule in rules:
        verbs = rule.get("verbs") or []
        if rule.get("nonResourceURLs"):
            for url in rule["nonResourceURLs"]:
                for verb in verbs:
                    out.append({"nonResourceURLs": [url], "verbs": [verb]})
            continue
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in verbs:
                    if rule.get("resourceNames"):
                        for name in rule["resourceNames"]:
                            out.append({"apiGroups": [group], "resources": [resource], "resourceNames": [name],
                                        "verbs": [verb]})
                    else:
                        out.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    return out


def _covers(owner, atom):
    verbs = owner.get("verbs") or []
    if "*" not in verbs and atom["verbs"][0] not in verbs:
        return False
    if atom.get("nonResourceURLs"):
        url = atom["nonResourceURLs"][0]
        for have in owner.get("nonResourceURLs") or []:
            if have in ("*", url) or (have.endswith("*") and url.startswith(have[:-1])):
                return True
        return False
    groups = owner.get("apiGroups") or []
    if "*" not in groups and atom["apiGroups"][0] not in groups:
        return False
    resources = owner.get("resources") or []
    wanted = atom["resources"][0]
    if "*" not in resources and wanted not in resources:
        if "/" not in wanted or "*/" + wanted.split("/", 1)[1] not in resources:
            return False
    names = owner.get("resourceNames") or []
    if names and (not atom.get("resourceNames") or atom["resourceNames"][0] not in names):
        return False
    return True


def _go_quote_list(values):
    return "[" + " ".join('"%s"' % v.replace("\\", "\\\\").replace('"', '\\"') for v in values) + "]"


def compact(rule):
    parts = []
    for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"), ("nonResourceURLs", "NonResourceURLs"),
                       ("resourceNames", "ResourceNames"), ("verbs", "Verbs")):
        if rule.get(key):
            parts.append("%s:%s" % (label, _go_quote_list(rule[key])))
    return "{" + ", ".join(parts) + "}"


def escalation_problem(authz, user, namespace, rules):
    """None when ``user`` holds every permission in ``rules`` (in ``namespace``), else the Forbidden text."""
    owned = authz.rules_for(user, namespace)
    missing = [atom for atom in _atomic(rules) if not any(_covers(o, atom) for o in owned)]
    if not missing:
        return None
    return "user \"%s\" (groups=%s) is attempting to grant RBAC permissions not currently held:\n%s" % (
        user.name, _go_quote_list(user.groups), "\n".join(compact(m) for m in missing))
