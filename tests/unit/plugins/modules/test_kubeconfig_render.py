"""kubeconfig_render run in-process: embedded store in a temp dir, no etcd. The runs with etcd configured (the lazy
load) are in tests/functional/inprocess/test_kubeconfig_render_on_etcd.py, against a real etcd."""

import base64
import datetime
import json
import os
import re
import uuid

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._steps import render
from ansible_collections.kubepki.certs.plugins.modules import kubeconfig_render

import pki_support


class World:
    """A store with alice's key, a CA per cluster, and helpers to issue and place certificates."""

    def __init__(self, tmp_path, etcd_url, passphrase=""):
        self.tmp_path = tmp_path
        self.uri = str(tmp_path / "store" / "store.db")
        self.passphrase = passphrase
        self.etcd_url = etcd_url
        self.prefix = "/r-%s" % uuid.uuid4().hex[:8]
        self.cas = {name: pki_support.new_ca("ca-" + name) for name in ("c1", "c2")}
        for name, ca in self.cas.items():
            (tmp_path / ("%s-ca.crt" % name)).write_bytes(pki_support.cert_pem(ca.cert))
        with _store.open_store(self.uri, passphrase) as store:
            self.key = store.ensure_key("default", "alice")[0]

    def cert(self, cluster="c1", user="alice", orgs=("team-a",), key_pem=None, ca=None, days=30, start=None):
        key = _crypto.load_private_key(key_pem or self.key["private_key_pem"])
        ca = ca or self.cas[cluster]
        if start is None:
            leaf = pki_support.client_cert(ca, user, list(orgs), key=key, days=days).cert
        else:
            leaf = _future_cert(ca, user, key, start)
        pem = pki_support.cert_pem(leaf).decode()
        facts = _crypto.certificate_facts(pem)
        return {"scope": "default", "cluster": cluster, "user": user, "common_name": user, "organizations": list(orgs),
                "certificate": pem, "csr_name": "n", "csr_uid": "u", "signer_name": "kubernetes.io/kube-apiserver-client",
                "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
                "public_key_sha256": facts["public_key_sha256"]}

    def to_store(self, record):
        with _store.open_store(self.uri, self.passphrase) as store:
            store.put_cert(record)

    def to_etcd(self, record):
        with _etcd.EtcdTransport([self.etcd_url], prefix=self.prefix) as transport:
            transport.put_record(record)

    def stored(self, cluster="c1"):
        with _store.open_store(self.uri, self.passphrase) as store:
            return store.get_cert("default", cluster, "alice")

    def args(self, **extra):
        args = {"user": "alice", "store_uri": self.uri, "store_passphrase": self.passphrase or None,
                "clusters": [{"name": "c1", "server": "https://127.0.0.1:6443", "ca_cert": str(self.tmp_path / "c1-ca.crt")}]}
        args.update(extra)
        return args

    def with_etcd(self, **extra):
        return self.args(etcd_endpoints=[self.etcd_url], etcd_prefix=self.prefix, **extra)


def _future_cert(ca, user, key, start):
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1)).sign(ca.key, hashes.SHA256()))


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, None)


def test_write_idempotent_and_mode(run_module, world):
    world.to_store(world.cert())
    dest = world.tmp_path / "kube" / "config"
    dest.parent.mkdir()
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest), _ansible_check_mode=True))
    assert not failed and result["changed"] and not dest.exists()
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest), _ansible_diff=True))
    assert not failed and result["changed"], result
    assert os.stat(dest).st_mode & 0o777 == 0o600
    assert "kubeconfig" not in result
    key_b64 = base64.b64encode(world.key["private_key_pem"].encode()).decode()
    assert key_b64 not in json.dumps(result) and "PRIVATE KEY" not in json.dumps(result)
    assert "<redacted>" in result["diff"]["after"]
    config = yaml.safe_load(dest.read_text())
    assert config["users"][0]["user"]["client-key-data"] == key_b64
    assert result["clusters"][0]["source"] == "store" and result["clusters"][0]["organizations"] == ["team-a"]
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest)))
    assert not failed and result["changed"] is False
    os.chmod(dest, 0o644)
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest)))
    assert result["changed"] is True and os.stat(dest).st_mode & 0o777 == 0o600
    assert not [name for name in os.listdir(dest.parent) if name != "config"]


