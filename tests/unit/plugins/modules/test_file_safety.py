"""Modules run in-process against files that are not what they should be: a kubeconfig temporary file a killed run
left behind (removed by the next render, only that user's), a FIFO where a kubeconfig, CA, client certificate, key
or token file is expected (refused at once, naming the option and the path, instead of hanging the task), and a
store_uri naming a file that is not a store (left untouched)."""

import os
import stat

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.modules import cert_inventory, cluster_trust_bundle, csr_info, csr_wait, kubeconfig_render

import pki_support

KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nleft by a killed run\n-----END PRIVATE KEY-----\n"
# the name write_atomically gives its temporary file (.<name>.<8 of [a-z0-9_]>.tmp)
LEFT = ".%s.k3j_9z0q.tmp"


class Setup:
    """A store with the keys and certificates of alice and bob for cluster c1, and c1's CA file."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.uri = str(tmp_path / "store.db")
        self.ca = pki_support.new_ca("file-safety-ca")
        self.ca_file = tmp_path / "c1-ca.crt"
        self.ca_file.write_bytes(pki_support.cert_pem(self.ca.cert))
        with _store.open_store(self.uri, "") as store:
            for user in ("alice", "bob"):
                key = store.ensure_key("default", user)[0]
                leaf = pki_support.client_cert(self.ca, user, ["dev"], key=_crypto.load_private_key(key["private_key_pem"]), days=30).cert
                pem = pki_support.cert_pem(leaf).decode()
                facts = _crypto.certificate_facts(pem)
                store.put_cert({"scope": "default", "cluster": "c1", "user": user, "common_name": user, "organizations": ["dev"],
                                "certificate": pem, "csr_name": "n-" + user, "csr_uid": "u", "signer_name": "kubernetes.io/kube-apiserver-client",
                                "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
                                "public_key_sha256": facts["public_key_sha256"]})

    def args(self, **extra):
        args = {"store_uri": self.uri, "clusters": [{"name": "c1", "server": "https://127.0.0.1:6443", "ca_cert": str(self.ca_file)}]}
        args.update(extra)
        return args


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def left_by_a_killed_run(directory, name):
    path = directory / (LEFT % name)
    path.write_text(KEY_TEXT)
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------- leftovers of a killed run

def test_rendering_removes_what_a_killed_run_left_of_that_users_kubeconfig(run_module, setup, monkeypatch):
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    out = setup.tmp_path / "out"
    out.mkdir(mode=0o700)
    alice_left = left_by_a_killed_run(out, "alice.kubeconfig")
    bob_left = left_by_a_killed_run(out, "bob.kubeconfig")
    unrelated = out / ".alice.kubeconfig.k3j_9z0q.tmp.bak"
    unrelated.write_text("not the writer's\n")

    failed, result = run_module(kubeconfig_render, setup.args(users=[{"name": "alice"}], dest_dir=str(out), _ansible_check_mode=True))
    assert not failed and result["changed"], result
    assert alice_left.exists(), "check mode removes nothing"

    failed, result = run_module(kubeconfig_render, setup.args(users=[{"name": "alice"}], dest_dir=str(out)))
    assert not failed and result["changed"], result
    assert not alice_left.exists()
    assert bob_left.read_text() == KEY_TEXT and unrelated.exists(), "another user's leftover and other names stay"
    assert (out / "alice.kubeconfig").exists()
    assert any(str(alice_left) in text for text in warned), warned

    # the kubeconfig is up to date, but a leftover appeared: removing it is the change
    left_by_a_killed_run(out, "alice.kubeconfig")
    failed, result = run_module(kubeconfig_render, setup.args(users=[{"name": "alice"}], dest_dir=str(out)))
    assert not failed and result["changed"] and not alice_left.exists(), result
    failed, result = run_module(kubeconfig_render, setup.args(users=[{"name": "alice"}], dest_dir=str(out)))
    assert not failed and not result["changed"], result


def test_rendering_one_dest_removes_its_leftover(run_module, setup):
    dest = setup.tmp_path / "kube" / "config"
    dest.parent.mkdir()
    left = left_by_a_killed_run(dest.parent, "config")
    failed, result = run_module(kubeconfig_render, setup.args(user="alice", dest=str(dest)))
    assert not failed and result["changed"], result
    assert not left.exists() and sorted(os.listdir(dest.parent)) == ["config"]


# ---------------------------------------------------------------- FIFOs where files are expected

def fifo(tmp_path, name="fifo"):
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


@pytest.mark.timeout(20)
def test_a_fifo_as_the_cluster_ca_is_refused_at_once(run_module, setup):
    path = fifo(setup.tmp_path)
    args = setup.args(user="alice")
    args["clusters"][0]["ca_cert"] = path
    failed, result = run_module(kubeconfig_render, args)
    assert failed and result["msg"] == "clusters[c1].ca_cert: %s is a FIFO, not a regular file" % path, result


@pytest.mark.timeout(20)
def test_a_fifo_as_the_trust_bundle_ca_file_is_refused_at_once(run_module, tmp_path):
    path = fifo(tmp_path)
    failed, result = run_module(cluster_trust_bundle, {"name": "kubepki-ca", "ca_file": path, "host": "https://127.0.0.1:1", "api_key": "x"})
    assert failed and result["msg"] == "ca_file: %s is a FIFO, not a regular file" % path, result


@pytest.mark.timeout(20)
def test_a_fifo_as_the_cluster_ca_of_csr_wait_is_named(run_module, tmp_path):
    path = fifo(tmp_path)
    failed, result = run_module(csr_wait, {"names": ["x"], "cluster_ca": path, "cluster": "c1", "host": "https://127.0.0.1:1", "api_key": "x"})
    assert failed and result["msg"] == "cluster_ca: %s is a FIFO, not a regular file" % path, result


def kubeconfig_with(tmp_path, ca, user):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": dict({"server": "https://127.0.0.1:1"}, **ca)}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
              "users": [{"name": "u", "user": user}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["kubeconfig", "certificate-authority", "client-certificate", "client-key", "tokenFile",
                                   "ca_cert", "client_cert", "client_key", "certificate-authority-with-exec"])
def test_a_fifo_in_the_api_credentials_is_refused_at_once(run_module, setup, where):
    """The kubeconfig itself, a file it names, or an explicit option: each a FIFO in turn."""
    tmp_path = setup.tmp_path
    fifo_path = fifo(tmp_path, "fifo-" + where)
    client = pki_support.client_cert(setup.ca, "admin", ["system:masters"])
    cert_file, key_file = tmp_path / "admin.crt", tmp_path / "admin.key"
    cert_file.write_bytes(pki_support.cert_pem(client.cert))
    key_file.write_text(_crypto.private_key_to_pem(client.key))
    ca = {"certificate-authority": str(setup.ca_file)}
    user = {"client-certificate": str(cert_file), "client-key": str(key_file)}
    args = {"names": ["x"]}
    if where == "kubeconfig":
        args["kubeconfig"] = fifo_path
        expected = "kubeconfig: %s is a FIFO, not a regular file" % fifo_path
    elif where in ("ca_cert", "client_cert", "client_key"):
        args.update(host="https://127.0.0.1:1", ca_cert=str(setup.ca_file), client_cert=str(cert_file), client_key=str(key_file))
        args[where] = fifo_path
        expected = "%s: %s is a FIFO, not a regular file" % (where, fifo_path)
    else:
        if where.startswith("certificate-authority"):
            ca = {"certificate-authority": fifo_path}
            if where.endswith("with-exec"):  # credentials only the kubernetes library handles
                user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/false"}}
                where = "certificate-authority"
        elif where == "tokenFile":
            user = {where: fifo_path}
        else:
            user[where] = fifo_path
        args["kubeconfig"] = kubeconfig_with(tmp_path, ca, user)
        expected = "kubeconfig %s: %s: %s is a FIFO, not a regular file" % (args["kubeconfig"], where, fifo_path)
    failed, result = run_module(csr_info, args)
    assert failed and result["msg"] == expected, result


# ---------------------------------------------------------------- a store_uri that is not a store

def test_cert_inventory_leaves_a_file_that_is_not_a_store_untouched(run_module, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    os.chmod(hosts, 0o644)
    os.utime(hosts, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = (os.stat(hosts).st_mode, os.stat(hosts).st_mtime_ns, hosts.read_bytes())
    failed, result = run_module(cert_inventory, {"store_uri": str(hosts)})
    assert (os.stat(hosts).st_mode, os.stat(hosts).st_mtime_ns, hosts.read_bytes()) == before
    assert stat.S_IMODE(before[0]) == 0o644 and sorted(os.listdir(tmp_path)) == ["hosts"]
    assert failed and result["msg"].startswith("store_uri: %s is not a usable embedded store: it is not an SQLite database" % hosts), result


def test_cert_inventory_reads_a_store_without_tightening_it(run_module, setup):
    """A report reads: a store with a loose mode is reported as it is (a writing task tightens it)."""
    os.chmod(setup.uri, 0o640)
    failed, result = run_module(cert_inventory, {"store_uri": setup.uri})
    assert not failed, result
    assert stat.S_IMODE(os.stat(setup.uri).st_mode) == 0o640


@pytest.mark.timeout(20)
@pytest.mark.parametrize("option", ["etcd_ca_cert", "etcd_client_cert", "etcd_client_key"])
def test_a_fifo_as_an_etcd_tls_file_is_named_for_what_it_is(tmp_path, option):
    path = fifo(tmp_path)
    pem = tmp_path / "pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n")
    given = {"etcd_endpoints": ["https://127.0.0.1:2379"], "etcd_prefix": "/kubepki", "etcd_timeout": 5.0,
             "etcd_ca_cert": str(pem), "etcd_client_cert": str(pem), "etcd_client_key": str(pem)}
    given[option] = path
    assert _etcd.endpoints_problem(given) == "%s: %s is not a readable file: it is a FIFO, not a regular file" % (option, path)
