"""An in-memory stand-in for the CSR slice of the Kubernetes API, plugged under _kube.KubeClient._send.

Only for the unit tests: enough of the CSR contract (create/get/list/delete, /approval, labels, field selector on
metadata.name, a signer that issues on approval) to drive the csr_* modules in-process, and of the ClusterTrustBundle
one (``FakeTrustBundles``: discovery, create/get/update/delete, dryRun=All, conflicts) for cluster_trust_bundle.
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

from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube

BASE = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _read_or_delete(objects, resource, name, method, query):
    """The answer to a GET or DELETE of one object, or to any request for one that does not exist; None otherwise."""
    obj = objects.get(name)
    if obj is None:
        return _status(404, '%s.certificates.k8s.io "%s" not found' % (resource, name), "NotFound")
    if method == "GET":
        return 200, {}, json.dumps(obj).encode()
    if method == "DELETE":
        if query.get("dryRun") != "All":
            del objects[name]
        return 200, {}, b'{"kind":"Status","status":"Success"}'
    return None


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
        answered = _read_or_delete(self.objects, "certificatesigningrequests", name, method, query)
        if answered is not None:
            return answered
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


def install_clusters(monkeypatch, clusters):
    """Several clusters at once (user_certificates): a client talks to the one of ``clusters`` ({host: FakeCluster})
    its auth options name."""
    _kube._CLIENTS.clear()

    def client_for(auth, deadline=_kube.DEFAULT_DEADLINE):
        client = _kube.KubeClient(None, deadline=deadline)
        client.host = auth.get("host")
        client._send = clusters[client.host].send
        return client

    monkeypatch.setattr(_kube, "client_for", client_for)
    return clusters


# ---------------------------------------------------------------- ClusterTrustBundles (cluster_trust_bundle)

TRUST_GROUP = "/apis/certificates.k8s.io"


class FakeTrustBundles:
    """certificates.k8s.io discovery and the clustertrustbundles collection (create, get, update, delete, dryRun=All)."""

    def __init__(self, versions=("v1beta1",), listed=None, deny_attest=False, server_version=None):
        self.versions = list(versions)  # versions serving clustertrustbundles
        self.server_version = server_version  # the /version answer (a dict); None: 404
        self.listed = list(listed if listed is not None else ["v1"] + self.versions)  # versions in the APIGroup
        self.deny_attest = deny_attest
        self.objects = {}
        self.requests = []
        self.conflicts = 0  # the next PUTs answered 409 after someone else changed the object
        self.rv = 100

    def send(self, method, path, query, body, _timeout, _stream):
        query = dict(query or {})
        self.requests.append((method, path, query))
        if path == "/version" and self.server_version is not None:
            return 200, {}, json.dumps(self.server_version).encode()
        if path == TRUST_GROUP:
            entries = [{"groupVersion": "certificates.k8s.io/%s" % v, "version": v} for v in self.listed]
            return 200, {}, json.dumps({"kind": "APIGroup", "name": "certificates.k8s.io", "versions": entries}).encode()
        for version in self.listed:
            if path == "%s/%s" % (TRUST_GROUP, version):
                resources = [{"name": "certificatesigningrequests"}] if version == "v1" else [{"name": "podcertificaterequests"}]
                if version in self.versions:
                    resources.append({"name": "clustertrustbundles"})
                return 200, {}, json.dumps({"kind": "APIResourceList", "resources": resources}).encode()
        for version in self.versions:
            base = "%s/%s/clustertrustbundles" % (TRUST_GROUP, version)
            if path == base and method == "POST":
                return self._write(body, query, None)
            if path.startswith(base + "/"):
                return self._item(method, unquote(path[len(base) + 1:]), body, query)
        return _status(404, "the server could not find the requested resource", "NotFound")

    def _item(self, method, name, body, query):
        obj = self.objects.get(name)
        answered = _read_or_delete(self.objects, "clustertrustbundles", name, method, query)
        if answered is not None:
            return answered
        if method == "PUT":
            if self.conflicts:
                self.conflicts -= 1
                self.change_behind_our_back(name)
                return _status(409, "the object has been modified; please apply your changes to the latest version", "Conflict")
            if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                return _status(409, "the object has been modified", "Conflict")
            return self._write(body, query, obj)
        return _status(405, "method not allowed", "MethodNotAllowed")

    def _write(self, body, query, old):
        name = body["metadata"]["name"]
        if old is None and name in self.objects:
            return _status(409, 'clustertrustbundles.certificates.k8s.io "%s" already exists' % name, "AlreadyExists")
        if body["spec"].get("signerName") and self.deny_attest:
            return _status(403, 'clustertrustbundles.certificates.k8s.io "%s" is forbidden: user not permitted to attest for signerName "%s"'
                           % (name, body["spec"]["signerName"]), "Forbidden")
        obj = json.loads(json.dumps(body))
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        obj["metadata"].setdefault("uid", "uid-%s" % name)
        obj["metadata"]["managedFields"] = [{"manager": "kubepki.certs"}]
        if query.get("dryRun") != "All":
            self.objects[name] = obj
        return (200 if old else 201), {}, json.dumps(obj).encode()

    def change_behind_our_back(self, name):
        self.rv += 1
        self.objects[name]["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[name]["metadata"].setdefault("labels", {})["touched-by"] = "someone-else"

    def writes(self):
        return [r for r in self.requests if r[0] in ("POST", "PUT", "DELETE")]
