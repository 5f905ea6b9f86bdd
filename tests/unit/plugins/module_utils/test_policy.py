"""Unit tests for plugins/module_utils/_policy.py."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _csr, _policy
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


@pytest.fixture(scope="module")
def key():
    return _crypto.generate_private_key()


def make(key, cn="alice", groups=("dev",), signer=_csr.SIGNER_CLIENT, usages=("digital signature", "client auth"), expiration=None,
         dns=(), ips=(), username=None):
    pem = _crypto.build_csr_pem(key, cn, list(groups), dns_names=list(dns), ip_addresses=list(ips))
    obj = _csr.build_object("n", pem, signer, list(usages), expiration)
    if username:
        obj["spec"]["username"] = username
    return obj


def rules(violations):
    return sorted({v["rule"] for v in violations})


def test_clean_request_passes(key):
    sha = _crypto.public_key_sha256(key)
    assert _policy.evaluate(make(key), {}, {"common_name": "alice", "groups": ["dev"], "public_key_sha256": sha}) == []


def test_system_masters_is_never_allowed_by_default(key):
    found = _policy.evaluate(make(key, groups=("system:masters",)), {})
    assert rules(found) == ["allowed_groups"] and "system:masters" in found[0]["reason"]


def test_system_groups_only_when_explicitly_allowed(key):
    obj = make(key, groups=("system:monitoring",))
    assert rules(_policy.evaluate(obj, {})) == ["allowed_groups"]
    assert _policy.evaluate(obj, {"allowed_system_groups": ["system:monitoring"]}) == []
    assert _policy.evaluate(make(key, groups=("system:masters",)), {"allowed_system_groups": ["system:masters"]}) == []


def test_allowed_groups_patterns(key):
    assert _policy.evaluate(make(key, groups=("team-a",)), {"allowed_groups": ["team-*"]}) == []
    assert rules(_policy.evaluate(make(key, groups=("other",)), {"allowed_groups": ["team-*"]})) == ["allowed_groups"]


def test_expected_cn_groups_and_key(key):
    other = _crypto.generate_private_key()
    found = _policy.evaluate(make(key, cn="mallory", groups=("ops",)), {},
                             {"common_name": "alice", "groups": ["dev"], "public_key_sha256": _crypto.public_key_sha256(other)})
    assert rules(found) == ["common_name", "groups", "key_must_match_store"]


def test_missing_stored_key_is_a_violation_unless_disabled(key):
    assert rules(_policy.evaluate(make(key), {}, {"public_key_sha256": None})) == ["key_must_match_store"]
    assert _policy.evaluate(make(key), {"key_must_match_store": False}, {"public_key_sha256": None}) == []


def test_signer_allow_list_and_usages(key):
    obj = make(key, signer="example.com/custom", usages=("client auth", "code signing"))
    assert rules(_policy.evaluate(obj, {})) == ["allowed_signers"]
    policy = {"allowed_signers": ["example.com/custom"], "allowed_usages": {"example.com/custom": ["client auth"]}}
    assert rules(_policy.evaluate(obj, policy)) == ["allowed_usages"]
    assert rules(_policy.evaluate(make(key, usages=("client auth", "server auth")), {})) == ["usages"]


def test_max_expiration(key):
    policy = {"max_expiration_seconds": 3600}
    assert _policy.evaluate(make(key, expiration=3600), policy) == []
    assert rules(_policy.evaluate(make(key, expiration=7200), policy)) == ["max_expiration_seconds"]
    assert "no expirationSeconds" in _policy.evaluate(make(key), policy)[0]["reason"]


def test_common_name_pattern(key):
    assert _policy.evaluate(make(key), {"common_name_pattern": "[a-z]+"}) == []
    assert rules(_policy.evaluate(make(key, cn="Alice1"), {"common_name_pattern": "[a-z]+"})) == ["common_name_pattern"]


SERVING = ("digital signature", "key encipherment", "server auth")


def test_kubelet_serving_good(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING,
               dns=("n1", "n1.nodes.example.com"), ips=("10.0.0.5",), username="system:node:n1")
    policy = {"allowed_dns_suffixes": ["nodes.example.com"], "allowed_ip_cidrs": ["10.0.0.0/24"]}
    assert _policy.evaluate(obj, policy) == []


def test_kubelet_serving_bad_sans_and_requester(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING,
               dns=("n2.nodes.example.com", "n1.evil.com"), ips=("192.168.1.1",), username="system:node:n2")
    found = _policy.evaluate(obj, {"allowed_dns_suffixes": ["nodes.example.com"], "allowed_ip_cidrs": ["10.0.0.0/24"]})
    assert rules(found) == ["allowed_dns_suffixes", "allowed_ip_cidrs", "requester"]
    assert len([v for v in found if v["rule"] == "allowed_dns_suffixes"]) == 2


def test_kubelet_serving_subject_rules(key):
    obj = make(key, cn="node1", groups=("system:nodes", "x"), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING, dns=("node1",))
    assert "common_name" in rules(_policy.evaluate(obj, {}))
    obj = make(key, cn="system:node:n1", groups=("system:nodes", "x"), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING, dns=("n1",))
    assert "organizations" in rules(_policy.evaluate(obj, {}))
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_SERVING, usages=SERVING)
    assert "sans" in rules(_policy.evaluate(obj, {}))


def test_kubelet_client_no_sans(key):
    obj = make(key, cn="system:node:n1", groups=("system:nodes",), signer=_csr.SIGNER_KUBELET_CLIENT,
               usages=("digital signature", "key encipherment", "client auth"), dns=("n1",))
    assert rules(_policy.evaluate(obj, {})) == ["sans"]


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
    assert rules(_policy.evaluate(obj, {})) == ["request"]


@pytest.mark.parametrize("group", ["system:masters", "kubeadm:cluster-admins"])
def test_cluster_admin_groups_are_refused_unless_opted_in(key, group):
    refused = _policy.evaluate(make(key, groups=[group]), {}, {"common_name": "alice"})
    assert [v["rule"] for v in refused] == ["allowed_groups"]
    assert "%s is cluster-admin" % group in refused[0]["reason"]
    assert _policy.evaluate(make(key, groups=[group]), {"allowed_system_groups": [group]}, {"common_name": "alice"}) == []


def test_expected_groups_are_a_set(key):
    """The signer sorts the O values (one DER SET); the request's order must not make it a mismatch."""
    obj = make(key, groups=["ops", "dev"])
    assert _policy.evaluate(obj, {}, {"common_name": "alice", "groups": ["dev", "ops"]}) == []
    assert rules(_policy.evaluate(obj, {}, {"common_name": "alice", "groups": ["dev"]})) == ["groups"]


def test_group_refusal_is_what_evaluate_refuses(key):
    policy = _policy.normalize({"allowed_groups": ["dev*"]})
    assert _policy.group_refusal("developers", policy) is None
    assert "not in policy.allowed_groups" in _policy.group_refusal("qa", policy)
    assert "system:monitoring is not allowed" in _policy.group_refusal("system:monitoring", policy)
    assert _policy.group_refusal("system:nodes", policy, _csr.SIGNER_KUBELET_CLIENT) is None
