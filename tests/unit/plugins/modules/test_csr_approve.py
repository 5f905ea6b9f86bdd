"""Unit tests for csr_approve against the in-memory API."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeCluster, install  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._steps import approve, context  # noqa: E402
from ansible_collections.kubepki.certs.plugins.modules import csr_approve, csr_create  # noqa: E402


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    return install(monkeypatch, FakeCluster(auto_issue=False))


def create(run_module, base, *specs):
    failed, result = run_module(csr_create, dict(base, users=[{"name": n, "groups": g} for n, g in specs]))
    assert not failed, result
    return result["csrs"]


def conditions(cluster, name):
    return [c["type"] for c in cluster.objects[name]["status"].get("conditions", [])]


def test_approve_then_unchanged(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]), ("bob", ["dev"]))
    failed, result = run_module(csr_approve, dict(base, csrs=csrs))
    assert not failed, result
    assert result["changed"] and [c["decision"] for c in result["csrs"]] == ["approved", "approved"]
    assert conditions(cluster, csrs[0]["csr_name"]) == ["Approved"]
    failed, again = run_module(csr_approve, dict(base, csrs=csrs))
    assert not failed and not again["changed"]
    assert [c["decision"] for c in again["csrs"]] == ["unchanged", "unchanged"]


def test_check_mode_approves_nothing(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]))
    failed, result = run_module(csr_approve, dict(base, csrs=csrs, _ansible_check_mode=True))
    assert not failed and result["changed"]
    assert conditions(cluster, csrs[0]["csr_name"]) == []


def test_policy_refusal_approves_nothing(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]), ("bob", ["ops"]))
    failed, result = run_module(csr_approve, dict(base, csrs=csrs, policy={"allowed_groups": ["dev"]}))
    assert failed and "group ops is not in policy.allowed_groups" in result["msg"] and csrs[1]["csr_name"] in result["msg"]
    assert conditions(cluster, csrs[0]["csr_name"]) == []


def test_deny_on_violation(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]), ("bob", ["ops"]))
    failed, result = run_module(csr_approve, dict(base, csrs=csrs, policy={"allowed_groups": ["dev"]}, deny_on_violation=True))
    assert not failed
    assert [c["decision"] for c in result["csrs"]] == ["approved", "denied"]
    denied = cluster.objects[csrs[1]["csr_name"]]["status"]["conditions"][0]
    assert denied["reason"] == "KubepkiPolicyViolation" and "ops" in denied["message"]


def test_key_must_match_store(run_module, cluster, base, tmp_path):
    csrs = create(run_module, base, ("alice", ["dev"]))
    other_store = dict(base, store_uri=str(tmp_path / "other.db"))
    failed, result = run_module(csr_approve, dict(other_store, names=[csrs[0]["csr_name"]]))
    assert failed and "the store holds no key for 'alice'" in result["msg"]


def test_select_by_users(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]), ("bob", ["dev"]))
    failed, result = run_module(csr_approve, dict(base, users=[{"name": "bob", "groups": ["dev"]}]))
    assert not failed and [c["name"] for c in result["csrs"]] == [csrs[1]["csr_name"]]
    failed, result = run_module(csr_approve, dict(base, users=[{"name": "alice", "groups": ["other"]}]))
    assert failed and "organizations ['dev'] are not the expected ['other']" in result["msg"]


def test_deny_action_and_no_take_back(run_module, cluster, base):
    csrs = create(run_module, base, ("alice", ["dev"]))
    name = csrs[0]["csr_name"]
    failed, result = run_module(csr_approve, dict(base, names=[name], action="deny", reason="Nope", condition_message="not today"))
    assert not failed and result["csrs"][0]["decision"] == "denied"
    assert cluster.objects[name]["status"]["conditions"][0]["reason"] == "Nope"
    failed, result = run_module(csr_approve, dict(base, names=[name]))
    assert failed and name in result["msg"] and "denied" in result["msg"]


def test_system_masters_is_refused(run_module, cluster, base):
    key = _crypto.generate_private_key()
    pem = _crypto.build_csr_pem(key, "root", ["system:masters"])
    cluster.objects["evil"] = {"metadata": {"name": "evil", "resourceVersion": "1"},
                               "spec": {"request": _crypto.b64(pem), "signerName": "example.com/x", "usages": ["client auth"]},
                               "status": {}}
    policy = {"key_must_match_store": False, "allowed_signers": ["example.com/x"]}
    failed, result = run_module(csr_approve, dict(base, names=["evil"], policy=policy))
    assert failed and "system:masters" in result["msg"] and "evil" in result["msg"]


@pytest.mark.parametrize("override,fragment", [
    ({"names": ["missing"]}, "CertificateSigningRequest missing does not exist"),
    ({"policy": {"max_expiration_seconds": 3600}}, "policy.max_expiration_seconds is 3600"),
    ({"policy": {"common_name_pattern": "("}}, "policy.common_name_pattern"),
    ({"policy": {"allowed_ip_cidrs": ["nope"]}}, "policy.allowed_ip_cidrs: 'nope' is not a CIDR"),
    ({"key_scope": "per_cluster", "cluster": None}, "cluster is required with key_scope=per_cluster"),
    ({}, "nothing to decide on"),
])
def test_bad_input(run_module, cluster, base, override, fragment):
    create(run_module, base, ("alice", ["dev"]))
    args = dict(base, users=[{"name": "alice"}]) if "policy" in override else dict(base)
    args.update(override)
    failed, result = run_module(csr_approve, args)
    assert failed and fragment in result["msg"], result


def test_a_request_someone_else_made_is_not_approved_and_a_taken_name_is_not_adopted(run_module, cluster, base):
    """The requester decides with the request: labels and a predictable name prove nothing. A name taken in
    advance by another requester is reported by csr_create, not adopted; its request is refused, and denied
    with the reason when asked."""
    cluster.caller = "mallory"
    squatted = create(run_module, base, ("alice", ["dev"]))
    name = squatted[0]["csr_name"]
    cluster.caller = "admin"
    failed, result = run_module(csr_create, dict(base, users=[{"name": "alice", "groups": ["dev"]}]))
    assert failed and "requested by mallory and not by the identity this task authenticates as (admin)" in result["msg"]
    assert name in result["msg"]
    failed, result = run_module(csr_approve, dict(base, csrs=squatted))
    assert failed and "requester mallory is not the identity this task authenticates as (admin)" in result["msg"]
    assert conditions(cluster, name) == []
    failed, result = run_module(csr_approve, dict(base, csrs=squatted, deny_on_violation=True))
    assert not failed and result["csrs"][0]["decision"] == "denied" and result["csrs"][0]["requester"] == "mallory"
    assert "requester mallory" in cluster.objects[name]["status"]["conditions"][0]["message"]
    # with force, the collection replaces the squatted request with its own
    failed, result = run_module(csr_create, dict(base, force=True, users=[{"name": "alice", "groups": ["dev"]}]))
    assert not failed and result["csrs"][0]["action"] == "replaced"
    assert cluster.objects[name]["spec"]["username"] == "admin"


def test_a_scheduled_approver_with_nothing_pending_succeeds(run_module, cluster, base):
    """csr_info finds nothing pending on most runs; the approver fed with its empty list has nothing to do."""
    for empty in ({"names": []}, {"csrs": []}, {"users": []}, {"names": [], "csrs": [], "users": []}):
        failed, result = run_module(csr_approve, dict(base, **empty))
        assert not failed, (empty, result)
        assert result["changed"] is False and result["csrs"] == []
    failed, result = run_module(csr_approve, dict(base))
    assert failed and "nothing to decide on: give names, csrs or users" in result["msg"]


def test_a_csr_an_earlier_step_got_is_not_read_again_when_named(run_module, cluster, base):
    """In a composed run (the Monitor, user_certificates) the approval step decides on the object the session already
    holds, whether the CSR comes as a name or as a csrs entry: one request per decision (the approval), not two."""
    (entry,) = create(run_module, base, ("alice", ["dev"]))
    name = entry["csr_name"]
    params, _secrets = context.validated(approve.argument_spec(), dict(base, names=[name]), "approve")
    session = context.ClusterSession()
    session.csrs[name] = cluster.objects[name]
    del cluster.requests[:]
    result = approve.run(context.StepContext(session=session), params)
    assert [c["decision"] for c in result["csrs"]] == ["approved"]
    assert conditions(cluster, name) == ["Approved"]
    reads = [request for request in cluster.requests if request[0] == "GET" and name in request[1]]
    assert reads == [], reads
