"""csr_create / csr_approve / csr_wait / csr_info through ansible-playbook against the two clusters under test (the
sandbox, or real ones with KUBEPKI_TEST_CLUSTERS=real).

Full flow on both clusters, check mode, idempotent re-run, re-run after the cleaner (store/etcd know the certificate),
renewal under a new name, concurrent runs for one user, denial, signer failure and policy refusal.
"""

import json
import os
import sys
import uuid

import pytest
from playbook_files import playbook

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(TESTS), ".cache", "collections"))

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube  # noqa: E402 pylint: disable=wrong-import-position

FLOW = playbook("modules/csr_flow.yml")


def hosts_for(sandbox, names=None):
    hosts = {}
    for name in names or sandbox.names:
        info = sandbox.cluster(name)
        hosts[name] = {"kc": info.kubeconfig, "ca": info.ca_cert}
    return hosts


def api(sandbox, cluster):
    """An admin KubeClient for checks made outside Ansible."""
    _kube._CLIENTS.clear()
    params = {name: None for name in _kube.AUTH_ARG_SPEC}
    params["kubeconfig"] = sandbox.cluster(cluster).kubeconfig
    return _kube.client_for(_kube.resolve_auth(params, {}))


def csrs_of(sandbox, cluster, user):
    answer = api(sandbox, cluster).request("GET", _kube.path_for(), query={"labelSelector": "kubepki.io/user=%s" % user})
    return answer["items"]


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:6]
    return ["alice-" + tag, "bob-" + tag]


@pytest.fixture
def evars(tmp_path, sandbox, names):
    return {"store": str(tmp_path / "store.db"), "prefix": "/t-%s" % uuid.uuid4().hex[:8], "etcd_all": [sandbox.etcd_url],
            "users": [{"name": names[0], "groups": ["dev"]}, {"name": names[1], "groups": ["dev", "ops"]}],
            "expiration": 3600}


def test_full_flow_both_clusters_check_mode_rerun_and_cleaner(run_playbook, sandbox, evars, names):
    hosts = hosts_for(sandbox)
    check = run_playbook(FLOW, extra_vars=evars, check=True, hosts=hosts)
    assert check.rc == 0, check
    assert check.result("create", "cluster-1")["changed"]
    assert csrs_of(sandbox, "cluster-1", names[0]) == []
    assert not os.path.exists(evars["store"])  # check mode writes nothing, not even an empty store file

    first = run_playbook(FLOW, extra_vars=evars, hosts=hosts)
    assert first.rc == 0, first
    for cluster in sandbox.names:
        created = first.result("create", cluster)["csrs"]
        assert [c["action"] for c in created] == ["created", "created"]
        waited = first.result("wait", cluster)
        assert [c["user"] for c in waited["certificates"]] == names
        record = waited["certificates"][1]
        assert record["cluster"] == cluster and record["organizations"] == ["dev", "ops"]
        assert record["requested_expiration_seconds"] == 3600 and record["lifetime_clamped"] is False
        assert 3600 <= record["granted_lifetime_seconds"] <= 3900
        _crypto.verify_issued_by(record["certificate"], open(sandbox.cluster(cluster).ca_cert, encoding="ascii").read())
    # one shared key per user: the same public key in both clusters
    one = first.result("create", "cluster-1")["csrs"][0]["public_key_sha256"]
    two = first.result("create", "cluster-2")["csrs"][0]["public_key_sha256"]
    assert one == two
    assert "PRIVATE KEY" not in first.stdout

    again = run_playbook(FLOW, extra_vars=evars, hosts=hosts)
    assert again.rc == 0, again
    assert again.changed == 0, again

    check_again = run_playbook(FLOW, extra_vars=evars, hosts=hosts, check=True)
    assert check_again.rc == 0 and check_again.changed == 0, check_again

    # the controller-manager's cleaner removes issued CSRs; store/etcd keep the re-run unchanged
    for cluster in sandbox.names:
        deleted = sandbox.clean_issued(cluster)
        assert set(c["csr_name"] for c in first.result("create", cluster)["csrs"]) <= set(deleted)
    after = run_playbook(FLOW, extra_vars=dict(evars, etcd=[sandbox.etcd_url]), hosts=hosts)
    assert after.rc == 0, after
    assert after.changed == 0, after
    assert [c["action"] for c in after.result("create", "cluster-1")["csrs"]] == ["known", "known"]
    assert [c["source"] for c in after.result("wait", "cluster-2")["certificates"]] == ["etcd", "etcd"]
    assert csrs_of(sandbox, "cluster-1", names[0]) == []

    # renewal: within renew_before, a new CSR under a new name
    renewed = run_playbook(FLOW, extra_vars=dict(evars, etcd=[sandbox.etcd_url], renew_before="2h"), hosts={"cluster-1": hosts["cluster-1"]})
    assert renewed.rc == 0, renewed
    new = renewed.result("create", "cluster-1")["csrs"]
    old = first.result("create", "cluster-1")["csrs"]
    assert [c["action"] for c in new] == ["created", "created"]
    assert all(n["csr_name"] != o["csr_name"] for n, o in zip(new, old))
    assert new[0]["renews_serial"] == first.result("wait", "cluster-1")["certificates"][0]["serial"]


CREATE_ONLY = playbook("modules/csr_create_every_host.yml")