def test_returned_kubeconfig(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(current_context="alice@c1"))
    assert not failed and result["changed"] is False
    config = yaml.safe_load(result["kubeconfig"])
    assert config["current-context"] == "alice@c1"
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]).decode() == world.key["private_key_pem"]


def test_two_clusters_per_cluster_keys(run_module, world):
    with _store.open_store(world.uri, "") as store:
        keys = {name: store.ensure_key("default", "alice", name)[0] for name in ("c1", "c2")}
    for name in ("c1", "c2"):
        world.to_store(world.cert(name, key_pem=keys[name]["private_key_pem"]))
    clusters = [{"name": name, "server": "https://127.0.0.1:%d" % port, "ca_data": pki_support.cert_pem(world.cas[name].cert).decode()}
                for name, port in (("c1", 6443), ("c2", 6444))]
    failed, result = run_module(kubeconfig_render, world.args(clusters=clusters, key_scope="per_cluster"))
    assert not failed, result
    config = yaml.safe_load(result["kubeconfig"])
    assert [c["name"] for c in config["contexts"]] == ["alice@c1", "alice@c2"]
    failed, result = run_module(kubeconfig_render, world.args(clusters=clusters))
    assert failed and "does not match the stored private key of user 'alice'" in result["msg"]


# ---------------------------------------------------------------- refusals and bad input

def test_key_mismatch(run_module, world):
    other = _crypto.private_key_to_pem(_crypto.generate_private_key())
    world.to_store(world.cert(key_pem=other))
    failed, result = run_module(kubeconfig_render, world.args())
    assert failed
    assert "the certificate of user 'alice' for cluster 'c1'" in result["msg"] and "does not match the stored private key" in result["msg"]


def test_expired(run_module, world):
    world.to_store(world.cert(days=-0.001))
    failed, result = run_module(kubeconfig_render, world.args())
    assert failed and "the certificate of user 'alice' for cluster 'c1'" in result["msg"] and "expired at" in result["msg"]


def test_not_yet_valid(run_module, world):
    world.to_store(world.cert(start=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)))
    failed, result = run_module(kubeconfig_render, world.args())
    assert failed and "for cluster 'c1'" in result["msg"] and "is not valid before" in result["msg"]


def test_wrong_ca(run_module, world):
    world.to_store(world.cert(ca=world.cas["c2"]))
    failed, result = run_module(kubeconfig_render, world.args())
    assert failed and "user 'alice' for cluster 'c1'" in result["msg"] and "is not signed by the given cluster CA" in result["msg"]


def test_missing_key(run_module, world):
    failed, result = run_module(kubeconfig_render, world.args(user="nobody"))
    assert failed and "no private key for user 'nobody' (scope 'default')" in result["msg"]
    failed, result = run_module(kubeconfig_render, world.args(key_scope="per_cluster"))
    assert failed and "no private key for user 'alice' (scope 'default', cluster 'c1')" in result["msg"]


def test_unknown_key_scope(run_module, world):
    failed, result = run_module(kubeconfig_render, world.args(key_scope="per_user"))
    assert failed and "key_scope" in result["msg"] and "per_user" in result["msg"]


def test_dest_in_missing_directory(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(dest=str(world.tmp_path / "nope" / "config")))
    assert failed and "dest %s: the directory %s does not exist" % (world.tmp_path / "nope" / "config", world.tmp_path / "nope") == result["msg"]


def test_dest_is_a_directory(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(dest=str(world.tmp_path)))
    assert failed and "is not a regular file" in result["msg"]


