"""user_certificates through ansible-playbook against the two-cluster sandbox, real etcd and the embedded store.

Check mode, the real run (kubectl logs in with every kubeconfig), an idempotent re-run, the result carrying
no key material, a run without etcd, and one unreachable cluster among good ones.
"""

import json
import os
import uuid

import pytest
from kubesandbox.testing import kubectl_json

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: access
      kubepki.certs.user_certificates:
        users: "{{ users }}"
        clusters: "{{ clusters }}"
        scope: "{{ scope }}"
        store_uri: "{{ store }}"
        etcd_endpoints: "{{ etcd | default(omit) }}"
        etcd_prefix: "{{ prefix }}"
        dest_dir: "{{ out }}"
        renew_before: 1h
        timeout: 60
      register: access
"""

USERS = [{"name": "uc-alice", "groups": ["dev", "ops"]}, {"name": "uc-bob", "groups": ["dev"]}]


def clusters_of(box, names=None):
    out = []
    for name in names or box.names:
        info = box.cluster(name)
        out.append({"name": name, "server": info.server, "ca_cert": info.ca_cert, "auth": {"kubeconfig": info.kubeconfig}})
    return out


def our_csrs(box, cluster, scope):
    items = kubectl_json(box.cluster(cluster).kubeconfig, "get", "csr", "-l", "kubepki.io/scope=%s" % scope)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def etcd_keys(box, prefix):
    return sorted(box.etcd_prefix(prefix + "/"))


@pytest.fixture
def job(sandbox, tmp_path):
    scope = "uc-" + uuid.uuid4().hex[:8]
    return {"users": USERS, "clusters": clusters_of(sandbox), "scope": scope, "store": str(tmp_path / "store.db"),
            "etcd": [sandbox.etcd_url], "prefix": "/uc-" + scope, "out": str(tmp_path / "out")}


def test_check_mode_then_run_then_rerun(run_playbook, sandbox, job):
    job = dict(job, store=os.path.join(os.path.dirname(job["store"]), "not-yet", "store.db"))
    checked = run_playbook(PLAY, extra_vars=job, check=True)
    assert checked.rc == 0, checked
    result = checked.result("access")
    assert result["changed"]
    assert all(c["key_created"] for cluster in result["clusters"] for c in cluster["csrs"])
    for cluster in sandbox.names:
        assert our_csrs(sandbox, cluster, job["scope"]) == []
    assert etcd_keys(sandbox, job["prefix"]) == []
    assert not os.path.exists(job["out"])
    assert not os.path.exists(os.path.dirname(job["store"]))

    first = run_playbook(PLAY, extra_vars=job)
    assert first.rc == 0, first
    result = first.result("access")
    assert result["changed"]
    created = {cluster: our_csrs(sandbox, cluster, job["scope"]) for cluster in sandbox.names}
    assert all(len(names) == 2 for names in created.values())
    assert etcd_keys(sandbox, job["prefix"]) == sorted(
        "%s/certs/%s/%s/%s" % (job["prefix"], job["scope"], c, u["name"]) for c in sandbox.names for u in USERS)
    # what a user notices: each kubeconfig logs in to every cluster as the user, in the user's groups
    for user in USERS:
        path = os.path.join(job["out"], "%s.kubeconfig" % user["name"])
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        for cluster in sandbox.names:
            review = kubectl_json(path, "--context", "%s@%s" % (user["name"], cluster), "auth", "whoami")
            assert review["status"]["userInfo"]["username"] == user["name"]
            assert review["status"]["userInfo"]["groups"] == user["groups"] + ["system:authenticated"]
    # no key material and no certificate PEM in what the task returns
    assert "PRIVATE KEY" not in first.stdout and "client-key-data" not in first.stdout
    assert "BEGIN CERTIFICATE" not in json.dumps(result)
    assert all(c["serial"] for cluster in result["clusters"] for c in cluster["certificates"])

    again = run_playbook(PLAY, extra_vars=job)
    assert again.rc == 0, again
    assert not again.result("access")["changed"]
    assert {cluster: our_csrs(sandbox, cluster, job["scope"]) for cluster in sandbox.names} == created
    assert all(c["action"] == "known" for cluster in again.result("access")["clusters"] for c in cluster["csrs"])


def test_without_etcd_certificates_go_to_the_store(run_playbook, sandbox, job):
    job = dict(job)
    job.pop("etcd")
    first = run_playbook(PLAY, extra_vars=job, env={"KUBEPKI_ETCD_ENDPOINTS": ""})
    assert first.rc == 0, first
    assert all(cluster["etcd_records"] == [] for cluster in first.result("access")["clusters"])
    path = os.path.join(job["out"], "uc-bob.kubeconfig")
    review = kubectl_json(path, "--context", "uc-bob@%s" % sandbox.names[1], "auth", "whoami")
    assert review["status"]["userInfo"]["username"] == "uc-bob"
    again = run_playbook(PLAY, extra_vars=job, env={"KUBEPKI_ETCD_ENDPOINTS": ""})
    assert again.rc == 0 and not again.result("access")["changed"], again


def test_an_unreachable_cluster_fails_by_name_and_the_others_finish(run_playbook, sandbox, job):
    job = dict(job)
    auth = {"host": "https://127.0.0.1:9", "api_key": "t0ken-not-shown", "validate_certs": False}
    broken = {"name": "gone", "server": "https://127.0.0.1:9", "auth": auth}
    job["clusters"] = clusters_of(sandbox, sandbox.names[:1]) + [broken]
    out = run_playbook(PLAY, extra_vars=job)  # a refused connection is retried for _kube.CONNECT_BUDGET seconds
    assert out.rc != 0
    [(_task, _host, msg)] = out.failures()
    assert msg.startswith("cluster gone: ") and sandbox.names[0] not in msg, msg
    # the good cluster finished its part; nothing was rendered because one cluster has no certificates
    assert len(our_csrs(sandbox, sandbox.names[0], job["scope"])) == 2
    assert not os.path.exists(job["out"])
    assert "t0ken-not-shown" not in out.stdout


def test_bad_input_is_refused_before_anything_is_written(run_playbook, sandbox, job):
    job = dict(job, users=[{"name": "uc-carol", "groups": ["system:masters"]}])
    out = run_playbook(PLAY, extra_vars=job)
    assert out.rc != 0
    [(_task, _host, msg)] = out.failures()
    assert "users[0] (uc-carol).groups: system:masters is refused" in msg, msg
    assert not os.path.exists(job["store"]), "no key may be written for a refused request"
    for cluster in sandbox.names:
        assert our_csrs(sandbox, cluster, job["scope"]) == []
    twice = dict(job, users=USERS, clusters=clusters_of(sandbox, sandbox.names[:1]) * 2)
    out = run_playbook(PLAY, extra_vars=twice)
    assert out.failures()[0][2] == "clusters: %s listed more than once" % sandbox.names[0]
    rotate = dict(job, users=USERS, rotate_key=True)
    out = run_playbook(PLAY.replace("renew_before: 1h", "renew_before: 1h\n        rotate_key: \"{{ rotate_key }}\""), extra_vars=rotate)
    assert "rotate_key with key_scope=shared and 2 clusters" in out.failures()[0][2], out


def test_an_approval_on_a_changed_csr_is_retried(run_playbook, sandbox, job):
    """The approvals use the objects the create step got back; when one changed since (409 Conflict on its
    /approval PUT), the request is fetched again and approved."""
    job = dict(job, clusters=clusters_of(sandbox, sandbox.names[:1]))
    sandbox.inject_faults(sandbox.names[0], 409, 1, path="approval")
    try:
        out = run_playbook(PLAY, extra_vars=job)
        # the 409 was served: adding a fault that matches nothing leaves exactly that one pending
        assert sandbox.inject_faults(sandbox.names[0], 500, 1, path="/matches-nothing")["faults"] == 1
    finally:
        sandbox.clear_faults(sandbox.names[0])
    assert out.rc == 0, out
    [cluster] = out.result("access")["clusters"]
    assert sorted(c["decision"] for c in cluster["approvals"]) == ["approved", "approved"]
    assert sorted(c["user"] for c in cluster["certificates"]) == ["uc-alice", "uc-bob"]


def test_a_cluster_a_round_trip_away(run_playbook, fresh_sandbox, tmp_path):
    """With every API request held 30 ms, the CSRs and approvals after the first few go out several at a
    time (_kube.in_flight); every user still ends with a working kubeconfig, and a re-run changes nothing."""
    name = fresh_sandbox.names[0]
    fresh_sandbox.set_options(name, network_delay="30ms")
    users = [{"name": "far-%d" % i, "groups": ["dev"]} for i in range(8)]
    job = {"users": users, "clusters": clusters_of(fresh_sandbox), "scope": "far", "store": str(tmp_path / "store.db"),
           "etcd": [fresh_sandbox.etcd_url], "prefix": "/far", "out": str(tmp_path / "out")}
    first = run_playbook(PLAY, extra_vars=job)
    assert first.rc == 0, first
    [cluster] = first.result("access")["clusters"]
    assert [c["action"] for c in cluster["csrs"]] == ["created"] * 8
    assert [c["decision"] for c in cluster["approvals"]] == ["approved"] * 8
    assert sorted(c["user"] for c in cluster["certificates"]) == sorted(u["name"] for u in users)
    for user in (users[0], users[-1]):
        path = os.path.join(job["out"], "%s.kubeconfig" % user["name"])
        review = kubectl_json(path, "--context", "%s@%s" % (user["name"], name), "auth", "whoami")
        assert review["status"]["userInfo"]["username"] == user["name"]
    again = run_playbook(PLAY, extra_vars=job)
    assert again.rc == 0 and not again.result("access")["changed"], again
