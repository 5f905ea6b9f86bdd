"""An in-memory stand-in for the CSR slice of the Kubernetes API, plugged under _kube.KubeClient._send.

Only for the unit tests of the csr_* modules: enough of the contract (create/get/list/delete, /approval, labels,
field selector on metadata.name, a signer that issues on approval) to drive the modules in-process.
"""

import base64
import datetime
import itertools
import json
import uuid
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.kubepki.certs.plugins.module_utils import _kube

BASE = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _status(code, message, reason):
    return code, {}, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                 "reason": reason, "code": code}).encode()


class FakeCluster:
    def __init__(self, auto_issue=True, signer_fails=False, lifetime=None):
        self.objects = {}
        self.version = itertools.count(100)
        self.auto_issue = auto_issue
        self.signer_fails = signer_fails
        self.lifetime = lifetime
        self.requests = []
        self.caller = "admin"
        self.grants = set()
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-ca")])
        self.ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.ca_key.public_key())
                        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                        .not_valid_after(now + datetime.timedelta(days=3650))
                        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                        .sign(self.ca_key, hashes.SHA256()))
        from cryptography.hazmat.primitives import serialization
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()

    def _bump(self, obj):
        obj["metadata"]["resourceVersion"] = str(next(self.version))

    def issue(self, obj):
        csr = x509.load_pem_x509_csr(base64.b64decode(obj["spec"]["request"]))
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        ttl = self.lifetime or obj["spec"].get("expirationSeconds") or 365 * 86400
        cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.ca_cert.subject).public_key(csr.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(seconds=ttl)).sign(self.ca_key, hashes.SHA256()))
        from cryptography.hazmat.primitives import serialization
        obj["status"]["certificate"] = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()

    def send(self, method, path, query, body, _timeout, stream):
        query = dict(query or {})
        self.requests.append((method, path, query))
        if method == "POST" and path in REVIEWS:
            return REVIEWS[path](self, body)
        if not path.startswith(BASE):
            return _status(404, "not found", "NotFound")
        rest = path[len(BASE):].strip("/")
        parts = [unquote(p) for p in rest.split("/")] if rest else []
        if not parts:
            if method == "GET":
                return self._list(query)
            if method == "POST":
                return self._create(body, query)
        name = parts[0]
        obj = self.objects.get(name)
        if obj is None:
            return _status(404, 'certificatesigningrequests.certificates.k8s.io "%s" not found' % name, "NotFound")
        if method == "GET":
            return 200, {}, json.dumps(obj).encode()
        if method == "DELETE":
            if query.get("dryRun") != "All":
                del self.objects[name]
            return 200, {}, b'{"kind":"Status","status":"Success"}'
        if method == "PUT" and parts[1:] == ["approval"]:
            if body["metadata"].get("resourceVersion") not in (None, obj["metadata"]["resourceVersion"]):
                return _status(409, "the object has been modified", "Conflict")
            obj["status"]["conditions"] = body["status"]["conditions"]
            types = {c["type"] for c in obj["status"]["conditions"]}
            if "Approved" in types and "Denied" not in types and self.auto_issue:
                if self.signer_fails:
                    obj["status"]["conditions"].append({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                                                        "message": "invalid usage"})
                else:
                    self.issue(obj)
            self._bump(obj)
            return 200, {}, json.dumps(obj).encode()
        return _status(405, "method not allowed", "MethodNotAllowed")

    def _list(self, query):
        items = list(self.objects.values())
        for clause in filter(None, (query.get("labelSelector") or "").split(",")):
            key, value = clause.split("=")
            items = [o for o in items if (o["metadata"].get("labels") or {}).get(key) == value]
        for clause in filter(None, (query.get("fieldSelector") or "").split(",")):
            key, value = clause.split("=")
            if key == "metadata.name":
                items = [o for o in items if o["metadata"]["name"] == value]
            elif key == "spec.signerName":
                items = [o for o in items if o["spec"]["signerName"] == value]
        if query.get("watch"):
            # a unit-test watch: nothing ever changes, the stream ends at once
            return 200, {}, _EmptyStream()
        return 200, {}, json.dumps({"kind": "CertificateSigningRequestList", "items": items,
                                    "metadata": {"resourceVersion": str(next(self.version))}}).encode()

    def _create(self, body, query):
        name = body["metadata"]["name"]
        if "system:masters" in base64.b64decode(body["spec"]["request"]).decode():
            pass
        if name in self.objects:
            return _status(409, 'certificatesigningrequests.certificates.k8s.io "%s" already exists' % name, "AlreadyExists")
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        obj["spec"].update(username=self.caller, groups=["system:masters", "system:authenticated"])
        obj["status"] = {}
        if query.get("dryRun") != "All":
            self._bump(obj)
            self.objects[name] = obj
        return 201, {}, json.dumps(obj).encode()

    # reviews: the caller is always the creator of the fake's CSRs; a SubjectAccessReview allows what cluster-admin
    # (system:masters) may do and, for others, what ``self.grants`` lists as (user, subresource)

    def _self_review(self, body):
        answer = dict(body, status={"userInfo": {"username": self.caller, "groups": ["system:masters", "system:authenticated"]}})
        return 201, {}, json.dumps(answer).encode()

    def _access_review(self, body):
        spec = body["spec"]
        allowed = "system:masters" in (spec.get("groups") or []) or (spec.get("user"), spec["resourceAttributes"].get("subresource")) in self.grants
        return 201, {}, json.dumps(dict(body, status={"allowed": allowed})).encode()


REVIEWS = {"/apis/authentication.k8s.io/v1/selfsubjectreviews": FakeCluster._self_review,
           "/apis/authorization.k8s.io/v1/subjectaccessreviews": FakeCluster._access_review}


class _EmptyStream:
    def stream(self, _amt, decode_content=True):
        return iter(())

    def close(self):
        pass

    def release_conn(self):
        pass


def install(monkeypatch, cluster):
    """Make every module's KubeClient talk to ``cluster``."""
    _kube._CLIENTS.clear()

    def client_for(auth, deadline=_kube.DEFAULT_DEADLINE):
        client = _kube.KubeClient(None, deadline=deadline)
        client.host = auth.get("host") or "https://fake.invalid"
        client._send = cluster.send
        return client

    monkeypatch.setattr(_kube, "client_for", client_for)
    return cluster
