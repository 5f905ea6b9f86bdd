"""user_certificates in process: the orchestration (batch mode, the lead batch, renewing what is known, offboarding,
what the composite accepts) against two in-memory clusters (csr_fake_api.py), the embedded store and no etcd.

The same flows run through ansible-playbook on real clusters in tests/functional; here each rule is pinned where a
failure names it."""

import os
import sqlite3
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeCluster, install_clusters  # noqa: E402 pylint: disable=wrong-import-position

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._steps import context, create  # noqa: E402
from ansible_collections.kubepki.certs.plugins.modules import user_certificates  # noqa: E402

HOSTS = {"c1": "https://c1.invalid", "c2": "https://c2.invalid"}


@pytest.fixture
def fleet(monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    return install_clusters(monkeypatch, {host: FakeCluster() for host in HOSTS.values()})


@pytest.fixture
def warnings(monkeypatch):
    said = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, message: said.append(message))
    return said


@pytest.fixture
def job(fleet, tmp_path):
    """The task's arguments for ``users`` (names, or entries) in both clusters; overrides as keywords."""
    def args(*users, **overrides):
        clusters = [{"name": name, "server": host, "ca_data": fleet[host].ca_pem, "auth": {"host": host}}
                    for name, host in HOSTS.items()]
        given = {"clusters": clusters, "store_uri": str(tmp_path / "store.db"), "dest_dir": str(tmp_path / "out"), "timeout": 30,
                 "users": [u if isinstance(u, dict) else {"name": u, "groups": ["dev"]} for u in users]}
        given.update(overrides)
        return given
    args.out = tmp_path / "out"
    args.store = tmp_path / "store.db"
    return args


def stored(job):
    with sqlite3.connect(str(job.store)) as conn:
        certs = sorted(conn.execute("SELECT cluster, user FROM certificates"))
        keys = sorted(row[0] for row in conn.execute("SELECT user FROM keys"))
    return certs, keys


def contexts(job, user):
    return sorted(c["name"] for c in yaml.safe_load((job.out / ("%s.kubeconfig" % user)).read_text())["contexts"])


def test_every_user_in_every_cluster_then_a_rerun_changes_nothing(run_module, job):
    failed, result = run_module(user_certificates, job("alice", "bob"))
    assert not failed, result
    assert result["changed"]
    assert stored(job) == ([("c1", "alice"), ("c1", "bob"), ("c2", "alice"), ("c2", "bob")], ["alice", "bob"])
    assert contexts(job, "alice") == ["alice@c1", "alice@c2"]
    failed, again = run_module(user_certificates, job("alice", "bob"))
    assert not failed and not again["changed"], again


def test_a_cluster_whose_signer_fails_is_set_aside_and_the_other_is_finished(run_module, job, fleet):
    fleet[HOSTS["c2"]].signer_fails = True
    failed, result = run_module(user_certificates, job("alice", "bob"))
    assert failed
    assert sorted((f["cluster"], f["user"], f["step"]) for f in result["failures"]) == [("c2", "alice", "wait"), ("c2", "bob", "wait")]
    assert "0 of 2 clusters stopped, 2 (cluster, user) pairs" in result["msg"]
    # batch mode: c1 was finished, rendered and stored all the same
    assert stored(job)[0] == [("c1", "alice"), ("c1", "bob")]
    assert contexts(job, "bob") == ["bob@c1"]


def test_a_large_batch_lists_each_cluster_once_for_its_lead_and_the_rest(run_module, job, fleet):
    names = ["user%02d" % number for number in range(25)]  # more than twice the lead of 10: made in two parts
    failed, result = run_module(user_certificates, job(*names))
    assert not failed, result["msg"] if failed else ""
    for cluster in fleet.values():
        lists = [q for method, _path, q in cluster.requests if method == "GET" and "kubepki.io/cluster" in (q.get("labelSelector") or "")]
        assert len(lists) == 1, lists
        assert sum(1 for o in cluster.objects.values() if "certificate" in o["status"]) == 25
    assert len(stored(job)[0]) == 50


def test_renewing_what_is_known_renews_only_what_is_due(run_module, job):
    failed, result = run_module(user_certificates, job("alice", "bob", expiration_seconds=1200))
    assert not failed, result
    failed, quiet = run_module(user_certificates, job(users=None, renew_before="1m"))
    assert not failed and not quiet["changed"], quiet
    assert {(k["cluster"], k["user"], k["action"]) for k in quiet["known"]} == {(c, u, "not_due") for c in HOSTS for u in ("alice", "bob")}
    failed, renewed = run_module(user_certificates, job(users=None, renew_before="1h"))
    assert not failed and renewed["changed"], renewed
    assert {(k["cluster"], k["user"], k["action"]) for k in renewed["known"]} == {(c, u, "renew") for c in HOSTS for u in ("alice", "bob")}
    assert sorted(u["user"] for u in renewed["users"]) == ["alice", "bob"]


