"""Unit tests for plugins/module_utils/_csr/policy.py."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._csr import policy as _policy
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


@pytest.fixture(scope="module")
def key():
    return _crypto.generate_private_key()


def make(key, cn="alice", groups=("dev",), signer=_csr.SIGNER_CLIENT, usages=("digital signature", "client auth"), expiration=None,
         dns=(), ips=(), username="operator"):
    pem = _crypto.build_csr_pem(key, cn, list(groups), dns_names=list(dns), ip_addresses=list(ips))
    obj = _csr.build_object("n", pem, signer, list(usages), expiration)
    if username:
        obj["spec"]["username"] = username
    return obj


def judge(obj, policy, expected=None, **kwargs):
    """The policy's verdict as the approver gives it: it authenticates as "operator", the requester of make()'s requests."""
    kwargs.setdefault("own_identity", lambda: "operator")
    return _policy.evaluate(obj, policy, expected, **kwargs)


def rules(violations):
    return sorted({v["rule"] for v in violations})


def test_clean_request_passes(key):
    sha = _crypto.public_key_sha256(key)
    assert judge(make(key), {}, {"common_name": "alice", "groups": ["dev"], "public_key_sha256": sha}) == []


def test_system_masters_is_never_allowed_by_default(key):
    found = judge(make(key, groups=("system:masters",)), {})
    assert rules(found) == ["allowed_groups"] and "system:masters" in found[0]["reason"]


def test_system_groups_only_when_explicitly_allowed(key):
    obj = make(key, groups=("system:monitoring",))
    assert rules(judge(obj, {})) == ["allowed_groups"]
    assert judge(obj, {"allowed_system_groups": ["system:monitoring"]}) == []
    assert judge(make(key, groups=("system:masters",)), {"allowed_system_groups": ["system:masters"]}) == []


def test_allowed_groups_patterns(key):
    assert judge(make(key, groups=("team-a",)), {"allowed_groups": ["team-*"]}) == []
    assert rules(judge(make(key, groups=("other",)), {"allowed_groups": ["team-*"]})) == ["allowed_groups"]


def test_expected_cn_groups_and_key(key):
    other = _crypto.generate_private_key()
    found = judge(make(key, cn="mallory", groups=("ops",)), {},
                  {"common_name": "alice", "groups": ["dev"], "public_key_sha256": _crypto.public_key_sha256(other)})
    assert rules(found) == ["common_name", "groups", "key_must_match_store"]


def test_missing_stored_key_is_a_violation_unless_disabled(key):
    assert rules(judge(make(key), {}, {"public_key_sha256": None})) == ["key_must_match_store"]
    assert judge(make(key), {"key_must_match_store": False}, {"public_key_sha256": None}) == []


def test_signer_allow_list_and_usages(key):
    obj = make(key, signer="example.com/custom", usages=("client auth", "code signing"))
    assert rules(judge(obj, {})) == ["allowed_signers"]
    policy = {"allowed_signers": ["example.com/custom"], "allowed_usages": {"example.com/custom": ["client auth"]}}
    assert rules(judge(obj, policy)) == ["allowed_usages"]
    assert rules(judge(make(key, usages=("client auth", "server auth")), {})) == ["usages"]


def test_max_expiration(key):
    policy = {"max_expiration_seconds": 3600}
    assert judge(make(key, expiration=3600), policy) == []
    assert rules(judge(make(key, expiration=7200), policy)) == ["max_expiration_seconds"]
    assert "no expirationSeconds" in judge(make(key), policy)[0]["reason"]


def test_common_name_pattern(key):
    assert judge(make(key), {"common_name_pattern": "[a-z]+"}) == []
    assert rules(judge(make(key, cn="Alice1"), {"common_name_pattern": "[a-z]+"})) == ["common_name_pattern"]


SERVING = ("digital signature", "key encipherment", "server auth")


def test_kubelet_serving_good(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING,
               dns=("n1", "n1.nodes.example.com"), ips=("10.0.0.5",), username="system:node:n1")
    policy = {"allowed_dns_suffixes": ["nodes.example.com"], "allowed_ip_cidrs": ["10.0.0.0/24"]}
    assert judge(obj, policy) == []


def test_kubelet_serving_bad_sans_and_requester(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING,
               dns=("n2.nodes.example.com", "n1.evil.com"), ips=("192.168.1.1",), username="system:node:n2")
    found = judge(obj, {"allowed_dns_suffixes": ["nodes.example.com"], "allowed_ip_cidrs": ["10.0.0.0/24"]})
    assert rules(found) == ["allowed_dns_suffixes", "allowed_ip_cidrs", "requester"]
    assert len([v for v in found if v["rule"] == "allowed_dns_suffixes"]) == 2


def test_kubelet_serving_subject_rules(key):
    obj = make(key, cn="node1", groups=("system:nodes", "x"), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING, dns=("node1",))
    assert "common_name" in rules(judge(obj, {}))
    obj = make(key, cn="system:node:n1", groups=("system:nodes", "x"), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING, dns=("n1",))
    assert "organizations" in rules(judge(obj, {}))
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING)
    assert "sans" in rules(judge(obj, {}))


def test_kubelet_client_no_sans(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_CLIENT,
               usages=("digital signature", "key encipherment", "client auth"), dns=("n1",))
    assert rules(judge(obj, {})) == ["sans"]


@pytest.mark.parametrize("policy,fragment", [
    ({"bogus": 1}, "unknown key bogus"),
    ({"max_expiration_seconds": "lots"}, "policy.max_expiration_seconds"),
    ({"allowed_ip_cidrs": ["10.0.0.0/99"]}, "policy.allowed_ip_cidrs"),
    ({"common_name_pattern": "("}, "policy.common_name_pattern"),
    ({"allowed_usages": {"x/y": ["nope"]}}, "policy.allowed_usages"),
    ({"allowed_groups": "dev"}, "policy.allowed_groups"),
])
def test_malformed_policy_is_named(policy, fragment):
    with pytest.raises(KubePkiError, match=fragment.replace(".", r"\.")):
        _policy.normalize(policy)


def test_broken_request_is_a_violation():
    obj = {"metadata": {"name": "n"}, "spec": {"request": "bm90IGEgY3Ny", "signerName": _csr.SIGNER_CLIENT, "usages": ["client auth"]}}
    assert rules(judge(obj, {})) == ["request"]


@pytest.mark.parametrize("group", ["system:masters", "kubeadm:cluster-admins"])
def test_cluster_admin_groups_are_refused_unless_opted_in(key, group):
    refused = judge(make(key, groups=[group]), {}, {"common_name": "alice"})
    assert [v["rule"] for v in refused] == ["allowed_groups"]
    assert "%s is cluster-admin" % group in refused[0]["reason"]
    assert judge(make(key, groups=[group]), {"allowed_system_groups": [group]}, {"common_name": "alice"}) == []


def test_expected_groups_are_a_set(key):
    """The signer sorts the O values (one DER SET); the request's order must not make it a mismatch."""
    obj = make(key, groups=["ops", "dev"])
    assert judge(obj, {}, {"common_name": "alice", "groups": ["dev", "ops"]}) == []
    assert rules(judge(obj, {}, {"common_name": "alice", "groups": ["dev"]})) == ["groups"]


