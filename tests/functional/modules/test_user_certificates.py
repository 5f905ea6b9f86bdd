"""user_certificates through ansible-playbook against the two clusters under test (the sandbox, or real ones with
KUBEPKI_TEST_CLUSTERS=real), real etcd and the embedded store.

Check mode, the real run (kubectl logs in with every kubeconfig), an idempotent re-run, the result carrying
no key material, a run without etcd, and one unreachable cluster among good ones.
"""

import json
import os
import uuid

import pytest
from kubeharness.client import kubectl_json
from playbook_files import playbook

PLAY = playbook("modules/user_certificates.yml")

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
            "etcd": [sandbox.etcd_url], "prefix": "/uc-" + scope, "out": str(tmp_path / "out"), "renew_before": "1h"}


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
    assert "cluster gone (create): " in msg and "cluster %s" % sandbox.names[0] not in msg, msg
    [failure] = out.result("access")["failures"]
    assert (failure["cluster"], failure["user"], failure["step"]) == ("gone", None, "create"), failure
    # the good cluster finished its part, and every user got a kubeconfig for it
    assert len(our_csrs(sandbox, sandbox.names[0], job["scope"])) == 2
    for user in USERS:
        config = kubectl_json(os.path.join(job["out"], "%s.kubeconfig" % user["name"]), "config", "view", "-o", "json")
        assert [c["name"] for c in config["clusters"]] == [sandbox.names[0]]
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
    out = run_playbook(PLAY, extra_vars=rotate)
    assert "rotate_key with key_scope=shared and 2 clusters" in out.failures()[0][2], out


@pytest.mark.sandbox_only("injected API faults")
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
           "etcd": [fresh_sandbox.etcd_url], "prefix": "/far", "out": str(tmp_path / "out"), "renew_before": "1h"}
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


def test_a_batch_beyond_the_lead_is_finished_and_rerun_as_known(run_playbook, sandbox, job):
    """A batch of more than twice the lead (10 users) is created and approved in two parts per cluster: every user
    is issued once, a user of the second part logs in, and a re-run with one user more requests only for that user."""
    users = [{"name": "uc-many-%02d" % i, "groups": ["dev"]} for i in range(24)]
    first = run_playbook(PLAY, extra_vars=dict(job, users=users))
    assert first.rc == 0, first
    created = {cluster: our_csrs(sandbox, cluster, job["scope"]) for cluster in sandbox.names}
    assert all(len(names) == 24 for names in created.values()), created
    assert len(etcd_keys(sandbox, job["prefix"])) == 48
    last = os.path.join(job["out"], "uc-many-23.kubeconfig")
    for cluster in sandbox.names:
        review = kubectl_json(last, "--context", "uc-many-23@%s" % cluster, "auth", "whoami")
        assert review["status"]["userInfo"]["username"] == "uc-many-23"

    more = users + [{"name": "uc-many-24", "groups": ["dev"]}]
    again = run_playbook(PLAY, extra_vars=dict(job, users=more))
    assert again.rc == 0, again
    for cluster in again.result("access")["clusters"]:
        actions = {entry["name"]: entry["action"] for entry in cluster["csrs"]}
        assert {user for user, action in actions.items() if action != "known"} == {"uc-many-24"}, actions
    for cluster in sandbox.names:
        now = our_csrs(sandbox, cluster, job["scope"])
        assert len(now) == 25 and set(created[cluster]) < set(now)


def test_group_order_is_not_significant(run_playbook, sandbox, job):
    """The signer puts every group into one RDN, a DER SET, so the certificate lists them sorted: a user given
    as [ops, dev] gets O=[dev, ops] and must still be finished (it used to fail the whole batch at the wait)."""
    users = [{"name": "uc-unsorted", "groups": ["ops", "dev"]}, {"name": "uc-plain", "groups": ["dev"]}]
    job = dict(job, users=users)
    first = run_playbook(PLAY, extra_vars=job)
    assert first.rc == 0, first
    for cluster in sandbox.names:
        path = os.path.join(job["out"], "uc-unsorted.kubeconfig")
        review = kubectl_json(path, "--context", "uc-unsorted@%s" % cluster, "auth", "whoami")
        assert sorted(review["status"]["userInfo"]["groups"]) == ["dev", "ops", "system:authenticated"]
    again = run_playbook(PLAY, extra_vars=dict(job, users=[dict(users[0], groups=["dev", "ops"]), users[1]]))
    assert again.rc == 0 and not again.result("access")["changed"], "the same groups in another order are the same request"


@pytest.mark.sandbox_only("injected API faults")
def test_one_user_that_fails_does_not_stop_the_others(run_playbook, sandbox, job):
    """Every approval of one user's CSR is refused by the API (403 injected on its /approval path, in both
    clusters): the others are approved, issued, published and rendered; the task then fails naming that user."""
    users = [{"name": "uc-ok-1", "groups": ["dev"]}, {"name": "uc-blocked", "groups": ["dev"]}, {"name": "uc-ok-2", "groups": ["dev"]}]
    job = dict(job, users=users)
    for cluster in sandbox.names:
        sandbox.inject_faults(cluster, 403, 100, path="kubepki-uc-blocked-")
    try:
        out = run_playbook(PLAY, extra_vars=job)
    finally:
        for cluster in sandbox.names:
            sandbox.clear_faults(cluster)
    assert out.rc != 0
    [(_task, _host, msg)] = out.failures()
    result = out.result("access")
    assert sorted((f["cluster"], f["user"], f["step"]) for f in result["failures"]) == [
        (cluster, "uc-blocked", "approve") for cluster in sorted(sandbox.names)], result["failures"]
    assert "user uc-blocked" in msg and "uc-ok" not in msg, msg
    for name in ("uc-ok-1", "uc-ok-2"):
        for cluster in sandbox.names:
            path = os.path.join(job["out"], "%s.kubeconfig" % name)
            review = kubectl_json(path, "--context", "%s@%s" % (name, cluster), "auth", "whoami")
            assert review["status"]["userInfo"]["username"] == name
    assert not os.path.exists(os.path.join(job["out"], "uc-blocked.kubeconfig"))
    assert sorted(k.rsplit("/", 1)[1] for k in etcd_keys(sandbox, job["prefix"])) == sorted(["uc-ok-1", "uc-ok-2"] * 2)
    # once the API lets it through, a re-run finishes the blocked user and leaves the others alone
    again = run_playbook(PLAY, extra_vars=job)
    assert again.rc == 0, again
    assert os.path.exists(os.path.join(job["out"], "uc-blocked.kubeconfig"))
    for cluster in again.result("access")["clusters"]:
        assert sorted(c["name"] for c in cluster["csrs"] if c["action"] != "known") == ["uc-blocked"]


