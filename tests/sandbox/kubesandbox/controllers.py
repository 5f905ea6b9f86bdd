"""The kube-controller-manager CSR controllers of one sandbox cluster: csrsigning, csrapproving and
csrcleaner. They run in the cluster process as the certificate-controller service account and go through
the same API pipeline (RBAC, validation, admission) as any client."""

import base64
import datetime
import heapq
import logging
import threading
import time

from cryptography import x509

from . import auth, csr as csrlib

BASE = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
LOG = logging.getLogger("kubesandbox.controllers")
BUILTIN = set(auth.SIGNERS)
AGGREGATE = "\x00aggregate-clusterroles"
AGGREGATOR = auth.User("system:serviceaccount:kube-system:clusterrole-aggregation-controller", "", [
    "system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated", "system:masters"], {})


def _selector_matches(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _parse_time(text):
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


class Controllers:
    def __init__(self, cluster):
        self.cluster = cluster
        self.cond = threading.Condition()
        self.heap = []
        self.pending = set()
        self.failures = {}
        self.approved_seen = {}
        self.stopped = False
        self.next_clean = time.monotonic() + self._opt("cleaner_interval")
        cluster.controllers = self
        cluster.store.listeners.append(self.on_event)
        self.thread = threading.Thread(target=self._run, name="csr-controllers", daemon=True)

    def _opt(self, name):
        return float(self.cluster.options[name])

    def start(self):
        for obj in self.cluster.store.list("certificatesigningrequests")[1]:
            self.enqueue(obj["metadata"]["name"])
        self.thread.start()

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def wake(self):
        with self.cond:
            self.next_clean = min(self.next_clean, time.monotonic() + self._opt("cleaner_interval"))
            self.cond.notify()

    def on_event(self, resource, kind, obj, _old):
        if resource == "clusterroles":
            self.enqueue(AGGREGATE)
            return
        if resource != "certificatesigningrequests":
            return
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.failures.pop(name, None)
            self.approved_seen.pop(name, None)
            return
        self.enqueue(name)

    def enqueue(self, name, delay=0.0):
        with self.cond:
            due = time.monotonic() + delay
            heapq.heappush(self.heap, (due, name))
            self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while not self.stopped:
                    now = time.monotonic()
                    if now >= self.next_clean:
                        break
                    if self.heap and self.heap[0][0] <= now:
                        break
                    wait = self.next_clean - now
                    if self.heap:
                        wait = min(wait, self.heap[0][0] - now)
                    self.cond.wait(max(wait, 0.001))
                if self.stopped:
                    return
                now = time.monotonic()
                clean = now >= self.next_clean
                names = []
                while self.heap and self.heap[0][0] <= now:
                    names.append(heapq.heappop(self.heap)[1])
            if clean:
                try:
                    self.run_cleaner()
                except Exception:  # pylint: disable=broad-except
                    LOG.exception("cleaner failed")
                with self.cond:
                    self.next_clean = time.monotonic() + self._opt("cleaner_interval")
            seen = set()
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                try:
                    self.sync(name)
                except Exception:  # pylint: disable=broad-except
                    LOG.exception("sync of %s failed", name)
                    self.enqueue(name, 1.0)

    # --- clusterrole-aggregation ---------------------------------------------------------------------
    def aggregate(self):
        roles = self.cluster.store.list("clusterroles")[1]
        for role in roles:
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
            if selectors is None:
                continue
            rules = []
            for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
                if other["metadata"]["name"] == role["metadata"]["name"]:
                    continue
                labels = other["metadata"].get("labels") or {}
                if not any(_selector_matches(sel, labels) for sel in selectors):
                    continue
                for rule in other.get("rules") or []:
                    if rule not in rules:
                        rules.append(rule)
            if rules != (role.get("rules") or []):
                new = dict(role, rules=rules)
                self.cluster.internal(AGGREGATOR, "PUT", "/apis/rbac.authorization.k8s.io/v1/clusterroles/"
                                      + role["metadata"]["name"], new)

    # --- one CSR -------------------------------------------------------------------------------------
    def sync(self, name):
        if name == AGGREGATE:
            self.aggregate()
            return
        obj = self.cluster.store.get("certificatesigningrequests", "", name)
        if obj is None:
            return
        status = obj.get("status") or {}
        if status.get("certificate"):
            return
        conds = status.get("conditions") or []
        types = {c.get("type") for c in conds}
        if "Approved" not in types and "Denied" not in types:
            self.approve(obj)
            return
        if "Approved" not in types or "Denied" in types or "Failed" in types:
            return
        signer = obj["spec"].get("signerName")
        if signer not in BUILTIN:
            return
        first = self.approved_seen.setdefault(name, time.monotonic())
        delay = self._opt("signing_delay")
        remaining = first + delay - time.monotonic()
        if remaining > 0:
            self.enqueue(name, remaining)
            return
        self.sign(obj)

    def approve(self, obj):
        name = obj["metadata"]["name"]
        if obj["spec"].get("signerName") != "kubernetes.io/kube-apiserver-client-kubelet":
            return
        request = csrlib.kubelet_client_ok(obj)
        if request is None:
            return
        spec = obj["spec"]
        attempts = []
        cn = csrlib._cn(request)  # pylint: disable=protected-access
        if spec.get("username") == cn:
            attempts.append(("selfnodeclient", "Auto approving self kubelet client certificate after "
                                               "SubjectAccessReview."))
        attempts.append(("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."))
        for sub, message in attempts:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": spec.get("username", ""), "uid": spec.get("uid", ""),
                               "groups": spec.get("groups") or [], "extra": spec.get("extra") or {},
                               "resourceAttributes": {"group": "certificates.k8s.io", "resource":
                                                      "certificatesigningrequests", "verb": "create",
                                                      "subresource": sub, "version": "*"}}}
            resp = self.cluster.internal(auth.CONTROLLER, "POST",
                                         "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
            if resp.code == 201 and resp.body["status"].get("allowed"):
                new = dict(obj)
                new["status"] = dict(obj.get("status") or {})
                new["status"]["conditions"] = list(new["status"].get("conditions") or []) + [
                    {"type": "Approved", "status": "True", "reason": "AutoApproved", "message": message}]
                resp = self.cluster.internal(auth.CONTROLLER, "PUT", "%s/%s/approval" % (BASE, name), new)
                if resp.code == 409:
                    self.enqueue(name, 0.05)
                self.failures.pop(name, None)
                return
        count = self.failures.get(name, 0)
        self.failures[name] = count + 1
        delay = min(0.2 * (2 ** count), self._opt("approver_max_backoff"))
        self.enqueue(name, delay)

    def sign(self, obj):
        name = obj["metadata"]["name"]
        spec = obj["spec"]
        request = csrlib.parse_csr(base64.b64decode(spec["request"]))
        usages = spec.get("usages") or []
        problem = csrlib.signer_check(spec["signerName"], request, usages)
        new = dict(obj)
        new["status"] = dict(obj.get("status") or {})
        if problem:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            new["status"]["conditions"] = list(new["status"].get("conditions") or []) + [
                {"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": problem,
                 "lastUpdateTime": stamp}]
        else:
            try:
                pem = csrlib.issue_certificate(self.cluster.ca.cert, self.cluster.ca.key, request, usages,
                                               spec.get("expirationSeconds"), self._opt("signing_duration"))
            except RuntimeError:
                LOG.exception("signing %s failed", name)
                self.enqueue(name, 5.0)
                return
            new["status"]["certificate"] = base64.b64encode(pem).decode()
        resp = self.cluster.internal(auth.CONTROLLER, "PUT", "%s/%s/status" % (BASE, name), new)
        if resp.code == 409:
            self.enqueue(name, 0.05)
        elif resp.code >= 300:
            LOG.warning("status update of %s: %s %s", name, resp.code, resp.body)
            self.enqueue(name, 1.0)

    # --- cleaner -------------------------------------------------------------------------------------
    def run_cleaner(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        deleted = []
        for obj in self.cluster.store.list("certificatesigningrequests")[1]:
            if self._stale(obj, now):
                name = obj["metadata"]["name"]
                resp = self.cluster.internal(auth.CONTROLLER, "DELETE", "%s/%s" % (BASE, name))
                if resp.code == 200:
                    deleted.append(name)
        return deleted

    def _older(self, text, now, ttl_name):
        when = _parse_time(text)
        if when is None:
            return False
        return (now - when).total_seconds() > self._opt(ttl_name)

    def _stale(self, obj, now):
        status = obj.get("status") or {}
        conds = status.get("conditions") or []
        cert = status.get("certificate")
        approved = False
        for cond in conds:
            ctype = cond.get("type")
            if ctype == "Approved":
                approved = True
                if cert and self._older(cond.get("lastUpdateTime"), now, "approved_ttl"):
                    return True
            if ctype == "Denied" and self._older(cond.get("lastUpdateTime"), now, "denied_ttl"):
                return True
            if ctype == "Failed" and self._older(cond.get("lastUpdateTime"), now, "failed_ttl"):
                return True
        if not conds and self._older(obj["metadata"].get("creationTimestamp"), now, "pending_ttl"):
            return True
        if approved and cert:
            blocks = csrlib.pem_blocks(base64.b64decode(cert))
            if blocks:
                try:
                    leaf = x509.load_der_x509_certificate(blocks[0][2])
                except ValueError:
                    return False
                if leaf.not_valid_after_utc < now:
                    return True
        return False
