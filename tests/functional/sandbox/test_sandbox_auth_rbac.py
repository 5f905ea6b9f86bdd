"""Authentication (client certs, static tokens, bootstrap tokens, anonymous) and RBAC, incl. signers."""

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from kubernetes import client

from sandbox_helpers import CSR_BASE, Raw, api_client, csr_body, csr_pem, token_client, unique


def rbac(raw, kind, name, body):
    body = dict(body, apiVersion="rbac.authorization.k8s.io/v1", kind=kind)
    body["metadata"] = {"name": name}
    status, obj = raw.call("POST", "/apis/rbac.authorization.k8s.io/v1/%ss" % kind.lower(), body)
    assert status == 201, obj
    return obj


def bind(raw, role, user=None, group=None, rules=None):
    name = unique("rb")
    if rules is not None:
        rbac(raw, "ClusterRole", name, {"rules": rules})
        role = name
    subject = {"kind": "User", "name": user} if user else {"kind": "Group", "name": group}
    subject["apiGroup"] = "rbac.authorization.k8s.io"
    rbac(raw, "ClusterRoleBinding", name, {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                       "name": role}, "subjects": [subject]})
    return name


def user_raw(sandbox, c1, tmp_path, user, groups=()):
    path = sandbox.user_kubeconfig(c1.name, str(tmp_path / ("%s.kubeconfig" % user)), user, groups)
    return Raw(api_client(path))


def test_anonymous(c1):
    anon = client.Configuration()
    anon.host = c1.server
    anon.ssl_ca_cert = c1.ca_cert
    raw = Raw(client.ApiClient(anon))
    status, body = raw.call("GET", "/version")
    assert status == 200 and body["major"] == "1"
    assert raw.call("GET", "/healthz")[0] == 200
    status, body = raw.call("GET", "/api")
    assert status == 403
    assert body["message"] == 'forbidden: User "system:anonymous" cannot get path "/api"'
    status, body = raw.call("GET", CSR_BASE)
    assert status == 403
    assert body["message"] == ('certificatesigningrequests.certificates.k8s.io is forbidden: User "system:anonymous" '
                               'cannot list resource "certificatesigningrequests" in API group "certificates.k8s.io" '
                               'at the cluster scope')


def test_bad_bearer_token_is_401_not_anonymous(c1):
    raw = Raw(token_client(c1, "no-such-token"))
    status, body = raw.call("GET", "/version")
    assert status == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_static_token_whoami(sandbox, c1):
    token = unique("tok")
    sandbox.add_token(c1.name, token, "tina", "uid-7", ["g1", "g2"])
    status, body = Raw(token_client(c1, token)).call(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert status == 201
    assert body["status"]["userInfo"] == {"username": "tina", "uid": "uid-7",
                                          "groups": ["g1", "g2", "system:authenticated"]}


def _bootstrap_secret(raw, token_id, secret, **data):
    values = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true"}
    values.update(data)
    values = {k: v for k, v in values.items() if v is not None}
    body = {"apiVersion": "v1", "kind": "Secret", "type": data.pop("type", None) or "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-" + token_id, "namespace": "kube-system"},
            "stringData": {k: v for k, v in values.items() if k != "type"}}
    status, obj = raw.call("POST", "/api/v1/namespaces/kube-system/secrets", body)
    assert status == 201, obj


def _token():
    import secrets as pysecrets  # pylint: disable=import-outside-toplevel
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return ("".join(pysecrets.choice(alphabet) for _i in range(6)),
            "".join(pysecrets.choice(alphabet) for _i in range(16)))


