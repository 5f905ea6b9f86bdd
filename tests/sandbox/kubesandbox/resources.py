"""The resources the sandbox serves: discovery facts, schemas, selectable fields and Table printers."""

import base64
import datetime
import hashlib

from . import schema as sch


class Resource:
    def __init__(self, group, version, kind, plural, namespaced, schema, short=(), verbs=None, subresources=None,
                 singular=None, fields=None, columns=None, categories=()):
        self.group = group
        self.version = version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced
        self.schema = schema
        self.short = list(short)
        self.verbs = verbs or ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        self.subresources = subresources or {}
        self.singular = singular or kind.lower()
        self.fields = fields or (lambda obj: {})
        self.columns = columns
        self.categories = list(categories)

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def qualified(self):
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def key(self):
        return self.plural if self.group not in ("authentication.k8s.io",) else self.plural

    def selectable(self, obj):
        meta = obj.get("metadata", {})
        fields = {"metadata.name": meta.get("name", "")}
        if self.namespaced:
            fields["metadata.namespace"] = meta.get("namespace", "")
        fields.update(self.fields(obj))
        return fields

    def storage_hash(self):
        digest = hashlib.sha256(("%s/%s/%s" % (self.group, self.version, self.kind)).encode()).digest()
        return base64.b64encode(digest[:8]).decode()


def _csr_fields(obj):
    return {"spec.signerName": obj.get("spec", {}).get("signerName", "")}


def _secret_fields(obj):
    return {"type": obj.get("type", "")}


def _ns_fields(obj):
    return {"status.phase": obj.get("status", {}).get("phase", "")}


