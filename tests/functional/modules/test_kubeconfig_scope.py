"""What a user's kubeconfig holds: every cluster of the scope where the user holds a valid certificate, whichever
clusters a run names. Against the two clusters under test (the sandbox, or real ones with KUBEPKI_TEST_CLUSTERS=real),
real etcd and the embedded store, through ansible-playbook: user_certificates directly, and the user_access role
through the onboard_users and offboard_users playbooks with onboard_hosts naming one cluster.

What a user notices is checked with kubectl itself: the context of the cluster left out of a run still logs in.
"""

import os
import subprocess
import uuid

import pytest
from kubeharness.client import kubectl_json
from playbook_files import playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ONBOARD = os.path.join(REPO, "playbooks", "onboard_users.yml")
OFFBOARD = os.path.join(REPO, "playbooks", "offboard_users.yml")

PLAY = playbook("modules/user_certificates.yml")

USER = {"name": "ks-alice", "groups": ["dev"]}


def clusters_of(box, names):
    return [{"name": name, "server": box.cluster(name).server, "ca_cert": box.cluster(name).ca_cert,
             "auth": {"kubeconfig": box.cluster(name).kubeconfig}} for name in names]


def contexts(path):
    return sorted(c["name"] for c in kubectl_json(path, "config", "view")["contexts"])


def whoami(path, user, cluster):
    """The user name the cluster sees through ``path``'s context for ``cluster``."""
    review = kubectl_json(path, "--context", "%s@%s" % (user, cluster), "auth", "whoami")
    return review["status"]["userInfo"]["username"]


