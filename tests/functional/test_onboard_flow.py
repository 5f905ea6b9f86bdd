"""The whole job through playbooks/onboard_users.yml: two clusters of their own (sandbox, or real with
KUBEPKI_TEST_CLUSTERS=real), real etcd, the embedded store.

The tests of this file share one sandbox and one store and run in order (``--dist loadfile``): check
mode first, then the real run, re-runs, the CSR cleaner, renewal.
"""

import json
import os
import sqlite3
import stat

import pytest
from kubeharness.client import kubectl_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

USERS = [{"name": "alice", "groups": ["dev", "ops"]}, {"name": "bob", "groups": ["dev"]}]
PLAYBOOK = os.path.join(REPO, "playbooks", "onboard_users.yml")


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    from kubeharness.clusters import start_under_test  # pylint: disable=import-outside-toplevel
    base = tmp_path_factory.mktemp("flow")
    box = start_under_test(str(base / "clusters"), clusters=2)
    hosts = {}
    for name in box.names:
        info = box.cluster(name)
        hosts[name] = {"user_access_kubeconfig": info.kubeconfig, "user_access_ca_cert": info.ca_cert,
                       "user_access_server": info.server}
    extra = {
        "onboard_hosts": "all", "onboard_users": USERS,
        "user_access_store_uri": str(base / "store.db"), "user_access_output_dir": str(base / "out"),
        "user_access_etcd_endpoints": [box.etcd_url], "user_access_verify": True,
    }
    yield {"box": box, "hosts": hosts, "extra": extra, "out": base / "out", "store": base / "store.db"}
    box.stop()


def onboard(run_playbook, flow, check=False, **overrides):
    extra = dict(flow["extra"], **overrides)
    return run_playbook("- ansible.builtin.import_playbook: %s\n" % PLAYBOOK, extra_vars=extra, check=check, hosts=flow["hosts"])


def csr_names(flow, cluster):
    return sorted(item["metadata"]["name"] for item in kubectl_json(flow["box"].cluster(cluster).kubeconfig, "get", "csr")["items"])


def etcd_records(flow):
    return {key: json.loads(value) for key, value in flow["box"].etcd_prefix("/kubepki/certs/").items()}


def test_check_mode_creates_nothing(run_playbook, flow):
    result = onboard(run_playbook, flow, check=True)
    assert result.rc == 0, result
    assert result.changed > 0
    for cluster in flow["box"].names:
        assert csr_names(flow, cluster) == []
    assert etcd_records(flow) == {}
    assert not list(flow["out"].glob("*.kubeconfig"))


def test_onboard_gives_working_kubeconfigs(run_playbook, flow):
    result = onboard(run_playbook, flow)
    assert result.rc == 0, result
    for cluster in flow["box"].names:
        assert len(csr_names(flow, cluster)) == 2
    records = etcd_records(flow)
    assert sorted(records) == sorted("/kubepki/certs/default/%s/%s" % (c, u["name"]) for c in flow["box"].names for u in USERS)
    for user in USERS:
        path = flow["out"] / ("%s.kubeconfig" % user["name"])
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        config = kubectl_json(path, "config", "view")
        assert sorted(c["name"] for c in config["contexts"]) == sorted("%s@%s" % (user["name"], c) for c in flow["box"].names)
        for cluster in flow["box"].names:
            review = kubectl_json(path, "--context", "%s@%s" % (user["name"], cluster), "auth", "whoami")
            assert review["status"]["userInfo"]["username"] == user["name"]
            assert review["status"]["userInfo"]["groups"] == user["groups"] + ["system:authenticated"]


def test_rerun_changes_nothing(run_playbook, flow):
    before = {c: csr_names(flow, c) for c in flow["box"].names}
    result = onboard(run_playbook, flow)
    assert result.rc == 0, result
    assert result.changed == 0, result
    assert {c: csr_names(flow, c) for c in flow["box"].names} == before


def test_rerun_after_the_cleaner_changes_nothing(run_playbook, flow):
    box = flow["box"]
    for cluster in box.names:
        assert box.clean_issued(cluster) != []
        assert csr_names(flow, cluster) == []
    result = onboard(run_playbook, flow)
    assert result.rc == 0, result
    assert result.changed == 0, result
    for cluster in box.names:
        assert csr_names(flow, cluster) == [], "a re-run after the cleaner must not request again"


def test_renewal_issues_under_a_new_name(run_playbook, flow):
    old = etcd_records(flow)
    result = onboard(run_playbook, flow, user_access_renew_before="3650d")
    assert result.rc == 0, result
    assert result.changed > 0
    new = etcd_records(flow)
    assert sorted(new) == sorted(old)
    for key, record in new.items():
        assert record["serial"] != old[key]["serial"]
        assert record["csr_name"] != old[key]["csr_name"]
    for user in USERS:
        path = flow["out"] / ("%s.kubeconfig" % user["name"])
        review = kubectl_json(path, "--context", "%s@cluster-1" % user["name"], "auth", "whoami")
        assert review["status"]["userInfo"]["username"] == user["name"]