@pytest.mark.parametrize("cluster, message", [
    ({"ca_data": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"}, r"clusters\[c1\].ca_data cannot be parsed"),
    ({"ca_data": "hello"}, r"clusters\[c1\].ca_data holds no PEM CERTIFICATE"),
    ({"ca_cert": "/nonexistent/ca.crt"}, r"clusters\[c1\].ca_cert: cannot read /nonexistent/ca.crt"),
    ({"server": "127.0.0.1:6443"}, r"clusters\[c1\].server '127.0.0.1:6443' is not an http\(s\):// URL"),
])
def test_bad_cluster_entries(run_module, world, cluster, message):
    world.to_store(world.cert())
    entry = {"name": "c1", "server": "https://127.0.0.1:6443"}
    entry.update(cluster)
    failed, result = run_module(kubeconfig_render, world.args(clusters=[entry]))
    assert failed and re.search(message, result["msg"]), result["msg"]


def test_duplicate_clusters(run_module, world):
    entry = {"name": "c1", "server": "https://127.0.0.1:6443"}
    failed, result = run_module(kubeconfig_render, world.args(clusters=[entry, dict(entry)]))
    assert failed and result["msg"] == "clusters: c1 listed more than once"


def test_bad_store_uri(run_module, world):
    failed, result = run_module(kubeconfig_render, world.args(store_uri="redis://localhost/0"))
    assert failed and "store_uri 'redis://localhost/0' has an unsupported scheme" in result["msg"]


def test_wrong_and_missing_passphrase(run_module, tmp_path):
    world = World(tmp_path, None, passphrase="right one")
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, dict(world.args(), store_passphrase="wrong one"))
    assert failed and "store_passphrase does not decrypt the stored key of user 'alice'" in result["msg"]
    failed, result = run_module(kubeconfig_render, dict(world.args(), store_passphrase=None))
    assert failed and "encrypted at rest: give store_passphrase" in result["msg"]
    failed, result = run_module(kubeconfig_render, world.args())
    assert not failed


def test_unreachable_etcd(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(etcd_endpoints=["http://127.0.0.1:9", "http://127.0.0.1:10"], etcd_timeout=1))
    assert failed and "etcd_endpoints: no etcd endpoint answered" in result["msg"] and "127.0.0.1:10" in result["msg"]


def test_expected_groups_needs_verify(run_module, world):
    failed, result = run_module(kubeconfig_render, world.args(expected_groups=["team-a"]))
    assert failed and result["msg"] == "expected_groups needs verify=true"


def test_verify_unreachable_cluster(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(
        verify=True, clusters=[{"name": "c1", "server": "https://127.0.0.1:9", "ca_cert": str(world.tmp_path / "c1-ca.crt")}]))
    assert failed and "verify: cannot reach https://127.0.0.1:9 (context 'alice@c1')" in result["msg"]


@pytest.mark.parametrize("server", ["https://", "https://:6443", "ftp://host", "https://host:99999", "https://ho st", "https://u:p@host",
                                    "https://host/?x=1", ""])
def test_server_urls_that_are_not_api_servers(server):
    assert render.url_problem(server), server


@pytest.mark.parametrize("server", ["https://127.0.0.1:6443", "https://[::1]:6443", "http://localhost", "https://k8s.example.com/prefix"])
def test_server_urls_that_are(server):
    assert render.url_problem(server) is None


def users_args(world, **extra):
    args = world.args(**extra)
    args.pop("user")
    return args


def test_a_key_the_user_holds_is_referred_to_not_embedded(run_module, world):
    """Bring your own CSR: the store holds no key for bob; his kubeconfig names his own key file, which is never
    read, and the certificate from the store is still checked (CA, validity, CN)."""
    own_key = _crypto.private_key_to_pem(_crypto.generate_private_key())
    world.to_store(world.cert(user="bob", key_pem=own_key))
    dest_dir = world.tmp_path / "out"
    args = users_args(world, users=[{"name": "bob", "client_key_path": "/home/bob/.kube/bob.key"}], dest_dir=str(dest_dir))
    failed, result = run_module(kubeconfig_render, args)
    assert not failed, result
    config = yaml.safe_load((dest_dir / "bob.kubeconfig").read_text())
    [user] = config["users"]
    assert user["user"]["client-key"] == "/home/bob/.kube/bob.key" and "client-key-data" not in user["user"]
    assert own_key not in json.dumps(result)
    failed, again = run_module(kubeconfig_render, args)
    assert not failed and not again["changed"]
    failed, result = run_module(kubeconfig_render, dict(args, users=[{"name": "bob", "client_key_path": "bob.key"}]))
    assert failed and "users[bob].client_key_path 'bob.key' must be an absolute path" in result["msg"]
    failed, result = run_module(kubeconfig_render, dict(args, users=[{"name": "bob"}]))
    assert failed and "no private key for user 'bob'" in result["msg"]


def test_users_clusters_limits_the_contexts(run_module, world):
    world.to_store(world.cert())
    clusters = world.args()["clusters"] + [{"name": "c2", "server": "https://127.0.0.1:6444", "ca_cert": str(world.tmp_path / "c2-ca.crt")}]
    dest_dir = world.tmp_path / "out"
    failed, result = run_module(kubeconfig_render, users_args(world, users=[{"name": "alice", "clusters": ["c1"]}], clusters=clusters,
                                                              dest_dir=str(dest_dir)))
    assert not failed, result
    assert [c["name"] for c in yaml.safe_load((dest_dir / "alice.kubeconfig").read_text())["clusters"]] == ["c1"]
    failed, result = run_module(kubeconfig_render, users_args(world, users=[{"name": "alice", "clusters": ["c9"]}], clusters=clusters))
    assert failed and "users[alice].clusters: c9 not in clusters" in result["msg"]


@pytest.mark.parametrize("name", ["..", "a/b", "a\\b", "tab\there"])
def test_a_user_name_that_cannot_be_a_file_name_is_refused_before_anything_is_written(run_module, world, name):
    """dest_dir holds <user>.kubeconfig: a user name follows the collection's one rule for names (_csr.segment_problem)."""
    dest_dir = world.tmp_path / "out"
    failed, result = run_module(kubeconfig_render, users_args(world, users=[{"name": name}], dest_dir=str(dest_dir)))
    assert failed and "users: %r cannot be a file name in dest_dir" % name in result["msg"], result["msg"]
    assert not dest_dir.exists()


def test_dest_dir_and_its_missing_parents_are_made_private(run_module, world):
    """The kubeconfigs hold private keys: every directory the module makes for them is 0700, whatever the umask;
    a directory that already existed keeps its mode."""
    world.to_store(world.cert())
    world.tmp_path.chmod(0o755)
    dest_dir = world.tmp_path / "home" / ".kubepki" / "kubeconfigs"
    old = os.umask(0o022)
    try:
        failed, result = run_module(kubeconfig_render, users_args(world, users=[{"name": "alice"}], dest_dir=str(dest_dir)))
    finally:
        os.umask(old)
    assert not failed, result
    for directory in (dest_dir, dest_dir.parent, dest_dir.parent.parent):
        assert (os.stat(directory).st_mode & 0o777) == 0o700, directory
    assert (os.stat(world.tmp_path).st_mode & 0o777) == 0o755


# ---------------------------------------------------------------- what a user's kubeconfig holds

def two_clusters(world, port2=6444):
    return world.args()["clusters"] + [{"name": "c2", "server": "https://127.0.0.1:%d" % port2, "ca_cert": str(world.tmp_path / "c2-ca.crt")}]


def contexts_of(dest):
    config = yaml.safe_load(dest.read_text())
    return [c["name"] for c in config["contexts"]], config


def cert_of(config, context):
    user = next(c["context"]["user"] for c in config["contexts"] if c["name"] == context)
    data = next(u["user"]["client-certificate-data"] for u in config["users"] if u["name"] == user)
    return base64.b64decode(data).decode()


@pytest.fixture
def rendered(run_module, world):
    """alice's kubeconfig for c1 and c2 (c2 known at a server of its own), written by a first run."""
    world.to_store(world.cert("c1"))
    world.to_store(world.cert("c2"))
    dest = world.tmp_path / "alice.kubeconfig"
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest), clusters=two_clusters(world, port2=7443)))
    assert not failed and result["changed"], result
    return dest