def context_fails(path, user, cluster):
    proc = subprocess.run(["kubectl", "--kubeconfig", str(path), "--context", "%s@%s" % (user, cluster), "auth", "whoami"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode != 0


@pytest.fixture
def job(sandbox, tmp_path):
    scope = "ks-" + uuid.uuid4().hex[:8]
    return {"users": [USER], "clusters": clusters_of(sandbox, sandbox.names), "scope": scope, "store": str(tmp_path / "store.db"),
            "etcd": [sandbox.etcd_url], "prefix": "/ks-" + scope, "out": str(tmp_path / "out"), "renew_before": "1h"}


def test_a_run_naming_fewer_clusters_keeps_the_others_and_offboarding_drops_only_its_own(run_playbook, sandbox, job):
    first, second = sandbox.names
    path = os.path.join(job["out"], "%s.kubeconfig" % USER["name"])
    both = sorted("%s@%s" % (USER["name"], name) for name in sandbox.names)
    out = run_playbook(PLAY, extra_vars=job)
    assert out.rc == 0, out
    assert contexts(path) == both

    # a run for the second cluster only: the user keeps the first cluster's context, and it still logs in
    only_second = dict(job, clusters=clusters_of(sandbox, [second]))
    out = run_playbook(PLAY, extra_vars=only_second, diff=True)
    assert out.rc == 0, out
    assert contexts(path) == both
    assert whoami(path, USER["name"], first) == USER["name"]
    assert whoami(path, USER["name"], second) == USER["name"]
    [entry] = out.result("access")["users"]
    assert [(k["name"], k["source"]) for k in entry["kept"]] == [(first, "store")], entry
    assert entry["dropped"] == []
    # and again: nothing to do
    again = run_playbook(PLAY, extra_vars=only_second)
    assert again.rc == 0 and not again.result("access")["changed"], again.result("access")
    checked = run_playbook(PLAY, extra_vars=only_second, check=True)
    assert checked.rc == 0 and not checked.result("access")["changed"], checked.result("access")

    # offboarding from the second cluster: exactly its context goes; the first one keeps working
    gone = dict(only_second, state="absent")
    checked = run_playbook(PLAY, extra_vars=gone, check=True, diff=True)
    assert checked.rc == 0 and checked.result("access")["changed"], checked
    assert contexts(path) == both
    out = run_playbook(PLAY, extra_vars=gone)
    assert out.rc == 0, out
    assert contexts(path) == ["%s@%s" % (USER["name"], first)]
    assert whoami(path, USER["name"], first) == USER["name"]
    assert context_fails(path, USER["name"], second)
    assert os.stat(path).st_mode & 0o777 == 0o600
    [offboarded] = out.result("access")["offboarded"]
    assert offboarded["kept_for"] == [first] and not offboarded["kubeconfig_deleted"], offboarded
    again = run_playbook(PLAY, extra_vars=gone)
    assert again.rc == 0 and not again.result("access")["changed"], again.result("access")

    # onboarding the first cluster again changes nothing for it, and does not bring the offboarded one back
    out = run_playbook(PLAY, extra_vars=dict(job, clusters=clusters_of(sandbox, [first])))
    assert out.rc == 0 and not out.result("access")["changed"], out.result("access")
    assert contexts(path) == ["%s@%s" % (USER["name"], first)]


def role_hosts(box):
    return {name: {"user_access_kubeconfig": box.cluster(name).kubeconfig, "user_access_ca_cert": box.cluster(name).ca_cert,
                   "user_access_server": box.cluster(name).server} for name in box.names}


def test_the_role_on_one_cluster_of_two_keeps_the_other_context(run_playbook, sandbox, tmp_path):
    first, second = sandbox.names
    scope = "ksr-" + uuid.uuid4().hex[:8]
    extra = {"onboard_users": [USER], "user_access_scope": scope, "user_access_store_uri": str(tmp_path / "store.db"),
             "user_access_output_dir": str(tmp_path / "out"), "user_access_etcd_endpoints": [sandbox.etcd_url],
             "user_access_etcd_prefix": "/" + scope}
    path = tmp_path / "out" / ("%s.kubeconfig" % USER["name"])
    hosts = role_hosts(sandbox)
    out = run_playbook("- ansible.builtin.import_playbook: %s\n" % ONBOARD, extra_vars=dict(extra, onboard_hosts="all"), hosts=hosts)
    assert out.rc == 0, out
    both = sorted("%s@%s" % (USER["name"], name) for name in sandbox.names)
    assert contexts(path) == both

    out = run_playbook("- ansible.builtin.import_playbook: %s\n" % ONBOARD, extra_vars=dict(extra, onboard_hosts=second), hosts=hosts)
    assert out.rc == 0, out
    assert contexts(path) == both
    assert whoami(path, USER["name"], first) == USER["name"]
    assert out.changed == 0, out

    offboard = {k: v for k, v in extra.items() if k != "onboard_users"}
    offboard.update(offboard_users=[{"name": USER["name"]}], onboard_hosts=second)
    out = run_playbook("- ansible.builtin.import_playbook: %s\n" % OFFBOARD, extra_vars=offboard, hosts=hosts)
    assert out.rc == 0, out
    assert contexts(path) == ["%s@%s" % (USER["name"], first)]
    assert whoami(path, USER["name"], first) == USER["name"]


def test_renewing_what_is_due_in_one_cluster_keeps_the_other_context(run_playbook, sandbox, job):
    """Renewing every known certificate (users omitted, as the renew playbook does on a schedule) renders a user's
    kubeconfig for the clusters where something was due: the other clusters' contexts stay, with the newest
    certificate the store holds for them."""
    first, second = sandbox.names
    path = os.path.join(job["out"], "%s.kubeconfig" % USER["name"])
    both = sorted("%s@%s" % (USER["name"], name) for name in sandbox.names)
    out = run_playbook(PLAY, extra_vars=dict(job, lifetime=600, renew_before="1m"))
    assert out.rc == 0, out
    assert contexts(path) == both
    # the second cluster's certificate renewed for longer, without rendering: only the first one is due within an hour
    longer = {k: v for k, v in job.items() if k != "out"}
    longer.update(clusters=clusters_of(sandbox, [second]), users=[dict(USER, force_renew=True)], renew_before="1m")
    out = run_playbook(PLAY, extra_vars=longer)
    assert out.rc == 0, out
    [renewed] = out.result("access")["clusters"][0]["certificates"]

    known = {k: v for k, v in job.items() if k != "users"}
    out = run_playbook(PLAY, extra_vars=dict(known, renew_before="1h"))
    assert out.rc == 0, out
    assert sorted((e["cluster"], e["action"]) for e in out.result("access")["known"]) == [(first, "renew"), (second, "not_due")]
    assert contexts(path) == both
    assert whoami(path, USER["name"], first) == USER["name"]
    assert whoami(path, USER["name"], second) == USER["name"]
    [entry] = out.result("access")["users"]
    assert [(k["name"], k["serial"]) for k in entry["kept"]] == [(second, renewed["serial"])], entry