BAD_INPUT = playbook("modules/user_certificates_bad_input.yml")


def test_the_bad_input_suite_leaves_nothing_behind(run_playbook, sandbox, job, tmp_path):
    """Each case is refused before anything is written, with a message naming the option at fault: no key,
    no store file, no CSR in any cluster, no etcd record, no kubeconfig directory."""
    good = clusters_of(sandbox)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")

    def cluster(**change):
        return [dict(good[0], **change), good[1]]

    cases = [
        {"users": [{"name": "a/b"}], "expect": "users[0].name 'a/b' must not contain '/'"},
        {"users": [{"name": ".."}], "expect": "users[0].name '..' is not a usable name"},
        {"clusters": cluster(name="eu/west"), "expect": "cluster 'eu/west' must not contain '/'"},
        {"scope": "team/a", "expect": "scope 'team/a' must not contain '/'"},
        {"users": [{"name": "uc-x", "groups": ["system:monitoring"]}],
         "expect": "users[0] (uc-x).groups: the approval policy would refuse it: system group system:monitoring is not allowed"},
        {"users": [{"name": "uc-x", "groups": ["kubeadm:cluster-admins"]}],
         "expect": "users[0] (uc-x).groups: the approval policy would refuse it: group kubeadm:cluster-admins is cluster-admin"},
        {"users": [{"name": "uc-x", "groups": ["qa"]}], "policy": {"allowed_groups": ["dev*"]},
         "expect": "group qa is not in policy.allowed_groups"},
        {"clusters": cluster(auth={"kubeconfig": str(tmp_path / "missing.kubeconfig")}), "expect": "clusters[%s].auth: " % good[0]["name"]},
        {"clusters": cluster(ca_cert=str(tmp_path / "missing-ca.crt")), "expect": "clusters[%s].ca_cert: cannot read" % good[0]["name"]},
        {"clusters": cluster(server="https://"), "expect": "clusters[%s].server 'https://' is not" % good[0]["name"]},
        {"clusters": cluster(server="https://127.0.0.1:99999"), "expect": "clusters[%s].server 'https://127.0.0.1:99999' is not" % good[0]["name"]},
        {"etcd": ["not an endpoint"], "expect": "etcd_endpoints"},
        {"out": str(blocker / "kubeconfigs"), "expect": "dest_dir %s cannot be created" % (blocker / "kubeconfigs")},
        {"renew_before": "99999999999d", "expect": "renew_before: '99999999999d' is longer than"},
    ]
    out = run_playbook(BAD_INPUT, extra_vars=dict(job, cases=cases))
    results = out.result("bad")["results"]
    assert len(results) == len(cases)
    for case, result in zip(cases, results):
        assert result.get("failed"), (case["expect"], result)
        assert case["expect"] in result["msg"], (case["expect"], result["msg"])
    assert not os.path.exists(job["store"]), "no key may be written for refused input"
    assert not os.path.exists(job["out"])
    for name in sandbox.names:
        assert our_csrs(sandbox, name, job["scope"]) == []
    assert etcd_keys(sandbox, job["prefix"]) == []


def test_secrets_stay_hidden_at_vvv_even_when_input_is_refused(run_playbook, sandbox, tmp_path):
    """A MongoDB password in store_uri and the token of an inline kubeconfig appear nowhere in what
    ansible-playbook -vvv prints (the echoed invocation included), whether the run stops at validation or at
    the store. No MongoDB server runs here: the URI points at a closed port, which is the point."""
    token = "inline-t0ken-%s" % uuid.uuid4().hex[:8]
    password = "S3cret-%s" % uuid.uuid4().hex[:8]
    info = sandbox.cluster(sandbox.names[0])
    inline = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": info.server, "insecure-skip-tls-verify": True}}],
              "users": [{"name": "u", "user": {"token": token}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    clusters = [{"name": sandbox.names[0], "auth": {"kubeconfig": inline}}]
    env = {"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_VERBOSITY": "3"}
    mongo = "mongodb://kpuser:%s@127.0.0.1:9/kubepki?serverSelectionTimeoutMS=300&connectTimeoutMS=300" % password
    for users, store in (([{"name": "bad/name"}], str(tmp_path / "store.db")),  # refused by validation
                         ([{"name": "uc-fine"}], mongo)):                       # fails at the store
        out = run_playbook(PLAY, extra_vars={"users": users, "clusters": clusters, "store": store, "api_timeout": 10}, env=env)
        text = out.stdout + out.stderr
        assert out.rc != 0 and ("must not contain '/'" in text or "kpuser" in text), text[-2000:]
        assert token not in text and password not in text