def test_concurrent_runs_for_one_user_end_with_one_key_and_one_csr(run_playbook, sandbox, evars, names):
    # eight hosts (forks run them in parallel), all for the same user in the same cluster
    kc = sandbox.cluster("cluster-1").kubeconfig
    hosts = {"h%d" % i: {"kc": kc} for i in range(8)}
    out = run_playbook(CREATE_ONLY, extra_vars=dict(evars, users=[{"name": names[0], "groups": ["dev"]}]), hosts=hosts)
    assert out.rc == 0, out
    results = [out.result("create", h)["csrs"][0] for h in hosts]
    assert len({r["public_key_sha256"] for r in results}) == 1
    assert len({r["csr_name"] for r in results}) == 1
    assert sum(1 for r in results if r["key_created"]) == 1
    assert len(csrs_of(sandbox, "cluster-1", names[0])) == 1


APPROVE = playbook("modules/csr_approve_decisions.yml")
BY_NAME = playbook("modules/csr_approve_by_name.yml")


def test_denial_fails_the_wait_at_once(run_playbook, sandbox, evars, names):
    ev = dict(evars, kc=sandbox.cluster("cluster-1").kubeconfig, action="deny", reason="NotOnboarded", message="ask the team lead")
    out = run_playbook(APPROVE, extra_vars=ev)
    assert [c["decision"] for c in out.result("approve")["csrs"]] == ["denied", "denied"]
    waited = out.result("wait")
    assert waited.get("failed")
    assert "was denied: NotOnboarded: ask the team lead" in waited["msg"]
    assert out.result("create")["csrs"][0]["csr_name"] in waited["msg"]
    assert [c["state"] for c in out.result("info")["csrs"]] == ["denied", "denied"]


def test_policy_refusal_approves_nothing(run_playbook, sandbox, evars, names):
    ev = dict(evars, kc=sandbox.cluster("cluster-1").kubeconfig, policy={"allowed_groups": ["dev"]})
    out = run_playbook(APPROVE, extra_vars=ev)
    approved = out.result("approve")
    assert approved.get("failed") and "group ops is not in policy.allowed_groups" in approved["msg"]
    assert names[1] in approved["msg"] or out.result("create")["csrs"][1]["csr_name"] in approved["msg"]
    assert [c["state"] for c in out.result("info")["csrs"]] == ["pending", "pending"]
    assert "timed out" in out.result("wait")["msg"]


def test_deny_on_violation(run_playbook, sandbox, evars, names):
    ev = dict(evars, kc=sandbox.cluster("cluster-1").kubeconfig, policy={"allowed_groups": ["dev"]}, deny_on_violation=True)
    out = run_playbook(APPROVE, extra_vars=ev)
    assert [c["decision"] for c in out.result("approve")["csrs"]] == ["approved", "denied"]
    assert sorted(c["state"] for c in out.result("info")["csrs"]) == ["denied", "issued"]


def test_signer_failure_fails_the_wait(run_playbook, sandbox, tmp_path):
    # a CSR the signer refuses (server auth on the client signer), created and approved by hand
    client = api(sandbox, "cluster-1")
    key = _crypto.generate_private_key()
    name = "kubepki-test-fail-%s" % uuid.uuid4().hex[:6]
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": _crypto.b64(_crypto.build_csr_pem(key, "x", [])), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth", "server auth"]}}
    client.request("POST", _kube.path_for(), body=body)
    out = run_playbook(BY_NAME, extra_vars={"kc": sandbox.cluster("cluster-1").kubeconfig, "csr_name": name})
    assert "invalid usage for client certificate: server auth" in out.result("approve")["msg"]
    # the policy mirrors the signer, so approve by hand and let the signer fail it
    obj = client.request("GET", _kube.path_for(name))
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "by hand"}]}
    client.request("PUT", _kube.path_for(name, "approval"), body=obj)
    out = run_playbook(BY_NAME, extra_vars={"kc": sandbox.cluster("cluster-1").kubeconfig, "csr_name": name, "approve_anyway": False})
    waited = out.result("wait")
    assert waited.get("failed"), waited
    assert name in waited["msg"] and "failed" in waited["msg"] and "SignerValidationFailure" in waited["msg"], waited["msg"]
    assert json.dumps(waited).count("BEGIN") == 0


SERVING = playbook("modules/csr_kubelet_serving.yml")


def test_kubelet_serving_with_san_policy(run_playbook, sandbox, tmp_path):
    node = "n-%s" % uuid.uuid4().hex[:6]
    info = sandbox.cluster("cluster-1")
    out = run_playbook(SERVING, extra_vars={"kc": info.kubeconfig, "ca": info.ca_cert, "node": node, "store": str(tmp_path / "s.db")})
    assert out.rc == 0, out
    created = out.result("create")["csrs"][0]
    assert created["name"] == "system:node:" + node
    refused = out.result("refuse outside the allowed networks")
    assert refused.get("failed") and "IP address 10.0.0.7 is not in policy.allowed_ip_cidrs" in refused["msg"]
    assert out.result("approve")["csrs"][0]["decision"] == "approved"
    record = out.result("wait")["certificates"][0]
    assert record["common_name"] == "system:node:" + node and record["organizations"] == ["system:nodes"]
    assert record["signer_name"] == "kubernetes.io/kubelet-serving"