def _whoami(c1, token):
    return Raw(token_client(c1, token)).call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                             {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def test_bootstrap_token_accepted(raw, c1):
    tid, sec = _token()
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    _bootstrap_secret(raw, tid, sec, expiration=future, **{"auth-extra-groups": "system:bootstrappers:worker"})
    status, body = _whoami(c1, "%s.%s" % (tid, sec))
    assert status == 201
    assert body["status"]["userInfo"] == {"username": "system:bootstrap:" + tid, "groups": [
        "system:bootstrappers", "system:bootstrappers:worker", "system:authenticated"]}


@pytest.mark.parametrize("case", ["wrong-secret", "expired", "bad-expiration", "no-auth-usage", "bad-group",
                                  "wrong-type", "missing"])
def test_bootstrap_token_rejections(raw, c1, case):
    tid, sec = _token()
    token = "%s.%s" % (tid, sec)
    extra = {}
    if case == "wrong-secret":
        token = "%s.%s" % (tid, "x" * 16)
    elif case == "expired":
        extra["expiration"] = "2000-01-01T00:00:00Z"
    elif case == "bad-expiration":
        extra["expiration"] = "tomorrow"
    elif case == "no-auth-usage":
        extra["usage-bootstrap-authentication"] = "false"
    elif case == "bad-group":
        extra["auth-extra-groups"] = "system:masters"
    elif case == "wrong-type":
        extra["type"] = "Opaque"
    if case != "missing":
        _bootstrap_secret(raw, tid, sec, **extra)
    status, body = _whoami(c1, token)
    assert status == 401, body
    assert body["reason"] == "Unauthorized"


def test_rbac_denials_on_approval_and_signers(sandbox, c1, raw, tmp_path):
    user = unique("approver")
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("x"), signer="example.com/team-a"))
    ur = user_raw(sandbox, c1, tmp_path, user)
    _s, obj = ur.call("GET", CSR_BASE + "/" + name)
    assert _s == 403
    assert obj["message"] == ('certificatesigningrequests.certificates.k8s.io "%s" is forbidden: User "%s" cannot get '
                              'resource "certificatesigningrequests" in API group "certificates.k8s.io" at the '
                              'cluster scope' % (name, user))
    _s, obj = raw.call("GET", CSR_BASE + "/" + name)
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "R"}]}
    status, err = ur.call("PUT", CSR_BASE + "/" + name + "/approval", obj)
    assert status == 403
    assert err["message"] == ('certificatesigningrequests.certificates.k8s.io "%s" is forbidden: User "%s" cannot '
                              'update resource "certificatesigningrequests/approval" in API group '
                              '"certificates.k8s.io" at the cluster scope' % (name, user))
    bind(raw, None, user=user, rules=[{"apiGroups": ["certificates.k8s.io"], "verbs": ["update"],
                                       "resources": ["certificatesigningrequests/approval"]}])
    status, err = ur.call("PUT", CSR_BASE + "/" + name + "/approval", obj)
    assert status == 403
    assert err["message"] == ('certificatesigningrequests.certificates.k8s.io "%s" is forbidden: user not permitted '
                              'to approve requests with signerName "example.com/team-a"' % name)
    # a glob-looking name that is not the literal "<domain>/*" does not help
    bind(raw, None, user=user, rules=[{"apiGroups": ["certificates.k8s.io"], "verbs": ["approve"],
                                       "resources": ["signers"], "resourceNames": ["example.com/team-*"]}])
    assert ur.call("PUT", CSR_BASE + "/" + name + "/approval", obj)[0] == 403
    bind(raw, None, user=user, rules=[{"apiGroups": ["certificates.k8s.io"], "verbs": ["approve"],
                                       "resources": ["signers"], "resourceNames": ["example.com/*"]}])
    status, ok = ur.call("PUT", CSR_BASE + "/" + name + "/approval", obj)
    assert status == 200 and ok["status"]["conditions"][0]["type"] == "Approved"
    # signing needs update on /status plus sign on the signer
    bind(raw, None, user=user, rules=[{"apiGroups": ["certificates.k8s.io"], "verbs": ["update"],
                                       "resources": ["certificatesigningrequests/status"]}])
    ok["status"]["conditions"].append({"type": "Failed", "status": "True", "reason": "X"})
    status, err = ur.call("PUT", CSR_BASE + "/" + name + "/status", ok)
    assert status == 403
    assert 'user not permitted to sign requests with signerName "example.com/team-a"' in err["message"]
    bind(raw, None, user=user, rules=[{"apiGroups": ["certificates.k8s.io"], "verbs": ["sign"],
                                       "resources": ["signers"], "resourceNames": ["example.com/team-a"]}])
    status, done = ur.call("PUT", CSR_BASE + "/" + name + "/status", ok)
    assert status == 200 and [c["type"] for c in done["status"]["conditions"]] == ["Approved", "Failed"]


def test_missing_role_reason_in_403(sandbox, c1, raw, tmp_path):
    user = unique("ghost")
    rbac(raw, "ClusterRoleBinding", unique("rb"), {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "does-not-exist"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})
    status, err = user_raw(sandbox, c1, tmp_path, user).call("GET", CSR_BASE)
    assert status == 403
    assert err["message"].endswith(': RBAC: clusterrole.rbac.authorization.k8s.io "does-not-exist" not found')


def test_namespaced_403_message(sandbox, c1, tmp_path):
    user = unique("nsuser")
    status, err = user_raw(sandbox, c1, tmp_path, user).call("GET", "/api/v1/namespaces/default/secrets/x")
    assert status == 403
    assert err["message"] == ('secrets "x" is forbidden: User "%s" cannot get resource "secrets" in API group "" in '
                              'the namespace "default"' % user)
    assert err["details"] == {"name": "x", "kind": "secrets"}