def test_a_run_for_fewer_clusters_keeps_the_others(run_module, world, rendered):
    """A run that names c1 only leaves the c2 context as it was: server and CA from the file, the certificate the
    store holds; nothing changes, and the result says what was kept."""
    before = rendered.read_text()
    for check in (False, True):
        failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), _ansible_check_mode=check))
        assert not failed, result
        assert rendered.read_text() == before
        assert contexts_of(rendered)[0] == ["alice@c1", "alice@c2"]
        assert result["changed"] is False
        assert [(k["name"], k["context"], k["server"], k["source"]) for k in result["kept"]] == [
            ("c2", "alice@c2", "https://127.0.0.1:7443", "store")]
        assert result["dropped"] == [] and [c["name"] for c in result["clusters"]] == ["c1"]


def test_a_kept_context_takes_the_newer_certificate_the_store_holds(run_module, world, rendered):
    newer = world.cert("c2", days=60)
    world.to_store(newer)
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), _ansible_diff=True))
    names, config = contexts_of(rendered)
    assert names == ["alice@c1", "alice@c2"] and cert_of(config, "alice@c2") == newer["certificate"]
    assert config["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert not failed and result["changed"] is True, result
    assert [(k["name"], k["serial"]) for k in result["kept"]] == [("c2", newer["serial"])]
    assert "PRIVATE KEY" not in json.dumps(result)


def test_a_context_whose_certificate_expired_is_dropped_with_a_note(run_module, world, rendered, monkeypatch):
    warned = []  # the run_module fixture replaces exit_json, which would carry the warnings: collect them here
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    with _store.open_store(world.uri, "") as store:
        store.delete_cert("default", "c2", "alice")
    world.to_store(world.cert("c2", days=-0.001))
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and result["changed"] is True
    assert contexts_of(rendered)[0] == ["alice@c1", "alice@c2"], "check mode writes nothing"
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert not failed and result["changed"] is True
    [dropped] = result["dropped"]
    assert (dropped["name"], dropped["context"]) == ("c2", "alice@c2") and "expired at" in dropped["reason"], dropped
    assert any("alice@c2" in warning and "expired at" in warning for warning in warned), warned
    assert contexts_of(rendered)[0] == ["alice@c1"] and result["kept"] == []
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert not failed and result["changed"] is False and result["dropped"] == []


def test_a_context_whose_certificate_no_longer_matches_the_key_is_dropped(run_module, world, rendered):
    """The key was rotated (and c1 renewed with it): c2's certificate is of the old key and is no use."""
    with _store.open_store(world.uri, "") as store:
        store.delete_key("default", "alice")
        world.key = store.ensure_key("default", "alice")[0]
    world.to_store(world.cert("c1", days=40))
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert not failed, result
    [dropped] = result["dropped"]
    assert dropped["name"] == "c2" and "does not match the stored private key" in dropped["reason"]
    assert contexts_of(rendered)[0] == ["alice@c1"]


def test_without_a_record_and_without_etcd_the_files_own_certificate_is_judged(run_module, world, rendered):
    """The store holds no certificate of c2 and no etcd is configured: the file's own is kept while it is valid and
    matches the key, and dropped once it has expired."""
    with _store.open_store(world.uri, "") as store:
        store.delete_cert("default", "c2", "alice")
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert contexts_of(rendered)[0] == ["alice@c1", "alice@c2"]
    assert not failed and result["changed"] is False, result
    assert [(k["name"], k["source"]) for k in result["kept"]] == [("c2", "kubeconfig")]
    config = yaml.safe_load(rendered.read_text())
    config["users"][1]["user"]["client-certificate-data"] = _crypto.b64(world.cert("c2", days=-0.001)["certificate"])
    rendered.write_text(yaml.safe_dump(config))
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert contexts_of(rendered)[0] == ["alice@c1"]
    assert not failed and result["changed"] is True, result
    [dropped] = result["dropped"]
    assert "expired at" in dropped["reason"] and "the kubeconfig's own" in dropped["reason"]


def test_contexts_keep_their_places_and_the_current_context(run_module, world, rendered):
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), current_context="alice@c2"))
    assert not failed and result["current_context"] == "alice@c2"
    only_c2 = [c for c in two_clusters(world, port2=7443) if c["name"] == "c2"]
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), clusters=only_c2))
    assert not failed and result["changed"] is False, result
    names, config = contexts_of(rendered)
    assert names == ["alice@c1", "alice@c2"] and config["current-context"] == "alice@c2"
    assert [k["name"] for k in result["kept"]] == ["c1"]