def _event_fields(obj):
    inv = obj.get("involvedObject", {})
    src = obj.get("source", {})
    out = {"involvedObject.%s" % k: inv.get(k, "") for k in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    out.update({"reason": obj.get("reason", ""), "reportingComponent": obj.get("reportingComponent", ""),
                "source": src.get("component", ""), "type": obj.get("type", "")})
    return out


# --- printing --------------------------------------------------------------------------------------

def human_duration(seconds):
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return "%ds" % seconds
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return "%dm" % minutes if rest == 0 else "%dm%ds" % (minutes, rest)
    if minutes < 180:
        return "%dm" % minutes
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return "%dh" % hours if rest == 0 else "%dh%dm" % (hours, rest)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        rest = hours % 24
        return "%dd" % (hours // 24) if rest == 0 else "%dd%dh" % (hours // 24, rest)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if days == 0 else "%dy%dd" % (hours // 24 // 365, days)
    return "%dy" % (hours // 24 // 365)


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def age(text):
    if not text:
        return "<unknown>"
    delta = datetime.datetime.now(datetime.timezone.utc) - parse_time(text)
    return human_duration(delta.total_seconds())


NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
             "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
             "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
            "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
            "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
            "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


SA_SECRETS_DESC = ("Secrets is a list of the secrets in the same namespace that pods running using this "
                   "ServiceAccount are allowed to use.")


def col(name, desc="", fmt="", priority=0, ctype="string"):
    return {"name": name, "type": ctype, "format": fmt, "description": desc, "priority": priority}


def csr_condition(obj):
    approved = denied = failed = False
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Approved":
            approved = True
        elif cond.get("type") == "Denied":
            denied = True
        elif cond.get("type") == "Failed":
            failed = True
    text = "Denied" if denied else ("Approved" if approved else "Pending")
    if failed:
        text += ",Failed"
    if (obj.get("status") or {}).get("certificate"):
        text += ",Issued"
    return text


CSR_COLUMNS = [
    col("Name", NAME_DESC, "name"), col("Age", AGE_DESC),
    col("SignerName", "signerName indicates the requested signer, and is a qualified name."),
    col("Requestor", "Name of the user which made this request."),
    col("RequestedDuration", "expirationSeconds is the requested duration of validity of the issued certificate."),
    col("Condition", "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."),
]


def csr_row(obj):
    spec = obj.get("spec", {})
    duration = "<none>"
    if "expirationSeconds" in spec:
        duration = human_duration(spec["expirationSeconds"])
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp")), spec.get("signerName") or "<none>",
            spec.get("username", ""), duration, csr_condition(obj)]


def _created_at(obj):
    return obj["metadata"].get("creationTimestamp") or ""


def _binding_row(obj):
    ref = obj.get("roleRef", {})
    subjects = obj.get("subjects") or []

    def names(kind):
        found = [("%s/%s" % (s.get("namespace", ""), s["name"])) if kind == "ServiceAccount" else s["name"]
                 for s in subjects if s.get("kind") == kind]
        return ", ".join(found)
    return [obj["metadata"]["name"], "%s/%s" % (ref.get("kind", ""), ref.get("name", "")),
            age(obj["metadata"].get("creationTimestamp")), names("User"), names("Group"), names("ServiceAccount")]


def _event_row(obj):
    inv = obj.get("involvedObject", {})
    last = obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    return [age(last[:19] + "Z" if last else ""), obj.get("type", ""), obj.get("reason", ""),
            "%s/%s" % (inv.get("kind", "").lower(), inv.get("name", "")), obj.get("message", "")]


PRINTERS = {
    "certificatesigningrequests": (CSR_COLUMNS, csr_row),
    "namespaces": ([col("Name", NAME_DESC, "name"), col("Status", "The status of the namespace"), col("Age", AGE_DESC)],
                   lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                              age(o["metadata"].get("creationTimestamp"))]),
    "secrets": ([col("Name", NAME_DESC, "name"), col("Type", "The type of the secret"),
                 col("Data", "The number of entries in the secret", ctype="integer"), col("Age", AGE_DESC)],
                lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}),
                           age(o["metadata"].get("creationTimestamp"))]),
    "configmaps": ([col("Name", NAME_DESC, "name"), col("Data", "Number of data in configmap", ctype="integer"),
                    col("Age", AGE_DESC)],
                   lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                              age(o["metadata"].get("creationTimestamp"))]),
    "serviceaccounts": ([col("Name", NAME_DESC, "name"), col("Secrets", SA_SECRETS_DESC, ctype="integer"),
                         col("Age", AGE_DESC)],
                        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []),
                                   age(o["metadata"].get("creationTimestamp"))]),
    "roles": ([col("Name", NAME_DESC, "name"), col("Created At", AGE_DESC)],
              lambda o: [o["metadata"]["name"], _created_at(o)]),
    "clusterroles": ([col("Name", NAME_DESC, "name"), col("Created At", AGE_DESC)],
                     lambda o: [o["metadata"]["name"], _created_at(o)]),
    "rolebindings": ([col("Name", NAME_DESC, "name"), col("Role", "Role is the role being referenced"),
                      col("Age", AGE_DESC), col("Users", "Users in the roleBinding", priority=1),
                      col("Groups", "Groups in the roleBinding", priority=1),
                      col("ServiceAccounts", "ServiceAccounts in the roleBinding", priority=1)], _binding_row),
    "clusterrolebindings": ([col("Name", NAME_DESC, "name"), col("Role", "Role is the role being referenced"),
                             col("Age", AGE_DESC), col("Users", "Users in the clusterRoleBinding", priority=1),
                             col("Groups", "Groups in the clusterRoleBinding", priority=1),
                             col("ServiceAccounts", "ServiceAccounts in the clusterRoleBinding", priority=1)],
                            _binding_row),
    "events": ([col("Last Seen", "Time when this Event was last observed"), col("Type", "Type of this event"),
                col("Reason", "Reason why this event was generated"), col("Object", "Object this event is about"),
                col("Message", "A human-readable description of the status of this operation")], _event_row),
}


def table(res, objects, rv, include="Metadata", with_columns=True):
    columns, printer = PRINTERS.get(res.plural, ([col("Name", NAME_DESC, "name"), col("Created At", AGE_DESC)],
                                                 lambda o: [o["metadata"]["name"], _created_at(o)]))
    rows = []
    for obj in objects:
        row = {"cells": printer(obj)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)}}
    out["columnDefinitions"] = columns if with_columns else None
    out["rows"] = rows
    return out


