"""Day-2 lifecycle of user_certificates through ansible-playbook against the two clusters under test (the sandbox, or
real ones with KUBEPKI_TEST_CLUSTERS=real), real etcd and the embedded store: offboarding (state=absent) and
renewing every known certificate (users omitted).

No mocks: the sandbox stands in for kube-apiserver (it signs what it is asked, so a 600 s lifetime is real),
etcd is the real etcd of the sandbox.
"""

import json
import os
import sqlite3
import uuid

import pytest
from kubeharness.client import kubectl_json
from playbook_files import playbook

PLAY = playbook("modules/user_certificates.yml")

USERS = [{"name": "ob-alice", "groups": ["dev", "ops"]}, {"name": "ob-bob", "groups": ["dev"]}]


def clusters_of(box):
    return [{"name": name, "server": box.cluster(name).server, "ca_cert": box.cluster(name).ca_cert,
             "auth": {"kubeconfig": box.cluster(name).kubeconfig}} for name in box.names]


def our_csrs(box, cluster, scope):
    items = kubectl_json(box.cluster(cluster).kubeconfig, "get", "csr", "-l", "kubepki.io/scope=%s" % scope)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def etcd_records(box, prefix):
    return {key: json.loads(value) for key, value in box.etcd_prefix(prefix + "/").items()}


def store_rows(path, table):
    """Rows of the embedded store read with sqlite3 itself, not through the code under test."""
    if not os.path.exists(path):
        return []
    with sqlite3.connect(path) as conn:
        return sorted(row[0] for row in conn.execute("SELECT user FROM %s" % table))


@pytest.fixture
def job(sandbox, tmp_path):
    scope = "ob-" + uuid.uuid4().hex[:8]
    return {"users": USERS, "clusters": clusters_of(sandbox), "scope": scope, "store": str(tmp_path / "store.db"),
            "etcd": [sandbox.etcd_url], "prefix": "/ob-" + scope, "out": str(tmp_path / "out"), "renew_before": "1h"}


def onboarded(run_playbook, job):
    out = run_playbook(PLAY, extra_vars=job)
    assert out.rc == 0, out.failures()
    return out.result("access")


def test_offboarding_removes_everything_and_names_what_stays_valid(run_playbook, sandbox, job):
    issued = onboarded(run_playbook, job)
    serials = {(c["user"], cluster["name"]): (c["serial"], c["not_after"]) for cluster in issued["clusters"] for c in cluster["certificates"]}
    assert len(serials) == 4
    assert store_rows(job["store"], "keys") == ["ob-alice", "ob-bob"]
    gone = dict(job, state="absent", users=[USERS[0]])
    gone.pop("renew_before")

    # check mode: reports the work, changes nothing
    checked = run_playbook(PLAY, extra_vars=gone, check=True, diff=True)
    assert checked.rc == 0, checked
    result = checked.result("access")
    assert result["changed"]
    assert any(item.get("key") for item in result["diff"]["before"]["offboarding"])
    assert all(len(our_csrs(sandbox, c, job["scope"])) == 2 for c in sandbox.names)
    assert len(etcd_records(sandbox, job["prefix"])) == 4
    assert store_rows(job["store"], "keys") == ["ob-alice", "ob-bob"]
    assert os.path.exists(os.path.join(job["out"], "ob-alice.kubeconfig"))

    out = run_playbook(PLAY, extra_vars=gone)
    assert out.rc == 0, out
    result = out.result("access")
    assert result["changed"]
    # alice is gone everywhere: CSRs, etcd records, store records, key, kubeconfig; bob is untouched
    for cluster in sandbox.names:
        names = our_csrs(sandbox, cluster, job["scope"])
        assert len(names) == 1 and names[0].startswith("kubepki-ob-bob-"), names
    assert sorted(k.rsplit("/", 1)[1] for k in etcd_records(sandbox, job["prefix"])) == ["ob-bob", "ob-bob"]
    assert store_rows(job["store"], "certificates") == ["ob-bob", "ob-bob"]
    assert store_rows(job["store"], "keys") == ["ob-bob"]
    assert not os.path.exists(os.path.join(job["out"], "ob-alice.kubeconfig"))
    assert os.path.exists(os.path.join(job["out"], "ob-bob.kubeconfig"))
    # the certificates stay valid until notAfter: the result and a warning name each serial and its notAfter
    [entry] = result["offboarded"]
    assert entry["user"] == "ob-alice" and entry["key_deleted"] and entry["kubeconfig_deleted"] and entry["finished"]
    expected = sorted((cluster, *serials[("ob-alice", cluster)]) for cluster in sandbox.names)
    assert sorted((c["cluster"], c["serial"], c["not_after"]) for c in entry["still_valid"]) == expected
    warning = " ".join(result.get("warnings", []))
    assert "cannot revoke" in warning
    for _cluster, serial, not_after in expected:
        assert serial in warning and not_after in warning, warning
    assert "PRIVATE KEY" not in out.stdout

    again = run_playbook(PLAY, extra_vars=gone)
    assert again.rc == 0, again
    assert not again.result("access")["changed"], again.result("access")


