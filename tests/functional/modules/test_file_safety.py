"""Files that are not what they should be, through ansible-playbook: a kubeconfig temporary file a killed run left
(removed by the next render and by offboarding, only for that user), a FIFO given as a CA file (refused at once
instead of hanging the task), and a store_uri naming a file that is not a store (left exactly as it was)."""

import os
import stat
import uuid

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # pylint: disable=import-error
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # pylint: disable=import-error

from kubeharness import pki
from playbook_files import playbook

KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nleft by a killed run\n-----END PRIVATE KEY-----\n"
LEFT = ".%s.k3j_9z0q.tmp"  # the writer's temporary name (.<name>.<8 of [a-z0-9_]>.tmp)

RENDER = playbook("modules/kubeconfig_render.yml")

INVENTORY = playbook("modules/cert_inventory.yml")


def left_by_a_killed_run(directory, name):
    path = os.path.join(directory, LEFT % name)
    with open(path, "w", encoding="ascii") as handle:
        handle.write(KEY_TEXT)
    os.chmod(path, 0o600)
    return path


def store_with_certificates(tmp_path, users):
    ca = pki.make_ca("file-safety-functional")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(pki.cert_pem(ca.cert))
    uri = str(tmp_path / "store.db")
    with _store.open_store(uri, "") as store:
        for user in users:
            key = store.ensure_key("default", user)[0]
            pem = pki.cert_pem(pki.issue(ca, user, ["dev"], client=True, key=_crypto.load_private_key(key["private_key_pem"])).cert).decode()
            facts = _crypto.certificate_facts(pem)
            store.put_cert({"scope": "default", "cluster": "c1", "user": user, "common_name": user, "organizations": ["dev"],
                            "certificate": pem, "csr_name": "n", "csr_uid": "u", "signer_name": "kubernetes.io/kube-apiserver-client",
                            "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
                            "public_key_sha256": facts["public_key_sha256"]})
    return {"ca_file": str(ca_file), "store": uri, "out": str(tmp_path / "out")}


def test_render_removes_only_that_users_leftover(run_playbook, tmp_path):
    extra = store_with_certificates(tmp_path, ["alice", "bob"])
    os.makedirs(extra["out"], mode=0o700)
    alice_left = left_by_a_killed_run(extra["out"], "alice.kubeconfig")
    bob_left = left_by_a_killed_run(extra["out"], "bob.kubeconfig")
    out = run_playbook(RENDER, extra_vars=dict(extra, users=[{"name": "alice"}]))
    assert out.rc == 0 and out.changed == 1, out
    assert not os.path.exists(alice_left) and os.path.exists(os.path.join(extra["out"], "alice.kubeconfig"))
    with open(bob_left, encoding="ascii") as handle:
        assert handle.read() == KEY_TEXT, "bob's file is not alice's to remove"
    assert "left by a killed run" not in out.stdout


def test_a_fifo_as_the_ca_file_fails_the_task_at_once(run_playbook, tmp_path):
    extra = store_with_certificates(tmp_path, ["alice"])
    fifo = str(tmp_path / "ca-fifo")
    os.mkfifo(fifo)
    extra["ca_file"] = fifo
    try:
        out = run_playbook(RENDER, extra_vars=dict(extra, users=[{"name": "alice"}]), timeout=120)
    finally:
        # a regression leaves the module blocked opening the FIFO: a writer that opens and closes it lets it go
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert out.rc != 0, out
    assert out.result("render")["msg"] == "clusters[c1].ca_cert: %s is a FIFO, not a regular file" % fifo
    assert not os.path.exists(extra["out"])


def test_cert_inventory_leaves_a_mistyped_store_uri_file_as_it_was(run_playbook, tmp_path):
    hosts = tmp_path / "etc" / "hosts"
    hosts.parent.mkdir()
    hosts.write_text("127.0.0.1 localhost\n")
    os.chmod(hosts, 0o644)
    os.utime(hosts, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = (os.stat(hosts).st_mode, os.stat(hosts).st_uid, os.stat(hosts).st_mtime_ns, hosts.read_bytes())
    out = run_playbook(INVENTORY, extra_vars={"store": str(hosts)})
    assert out.rc != 0, out
    assert (os.stat(hosts).st_mode, os.stat(hosts).st_uid, os.stat(hosts).st_mtime_ns, hosts.read_bytes()) == before
    assert stat.S_IMODE(before[0]) == 0o644 and os.listdir(hosts.parent) == ["hosts"]
    assert "is not a usable embedded store: it is not an SQLite database; nothing was changed" in out.result("inventory")["msg"]


ACCESS = playbook("modules/user_certificates.yml")


def test_offboarding_and_the_next_render_remove_what_a_killed_run_left(run_playbook, sandbox, tmp_path):
    scope = "fs-" + uuid.uuid4().hex[:8]
    users = [{"name": "fs-alice", "groups": ["dev"]}, {"name": "fs-bob", "groups": ["dev"]}]
    clusters = [{"name": name, "server": sandbox.cluster(name).server, "ca_cert": sandbox.cluster(name).ca_cert,
                 "auth": {"kubeconfig": sandbox.cluster(name).kubeconfig}} for name in sandbox.names]
    job = {"users": users, "clusters": clusters, "scope": scope, "store": str(tmp_path / "store.db"), "etcd": [sandbox.etcd_url],
           "prefix": "/fs-" + scope, "out": str(tmp_path / "out")}
    onboarded = run_playbook(ACCESS, extra_vars=job)
    assert onboarded.rc == 0, onboarded
    alice_left = left_by_a_killed_run(job["out"], "fs-alice.kubeconfig")
    bob_left = left_by_a_killed_run(job["out"], "fs-bob.kubeconfig")

    checked = run_playbook(ACCESS, extra_vars=dict(job, state="absent", users=users[:1]), check=True)
    assert checked.rc == 0 and os.path.exists(alice_left), checked

    gone = run_playbook(ACCESS, extra_vars=dict(job, state="absent", users=users[:1]))
    assert gone.rc == 0, gone
    assert not os.path.exists(alice_left) and not os.path.exists(os.path.join(job["out"], "fs-alice.kubeconfig"))
    assert os.path.exists(bob_left) and os.path.exists(os.path.join(job["out"], "fs-bob.kubeconfig")), "bob is not offboarded"

    again = run_playbook(ACCESS, extra_vars=dict(job, users=users[1:]))
    assert again.rc == 0 and again.changed == 1, again
    assert not os.path.exists(bob_left)
    assert sorted(os.listdir(job["out"])) == ["fs-bob.kubeconfig"]