def test_group_refusal_is_what_evaluate_refuses(key):
    policy = _policy.normalize({"allowed_groups": ["dev*"]})
    assert _policy.group_refusal("developers", policy) is None
    assert "not in policy.allowed_groups" in _policy.group_refusal("qa", policy)
    assert "system:monitoring is not allowed" in _policy.group_refusal("system:monitoring", policy)
    assert _policy.group_refusal("system:nodes", policy, _csr.SIGNER_KUBELET_CLIENT) is None


# ---------------------------------------------------------------- what the certificate will say

def raw_request(key, attributes, extensions=()):
    """A request whose subject is exactly ``attributes`` [(oid, value)], one RDN each, in order."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes]))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    obj = _csr.build_object("n", pem, _csr.SIGNER_CLIENT, ["digital signature", "client auth"])
    obj["spec"]["username"] = "operator"
    return obj


def test_every_common_name_and_subject_attribute_is_seen(key):
    """The signer keeps the last CN and copies OU, serialNumber and other attributes: the first CN alone decides nothing."""
    from cryptography.x509.oid import NameOID, ObjectIdentifier
    two = raw_request(key, [(NameOID.COMMON_NAME, "alice"), (NameOID.COMMON_NAME, "system:kube-controller-manager")])
    found = judge(two, {}, {"common_name": "alice"})
    assert "subject" in rules(found) and "exactly one is allowed" in " ".join(v["reason"] for v in found)
    for oid, label in ((NameOID.ORGANIZATIONAL_UNIT_NAME, "OU=x"), (NameOID.SERIAL_NUMBER, "serialNumber=x"),
                       (ObjectIdentifier("1.3.6.1.4.1.57683.2"), "Kubernetes user UID attribute=x")):
        found = judge(raw_request(key, [(NameOID.COMMON_NAME, "alice"), (oid, "x")]), {}, {"common_name": "alice"})
        assert rules(found) == ["subject"] and label in found[0]["reason"]


def test_sans_are_refused_for_client_signers(key):
    found = judge(make(key, dns=("kubernetes.default",), ips=("10.96.0.1",)), {}, {"common_name": "alice"})
    assert rules(found) == ["sans"] and "kubernetes.default" in found[0]["reason"] and "10.96.0.1" in found[0]["reason"]


def test_a_request_to_be_a_ca_and_unknown_extensions_are_refused(key):
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ObjectIdentifier
    cn = [(NameOID.COMMON_NAME, "alice")]
    ca = raw_request(key, cn, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    assert rules(judge(ca, {}, {"common_name": "alice"})) == ["extensions"]
    odd = raw_request(key, cn, [(x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4"), b"\x05\x00"), False)])
    assert "1.2.3.4" in judge(odd, {}, {"common_name": "alice"})[0]["reason"]
    # what openssl's default request section adds is inert: the signers copy no extension
    plain = raw_request(key, cn, [(x509.BasicConstraints(ca=False, path_length=None), True),
                                  (x509.KeyUsage(True, False, True, False, False, False, False, False, False), False),
                                  (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    assert judge(plain, {}, {"common_name": "alice"}) == []


@pytest.mark.parametrize("name", ["system:kube-controller-manager", "system:node:n1", "system:serviceaccount:kube-system:admin",
                                  "system:anonymous", "kube-proxy", "Kube-Scheduler"])
def test_system_and_component_user_names_are_refused_unless_named(key, name):
    found = judge(make(key, cn=name, groups=()), {}, {"common_name": name})
    assert rules(found) == ["allowed_system_users"]
    relaxations = []
    assert judge(make(key, cn=name, groups=()), {"allowed_system_users": [name]}, {"common_name": name}, relaxations=relaxations) == []
    assert relaxations == ["policy.allowed_system_users: %s" % name]


def test_key_types_are_limited(key):
    assert rules(judge(make(key), {"allowed_key_types": ["rsa-3072"]})) == ["allowed_key_types"]
    with pytest.raises(KubePkiError, match="policy.allowed_key_types: rsa-1024"):
        _policy.normalize({"allowed_key_types": ["rsa-1024"]})


def test_the_requester_decides_with_the_request(key):
    """By default only the approver's own identity may have made the request; labels prove nothing."""
    asked = []

    def own():
        asked.append(1)
        return "operator"

    mallory = make(key, username="mallory")
    found = judge(mallory, {}, {"common_name": "alice"}, own_identity=own)
    assert rules(found) == ["requester"] and "mallory" in found[0]["reason"] and "operator" in found[0]["reason"]
    relaxations = []
    assert judge(mallory, {"allowed_requesters": ["mall*"]}, {"common_name": "alice"}, relaxations=relaxations) == []
    assert relaxations == ["policy.allowed_requesters: mallory (mall*)"]
    # a user asking for their own certificate, only when the policy says so
    alice = make(key, username="alice")
    assert rules(judge(alice, {}, {"common_name": "alice"})) == ["requester"]
    assert judge(alice, {"requester_may_be_subject": True}, {"common_name": "alice"}) == []
    assert rules(judge(make(key, username=""), {"allowed_requesters": ["*"]})) == ["requester"]
    assert asked  # the approver's identity was asked for


CLIENT_KUBELET = ("digital signature", "client auth")


def test_node_client_requests_follow_the_controller_managers_subject_access_reviews(key):
    """kube-apiserver-client-kubelet: the node itself with selfnodeclient, or a requester allowed nodeclient."""
    node = dict(cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_CLIENT, usages=CLIENT_KUBELET)
    grants = {("system:node:n1", "selfnodeclient"), ("system:bootstrap:abc", "nodeclient")}
    asked = []

    def authorize_for(obj):
        def authorize(subresource):
            asked.append(subresource)
            return (obj["spec"]["username"], subresource) in grants, "no RBAC rule"
        return authorize

    for username, verdict in (("system:node:n1", []), ("system:bootstrap:abc", []), ("mallory", ["requester"]),
                              ("operator", ["requester"])):
        obj = make(key, username=username, **node)
        assert rules(judge(obj, {}, authorize=authorize_for(obj))) == verdict, username
    obj = make(key, username="mallory", **node)
    reason = judge(obj, {}, authorize=authorize_for(obj))[0]["reason"]
    assert "mallory may not create certificatesigningrequests/nodeclient" in reason
    assert "selfnodeclient" in asked