def test_offboarding_with_a_cluster_down_keeps_the_key_until_a_rerun(run_playbook, sandbox, job):
    onboarded(run_playbook, job)
    down, up = sandbox.names[0], sandbox.names[1]
    gone = dict(job, state="absent", users=[USERS[1]])
    gone.pop("renew_before")
    dead = [dict(c, auth={"host": "https://127.0.0.1:9", "api_key": "t0ken-x", "validate_certs": False}) if c["name"] == down else c
            for c in job["clusters"]]
    out = run_playbook(PLAY, extra_vars=dict(gone, clusters=dead))  # the refused connection is retried for 15 s
    assert out.rc != 0
    result = out.result("access")
    assert [(f["cluster"], f["user"]) for f in result["failures"]] == [(down, None)], result["failures"]
    assert "cluster %s" % down in out.failures()[0][2]
    # the reachable cluster was finished; the key stays so that a re-run can finish the other
    assert [n for n in our_csrs(sandbox, up, job["scope"]) if n.startswith("kubepki-ob-bob-")] == []
    assert [n for n in our_csrs(sandbox, down, job["scope"]) if n.startswith("kubepki-ob-bob-")] != []
    assert store_rows(job["store"], "keys") == ["ob-alice", "ob-bob"]
    assert not result["offboarded"][0]["finished"] and not result["offboarded"][0]["key_deleted"]
    assert "t0ken-x" not in out.stdout

    finished = run_playbook(PLAY, extra_vars=gone)
    assert finished.rc == 0, finished
    assert store_rows(job["store"], "keys") == ["ob-alice"]
    assert [n for n in our_csrs(sandbox, down, job["scope"]) if n.startswith("kubepki-ob-bob-")] == []
    assert sorted(k.rsplit("/", 1)[1] for k in etcd_records(sandbox, job["prefix"])) == ["ob-alice", "ob-alice"]


def test_renewing_every_known_certificate_without_a_user_list(run_playbook, sandbox, job):
    first = onboarded(run_playbook, dict(job, lifetime=600))
    old = {key: record["serial"] for key, record in etcd_records(sandbox, job["prefix"]).items()}
    assert len(old) == 4
    known = dict(job)
    known.pop("users")

    # nothing expires within 5 minutes: nothing changes, no CSR is made
    quiet = run_playbook(PLAY, extra_vars=dict(known, renew_before="5m"))
    assert quiet.rc == 0, quiet
    assert not quiet.result("access")["changed"]
    assert sorted(e["action"] for e in quiet.result("access")["known"]) == ["not_due"] * 4
    assert {key: record["serial"] for key, record in etcd_records(sandbox, job["prefix"]).items()} == old

    # everything expires within an hour: every certificate is renewed, no user listed
    renewed = run_playbook(PLAY, extra_vars=dict(known, renew_before="1h", lifetime=600))
    assert renewed.rc == 0, renewed
    result = renewed.result("access")
    assert result["changed"]
    assert sorted((e["user"], e["cluster"], e["action"]) for e in result["known"]) == sorted(
        (u["name"], c, "renew") for u in USERS for c in sandbox.names)
    new = {key: record["serial"] for key, record in etcd_records(sandbox, job["prefix"]).items()}
    assert sorted(new) == sorted(old) and all(new[key] != old[key] for key in old)
    for user in USERS:
        path = os.path.join(job["out"], "%s.kubeconfig" % user["name"])
        for cluster in sandbox.names:
            review = kubectl_json(path, "--context", "%s@%s" % (user["name"], cluster), "auth", "whoami")
            assert review["status"]["userInfo"]["username"] == user["name"]
            assert review["status"]["userInfo"]["groups"] == user["groups"] + ["system:authenticated"]
    assert first["changed"]