# --- registry ---------------------------------------------------------------------------------------

CERT = "certificates.k8s.io"
RBAC = "rbac.authorization.k8s.io"

RESOURCES = [
    Resource("", "v1", "Namespace", "namespaces", False, sch.NAMESPACE, ["ns"],
             verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
             subresources={"status": ["get", "patch", "update"], "finalize": ["update"]}, fields=_ns_fields),
    Resource("", "v1", "Secret", "secrets", True, sch.SECRET, fields=_secret_fields),
    Resource("", "v1", "ConfigMap", "configmaps", True, sch.CONFIGMAP, ["cm"]),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, sch.SERVICEACCOUNT, ["sa"]),
    Resource("", "v1", "Event", "events", True, sch.EVENT, ["ev"], fields=_event_fields),
    Resource(CERT, "v1", "CertificateSigningRequest", "certificatesigningrequests", False, sch.CSR, ["csr"],
             subresources={"approval": ["get", "patch", "update"], "status": ["get", "patch", "update"]},
             fields=_csr_fields),
    Resource(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", False, sch.ROLEBINDING),
    Resource(RBAC, "v1", "ClusterRole", "clusterroles", False, sch.CLUSTERROLE),
    Resource(RBAC, "v1", "RoleBinding", "rolebindings", True, sch.ROLEBINDING),
    Resource(RBAC, "v1", "Role", "roles", True, sch.ROLE),
    Resource("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False,
             sch.SELF_SUBJECT_REVIEW, verbs=["create"]),
    Resource("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews", False,
             sch.SELF_SUBJECT_REVIEW, verbs=["create"]),
    Resource("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
             sch.SELF_SAR, verbs=["create"]),
    Resource("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False,
             sch.SELF_SRR, verbs=["create"]),
    Resource("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
             sch.SAR, verbs=["create"]),
]
VIRTUAL = {"selfsubjectreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"}

GROUPS = [("", ["v1"]), (CERT, ["v1"]), (RBAC, ["v1"]), ("authentication.k8s.io", ["v1", "v1beta1"]),
          ("authorization.k8s.io", ["v1"])]


def lookup(group, version, plural):
    for res in RESOURCES:
        if res.group == group and res.version == version and res.plural == plural:
            return res
    return None


def by_plural(plural):
    for res in RESOURCES:
        if res.plural == plural:
            return res
    return None


def api_versions(server_address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(name, versions):
    entries = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(name, versions) for name, versions in GROUPS if name]}


def api_group(name):
    for group, versions in GROUPS:
        if group == name and name:
            out = {"kind": "APIGroup", "apiVersion": "v1"}
            out.update(_group_entry(name, versions))
            return out
    return None


def resource_list(group, version):
    if not any(g == group and version in vs for g, vs in GROUPS):
        return None
    items = []
    for res in RESOURCES:
        if res.group != group or res.version != version:
            continue
        entry = {"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced, "kind": res.kind,
                 "verbs": res.verbs}
        if res.short:
            entry["shortNames"] = res.short
        if res.plural not in VIRTUAL:
            entry["storageVersionHash"] = res.storage_hash()
        items.append(entry)
        for sub, verbs in res.subresources.items():
            items.append({"name": "%s/%s" % (res.plural, sub), "singularName": "", "namespaced": res.namespaced,
                          "kind": res.kind, "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "%s/%s" % (group, version) if group
            else version, "resources": items}


def openapi_v3_index():
    paths = {}
    for group, versions in GROUPS:
        for version in versions:
            key = "api/v1" if not group else "apis/%s/%s" % (group, version)
            digest = hashlib.sha512(key.encode()).hexdigest()[:128].upper()
            paths[key] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (key, digest)}
    return {"paths": paths}