def test_a_cluster_that_fails_is_the_host_that_fails(run_playbook, flow, tmp_path):
    """One inventory host whose cluster cannot be reached: that host fails with the reason, the other host's
    users are finished and rendered, and the run_once task is not reported against the first host of the play."""
    dead = tmp_path / "dead.kubeconfig"
    info = flow["box"].cluster(flow["box"].names[0])
    config = kubectl_json(info.kubeconfig, "config", "view", "--raw")
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:9"
    dead.write_text(json.dumps(config))
    # the dead cluster is listed first, so the run_once task runs on it; the good one second
    hosts = {"aaa-dead": {"user_access_kubeconfig": str(dead), "user_access_ca_cert": info.ca_cert, "user_access_server": "https://127.0.0.1:9"}}
    good = flow["box"].names[1]
    hosts[good] = flow["hosts"][good]
    out_dir = tmp_path / "out"
    result = run_playbook("- ansible.builtin.import_playbook: %s\n" % PLAYBOOK, hosts=hosts,
                          extra_vars=dict(flow["extra"], user_access_output_dir=str(out_dir), user_access_verify=False))
    assert result.rc != 0
    failed = result.failures()
    assert [host for _task, host, _msg in failed] == ["aaa-dead"], failed
    assert failed[0][2].startswith("cluster aaa-dead: every user (create): "), failed
    for user in USERS:
        config = kubectl_json(out_dir / ("%s.kubeconfig" % user["name"]), "config", "view")
        assert [c["name"] for c in config["contexts"]] == ["%s@%s" % (user["name"], good)]


RENEW = os.path.join(REPO, "playbooks", "renew.yml")
OFFBOARD = os.path.join(REPO, "playbooks", "offboard_users.yml")
JOB_TASK = "Issue the users' certificates in every cluster and render their kubeconfigs"


def job_result(result):
    """The registered result of the role's run_once job task, whichever host it ran on."""
    for task in result.tasks():
        if task["task"]["name"].endswith(JOB_TASK):
            return next(iter(task["hosts"].values()))
    raise AssertionError("no job task among %s" % [task["task"]["name"] for task in result.tasks()])


def test_the_renew_playbook_renews_what_is_known_without_a_user_list(run_playbook, flow):
    extra = {k: v for k, v in flow["extra"].items() if k != "onboard_users"}
    old = etcd_records(flow)
    quiet = run_playbook("- ansible.builtin.import_playbook: %s\n" % RENEW, hosts=flow["hosts"], extra_vars=dict(extra, renew_before="1h"))
    assert quiet.rc == 0, quiet
    assert quiet.changed == 0, job_result(quiet)
    assert etcd_records(flow) == old
    renewed = run_playbook("- ansible.builtin.import_playbook: %s\n" % RENEW, hosts=flow["hosts"], extra_vars=dict(extra, renew_before="3650d"))
    assert renewed.rc == 0, renewed
    new = etcd_records(flow)
    assert sorted(new) == sorted(old)
    assert all(new[key]["serial"] != old[key]["serial"] for key in old)
    assert sorted((e["user"], e["action"]) for e in job_result(renewed)["known"]) == sorted((u["name"], "renew") for u in USERS for _c in range(2))


def test_the_renew_playbook_takes_renew_before_from_the_inventory(run_playbook, flow):
    """user_access_renew_before set in the inventory is the operator's choice; the playbook's own default (720h)
    applies only when neither the inventory nor -e renew_before says anything."""
    extra = {k: v for k, v in flow["extra"].items() if k != "onboard_users"}
    old = etcd_records(flow)
    hosts = {name: dict(host_vars, user_access_renew_before="3650d") for name, host_vars in flow["hosts"].items()}
    renewed = run_playbook("- ansible.builtin.import_playbook: %s\n" % RENEW, hosts=hosts, extra_vars=extra)
    assert renewed.rc == 0, renewed
    new = etcd_records(flow)
    assert all(new[key]["serial"] != old[key]["serial"] for key in old), job_result(renewed)
    quiet = run_playbook("- ansible.builtin.import_playbook: %s\n" % RENEW, hosts=flow["hosts"], extra_vars=extra)
    assert quiet.rc == 0 and quiet.changed == 0, job_result(quiet)


def test_the_offboard_playbook_removes_a_user(run_playbook, flow):
    extra = {k: v for k, v in flow["extra"].items() if k != "onboard_users"}
    extra["offboard_users"] = [{"name": "bob"}]
    book = "- ansible.builtin.import_playbook: %s\n" % OFFBOARD
    before = etcd_records(flow)
    out = run_playbook(book, hosts=flow["hosts"], extra_vars=extra)
    assert out.rc == 0, out
    job = job_result(out)
    after = etcd_records(flow)
    assert sorted(after) == sorted(key for key in before if not key.endswith("/bob"))
    for cluster in flow["box"].names:
        assert [name for name in csr_names(flow, cluster) if name.startswith("kubepki-bob-")] == []
    assert not (flow["out"] / "bob.kubeconfig").exists()
    with sqlite3.connect(str(flow["store"])) as conn:
        assert sorted(row[0] for row in conn.execute("SELECT user FROM keys")) == ["alice"]
        assert sorted(row[0] for row in conn.execute("SELECT user FROM certificates")) == ["alice", "alice"]
    warning = " ".join(job.get("warnings", []))
    for key, record in before.items():
        if key.endswith("/bob"):
            assert record["serial"] in warning and record["not_after"] in warning, warning
    # alice keeps working
    review = kubectl_json(flow["out"] / "alice.kubeconfig", "--context", "alice@%s" % flow["box"].names[0], "auth", "whoami")
    assert review["status"]["userInfo"]["username"] == "alice"
    again = run_playbook(book, hosts=flow["hosts"], extra_vars=extra)
    assert again.rc == 0, again
    assert again.changed == 0, again