def test_kubelet_client_auto_approval(sandbox, c1, raw):
    sandbox.set_options(c1.name, approver_max_backoff="0.5s")
    tid, sec = _token()
    _bootstrap_secret(raw, tid, sec)
    boot = Raw(token_client(c1, "%s.%s" % (tid, sec)))
    name = unique("node-csr")
    body = csr_body(name, csr_pem("system:node:%s" % tid, ["system:nodes"]),
                    signer="kubernetes.io/kube-apiserver-client-kubelet",
                    usages=["digital signature", "client auth"])
    # without the node-bootstrapper binding the bootstrap user cannot even create
    assert boot.call("POST", CSR_BASE, body)[0] == 403
    bind(raw, "system:node-bootstrapper", user="system:bootstrap:" + tid)
    status, obj = boot.call("POST", CSR_BASE, body)
    assert status == 201
    assert obj["spec"]["username"] == "system:bootstrap:" + tid
    import time  # pylint: disable=import-outside-toplevel
    time.sleep(1.0)
    _s, obj = raw.call("GET", CSR_BASE + "/" + name)
    assert obj["status"] == {}, "must stay pending without a nodeclient binding"
    bind(raw, "system:certificates.k8s.io:certificatesigningrequests:nodeclient", user="system:bootstrap:" + tid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _s, obj = raw.call("GET", CSR_BASE + "/" + name)
        if obj["status"].get("certificate"):
            break
        time.sleep(0.1)
    cond = obj["status"]["conditions"][0]
    assert (cond["type"], cond["reason"], cond["message"]) == (
        "Approved", "AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview.")
    assert obj["status"]["certificate"]


def test_admin_kubelet_csr_self_and_masters_auto_approved(raw):
    name = unique("node-csr")
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("system:node:n9", ["system:nodes"]),
                                        signer="kubernetes.io/kube-apiserver-client-kubelet",
                                        usages=["digital signature", "key encipherment", "client auth"]))
    import time  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _s, obj = raw.call("GET", CSR_BASE + "/" + name)
        if obj["status"].get("certificate"):
            break
        time.sleep(0.05)
    assert obj["status"]["conditions"][0]["reason"] == "AutoApproved"
    assert obj["status"]["conditions"][0]["message"] == ("Auto approving kubelet client certificate after "
                                                         "SubjectAccessReview.")
    assert base64.b64decode(obj["status"]["certificate"]).startswith(b"-----BEGIN CERTIFICATE-----")


def test_other_signers_never_auto_approved(raw):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("system:node:n9", ["system:nodes"], dns=["n9"]),
                                        signer="kubernetes.io/kubelet-serving",
                                        usages=["digital signature", "server auth"]))
    import time  # pylint: disable=import-outside-toplevel
    time.sleep(0.5)
    assert raw.call("GET", CSR_BASE + "/" + name)[1]["status"] == {}


def test_untrusted_or_expired_client_certificate_is_401(sandbox, c1, tmp_path):
    from kubeharness import pki  # pylint: disable=import-outside-toplevel
    other = pki.make_ca("someone-else")
    foreign = pki.issue(other, "kubernetes-admin", organizations=["system:masters"], client=True)
    own_ca = pki.KeyPair(pki.load_cert(open(c1.ca_cert, "rb").read()), pki.load_key(open(c1.ca_key, "rb").read()))
    fresh = pki.issue(own_ca, "old-admin", organizations=["system:masters"], client=True)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    builder = x509.CertificateBuilder().subject_name(fresh.cert.subject).issuer_name(own_ca.cert.subject)
    builder = builder.public_key(fresh.key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.not_valid_before(past).not_valid_after(past + datetime.timedelta(days=1))
    expired = pki.KeyPair(builder.sign(own_ca.key, hashes.SHA256()), fresh.key)
    for name, pair in (("foreign", foreign), ("expired", expired)):
        cert, key = tmp_path / (name + ".crt"), tmp_path / (name + ".key")
        cert.write_bytes(pki.cert_pem(pair.cert))
        key.write_bytes(pki.key_pem(pair.key))
        conf = client.Configuration()
        conf.host = c1.server
        conf.ssl_ca_cert = c1.ca_cert
        conf.cert_file, conf.key_file = str(cert), str(key)
        status, body = Raw(client.ApiClient(conf)).call("GET", "/version")
        assert (status, body["reason"]) == (401, "Unauthorized"), name
    # a valid bearer token still authenticates next to a rejected certificate
    token = unique("tok")
    sandbox.add_token(c1.name, token, "token-user", "u9")
    conf.api_key = {"authorization": "Bearer " + token}
    status, body = Raw(client.ApiClient(conf)).call(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert status == 201 and body["status"]["userInfo"]["username"] == "token-user"