def test_force_renew_renews_only_that_user(run_playbook, sandbox, job):
    onboarded(run_playbook, job)
    old = {key: record["serial"] for key, record in etcd_records(sandbox, job["prefix"]).items()}
    users = [dict(USERS[0], force_renew=True), USERS[1]]
    out = run_playbook(PLAY, extra_vars=dict(job, users=users))
    assert out.rc == 0, out
    new = {key: record["serial"] for key, record in etcd_records(sandbox, job["prefix"]).items()}
    changed = sorted(key.rsplit("/", 2)[2] for key in old if new[key] != old[key])
    assert changed == ["ob-alice", "ob-alice"], (old, new)
    for cluster in out.result("access")["clusters"]:
        assert {c["name"]: c["action"] for c in cluster["csrs"]} == {"ob-alice": "created", "ob-bob": "known"}


def test_an_entry_without_groups_keeps_the_groups_on_record(run_playbook, sandbox, job):
    """{name: bob, force_renew: true}, as the renew playbook's header shows it: bob is renewed with the groups he
    holds, not with none. groups: [] alone means no groups; records that disagree are refused naming the option."""
    onboarded(run_playbook, job)
    out = run_playbook(PLAY, extra_vars=dict(job, users=[{"name": "ob-alice", "force_renew": True}]))
    assert out.rc == 0, out
    for key, record in etcd_records(sandbox, job["prefix"]).items():
        if key.endswith("/ob-alice"):
            assert sorted(record["organizations"]) == ["dev", "ops"], record
    for cluster in job["clusters"]:
        path = os.path.join(job["out"], "ob-alice.kubeconfig")
        info = kubectl_json(path, "--context", "ob-alice@%s" % cluster["name"], "auth", "whoami")["status"]["userInfo"]
        assert sorted(info["groups"]) == ["dev", "ops", "system:authenticated"]
    # a new user without groups has none; groups: [] drops them on purpose
    out = run_playbook(PLAY, extra_vars=dict(job, users=[{"name": "ob-carol"}, {"name": "ob-bob", "groups": [], "force_renew": True}]))
    assert out.rc == 0, out
    found = {key.rsplit("/", 1)[1]: record for key, record in etcd_records(sandbox, job["prefix"]).items()}
    assert found["ob-carol"]["organizations"] == [] and found["ob-bob"]["organizations"] == []
    # bob holds [dev] in one cluster and [] in the other: which one to keep is the operator's call
    one = dict(job, users=[{"name": "ob-bob", "groups": ["dev"], "force_renew": True}], clusters=job["clusters"][:1])
    assert run_playbook(PLAY, extra_vars=one).rc == 0
    out = run_playbook(PLAY, extra_vars=dict(job, users=[{"name": "ob-bob", "force_renew": True}]))
    assert out.rc != 0 and "users[0] (ob-bob).groups is not given" in out.failures()[0][2], out


def test_result_detail_changes_lists_only_what_was_done(run_playbook, sandbox, job):
    job = dict(job, detail="changes")
    first = onboarded(run_playbook, job)
    for cluster in first["clusters"]:
        assert sorted((c["name"], c["action"]) for c in cluster["csrs"]) == [("ob-alice", "created"), ("ob-bob", "created")]
        assert cluster["unchanged"] == 0
    assert sorted(u["user"] for u in first["users"]) == ["ob-alice", "ob-bob"] and first["unchanged_users"] == 0

    # nothing to do: no entry is listed, each is counted
    again = onboarded(run_playbook, job)
    assert not again["changed"]
    assert [(c["name"], c["csrs"], c["unchanged"]) for c in again["clusters"]] == [(name, [], 2) for name in sandbox.names]
    assert again["users"] == [] and again["unchanged_users"] == 2

    # one user renewed: that user alone is listed, in every cluster and among the kubeconfigs
    renewed = onboarded(run_playbook, dict(job, users=[dict(USERS[0], force_renew=True), USERS[1]]))
    for cluster in renewed["clusters"]:
        assert [(c["name"], c["action"]) for c in cluster["csrs"]] == [("ob-alice", "created")] and cluster["unchanged"] == 1
    assert [u["user"] for u in renewed["users"]] == ["ob-alice"] and renewed["unchanged_users"] == 1

    # renewing what is known, nothing due: the records are counted, not listed
    known = dict(job, renew_before="5m")
    known.pop("users")
    quiet = onboarded(run_playbook, known)
    assert not quiet["changed"] and quiet["known"] == [] and quiet["known_not_due"] == 4

    # the default lists every user
    full = onboarded(run_playbook, dict(job, detail="full"))
    assert all(len(c["csrs"]) == 2 and "unchanged" not in c for c in full["clusters"]) and len(full["users"]) == 2


