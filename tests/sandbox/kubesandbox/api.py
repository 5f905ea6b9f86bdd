"""The REST semantics of one sandbox cluster, independent of HTTP: routing, authorization, decoding,
strategies, validation, admission and storage, in the order of the real request pipeline."""

import base64
import datetime
import json
import random
import re
import threading
import time
import uuid

import yaml

from . import auth, csr as csrlib, managed, patch as patchlib, proto, resources as reslib, schema as sch, selectors
from .errors import ApiError, FieldError, bad_request, conflict, forbidden, invalid, not_found, already_exists
from .store import Expired, Store, clone

GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def now_str():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Request:
    def __init__(self, method, path, query=None, headers=None, body=b"", user=None):
        self.method = method
        self.path = path
        self.query = query or {}
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body or b""
        self.user = user

    def q(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default


class Response:
    def __init__(self, code, body, headers=None, content_type="application/json"):
        self.code = code
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type


class WatchStream:
    """What the HTTP layer streams for a watch request."""

    def __init__(self, cluster, res, watcher, label_reqs, field_terms, timeout, bookmarks, as_table, initial_end,
                 expired=None):
        self.cluster = cluster
        self.res = res
        self.watcher = watcher
        self.label_reqs = label_reqs
        self.field_terms = field_terms
        self.timeout = timeout
        self.bookmarks = bookmarks
        self.as_table = as_table
        self.initial_end = initial_end
        self.expired = expired
        self.headers_sent = False

    def matches(self, obj):
        return (selectors.labels_match(self.label_reqs, obj["metadata"].get("labels"))
                and selectors.fields_match(self.field_terms, self.res.selectable(obj)))

    def encode(self, etype, obj):
        if self.as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
            # column definitions only on the first event of the stream, as the real watch handler does
            obj = reslib.table(self.res, [obj], obj["metadata"]["resourceVersion"], include=self.as_table,
                               with_columns=not self.headers_sent)
            self.headers_sent = True
        return (json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n").encode()

    def translate(self, event):
        """(type, object) to send for a store event, applying selector transitions; None to skip."""
        _rv, etype, obj, old = event
        now_match = self.matches(obj)
        if etype == "MODIFIED" and old is not None:
            was = self.matches(old)
            if now_match and not was:
                return "ADDED", obj
            if was and not now_match:
                return "DELETED", obj
        if not now_match:
            return None
        return etype, obj

    def bookmark(self, rv, initial_end=False):
        meta = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        # an empty object of the kind carrying only the version, encoded like the typed Go struct
        obj = sch.prune(self.res.schema, {"kind": self.res.kind, "apiVersion": self.res.api_version,
                                          "metadata": meta})
        return (json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")) + "\n").encode()


def _details(res, name):
    out = {"name": name}
    if res.group:
        out["group"] = res.group
    out["kind"] = res.plural
    return out


class Cluster:
    """All state of one cluster plus the request logic."""

    def __init__(self, name, ca, options):
        self.name = name
        self.ca = ca
        self.options = options
        self.store = Store(history=int(options.get("watch_history", 2000)))
        self.authz = auth.Authorizer(self.store)
        self.token_file = auth.TokenFile(options.get("token_file"))
        self.server_address = ""
        self.faults = []
        self.fault_lock = threading.Lock()
        self.expire_next_watch = 0
        self.write_lock = threading.RLock()
        self._bootstrap()

    # --- bootstrap ---------------------------------------------------------------------------------
    def _meta(self, name, namespace=None, labels=None, annotations=None):
        meta = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_str()
        if labels:
            meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        return meta

    def _bootstrap(self):
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_namespace_objects(ns)
        labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        annotations = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        for name, rules in auth.bootstrap_cluster_roles().items():
            self.store.create("clusterroles", {"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
                                               "metadata": self._meta(name, labels=labels, annotations=annotations),
                                               "rules": rules})
        for name, role, subjects in auth.bootstrap_cluster_role_bindings():
            self.store.create("clusterrolebindings", {
                "kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                "metadata": self._meta(name, labels=labels, annotations=annotations),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects})
        self.store.create("serviceaccounts", {"kind": "ServiceAccount", "apiVersion": "v1",
                                              "metadata": self._meta("certificate-controller", "kube-system")})

    def _create_namespace_objects(self, ns):
        self.store.create("namespaces", {
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": self._meta(ns, labels={"kubernetes.io/metadata.name": ns}),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        self._namespace_defaults(ns)

    def _namespace_defaults(self, ns):
        if self.store.get("serviceaccounts", ns, "default") is None:
            self.store.create("serviceaccounts", {"kind": "ServiceAccount", "apiVersion": "v1",
                                                  "metadata": self._meta("default", ns)})
        if self.store.get("configmaps", ns, "kube-root-ca.crt") is None:
            self.store.create("configmaps", {
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": self._meta("kube-root-ca.crt", ns, annotations={
                    "kubernetes.io/description": "Contains a CA bundle that can be used to verify the "
                                                 "kube-apiserver when using internal endpoints such as the internal "
                                                 "service IP or kubernetes.default.svc. No other usage is guaranteed "
                                                 "across distributions of Kubernetes clusters."}),
                "data": {"ca.crt": self.ca.cert_pem.decode()}})

    # --- authentication ------------------------------------------------------------------------------
    def authenticate(self, peer_user, authorization):
        """The user of a request; raises auth.Unauthorized for a rejected bearer token."""
        if peer_user is not None:
            return peer_user
        if authorization:
            parts = authorization.strip().split(" ", 2)
            if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1]:
                token = parts[1]
                user = self.token_file.lookup(token)
                if user is None:
                    user = auth.bootstrap_user(token, lambda ns, n: self.store.get("secrets", ns, n))
                if user is None:
                    raise auth.Unauthorized()
                return user
        return auth.ANONYMOUS

    def impersonate(self, user, name, groups, uid, extras):
        """The impersonated user, after the impersonate checks; raises ApiError (400/403) like the filter."""
        if not name:
            if groups or uid or extras:
                raise bad_request("requested %s without impersonating a user" % (
                    "[" + " ".join("{Group %s}" % g for g in groups) + "]" if groups else "impersonation"))
            return user
        checks = []
        sa_groups = []
        if name.startswith("system:serviceaccount:") and name.count(":") == 3:
            _p1, _p2, ns, sa = name.split(":")
            checks.append(("", "serviceaccounts", sa, ns, "serviceaccounts"))
            if not groups:
                sa_groups = ["system:serviceaccounts", "system:serviceaccounts:" + ns]
        else:
            checks.append(("", "users", name, "", "users"))
        for group in groups:
            checks.append(("", "groups", group, "", "groups"))
        for key, values in extras.items():
            for value in values:
                checks.append(("authentication.k8s.io", "userextras/" + key, value, "", None))
        if uid:
            checks.append(("authentication.k8s.io", "uids", uid, "", None))
        for group, resource, rname, ns, _label in checks:
            res_name, _s, sub = resource.partition("/")
            allowed, reason = self.check(user, "impersonate", group, res_name, sub, rname, ns)
            if not allowed:
                attrs = auth.Attributes(user, "impersonate", group, "", res_name, sub, rname, ns, "", True)
                qualified = "%s.%s" % (res_name, group) if group else res_name
                details = {"name": rname}
                if group:
                    details["group"] = group
                details["kind"] = res_name
                raise ApiError(403, "Forbidden", auth.forbidden_message(attrs, qualified, reason), details)
        groups = list(groups or sa_groups)
        if name != "system:anonymous":
            if "system:authenticated" not in groups and "system:unauthenticated" not in groups:
                groups.append("system:authenticated")
        elif "system:unauthenticated" not in groups:
            groups.append("system:unauthenticated")
        return auth.User(name, uid or "", groups, extras)

    # --- faults -------------------------------------------------------------------------------------
    def add_fault(self, code, count, retry_after=None, path=None, verb=None):
        with self.fault_lock:
            self.faults.append({"code": int(code), "count": int(count), "retry_after": retry_after,
                                "path": path, "verb": verb})

    def take_fault(self, req, verb):
        with self.fault_lock:
            for fault in self.faults:
                if fault["path"] and fault["path"] not in req.path:
                    continue
                if fault["verb"] and fault["verb"] not in (verb, req.method.lower()):
                    continue
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def fault_response(self, fault):
        code = fault["code"]
        headers = {}
        if code == 429:
            retry = int(fault["retry_after"] or 1)
            headers["Retry-After"] = str(retry)
            body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                    "details": {"retryAfterSeconds": retry}, "code": 429}
        elif code == 503:
            if fault["retry_after"]:
                headers["Retry-After"] = str(int(fault["retry_after"]))
            body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "The service is unavailable (injected by the sandbox)", "reason": "ServiceUnavailable",
                    "code": 503}
        else:
            body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Internal error occurred: injected by the sandbox", "reason": "InternalError",
                    "details": {"causes": [{"message": "injected by the sandbox"}]}, "code": code}
        return Response(code, body, headers)

    # --- request info ------------------------------------------------------------------------------
    @staticmethod
    def parse_path(path):
        """(group, version, namespace, plural, name, sub) for resource paths, else None."""
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 2:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in ("status", "finalize"):
                rest = rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = "/".join(rest[2:]) if len(rest) > 2 else ""
        return group, version, namespace, plural, name, sub

    def verb_of(self, req, info):
        method = req.method.upper()
        name = info[4]
        if method in ("GET", "HEAD"):
            if req.q("watch") in ("1", "true", "True"):
                return "watch"
            return "get" if name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())

    def check(self, user, verb, group, resource, sub="", name="", namespace="", path="", resource_request=True):
        attrs = auth.Attributes(user, verb, group, "*", resource, sub, name, namespace, path, resource_request)
        return self.authz.authorize(attrs)

    # --- entry point ---------------------------------------------------------------------------------
    def handle(self, req):
        """Dispatch an authenticated request (``req.user`` set)."""
        path = req.path
        if path.startswith("/_sandbox/"):
            return self.sandbox_admin(req)
        info = self.parse_path(path)
        res = None
        if info:
            group, version, namespace, plural, name, sub = info
            res = reslib.lookup(group, version, plural)
            if plural == "namespaces" and namespace and group == "":
                # /api/v1/namespaces/{name}[/{sub}]
                parts = [p for p in path.split("/") if p]
                name = parts[3]
                sub = "/".join(parts[4:])
                namespace = name
                info = (group, version, namespace, plural, name, sub)
        if info and res is None and not reslib.resource_list(info[0], info[1]):
            info = None
        if info is None:
            verb = req.method.lower()
            allowed, reason = self.check(req.user, verb, "", "", path=path, resource_request=False)
            if not allowed:
                attrs = auth.Attributes(req.user, verb, "", "", "", "", "", "", path, False)
                return Response(403, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": auth.forbidden_message(attrs, "", reason), "reason": "Forbidden",
                                      "details": {}, "code": 403})
            fault = self.take_fault(req, verb)
            if fault:
                return self.fault_response(fault)
            return self.non_resource(req)
        group, version, namespace, plural, name, sub = info
        verb = self.verb_of(req, info)
        selector_name = ""
        if verb in ("list", "watch"):
            for field, op, value in self._safe_fields(req.q("fieldSelector")):
                if field == "metadata.name" and op == "=":
                    selector_name = value
        authz_res = plural
        allowed, reason = self.check(req.user, verb, group, authz_res, sub, name or selector_name, namespace)
        if not allowed:
            attrs = auth.Attributes(req.user, verb, group, "*", plural, sub, name or selector_name, namespace, path,
                                    True)
            qualified = "%s.%s" % (plural, group) if group else plural
            details = {}
            if name or selector_name:
                details["name"] = name or selector_name
            if group:
                details["group"] = group
            details["kind"] = plural
            return Response(403, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": auth.forbidden_message(attrs, qualified, reason), "reason": "Forbidden",
                                  "details": details, "code": 403})
        fault = self.take_fault(req, verb)
        if fault:
            return self.fault_response(fault)
        scoped_path = "/namespaces/" in path and plural != "namespaces"
        if res is None or (sub and sub not in res.subresources) or (res.namespaced and not namespace and name) or (
                not res.namespaced and scoped_path):
            return Response(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "the server could not find the requested resource", "reason": "NotFound",
                                  "details": {}, "code": 404})
        if not res.namespaced:
            namespace = ""
        elif not namespace and verb not in ("list", "watch"):
            return self._not_allowed()
        if verb in ("update", "patch") and not name:
            return self._not_allowed()
        if sub and verb not in ("get", "update", "patch"):
            return self._not_allowed()
        try:
            return self.resource_request(req, res, verb, namespace, name, sub)
        except ApiError as err:
            return Response(err.code, err.status(), err.headers)

    @staticmethod
    def _not_allowed():
        return Response(405, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "the server does not allow this method on the requested resource",
                              "reason": "MethodNotAllowed", "details": {}, "code": 405})

    @staticmethod
    def _safe_fields(text):
        try:
            return selectors.parse_fields(text)
        except selectors.SelectorError:
            return []

    def non_resource(self, req):
        path = req.path.rstrip("/") or "/"
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3",
                     "/openapi/v3/", "/readyz", "/version"]
            for group, versions in reslib.GROUPS:
                if group:
                    paths.append("/apis/" + group)
                    paths.extend("/apis/%s/%s" % (group, v) for v in versions)
            return Response(200, {"paths": sorted(paths)})
        if path in ("/healthz", "/readyz", "/livez"):
            return Response(200, b"ok", content_type="text/plain; charset=utf-8")
        if path == "/version":
            return Response(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0+kubesandbox",
                                  "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                                  "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
                                  "platform": "linux/amd64"})
        if path == "/api":
            return Response(200, reslib.api_versions(self.server_address))
        if path == "/apis":
            return Response(200, reslib.api_group_list())
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api" and len(parts) == 2:
            body = reslib.resource_list("", parts[1])
            if body:
                return Response(200, body)
        if parts[0] == "apis" and len(parts) == 2:
            body = reslib.api_group(parts[1])
            if body:
                return Response(200, body)
        if parts[0] == "apis" and len(parts) == 3:
            body = reslib.resource_list(parts[1], parts[2])
            if body:
                return Response(200, body)
        if path == "/openapi/v2":
            if "protobuf" in req.headers.get("accept", ""):
                return Response(200, reslib.openapi_v2_protobuf(),
                                content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            return Response(200, reslib.openapi_v2_json())
        if path == "/openapi/v3":
            return Response(200, reslib.openapi_v3_index())
        if parts[0] == "openapi" and len(parts) >= 3 and parts[1] == "v3":
            rest = parts[2:]
            if rest[0] == "api" and len(rest) == 2 and rest[1] == "v1":
                return Response(200, reslib.openapi_v3_doc("", "v1"))
            if rest[0] == "apis" and len(rest) == 3 and reslib.resource_list(rest[1], rest[2]):
                return Response(200, reslib.openapi_v3_doc(rest[1], rest[2]))
        return Response(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")

    # --- admin endpoint -------------------------------------------------------------------------------
    def sandbox_admin(self, req):
        if "system:masters" not in req.user.groups:
            return Response(403, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": 'forbidden: User "%s" cannot %s path "%s"' % (
                                      req.user.name, req.method.lower(), req.path),
                                  "reason": "Forbidden", "details": {}, "code": 403})
        body = json.loads(req.body or b"{}")
        action = req.path[len("/_sandbox/"):].strip("/")
        if action == "faults" and req.method == "POST":
            self.add_fault(body.get("code", 500), body.get("count", 1), body.get("retry_after"), body.get("path"),
                           body.get("verb"))
            return Response(200, {"faults": len(self.faults)})
        if action == "faults" and req.method == "DELETE":
            with self.fault_lock:
                self.faults = []
            return Response(200, {"faults": 0})
        if action == "drop-watches":
            return Response(200, {"dropped": self.store.drop_watchers()})
        if action == "expire-next-watch":
            with self.fault_lock:
                self.expire_next_watch += int(body.get("count", 1))
            return Response(200, {"pending": self.expire_next_watch})
        if action == "options":
            if req.method == "POST":
                self.set_options(body)
            return Response(200, {k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool))})
        if action == "run-cleaner":
            deleted = self.controllers.run_cleaner() if self.controllers else []
            return Response(200, {"deleted": deleted})
        return Response(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")

    controllers = None

    def set_options(self, values):
        for key, value in values.items():
            self.options[key] = value
            if key == "watch_history":
                self.store.history_size = int(value)
        if self.controllers:
            self.controllers.wake()

    # --- resource requests -----------------------------------------------------------------------------
    def resource_request(self, req, res, verb, namespace, name, sub):
        if res.plural in reslib.VIRTUAL:
            if verb != "create":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource", {})
            return self.review(req, res)
        if verb == "get":
            return self.get(req, res, namespace, name)
        if verb == "list":
            return self.list(req, res, namespace)
        if verb == "watch":
            if name:
                extra = "metadata.name=" + name
                current = req.q("fieldSelector")
                req.query["fieldSelector"] = [current + "," + extra if current else extra]
            return self.watch(req, res, namespace)
        if verb == "create":
            if name or sub:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource", {})
            return self.create(req, res, namespace)
        if verb == "update":
            return self.update(req, res, namespace, name, sub)
        if verb == "patch":
            return self.patch(req, res, namespace, name, sub)
        if verb == "delete":
            return self.delete(req, res, namespace, name)
        if verb == "deletecollection":
            return self.delete_collection(req, res, namespace)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})

    # --- reads ---------------------------------------------------------------------------------------
    def _as_table(self, req):
        accept = req.headers.get("accept", "")
        for part in accept.split(","):
            if "as=Table" in part and "g=meta.k8s.io" in part:
                return req.q("includeObject", "Metadata")
            if "g=meta.k8s.io" not in part and "application/json" in part:
                return None
        return None

    @staticmethod
    def _as_partial(req):
        for part in req.headers.get("accept", "").split(","):
            if "as=PartialObjectMetadata" in part and "g=meta.k8s.io" in part:
                return True
            if "g=meta.k8s.io" not in part and "application/json" in part:
                return False
        return False

    @staticmethod
    def _partial(obj):
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}

    def get(self, req, res, namespace, name):
        obj = self.store.get(res.plural, namespace, name)
        if obj is None:
            raise not_found(res, name)
        table = self._as_table(req)
        if table:
            return Response(200, reslib.table(res, [obj], obj["metadata"]["resourceVersion"], include=table))
        if self._as_partial(req):
            return Response(200, self._partial(obj))
        return Response(200, obj)

    def _selectors(self, req, res):
        try:
            label_reqs = selectors.parse_labels(req.q("labelSelector"))
        except selectors.SelectorError as exc:
            raise bad_request(str(exc)) from exc
        try:
            field_terms = selectors.parse_fields(req.q("fieldSelector"))
        except selectors.SelectorError as exc:
            raise bad_request(str(exc)) from exc
        supported = set(res.selectable({"metadata": {}}))
        for field, _op, _value in field_terms:
            if field not in supported:
                raise bad_request("field label not supported: %s" % field)
        return label_reqs, field_terms

    def _filter(self, res, items, label_reqs, field_terms):
        return [o for o in items if selectors.labels_match(label_reqs, o["metadata"].get("labels"))
                and selectors.fields_match(field_terms, res.selectable(o))]

    def _list_options(self, req, watch=False):
        rv = req.q("resourceVersion")
        match = req.q("resourceVersionMatch")
        errs = []
        if match and match not in ("NotOlderThan", "Exact"):
            errs.append(FieldError("FieldValueNotSupported", "resourceVersionMatch", match,
                                   'supported values: "Exact", "NotOlderThan", ""'))
        elif match and not rv and not (watch and req.q("sendInitialEvents") in ("true", "1")):
            errs.append(FieldError("FieldValueForbidden", "resourceVersionMatch", None,
                                   "resourceVersionMatch is forbidden unless resourceVersion is provided"))
        elif match == "Exact" and rv == "0":
            errs.append(FieldError("FieldValueForbidden", "resourceVersionMatch", None,
                                   "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""))
        if watch and req.q("sendInitialEvents") in ("true", "1") and match != "NotOlderThan":
            errs.append(FieldError("FieldValueForbidden", "sendInitialEvents", None,
                                   "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to "
                                   "NotOlderThan"))
        if watch and match and req.q("sendInitialEvents") not in ("true", "1"):
            errs.append(FieldError("FieldValueForbidden", "resourceVersionMatch", None,
                                   "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                                   "provided"))
        if errs:
            causes = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errs]
            text = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
            raise ApiError(422, "Invalid", 'ListOptions.meta.k8s.io "" is invalid: ' + text,
                           {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes})
        if rv and rv != "0" and not rv.isdigit():
            raise bad_request('invalid resource version: strconv.ParseUint: parsing "%s": invalid syntax' % rv)

    def list(self, req, res, namespace):
        self._list_options(req)
        label_reqs, field_terms = self._selectors(req, res)
        limit = int(req.q("limit", "0") or 0)
        token = req.q("continue")
        start_after = None
        rv_text = req.q("resourceVersion")
        if token:
            if rv_text:
                raise ApiError(422, "Invalid", 'ListOptions.meta.k8s.io "" is invalid: resourceVersion: Forbidden: '
                               'specifying resource version is not allowed when using continue',
                               {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [
                                   {"reason": "FieldValueForbidden", "message": "Forbidden: specifying resource "
                                    "version is not allowed when using continue", "field": "resourceVersion"}]})
            try:
                decoded = json.loads(base64.b64decode(token + "=" * (-len(token) % 4)))
                rv, start_after = int(decoded["rv"]), decoded["start"]
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request("continue key is not valid: %s" % exc) from exc
            try:
                items = self.store.list_at(res.plural, namespace, rv)
            except Expired as exc:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue "
                               "parameter, or use the continue token in this response to retrieve the "
                               "remainder of the results. Continuing with the provided token results in an "
                               "inconsistent list - objects that were created, modified, or deleted between "
                               "the time the first chunk was returned and now may show up in the list.", {}) from exc
        elif rv_text and rv_text != "0" and req.q("resourceVersionMatch") == "Exact":
            rv = int(rv_text)
            if rv > self.store.current_rv():
                raise self._too_large(rv)
            try:
                items = self.store.list_at(res.plural, namespace, rv)
            except Expired as exc:
                raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.", {}) from exc
        else:
            if rv_text and rv_text != "0" and int(rv_text) > self.store.current_rv():
                if not self.store.wait_for_rv(int(rv_text), 3.0):
                    raise self._too_large(int(rv_text))
            rv, items = self.store.list(res.plural, namespace)
        if start_after is not None:
            items = [o for o in items if "%s/%s" % (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                     > start_after]
        matched = self._filter(res, items, label_reqs, field_terms)
        meta = {"resourceVersion": str(rv)}
        if limit and len(matched) > limit:
            last = matched[limit - 1]["metadata"]
            start = "%s/%s" % (last.get("namespace", ""), last["name"])
            cont = base64.b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start},
                                               separators=(",", ":")).encode()).decode().rstrip("=")
            remaining = len(matched) - limit
            matched = matched[:limit]
            meta["continue"] = cont
            if not label_reqs and not field_terms:
                meta["remainingItemCount"] = remaining
        table = self._as_table(req)
        if table:
            body = reslib.table(res, matched, rv, include=table)
            body["metadata"] = meta
            return Response(200, body)
        if self._as_partial(req):
            return Response(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": meta, "items": [self._partial(o) for o in matched]})
        return Response(200, {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
                              "items": matched})

    def _too_large(self, rv):
        return ApiError(504, "Timeout", "Timeout: Too large resource version: %d, current: %d" % (
            rv, self.store.current_rv()), {"causes": [{"reason": "ResourceVersionTooLarge",
                                                       "message": "Too large resource version"}],
                                           "retryAfterSeconds": 1})

    def watch(self, req, res, namespace):
        self._list_options(req, watch=True)
        label_reqs, field_terms = self._selectors(req, res)
        rv_text = req.q("resourceVersion")
        try:
            timeout = float(req.q("timeoutSeconds") or 0)
        except ValueError as exc:
            raise bad_request("timeoutSeconds: invalid value") from exc
        if timeout <= 0:
            timeout = float(self.options.get("watch_timeout", 1800)) * (1 + random.random())
        bookmarks = req.q("allowWatchBookmarks") in ("true", "1", "True")
        send_initial = req.q("sendInitialEvents") in ("true", "1", "True")
        as_table = self._as_table(req)
        with self.fault_lock:
            expire = self.expire_next_watch > 0
            if expire:
                self.expire_next_watch -= 1
        if expire:
            requested = int(rv_text) if rv_text and rv_text.isdigit() else self.store.current_rv()
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "too old resource version: %d (%d)" % (requested, self.store.current_rv()),
                      "reason": "Expired", "code": 410}
            return WatchStream(self, res, None, label_reqs, field_terms, timeout, bookmarks, as_table, False,
                               expired=status)
        since = None
        if rv_text not in (None, "", "0") and not send_initial:
            try:
                since = int(rv_text)
            except ValueError as exc:
                raise bad_request('invalid resource version: strconv.ParseUint: parsing "%s": invalid syntax'
                                  % rv_text) from exc
        try:
            watcher = self.store.watch(res.plural, namespace, since)
        except Expired as exc:
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": str(exc), "reason": "Expired", "code": 410}
            return WatchStream(self, res, None, label_reqs, field_terms, timeout, bookmarks, as_table, False,
                               expired=status)
        return WatchStream(self, res, watcher, label_reqs, field_terms, timeout, bookmarks, as_table,
                           send_initial and bookmarks)

    # --- decoding ------------------------------------------------------------------------------------
    def decode(self, req, res, body=None, kind_check=True):
        """The pruned object of the request body, plus warnings; raises 400 as the decoder would."""
        duplicates = []

        def hook(pairs):
            out = {}
            for key, value in pairs:
                if key in out:
                    duplicates.append(key)
                out[key] = value
            return out
        if body is None:
            media = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if media not in ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf", ""):
                raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                               'accepted media types include: application/json, application/yaml, '
                               'application/vnd.kubernetes.protobuf', {})
            try:
                content_type = req.headers.get("content-type", "application/json")
                if "protobuf" in content_type:
                    body = proto.decode(req.body)
                elif "yaml" in content_type:
                    body = yaml.safe_load(req.body.decode("utf-8"))
                else:
                    body = json.loads(req.body.decode("utf-8"), object_pairs_hook=hook)
            except proto.ProtoError as exc:
                raise bad_request(str(exc)) from exc
            except (ValueError, yaml.YAMLError) as exc:
                raise bad_request("couldn't get version/kind; json parse error: %s" % exc) from exc
        if not isinstance(body, dict):
            raise bad_request("couldn't get version/kind; json parse error: json: cannot unmarshal %s into Go "
                              "value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind "
                              "string \"json:\\\"kind,omitempty\\\"\" }" % type(body).__name__)
        prefix = '%s in version "%s" cannot be handled as a %s: ' % (res.kind, res.version, res.kind)
        if kind_check:
            api_version = body.get("apiVersion")
            kind = body.get("kind")
            if api_version and api_version != res.api_version:
                raise bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                                  % (api_version, res.api_version))
            if kind and kind != res.kind:
                raise bad_request('%s in version "%s" cannot be handled as a %s: no kind "%s" is registered for '
                                  'version "%s" in scheme "pkg/api/legacyscheme/scheme.go:30"' % (
                                      kind, res.version, res.kind, kind, res.api_version))
        unknown = []
        try:
            obj = sch.prune(res.schema, body, "", unknown)
        except sch.DecodeError as exc:
            raise bad_request(prefix + str(exc)) from exc
        obj["kind"] = res.kind
        obj["apiVersion"] = res.api_version
        obj = {"kind": obj.pop("kind"), "apiVersion": obj.pop("apiVersion"), **obj}
        problems = ['unknown field "%s"' % u for u in unknown] + ['duplicate field "%s"' % d for d in duplicates]
        warnings = []
        mode = req.q("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise bad_request('fieldValidation: Unsupported value: "%s": supported values: "Ignore", "Strict", "Warn"'
                              % mode)
        if problems:
            if mode == "Strict":
                raise bad_request(prefix + "strict decoding error: " + ", ".join(problems))
            if mode == "Warn":
                warnings = problems
        return obj, warnings

    @staticmethod
    def _warn_headers(warnings):
        if not warnings:
            return {}
        return {"Warning": ['299 - "%s"' % w.replace('"', '\\"') for w in warnings]}

    def _dry_run(self, req):
        values = req.query.get("dryRun") or []
        for value in values:
            if value != "All":
                raise bad_request('dryRun: Unsupported value: "%s": supported values: "All"' % value)
        return bool(values)

    # --- object meta ------------------------------------------------------------------------------------
    def validate_name(self, res, meta, create=True):
        errs = []
        name = meta.get("name", "")
        if create and not name and not meta.get("generateName"):
            errs.append(FieldError("FieldValueRequired", "metadata.name", None, "name or generateName is required"))
            return errs
        if create and meta.get("generateName"):
            for msg in self._name_problems(res, meta["generateName"], prefix=True):
                errs.append(FieldError("FieldValueInvalid", "metadata.generateName", meta["generateName"], msg))
        if name:
            for msg in self._name_problems(res, name):
                errs.append(FieldError("FieldValueInvalid", "metadata.name", name, msg))
        if res.namespaced and not meta.get("namespace"):
            errs.append(FieldError("FieldValueRequired", "metadata.namespace", None, ""))
        for key, value in (meta.get("labels") or {}).items():
            if len(value) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value):
                errs.append(FieldError(
                    "FieldValueInvalid", "metadata.labels", value,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
            if not selectors._valid_key(key):  # pylint: disable=protected-access
                errs.append(FieldError(
                    "FieldValueInvalid", "metadata.labels", key,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
        return errs

    @staticmethod
    def _name_problems(res, name, prefix=False):
        if res.plural in ("certificatesigningrequests", "roles", "clusterroles", "rolebindings",
                          "clusterrolebindings", "events"):
            out = []
            if not prefix and name in (".", ".."):
                out.append("may not be '%s'" % name)
            for char in ("/", "%"):
                if char in name:
                    out.append("may not contain '%s'" % char)
            return out
        check = name
        if prefix:
            check = name[:-1] if name.endswith("-") else name
            check = check + "a" if not check else check
        if res.plural == "namespaces":
            out = []
            if len(check) > 63:
                out.append("must be no more than 63 characters")
            if not DNS_LABEL.match(check):
                out.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                           "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                           "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
            return out
        out = []
        if len(check) > 253:
            out.append("must be no more than 253 characters")
        if not DNS_SUBDOMAIN.match(check):
            out.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                       "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                       "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
        return out

    def _namespace_lifecycle(self, res, namespace, name, verb):
        if not res.namespaced:
            return
        ns = self.store.get("namespaces", "", namespace)
        ns_res = reslib.by_plural("namespaces")
        if ns is None:
            raise not_found(ns_res, namespace)
        if verb == "create" and ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", '%s "%s" is forbidden: unable to create new content in namespace %s '
                           'because it is being terminated' % (res.qualified, name, namespace),
                           dict(_details(res, name), causes=[{"reason": "NamespaceTerminating", "message":
                                                              "namespace %s is being terminated" % namespace,
                                                              "field": "metadata.namespace"}]))

    # --- create --------------------------------------------------------------------------------------
    def create(self, req, res, namespace):
        obj, warnings = self.decode(req, res)
        client_obj = clone(obj)
        meta = obj["metadata"]
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        dry = self._dry_run(req)
        self._namespace_lifecycle(res, namespace, meta.get("name", ""), "create")
        self.rbac_escalation(res, obj, namespace, req.user)
        # PrepareForCreate
        meta.pop("deletionTimestamp", None)
        meta.pop("deletionGracePeriodSeconds", None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        self.prepare_create(res, obj, req.user)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"][:58] + "".join(random.choice(GEN_CHARS) for _i in range(5))
        errs = self.validate_create(res, obj)
        errs += self.validate_name(res, meta)
        if errs:
            raise invalid(res, meta.get("name", ""), errs)
        self.admit_create(res, obj, req.user)
        if meta.get("resourceVersion"):
            raise ApiError(500, None, "resourceVersion should not be set on objects to be created")
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_str()
        client_obj["metadata"] = {k: v for k, v in client_obj["metadata"].items() if k != "managedFields"}
        if res.plural == "namespaces":
            client_obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        managed.update(None, client_obj, self._manager(req), res.api_version, meta["creationTimestamp"], create=True,
                       operation=getattr(req, "operation", "Update"))
        if client_obj["metadata"].get("managedFields"):
            meta["managedFields"] = client_obj["metadata"]["managedFields"]
        self._order_meta(obj)
        with self.write_lock:
            if self.store.get(res.plural, namespace, meta["name"]) is not None:
                raise already_exists(res, meta["name"])
            if dry:
                meta["resourceVersion"] = ""
                meta.pop("resourceVersion")
                return Response(201, obj, self._warn_headers(warnings))
            self.store.create(res.plural, obj)
        if res.plural == "namespaces":
            self._namespace_defaults(meta["name"])
        return Response(201, obj, self._warn_headers(warnings))

    @staticmethod
    def _order_meta(obj):
        meta = obj["metadata"]
        order = [k[1:] if k.startswith("!") else k for k in sch.OBJECT_META]
        obj["metadata"] = {k: meta[k] for k in order if k in meta}

    def prepare_create(self, res, obj, user):
        if res.plural == "certificatesigningrequests":
            obj["status"] = {}
            spec = obj["spec"]
            for key in ("username", "uid", "groups", "extra"):
                spec.pop(key, None)
            if user.name:
                spec["username"] = user.name
            if user.uid:
                spec["uid"] = user.uid
            if user.groups:
                spec["groups"] = list(user.groups)
            if user.extra:
                spec["extra"] = user.extra
        elif res.plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            if obj["metadata"].get("name"):
                labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif res.plural == "secrets":
            self._secret_string_data(obj)
            if not obj.get("type"):
                obj["type"] = "Opaque"

    @staticmethod
    def _secret_string_data(obj):
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode("utf-8")).decode()
            obj["data"] = data
            # keep Go field order: immutable, data, type
            ordered = {k: obj[k] for k in ("kind", "apiVersion", "metadata", "immutable", "data", "type") if k in obj}
            obj.clear()
            obj.update(ordered)

    def validate_create(self, res, obj):
        if res.plural == "certificatesigningrequests":
            return csrlib.validate_spec(obj["spec"]) + csrlib.validate_status(obj.get("status"))
        return self.validate_generic(res, obj)

    def validate_generic(self, res, obj, old=None):
        errs = []
        if res.plural in ("secrets", "configmaps"):
            for field in ("data", "binaryData"):
                for key in (obj.get(field) or {}):
                    if not CONFIG_KEY.match(key) or len(key) > 253:
                        errs.append(FieldError("FieldValueInvalid", "%s[%s]" % (field, key), key,
                                               "a valid config key must consist of alphanumeric characters, '-', "
                                               "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
                                               "used for validation is '[-._a-zA-Z0-9]+')"))
        if res.plural == "secrets":
            errs += self._validate_secret(obj)
        if res.plural == "configmaps":
            for key in obj.get("binaryData") or {}:
                if key in (obj.get("data") or {}):
                    errs.append(FieldError("FieldValueInvalid", "data[%s]" % key, key,
                                           "duplicate of key present in binaryData"))
            size = sum(len(k) + len(v) for k, v in (obj.get("data") or {}).items())
            size += sum(len(k) + len(base64.b64decode(v)) for k, v in (obj.get("binaryData") or {}).items())
            if size > 1048576:
                errs.append(FieldError("FieldValueTooLong", "", None, "may not be more than 1048576 bytes"))
        if res.plural in ("roles", "clusterroles"):
            for i, rule in enumerate(obj.get("rules") or []):
                if not rule.get("verbs"):
                    errs.append(FieldError("FieldValueRequired", "rules[%d].verbs" % i, None,
                                           "verbs must contain at least one value"))
                if rule.get("nonResourceURLs") and res.plural == "roles":
                    errs.append(FieldError("FieldValueInvalid", "rules[%d].nonResourceURLs" % i,
                                           rule["nonResourceURLs"], "namespaced rules cannot apply to non-resource "
                                                                    "URLs"))
                if rule.get("nonResourceURLs") and (rule.get("resources") or rule.get("apiGroups")):
                    errs.append(FieldError("FieldValueInvalid", "rules[%d].nonResourceURLs" % i,
                                           rule["nonResourceURLs"], "rules cannot apply to both regular resources "
                                                                    "and non-resource URLs"))
                if not rule.get("nonResourceURLs") and not rule.get("resources"):
                    errs.append(FieldError("FieldValueRequired", "rules[%d].resources" % i, None,
                                           "resource rules must supply at least one resource"))
                if not rule.get("nonResourceURLs") and "apiGroups" not in rule:
                    errs.append(FieldError("FieldValueRequired", "rules[%d].apiGroups" % i, None,
                                           "resource rules must supply at least one api group"))
        if res.plural in ("rolebindings", "clusterrolebindings"):
            ref = obj.get("roleRef") or {}
            if ref.get("apiGroup") != "rbac.authorization.k8s.io":
                errs.append(FieldError("FieldValueNotSupported", "roleRef.apiGroup", ref.get("apiGroup", ""),
                                       'supported values: "rbac.authorization.k8s.io"'))
            kinds = ["ClusterRole", "Role"] if res.plural == "rolebindings" else ["ClusterRole"]
            if ref.get("kind") not in kinds:
                errs.append(FieldError("FieldValueNotSupported", "roleRef.kind", ref.get("kind", ""),
                                       "supported values: " + ", ".join('"%s"' % k for k in kinds)))
            if not ref.get("name"):
                errs.append(FieldError("FieldValueRequired", "roleRef.name", None, ""))
            for i, subject in enumerate(obj.get("subjects") or []):
                if not subject.get("name"):
                    errs.append(FieldError("FieldValueRequired", "subjects[%d].name" % i, None, ""))
                if subject.get("kind") not in ("User", "Group", "ServiceAccount"):
                    errs.append(FieldError("FieldValueNotSupported", "subjects[%d].kind" % i, subject.get("kind", ""),
                                           'supported values: "ServiceAccount", "User", "Group"'))
                elif subject["kind"] == "ServiceAccount" and not subject.get("namespace") and \
                        res.plural == "clusterrolebindings":
                    errs.append(FieldError("FieldValueRequired", "subjects[%d].namespace" % i, None, ""))
            if old is not None and old.get("roleRef") != obj.get("roleRef"):
                errs.append(FieldError("FieldValueInvalid", "roleRef", None, "cannot change roleRef",
                                       raw="rbac.RoleRef{APIGroup:\"%s\", Kind:\"%s\", Name:\"%s\"}" % (
                                           ref.get("apiGroup", ""), ref.get("kind", ""), ref.get("name", ""))))
        if res.plural == "secrets" and old is not None:
            if obj.get("type") != old.get("type"):
                errs.append(FieldError("FieldValueInvalid", "type", obj.get("type", ""), "field is immutable"))
        if res.plural in ("secrets", "configmaps") and old is not None and old.get("immutable"):
            if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
                errs.append(FieldError("FieldValueForbidden", "data", None,
                                       "field is immutable when `immutable` is set"))
            if not obj.get("immutable"):
                errs.append(FieldError("FieldValueForbidden", "immutable", None,
                                       "field is immutable when `immutable` is set"))
        return errs

    @staticmethod
    def _validate_secret(obj):
        errs = []
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        stype = obj.get("type", "Opaque")

        def required(key):
            if not data.get(key):
                errs.append(FieldError("FieldValueRequired", "data[%s]" % key, None, ""))
        if stype == "kubernetes.io/service-account-token":
            if not (obj["metadata"].get("annotations") or {}).get("kubernetes.io/service-account.name"):
                errs.append(FieldError("FieldValueRequired",
                                       "metadata.annotations[kubernetes.io/service-account.name]", None, ""))
        elif stype == "kubernetes.io/dockercfg":
            required(".dockercfg")
        elif stype == "kubernetes.io/dockerconfigjson":
            required(".dockerconfigjson")
            if data.get(".dockerconfigjson"):
                try:
                    json.loads(data[".dockerconfigjson"])
                except ValueError as exc:
                    errs.append(FieldError("FieldValueInvalid", "data[.dockerconfigjson]", "<secret contents redacted>",
                                           str(exc)))
        elif stype == "kubernetes.io/basic-auth":
            if not data.get("username") and not data.get("password"):
                required("username")
                required("password")
        elif stype == "kubernetes.io/ssh-auth":
            required("ssh-privatekey")
        elif stype == "kubernetes.io/tls":
            required("tls.key")
            required("tls.crt")
        if sum(len(k) + len(v) for k, v in data.items()) > 1048576:
            errs.append(FieldError("FieldValueTooLong", "data", None, "may not be more than 1048576 bytes"))
        return errs

    def admit_create(self, res, obj, _user):
        if res.plural == "certificatesigningrequests" and \
                obj["spec"].get("signerName") == "kubernetes.io/kube-apiserver-client":
            request = csrlib.parse_csr(base64.b64decode(obj["spec"]["request"]))
            from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel
            orgs = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            if "system:masters" in orgs:
                raise forbidden(res, obj["metadata"]["name"], "use of kubernetes.io/kube-apiserver-client signer "
                                                              "with system:masters group is not allowed")

    def rbac_escalation(self, res, obj, namespace, user):
        """RBAC's escalation prevention for roles and bindings (before validation, as in the storage layer)."""
        if res.plural not in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
            return
        if "system:masters" in user.groups:
            return
        name = obj["metadata"].get("name", "")
        if res.plural in ("roles", "clusterroles"):
            ok, _reason = self.check(user, "escalate", res.group, res.plural, name=name, namespace=namespace)
            if ok:
                return
            rules = obj.get("rules") or []
        else:
            ref = obj.get("roleRef") or {}
            role_res = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            ok, _reason = self.check(user, "bind", "rbac.authorization.k8s.io", role_res, name=ref.get("name", ""),
                                     namespace=namespace if role_res == "roles" else "")
            if ok:
                return
            role = self.store.get(role_res, namespace if role_res == "roles" else "", ref.get("name", ""))
            rules = (role or {}).get("rules") or []
        problem = auth.escalation_problem(self.authz, user, namespace, rules)
        if problem:
            raise forbidden(res, name, problem)

    # --- update --------------------------------------------------------------------------------------
    def update(self, req, res, namespace, name, sub, patched=None, warnings=None):
        if patched is None:
            obj, warnings = self.decode(req, res)
        else:
            obj = patched
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                              % (meta["name"], name))
        if res.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if not res.namespaced:
            meta.pop("namespace", None)
        dry = self._dry_run(req)
        with self.write_lock:
            old = self.store.get(res.plural, namespace, name)
            if old is None:
                if meta.get("uid"):
                    raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: "
                                   % meta["uid"])
                raise not_found(res, name)
            if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
                raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                               % (meta["uid"], old["metadata"]["uid"]))
            if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            self.rbac_escalation(res, obj, namespace, req.user)
            new = self.prepare_update(res, obj, old, sub, req.user)
            errs = self.validate_update(res, new, old, sub)
            errs += self.validate_name(res, new["metadata"], create=False)
            if errs:
                raise invalid(res, name, errs)
            self.admit_update(res, new, old, sub, req.user)
            if not self._same(new, old):
                managed.update(old, new, self._manager(req), res.api_version, now_str(), subresource=sub,
                               operation=getattr(req, "operation", "Update"))
            self._order_meta(new)
            if self._same(new, old):
                return Response(200, old, self._warn_headers(warnings))
            if dry:
                return Response(200, new, self._warn_headers(warnings))
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                self.store.update(res.plural, new)
                final = self.store.delete(res.plural, namespace, name)
                return Response(200, final, self._warn_headers(warnings))
            self.store.update(res.plural, new)
        return Response(200, new, self._warn_headers(warnings))

    @staticmethod
    def _manager(req):
        return managed.manager_name(req.q("fieldManager"), req.headers.get("user-agent"))

    @staticmethod
    def _same(new, old):
        skip = ("resourceVersion", "managedFields")
        a = dict(new, metadata={k: v for k, v in new["metadata"].items() if k not in skip})
        b = dict(old, metadata={k: v for k, v in old["metadata"].items() if k not in skip})
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    def prepare_update(self, res, obj, old, sub, _user):
        new = clone(obj)
        meta = new["metadata"]
        old_meta = old["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName",
                    "namespace", "name"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("selfLink", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "managedFields" in old_meta and "managedFields" not in meta:
            meta["managedFields"] = old_meta["managedFields"]
        if res.plural == "certificatesigningrequests":
            new["spec"] = clone(old["spec"])
            if sub == "":
                new["status"] = clone(old.get("status") or {})
            elif sub == "approval":
                status = {}
                conditions = (obj.get("status") or {}).get("conditions")
                if conditions:
                    status["conditions"] = conditions
                if (old.get("status") or {}).get("certificate"):
                    status["certificate"] = old["status"]["certificate"]
                new["status"] = status
                self._timestamps(new, old)
            elif sub == "status":
                status = clone(obj.get("status") or {})
                old_conds = (old.get("status") or {}).get("conditions") or []
                conds = status.get("conditions") or []
                for ctype in ("Approved", "Denied"):
                    if csrlib.count_types(conds, ctype) == csrlib.count_types(old_conds, ctype):
                        keep = [c for c in old_conds if c.get("type") == ctype]
                        merged = []
                        for cond in conds:
                            if cond.get("type") == ctype:
                                merged.append(keep.pop(0))
                            else:
                                merged.append(cond)
                        conds = merged
                if conds:
                    status["conditions"] = conds
                else:
                    status.pop("conditions", None)
                new["status"] = {k: status[k] for k in ("conditions", "certificate") if k in status}
                self._timestamps(new, old)
        elif res.plural == "namespaces":
            if sub == "status":
                new["spec"] = clone(old.get("spec") or {})
                new["metadata"] = clone(old["metadata"])
            else:
                new["status"] = clone(old.get("status") or {})
                if sub != "finalize":
                    new["spec"] = clone(old.get("spec") or {})
            labels = meta.setdefault("labels", {}) if sub != "status" else new["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = old_meta["name"]
        elif res.plural == "secrets":
            self._secret_string_data(new)
            if not new.get("type"):
                new["type"] = "Opaque"
        return new

    @staticmethod
    def _timestamps(new, old):
        stamp = now_str()
        old_conds = (old.get("status") or {}).get("conditions") or []
        for cond in (new.get("status") or {}).get("conditions") or []:
            if not cond.get("lastUpdateTime"):
                cond["lastUpdateTime"] = stamp
            if not cond.get("lastTransitionTime"):
                prior = next((c for c in old_conds if c.get("type") == cond.get("type")
                              and c.get("status") == cond.get("status") and c.get("lastTransitionTime")), None)
                cond["lastTransitionTime"] = prior["lastTransitionTime"] if prior else stamp
            order = ("type", "status", "reason", "message", "lastUpdateTime", "lastTransitionTime")
            ordered = {k: cond[k] for k in order if k in cond}
            cond.clear()
            cond.update(ordered)

    def validate_update(self, res, new, old, sub):
        if res.plural != "certificatesigningrequests":
            return self.validate_generic(res, new, old)
        errs = []
        new_status, old_status = new.get("status") or {}, old.get("status") or {}
        if sub in ("approval", "status"):
            errs += csrlib.validate_status(new_status)
        new_conds, old_conds = new_status.get("conditions") or [], old_status.get("conditions") or []
        if sub == "approval":
            for ctype in ("Approved", "Denied", "Failed"):
                if csrlib.count_types(new_conds, ctype) < csrlib.count_types(old_conds, ctype):
                    errs.append(FieldError("FieldValueForbidden", "status.conditions", None,
                                           'updates may not remove a condition of type "%s"' % ctype))
        if sub == "status":
            for ctype in ("Approved", "Denied"):
                if csrlib.count_types(new_conds, ctype) > csrlib.count_types(old_conds, ctype):
                    errs.append(FieldError("FieldValueForbidden", "status.conditions", None,
                                           'updates may not add a condition of type "%s"' % ctype))
                elif csrlib.count_types(new_conds, ctype) < csrlib.count_types(old_conds, ctype):
                    errs.append(FieldError("FieldValueForbidden", "status.conditions", None,
                                           'updates may not remove a condition of type "%s"' % ctype))
            if csrlib.count_types(new_conds, "Failed") < csrlib.count_types(old_conds, "Failed"):
                errs.append(FieldError("FieldValueForbidden", "status.conditions", None,
                                       'updates may not remove a condition of type "Failed"'))
            if old_status.get("certificate") and new_status.get("certificate") != old_status.get("certificate"):
                errs.append(FieldError("FieldValueForbidden", "status.certificate", None,
                                       "updates may not modify existing certificate content"))
        return errs

    def signer_allowed(self, user, verb, signer):
        ok, _reason = self.check(user, verb, "certificates.k8s.io", "signers", name=signer)
        if ok:
            return True
        if "/" in signer:
            ok, _reason = self.check(user, verb, "certificates.k8s.io", "signers",
                                     name=signer.split("/", 1)[0] + "/*")
        return ok

    def admit_update(self, res, new, old, sub, user):
        if res.plural != "certificatesigningrequests":
            return
        signer = old["spec"].get("signerName", "")
        name = old["metadata"]["name"]
        if sub == "approval":
            if not self.signer_allowed(user, "approve", signer):
                raise forbidden(res, name, 'user not permitted to approve requests with signerName "%s"' % signer)
        elif sub == "status":
            new_status, old_status = new.get("status") or {}, old.get("status") or {}
            changed = (new_status.get("certificate") != old_status.get("certificate")
                       or json.dumps(new_status.get("conditions") or []) != json.dumps(old_status.get("conditions")
                                                                                       or []))
            if changed and not self.signer_allowed(user, "sign", signer):
                raise forbidden(res, name, 'user not permitted to sign requests with signerName "%s"' % signer)

    # --- patch ---------------------------------------------------------------------------------------
    def patch(self, req, res, namespace, name, sub):
        content_type = req.headers.get("content-type", "").split(";")[0].strip()
        old = self.store.get(res.plural, namespace, name)
        if content_type == "application/apply-patch+yaml":
            if not req.q("fieldManager"):
                raise invalid_patch_options()
            try:
                body = yaml.safe_load(req.body.decode("utf-8"))
            except yaml.YAMLError as exc:
                raise bad_request("error decoding YAML: %s" % exc) from exc
            if old is None:
                if sub:
                    raise not_found(res, name)
                new_req = Request("POST", req.path, req.query, {"content-type": "application/json"},
                                  json.dumps(body).encode(), req.user)
                new_req.operation = "Apply"
                resp = self.create(new_req, res, namespace)
                resp.code = 201
                return resp
            doc = patchlib.merge_patch(old, body)
            obj, warnings = self.decode(req, res, body=doc)
            req.operation = "Apply"
            return self.update(req, res, namespace, name, sub, patched=obj, warnings=warnings)
        if old is None:
            raise not_found(res, name)
        try:
            body = json.loads(req.body.decode("utf-8"))
        except ValueError as exc:
            raise bad_request("error decoding patch: %s" % exc) from exc
        if content_type == "application/json-patch+json" and not isinstance(body, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            if content_type == "application/json-patch+json":
                doc = patchlib.json_patch(old, body)
            elif content_type == "application/merge-patch+json":
                doc = patchlib.merge_patch(old, body)
            elif content_type == "application/strategic-merge-patch+json":
                doc = patchlib.strategic_merge(old, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                                                            'accepted media types include: application/json-patch+json'
                                                            ', application/merge-patch+json, application/apply-patch'
                                                            '+yaml, application/strategic-merge-patch+json', {})
        except patchlib.PatchError as exc:
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request",
                           {"causes": [{"message": str(exc)}]}) from exc
        if not isinstance(doc, dict):
            raise bad_request("patch produced a non-object")
        obj, warnings = self.decode(req, res, body=doc)
        return self.update(req, res, namespace, name, sub, patched=obj, warnings=warnings)

    # --- delete --------------------------------------------------------------------------------------
    def _delete_options(self, req):
        if not req.body.strip():
            return {}
        try:
            if "protobuf" in req.headers.get("content-type", ""):
                body = proto.decode(req.body)
            else:
                body = json.loads(req.body)
        except (ValueError, proto.ProtoError) as exc:
            raise bad_request("couldn't get version/kind; json parse error: %s" % exc) from exc
        try:
            return sch.prune(sch.DELETE_OPTIONS, body or {})
        except sch.DecodeError as exc:
            raise bad_request(str(exc)) from exc

    def delete(self, req, res, namespace, name):
        opts = self._delete_options(req)
        dry = self._dry_run(req) or bool(opts.get("dryRun"))
        with self.write_lock:
            old = self.store.get(res.plural, namespace, name)
            if old is None:
                raise not_found(res, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                               % (pre["uid"], old["metadata"]["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name, "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion "
                               "in object meta: %s" % (pre["resourceVersion"], old["metadata"]["resourceVersion"]))
            if res.plural == "namespaces":
                return self._delete_namespace(res, old, dry)
            if old["metadata"].get("finalizers"):
                new = clone(old)
                if not new["metadata"].get("deletionTimestamp"):
                    new["metadata"]["deletionTimestamp"] = now_str()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    self._order_meta(new)
                    if not dry:
                        self.store.update(res.plural, new)
                return Response(200, new)
            if dry:
                final = old
            else:
                final = self.store.delete(res.plural, namespace, name)
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": dict(_details(res, name), uid=final["metadata"]["uid"])})

    def _delete_namespace(self, res, old, dry):
        name = old["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public"):
            raise forbidden(res, name, "this namespace may not be deleted")
        new = clone(old)
        if not new["metadata"].get("deletionTimestamp"):
            new["metadata"]["deletionTimestamp"] = now_str()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            self._order_meta(new)
            if not dry:
                self.store.update("namespaces", new)
                threading.Timer(0.2, self._finish_namespace, args=(name,)).start()
        return Response(200, new)

    def _finish_namespace(self, name):
        with self.write_lock:
            for res in reslib.RESOURCES:
                if res.namespaced:
                    for obj in self.store.list(res.plural, name)[1]:
                        self.store.delete(res.plural, name, obj["metadata"]["name"])
            self.store.delete("namespaces", "", name)

    def delete_collection(self, req, res, namespace):
        label_reqs, field_terms = self._selectors(req, res)
        dry = self._dry_run(req)
        deleted = []
        with self.write_lock:
            list_rv, items = self.store.list(res.plural, namespace)
            for obj in self._filter(res, items, label_reqs, field_terms):
                if obj["metadata"].get("finalizers"):
                    new = clone(obj)
                    new["metadata"]["deletionTimestamp"] = new["metadata"].get("deletionTimestamp") or now_str()
                    if not dry:
                        self.store.update(res.plural, new)
                    deleted.append(new)
                else:
                    # the response carries each object as it was stored before the delete
                    if not dry:
                        self.store.delete(res.plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                    deleted.append(obj)
        return Response(200, {"kind": res.kind + "List", "apiVersion": res.api_version,
                              "metadata": {"resourceVersion": str(list_rv)}, "items": deleted})

    # --- reviews ---------------------------------------------------------------------------------------
    def review(self, req, res):
        obj, warnings = self.decode(req, res)
        obj["metadata"] = {"creationTimestamp": None}
        user = req.user
        if res.plural == "selfsubjectreviews":
            info = {"username": user.name}
            if user.uid:
                info["uid"] = user.uid
            if user.groups:
                info["groups"] = list(user.groups)
            if user.extra:
                info["extra"] = user.extra
            obj["status"] = {"userInfo": info}
            return Response(201, obj, self._warn_headers(warnings))
        if res.plural == "selfsubjectrulesreview" or res.plural == "selfsubjectrulesreviews":
            namespace = obj["spec"].get("namespace", "")
            rules = self.authz.rules_for(user, namespace)
            resource_rules = [{k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if k in r}
                              for r in rules if not r.get("nonResourceURLs")]
            non_resource = [{k: r[k] for k in ("verbs", "nonResourceURLs")} for r in rules if r.get("nonResourceURLs")]
            obj["status"] = {"resourceRules": resource_rules, "nonResourceRules": non_resource, "incomplete": False}
            return Response(201, obj, self._warn_headers(warnings))
        spec = obj["spec"]
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        errs = []
        if ra is not None and nra is not None:
            errs.append(FieldError("FieldValueInvalid", "spec.nonResourceAttributes", None,
                                   "cannot be specified in combination with resourceAttributes",
                                   raw='authorization.NonResourceAttributes{Path:"%s", Verb:"%s"}' % (
                                       nra.get("path", ""), nra.get("verb", ""))))
        if ra is None and nra is None:
            errs.append(FieldError("FieldValueInvalid", "spec.resourceAttributes", None,
                                   "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
        if res.plural == "subjectaccessreviews":
            if not spec.get("user") and not spec.get("groups"):
                errs.append(FieldError("FieldValueInvalid", "spec.user", spec.get("user", ""),
                                       "at least one of user or group must be specified"))
            subject = auth.User(spec.get("user", ""), spec.get("uid", ""), spec.get("groups") or [],
                                spec.get("extra") or {})
        else:
            subject = user
        if errs:
            raise invalid(res, "", errs)
        if ra is not None:
            attrs = auth.Attributes(subject, ra.get("verb", ""), ra.get("group", ""), ra.get("version", ""),
                                    ra.get("resource", ""), ra.get("subresource", ""), ra.get("name", ""),
                                    ra.get("namespace", ""), "", True)
        else:
            attrs = auth.Attributes(subject, nra.get("verb", ""), "", "", "", "", "", "", nra.get("path", ""), False)
        allowed, reason = self.authz.authorize(attrs)
        status = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        obj["status"] = status
        return Response(201, obj, self._warn_headers(warnings))

    # --- internal client (controllers) ---------------------------------------------------------------------
    def internal(self, user, method, path, body=None, query=None):
        req = Request(method, path, query or {}, {"content-type": "application/json",
                                                  "user-agent": "kube-controller-manager/v1.32.0 (linux/amd64) "
                                                                "kubernetes/sandbox/" + user.name},
                      json.dumps(body).encode() if body is not None else b"", user)
        return self.handle(req)


def invalid_patch_options():
    return ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                                    'required for apply patch',
                    {"group": "meta.k8s.io", "kind": "PatchOptions",
                     "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply "
                                                                            "patch", "field": "fieldManager"}]})


def monotonic():
    return time.monotonic()