def openapi_v3_doc(group, version):
    """An OpenAPI v3 document that only lists the operations served, with their fieldValidation parameter."""
    paths = {}
    prefix = "/api/v1" if not group else "/apis/%s/%s" % (group, version)
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                        "description": "fieldValidation instructs the server on how to handle objects in the request "
                                       "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: "
                                       "Ignore, Warn (default), Strict."}
    schemas = {}
    for res in RESOURCES:
        if res.group != group or res.version != version:
            continue
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        ref = "io.k8s.sandbox.%s.%s.%s" % (res.group or "core", res.version, res.kind)
        schemas[ref] = dict(openapi_schema(res.schema), **{"x-kubernetes-group-version-kind": [gvk]})
        collection = prefix + ("/namespaces/{namespace}/" if res.namespaced else "/") + res.plural
        ops = {}
        if "create" in res.verbs:
            ops["post"] = {"operationId": "create" + res.kind, "parameters": [field_validation],
                           "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk}
        if "list" in res.verbs:
            ops["get"] = {"operationId": "list" + res.kind, "x-kubernetes-action": "list",
                          "x-kubernetes-group-version-kind": gvk}
        if ops:
            paths[collection] = ops
        if "get" in res.verbs:
            paths[collection + "/{name}"] = {
                "get": {"operationId": "read" + res.kind, "x-kubernetes-action": "get",
                        "x-kubernetes-group-version-kind": gvk},
                "put": {"operationId": "replace" + res.kind, "parameters": [field_validation],
                        "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk},
                "patch": {"operationId": "patch" + res.kind, "parameters": [field_validation],
                          "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk},
                "delete": {"operationId": "delete" + res.kind, "x-kubernetes-action": "delete",
                           "x-kubernetes-group-version-kind": gvk},
            }
            for sub in res.subresources:
                paths["%s/{name}/%s" % (collection, sub)] = {
                    "get": {"operationId": "read%s%s" % (res.kind, sub.title()), "x-kubernetes-action": "get",
                            "x-kubernetes-group-version-kind": gvk},
                    "put": {"operationId": "replace%s%s" % (res.kind, sub.title()), "parameters": [field_validation],
                            "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk},
                    "patch": {"operationId": "patch%s%s" % (res.kind, sub.title()), "parameters": [field_validation],
                              "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk},
                }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0+kubesandbox"},
            "paths": paths, "components": {"schemas": schemas}}


OPENAPI_TITLE = "Kubernetes"
OPENAPI_VERSION = "v1.32.0+kubesandbox"


def openapi_v2_json():
    """An OpenAPI v2 document that declares no paths or definitions (field validation is found via v3)."""
    return {"swagger": "2.0", "info": {"title": OPENAPI_TITLE, "version": OPENAPI_VERSION}, "paths": {}}


def _pb_field(number, payload):
    length = len(payload)
    out = bytearray([(number << 3) | 2])
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            break
    return bytes(out) + payload


def openapi_v2_protobuf():
    """The same empty document in the gnostic protobuf encoding kubectl asks for."""
    info = _pb_field(1, OPENAPI_TITLE.encode()) + _pb_field(2, OPENAPI_VERSION.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info) + _pb_field(8, b"")


def openapi_schema(schema):
    """OpenAPI v3 form of a sandbox schema (types only; used by kubectl explain)."""
    if isinstance(schema, dict) and "*" in schema:
        return {"type": "object", "additionalProperties": openapi_schema(schema["*"])}
    if isinstance(schema, dict):
        return {"type": "object", "properties": {k.lstrip("!"): openapi_schema(v) for k, v in schema.items()}}
    if isinstance(schema, list):
        return {"type": "array", "items": openapi_schema(schema[0])}
    return {"s": {"type": "string"}, "t": {"type": "string", "format": "date-time"},
            "B": {"type": "string", "format": "byte"}, "i": {"type": "integer", "format": "int64"},
            "i32": {"type": "integer", "format": "int32"}, "b": {"type": "boolean"},
            "q": {"x-kubernetes-int-or-string": True}}.get(schema, {"type": "object"})