def test_bad_input_for_the_new_modes_is_refused_naming_the_option(run_playbook, sandbox, job):
    no_users = dict(job)
    no_users.pop("users")
    no_users.pop("renew_before")
    out = run_playbook(PLAY, extra_vars=no_users)
    assert out.rc != 0 and "users: required unless renew_before is set" in out.failures()[0][2], out
    out = run_playbook(PLAY, extra_vars=dict(no_users, state="absent"))
    assert out.rc != 0 and "users: state=absent needs the users" in out.failures()[0][2], out
    assert not os.path.exists(job["store"])
    for cluster in sandbox.names:
        assert our_csrs(sandbox, cluster, job["scope"]) == []


def dead_endpoint():
    """A loopback URL nothing listens on."""
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:%d" % sock.getsockname()[1]


def test_an_etcd_that_is_down_is_found_before_anything_is_written(run_playbook, sandbox, job):
    """Onboarding: no key is created for a new user, no CSR sent. Offboarding: no CSR is deleted. Both name etcd."""
    down = dict(job, etcd=[dead_endpoint()])
    out = run_playbook(PLAY, extra_vars=down)
    assert out.rc != 0 and "etcd_endpoints: no etcd endpoint answered" in out.failures()[0][2], out
    assert store_rows(job["store"], "keys") == []
    for cluster in sandbox.names:
        assert our_csrs(sandbox, cluster, job["scope"]) == []
    onboarded(run_playbook, job)
    before = {cluster: our_csrs(sandbox, cluster, job["scope"]) for cluster in sandbox.names}
    out = run_playbook(PLAY, extra_vars=dict(down, state="absent", users=[USERS[0]]))
    assert out.rc != 0 and "etcd_endpoints: no etcd endpoint answered" in out.failures()[0][2], out
    assert {cluster: our_csrs(sandbox, cluster, job["scope"]) for cluster in sandbox.names} == before
    assert store_rows(job["store"], "keys") == ["ob-alice", "ob-bob"]


def test_a_negative_timeout_is_refused_before_anything_is_written(run_playbook, sandbox, job):
    out = run_playbook(PLAY, extra_vars=dict(job, api_timeout=-1))
    assert out.rc != 0 and "timeout must not be negative, got -1" in out.failures()[0][2], out
    assert store_rows(job["store"], "keys") == []
    for cluster in sandbox.names:
        assert our_csrs(sandbox, cluster, job["scope"]) == []


def test_offboarding_with_per_cluster_keys(run_playbook, sandbox, job):
    """key_scope=per_cluster: each cluster's key of the user goes with that cluster; the other user keeps theirs."""
    job = dict(job, key_scope="per_cluster")
    onboarded(run_playbook, job)
    assert store_rows(job["store"], "keys") == ["ob-alice", "ob-alice", "ob-bob", "ob-bob"]
    gone = dict(job, state="absent", users=[USERS[0]])
    out = run_playbook(PLAY, extra_vars=gone)
    assert out.rc == 0, out
    assert store_rows(job["store"], "keys") == ["ob-bob", "ob-bob"]
    assert sorted((k["cluster"], k["action"]) for c in out.result("access")["clusters"] for k in c["keys"]) == sorted(
        (name, "deleted") for name in sandbox.names)
    again = run_playbook(PLAY, extra_vars=gone)
    assert again.rc == 0 and not again.result("access")["changed"], again