def test_a_context_not_written_by_this_module_is_dropped(run_module, world, rendered):
    config = yaml.safe_load(rendered.read_text())
    config["users"][1]["user"] = {"token": "t0ken"}
    rendered.write_text(yaml.safe_dump(config))
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert not failed and result["changed"] is True
    assert [(d["context"], d["reason"]) for d in result["dropped"]] == [
        ("alice@c2", "it is not a client-certificate context of the kind this module writes")]
    assert "t0ken" not in rendered.read_text()


def test_users_batch_keeps_the_clusters_not_listed_for_a_user(run_module, world):
    """users[].clusters (user_certificates renewing what is due) renders some clusters for a user: the others stay."""
    world.to_store(world.cert("c1"))
    world.to_store(world.cert("c2"))
    dest_dir = world.tmp_path / "out"
    args = users_args(world, users=[{"name": "alice"}], clusters=two_clusters(world), dest_dir=str(dest_dir))
    failed, result = run_module(kubeconfig_render, args)
    assert not failed, result
    failed, result = run_module(kubeconfig_render, dict(args, users=[{"name": "alice", "clusters": ["c1"]}]))
    assert not failed and result["changed"] is False, result
    assert [k["name"] for k in result["users"][0]["kept"]] == ["c2"]
    assert contexts_of(dest_dir / "alice.kubeconfig")[0] == ["alice@c1", "alice@c2"]