def test_a_user_listed_without_groups_keeps_the_groups_on_record(run_module, job):
    failed, result = run_module(user_certificates, job({"name": "bob", "groups": ["dev", "ops"]}))
    assert not failed, result
    failed, result = run_module(user_certificates, job({"name": "bob", "force_renew": True}))
    assert not failed, result
    assert [c["csrs"][0]["action"] for c in result["clusters"]] == ["created", "created"]  # re-issued in both clusters
    [user] = result["users"]
    assert [c["organizations"] for c in user["clusters"]] == [["dev", "ops"], ["dev", "ops"]]


def test_offboarding_takes_everything_and_names_what_stays_valid(run_module, job, fleet, warnings):
    run_module(user_certificates, job("alice", "bob"))
    failed, result = run_module(user_certificates, job("bob", state="absent"))
    assert not failed, result
    assert stored(job) == ([("c1", "alice"), ("c2", "alice")], ["alice"])
    assert not (job.out / "bob.kubeconfig").exists() and (job.out / "alice.kubeconfig").exists()
    for cluster in fleet.values():
        assert [o for o in cluster.objects.values() if o["metadata"]["labels"].get("kubepki.io/user") == "bob"] == []
    [entry] = result["offboarded"]
    assert entry["finished"] and entry["key_deleted"] and sorted(c["cluster"] for c in entry["still_valid"]) == ["c1", "c2"]
    assert any("Kubernetes cannot revoke client certificates" in w for w in warnings)
    failed, again = run_module(user_certificates, job("bob", state="absent"))
    assert not failed and not again["changed"], again


def test_offboarding_many_users_lists_dest_dir_once_and_removes_what_killed_runs_left(run_module, job, monkeypatch, warnings):
    names = ["user%02d" % number for number in range(6)]
    run_module(user_certificates, job(*names))
    (job.out / ".user03.kubeconfig.abcd1234.tmp").write_text("a key a killed run left")
    listings = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listings.append(str(path)) or real_listdir(path))
    failed, result = run_module(user_certificates, job(*names, state="absent"))
    assert not failed, result
    assert listings.count(str(job.out)) == 1, listings
    assert real_listdir(job.out) == []
    assert any("user user03: removed 1 temporary file" in w for w in warnings), warnings


def test_offboarding_reads_what_the_store_holds_once_for_every_cluster(run_module, job, monkeypatch):
    """The clusters and the search for clusters outside the task (a shared key still needed there) share one
    listing of the store's certificates; each cluster used to list the whole scope again, and then once more."""
    from ansible_collections.kubepki.certs.plugins.module_utils._store import base  # pylint: disable=import-outside-toplevel
    run_module(user_certificates, job("alice", "bob"))
    listings = []
    real = base.CredentialStore.list_certs
    monkeypatch.setattr(base.CredentialStore, "list_certs", lambda self, *a, **k: listings.append(a) or real(self, *a, **k))
    failed, result = run_module(user_certificates, job("bob", state="absent", clusters=job()["clusters"][:1]))
    assert not failed, result
    assert len(listings) == 1, listings
    [entry] = result["offboarded"]
    assert entry["kept_for"] == ["c2"] and not entry["key_deleted"]
    assert stored(job) == ([("c1", "alice"), ("c2", "alice"), ("c2", "bob")], ["alice", "bob"])


def test_a_user_whose_csr_cannot_be_created_is_reported_in_the_shape_of_the_others(run_module, job, fleet):
    """In c1 a pending CSR of bob's was made by another identity: it is not adopted, bob is set aside there, and his
    entry has every field the others have (signer, cluster, scope), with action failed and the reason."""
    c1 = fleet[HOSTS["c1"]]
    c1.auto_issue = False
    failed, _result = run_module(user_certificates, job("bob", timeout=1, clusters=job()["clusters"][:1]))
    assert failed
    c1.auto_issue, c1.caller = True, "someone-else"
    failed, result = run_module(user_certificates, job("alice", "bob"))
    assert failed and [(f["cluster"], f["user"], f["step"]) for f in result["failures"]] == [("c1", "bob", "create")], result["failures"]
    entries = {(c["name"], e["name"]): e for c in result["clusters"] for e in c["csrs"]}
    bob = entries[("c1", "bob")]
    assert (bob["action"], bob["cluster"], bob["scope"], bob["signer_name"]) == ("failed", "c1", "default", "kubernetes.io/kube-apiserver-client")
    assert "it is not adopted" in bob["error"]
    assert {key for key in bob if key != "error"} == set(entries[("c1", "alice")]) == set(entries[("c2", "bob")])


def test_a_composed_step_is_given_only_what_its_own_module_accepts():
    spec = create.argument_spec()
    params, _secrets = context.validated(spec, {"users": [{"name": "alice"}], "cluster": "c1", "store_passphrase": None}, "create")
    assert params["users"][0]["groups"] == [] and params["key_type"] == "ec-p256" and params["state"] == "present"
    with pytest.raises(KubePkiError, match=r"the create step's parameters are not valid: .*key_type"):
        context.validated(spec, {"users": [{"name": "alice"}], "cluster": "c1", "key_type": "dsa-1024"}, "create")
    with pytest.raises(KubePkiError, match=r"not valid: unsupported parameters: colour\. Supported parameters include: api_key"):
        context.validated(spec, {"users": [{"name": "alice"}], "cluster": "c1", "colour": "blue"}, "create")