# ---------------------------------------------------------------- owner, group and mode of the files written

def ids(user, group):
    """``(uid, gid)`` of a user and a group of this host."""
    import grp  # pylint: disable=import-outside-toplevel
    import pwd  # pylint: disable=import-outside-toplevel
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


@needs_root
def test_owner_group_and_mode(run_module, world, monkeypatch):
    world.to_store(world.cert())
    dest = world.tmp_path / "config"
    uid, gid = ids("nobody", "nogroup")
    args = world.args(dest=str(dest), owner="nobody", group="nogroup", mode="0640")
    failed, result = run_module(kubeconfig_render, dict(args, _ansible_check_mode=True))
    assert not failed and result["changed"] and not dest.exists()

    # the attributes are the temporary file's before it is renamed: the kubeconfig never exists without them
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(os.stat(src))
        real_replace(src, dst)

    monkeypatch.setattr(render.os, "replace", replace)
    failed, result = run_module(kubeconfig_render, args)
    assert not failed and result["changed"], result
    [(temp)] = seen
    assert (temp.st_uid, temp.st_gid, temp.st_mode & 0o7777) == (uid, gid, 0o640)
    done = os.stat(dest)
    assert (done.st_uid, done.st_gid, done.st_mode & 0o7777) == (uid, gid, 0o640)

    failed, result = run_module(kubeconfig_render, args)
    assert not failed and result["changed"] is False
    failed, result = run_module(kubeconfig_render, dict(args, mode="u=rw,g=r"))
    assert not failed and result["changed"] is False, "u=rw,g=r is 0640"

    # only the mode differs: changed, with the attributes in the diff, in check mode too (and nothing touched then)
    failed, result = run_module(kubeconfig_render, dict(args, mode="0600", _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and result["changed"] is True
    assert result["diff"] == {"before": {"mode": "0640", "path": str(dest)}, "after": {"mode": "0600", "path": str(dest)}}
    assert os.stat(dest).st_mode & 0o7777 == 0o640
    failed, result = run_module(kubeconfig_render, dict(args, mode="0600"))
    assert not failed and result["changed"] is True
    assert (os.stat(dest).st_uid, os.stat(dest).st_mode & 0o7777) == (uid, 0o600)

    # only the owner differs
    failed, result = run_module(kubeconfig_render, dict(args, owner="root", mode="0600", _ansible_diff=True))
    assert not failed and result["changed"] is True
    assert result["diff"]["before"] == {"owner": "nobody", "path": str(dest)} and result["diff"]["after"]["owner"] == "root"
    assert os.stat(dest).st_uid == 0

    # content and attributes change together: both in the diff
    world.to_store(world.cert(days=50))
    failed, result = run_module(kubeconfig_render, dict(args, _ansible_diff=True))
    assert not failed and result["changed"] and isinstance(result["diff"], list) and len(result["diff"]) == 2
    assert "<redacted>" in result["diff"][0]["after"] and result["diff"][1]["after"]["owner"] == "nobody"


@needs_root
def test_owner_group_and_mode_for_dest_dir(run_module, world):
    world.to_store(world.cert())
    dest_dir = world.tmp_path / "out"
    args = users_args(world, users=[{"name": "alice"}], dest_dir=str(dest_dir), owner="65534", group="65534", mode=0o640)
    failed, result = run_module(kubeconfig_render, args)
    assert not failed and result["changed"], result
    done = os.stat(dest_dir / "alice.kubeconfig")
    assert (done.st_uid, done.st_gid, done.st_mode & 0o7777) == (65534, 65534, 0o640)
    failed, result = run_module(kubeconfig_render, dict(args, mode="g-r", _ansible_diff=True))
    assert not failed and result["changed"] and result["diff"] == [
        {"before": {"mode": "0640", "path": str(dest_dir / "alice.kubeconfig")}, "after": {"mode": "0600", "path": str(dest_dir / "alice.kubeconfig")}}]


@pytest.mark.parametrize("extra, message", [
    ({"mode": "0644"}, "mode '0644' (0644) would give others"),
    ({"mode": "o+r"}, "mode 'o+r' (0604) would give others"),
    ({"mode": "a+r"}, "mode 'a+r' (0644) would give others"),
    ({"mode": 0o666}, "mode 438 (0666) would give others"),
    ({"mode": "u=rw,q=r"}, "mode 'u=rw,q=r' is neither an octal mode"),
    ({"mode": "17777"}, "mode '17777' is not a file mode"),
    ({"owner": "no-such-user-here"}, "owner 'no-such-user-here' is not a user on this host"),
    ({"group": "no-such-group-here"}, "group 'no-such-group-here' is not a group on this host"),
])
def test_bad_file_options_are_refused_naming_the_option(run_module, world, extra, message):
    world.to_store(world.cert())
    dest = world.tmp_path / "config"
    failed, result = run_module(kubeconfig_render, world.args(dest=str(dest), **extra))
    assert failed and message in result["msg"], result["msg"]
    assert not dest.exists()


def test_file_options_need_a_file(run_module, world):
    world.to_store(world.cert())
    failed, result = run_module(kubeconfig_render, world.args(mode="0640"))
    assert failed and result["msg"] == "mode: only for the kubeconfig files written; give dest or dest_dir"


@pytest.mark.parametrize("mode, expected", [
    ("u=rw,g=r", 0o640), ("g+r", 0o640), ("u+x", 0o700), ("g=u", 0o660), ("u-w", 0o400), ("=r", None), ("+r", None),
    ("g+rX", 0o640), ("u+x,g+X", 0o710), ("ug=rw,o=", 0o660), ("a-rwx,u=rw", 0o600), ("u=rwx,g=rx,o=", 0o750),
    ("g+s", 0o2600), ("u+s", 0o4600), ("o+t", 0o1600), ("go-rwx", 0o600), ("u=r,u+w", 0o600), ("g=u-w", 0o640), ("o=", 0o600),
])
def test_symbolic_modes_as_ansible_reads_them(mode, expected):
    """Symbolic modes read as chmod and Ansible's file options read them, applied to a new 0600 file under umask 022
    (a clause without u, g, o or a keeps the umask's bits); None: others would get access, which is refused."""
    umask = os.umask(0o022)
    try:
        if expected is None:
            with pytest.raises(Exception, match="would give others"):
                render.file_mode(mode)
        else:
            assert render.file_mode(mode) == expected, "%s: %04o" % (mode, render.file_mode(mode))
    finally:
        os.umask(umask)


def test_a_hand_edited_file_is_judged_not_echoed(run_module, world, rendered, monkeypatch):
    """Odd entries of a file edited by hand are dropped with a reason, never a crash; a server URL with credentials
    in it is not repeated in the warning or the result."""
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    config = yaml.safe_load(rendered.read_text())
    config["clusters"][1]["cluster"]["server"] = "https://admin:s3cret@127.0.0.1:7443"
    config["contexts"].append({"name": ["odd"], "context": {"cluster": ["c3"], "user": "alice@c2"}})
    rendered.write_text(yaml.safe_dump(config))
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered)))
    assert not failed, result
    assert contexts_of(rendered)[0] == ["alice@c1"]
    assert [d["reason"] for d in result["dropped"]] == [
        "its server URL must not carry a query, a fragment or credentials", "it has no name or no cluster"]
    assert "s3cret" not in json.dumps(result) and "s3cret" not in " ".join(warned)


def test_current_context_may_name_a_kept_context(run_module, world, rendered):
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), current_context="alice@c2"))
    assert not failed and result["changed"] is True and result["current_context"] == "alice@c2", result
    assert contexts_of(rendered)[1]["current-context"] == "alice@c2"
    failed, result = run_module(kubeconfig_render, world.args(dest=str(rendered), current_context="nope"))
    assert failed and "current_context 'nope' is none of the rendered contexts (alice@c1, alice@c2)" in result["msg"]
