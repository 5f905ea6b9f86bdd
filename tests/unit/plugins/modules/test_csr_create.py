"""Unit tests for the csr_create module against an in-memory API (csr_fake_api.py)."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.modules import csr_create


def users(*names):
    return [{"name": n, "groups": ["dev"]} for n in names]


def test_creates_keys_and_csrs_then_rerun_is_unchanged(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("alice", "bob")))
    assert not failed, result
    assert result["changed"]
    assert [c["action"] for c in result["csrs"]] == ["created", "created"]
    assert all(c["key_created"] for c in result["csrs"])
    assert set(cluster.objects) == {c["csr_name"] for c in result["csrs"]}
    obj = cluster.objects[result["csrs"][0]["csr_name"]]
    assert "expirationSeconds" not in obj["spec"]
    assert obj["spec"]["usages"] == ["digital signature", "client auth"]
    assert obj["metadata"]["labels"][_csr.LABEL_USER] == "alice"
    assert "PRIVATE" not in str(result)
    failed, again = run_module(csr_create, dict(base, users=users("alice", "bob")))
    assert not failed and not again["changed"]
    assert [c["action"] for c in again["csrs"]] == ["adopted", "adopted"]
    assert [c["csr_name"] for c in again["csrs"]] == [c["csr_name"] for c in result["csrs"]]


def test_check_mode_creates_nothing(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("carol"), _ansible_check_mode=True))
    assert not failed and result["changed"]
    assert result["csrs"][0]["key_created"] and result["csrs"][0]["csr_name"] is None
    assert cluster.objects == {}
    with _store.open_store(base["store_uri"]) as store:
        assert store.get_key("default", "carol") is None


def test_known_certificate_keeps_rerun_unchanged_after_cleaner(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("dave"), expiration_seconds=3600))
    assert not failed
    name = result["csrs"][0]["csr_name"]
    cluster.issue(cluster.objects[name])
    from ansible_collections.kubepki.certs.plugins.modules import csr_wait
    failed, waited = run_module(csr_wait, {"host": base["host"], "cluster": "c1", "names": [name]})
    assert not failed, waited
    record = {k: waited["certificates"][0][k] for k in _record.FIELDS}
    with _store.open_store(base["store_uri"]) as store:
        store.put_cert(record)
    del cluster.objects[name]  # the cleaner
    failed, again = run_module(csr_create, dict(base, users=users("dave"), expiration_seconds=3600))
    assert not failed and not again["changed"]
    assert again["csrs"][0]["action"] == "known" and again["csrs"][0]["csr_name"] == name
    assert cluster.objects == {}
    # renewal within renew_before gets a new name
    failed, renewed = run_module(csr_create, dict(base, users=users("dave"), expiration_seconds=3600, renew_before="2h"))
    assert not failed and renewed["changed"]
    assert renewed["csrs"][0]["csr_name"] != name
    assert renewed["csrs"][0]["renews_serial"] == record["serial"]
    # rotate_key: a renewal with a new key
    del cluster.objects[renewed["csrs"][0]["csr_name"]]
    failed, rotated = run_module(csr_create, dict(base, users=users("dave"), expiration_seconds=3600, renew_before="2h", rotate_key=True))
    assert not failed and rotated["csrs"][0]["key_created"]
    assert rotated["csrs"][0]["public_key_sha256"] != record["public_key_sha256"]


def test_different_spec_needs_force(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("erin")))
    name = result["csrs"][0]["csr_name"]
    cluster.objects[name]["spec"]["usages"] = ["client auth"]
    failed, clash = run_module(csr_create, dict(base, users=users("erin")))
    assert failed and name in clash["msg"] and "different spec" in clash["msg"] and "force" in clash["msg"]
    failed, forced = run_module(csr_create, dict(base, users=users("erin"), force=True))
    assert not failed and forced["csrs"][0]["action"] == "replaced"
    assert cluster.objects[name]["spec"]["usages"] == ["digital signature", "client auth"]


def test_user_brings_csr(run_module, cluster, base):
    key = _crypto.generate_private_key("rsa-2048")
    pem = _crypto.build_csr_pem(key, "frank", ["ops"])
    failed, result = run_module(csr_create, dict(base, users=[{"name": "frank", "csr": pem}]))
    assert not failed, result
    entry = result["csrs"][0]
    assert entry["public_key_sha256"] == _crypto.public_key_sha256(key) and not entry["key_created"]
    obj = cluster.objects[entry["csr_name"]]
    assert "key encipherment" in obj["spec"]["usages"]
    with _store.open_store(base["store_uri"]) as store:
        assert store.get_key("default", "frank") is None


def test_state_absent_deletes_the_users_csrs(run_module, cluster, base):
    run_module(csr_create, dict(base, users=users("gina", "hank")))
    failed, result = run_module(csr_create, dict(base, users=[{"name": "gina"}], state="absent"))
    assert not failed and result["changed"]
    assert len(result["csrs"][0]["deleted"]) == 1
    assert len(cluster.objects) == 1
    failed, again = run_module(csr_create, dict(base, users=[{"name": "gina"}], state="absent"))
    assert not failed and not again["changed"]


def test_per_cluster_keys_differ(run_module, cluster, base):
    _f, one = run_module(csr_create, dict(base, users=users("ivy"), key_scope="per_cluster"))
    _f, two = run_module(csr_create, dict(base, users=users("ivy"), key_scope="per_cluster", cluster="c2"))
    assert one["csrs"][0]["public_key_sha256"] != two["csrs"][0]["public_key_sha256"]


def test_diff_mode_shows_no_request_bytes(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("jack"), _ansible_diff=True))
    assert not failed and result["diff"]["after"]["csrs"][0]["name"] == result["csrs"][0]["csr_name"]
    assert "request" not in str(result["diff"])


BAD = [
    ({"users": [{"name": ""}]}, "users[0].name"),
    ({"users": [{"name": "a\x07b"}]}, "control characters"),
    ({"users": [{"name": "x"}, {"name": "x"}]}, "users[1].name 'x' is listed twice"),
    ({"users": [{"name": "x", "groups": ["a,b"]}]}, "group 'a,b' must not contain a comma"),
    ({"users": [{"name": "x", "groups": [""]}]}, "users[0] (x).groups: group '' must not be empty"),
    ({"users": [{"name": "x", "groups": ["system:masters"]}]}, "system:masters is refused"),
    ({"signer_name": "example"}, "signer_name 'example' is not valid"),
    ({"signer_name": "kubernetes.io/legacy-unknown"}, "legacy signerName"),
    ({"signer_name": "Example.COM/x"}, "signer_name 'Example.COM/x'"),
    ({"usages": ["client auth", "flying"]}, "usages: unsupported usage 'flying'"),
    ({"usages": ["server auth", "client auth"]}, "usages: invalid usage for client certificate: server auth"),
    ({"usages": ["digital signature"]}, "usages: missing required usage"),
    ({"expiration_seconds": 599}, "expiration_seconds 599 is too short"),
    ({"users": [{"name": "x", "expiration_seconds": 60}]}, "users[0] (x).expiration_seconds 60"),
    ({"key_type": "dsa-1024"}, "key_type"),
    ({"users": [{"name": "x", "csr": "hello"}]}, "users[0] (x).csr is not a PEM CERTIFICATE REQUEST"),
    ({"users": [{"name": "x", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}]},
     "users[0] (x).csr cannot be parsed"),
    ({"renew_before": "soon"}, "renew_before: 'soon' is not a duration"),
    ({"users": [{"name": "x", "ip_addresses": ["10.0.0.300"]}]}, "ip_addresses: '10.0.0.300' is not an IP address"),
    ({"signer_name": "kubernetes.io/kube-apiserver-client-kubelet"}, "must have the form system:node:<node name>"),
    ({"signer_name": "kubernetes.io/kubelet-serving", "users": [{"name": "system:node:n1", "groups": ["system:nodes"]}]},
     "needs at least one of dns_names or ip_addresses"),
    ({"store_uri": "redis://x"}, "store_uri 'redis://x' has an unsupported scheme"),
    ({"cluster": ""}, "cluster '' must not be empty"),
    ({"users": [{"name": "x", "groups": ["dev", "dev"]}]}, "lists a group twice"),
]


@pytest.mark.parametrize("override,fragment", BAD, ids=[f for _o, f in BAD])
def test_bad_input_names_the_culprit(run_module, cluster, base, override, fragment):
    args = dict(base, users=[{"name": "x", "groups": ["dev"]}])
    args.update(override)
    failed, result = run_module(csr_create, args)
    assert failed, result
    assert fragment in result["msg"], result["msg"]
    assert cluster.objects == {}


def test_user_csr_with_other_cn_is_named(run_module, cluster, base):
    pem = _crypto.build_csr_pem(_crypto.generate_private_key(), "mallory", [])
    failed, result = run_module(csr_create, dict(base, users=[{"name": "x", "csr": pem}]))
    assert failed and "users[0] (x).csr has common name 'mallory'" in result["msg"]


def test_missing_kubeconfig_is_named(run_module, monkeypatch, base):
    from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
    _kube._CLIENTS.clear()
    args = dict(base, users=users("x"), kubeconfig="/nonexistent/kubeconfig")
    args.pop("host")
    failed, result = run_module(csr_create, args)
    assert failed and "kubeconfig" in result["msg"]


def test_batch_finds_unlabelled_csrs_through_the_409(run_module, cluster, base):
    failed, result = run_module(csr_create, dict(base, users=users("kim", "lee")))
    assert not failed
    for obj in cluster.objects.values():
        obj["metadata"]["labels"] = {}  # someone stripped our labels: the batch list no longer sees them
    failed, again = run_module(csr_create, dict(base, users=users("kim", "lee")))
    assert not failed, again
    assert [c["action"] for c in again["csrs"]] == ["adopted", "adopted"] and not again["changed"]
    name = result["csrs"][1]["csr_name"]
    cluster.objects[name]["spec"]["signerName"] = "example.com/other"
    failed, clash = run_module(csr_create, dict(base, users=users("kim", "lee")))
    assert failed and "CertificateSigningRequest %s already exists with a different spec" % name in clash["msg"]
    assert "signerName" in clash["msg"]


def test_system_groups_are_warned_about(run_module, cluster, base, monkeypatch):
    from ansible.module_utils import basic
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    failed, _result = run_module(csr_create, dict(base, users=[{"name": "svc", "groups": ["system:monitoring"]}]))
    assert not failed
    assert any("users[0] (svc) asks for the system group system:monitoring" in w for w in warned), warned


def test_a_rotation_that_lost_the_race_takes_the_winners_key(run_module, cluster, base, monkeypatch):
    """Two runs rotate the same key: the second to replace finds the key changed since it read it, does not
    rotate again, and requests its certificate with the winner's key. The other run is played here by a
    second store connection that rotates just before this run's replace (a real store, a forced interleaving)."""
    failed, result = run_module(csr_create, dict(base, users=users("erin"), expiration_seconds=3600))
    assert not failed
    name = result["csrs"][0]["csr_name"]
    cluster.issue(cluster.objects[name])
    from ansible_collections.kubepki.certs.plugins.modules import csr_wait
    failed, waited = run_module(csr_wait, {"host": base["host"], "cluster": "c1", "names": [name]})
    with _store.open_store(base["store_uri"]) as store:
        store.put_cert({k: waited["certificates"][0][k] for k in _record.FIELDS})
    winner = {}
    real_replace = _store.SqliteStore.replace_key

    def other_run_first(self, *args, **kwargs):
        if not winner:
            winner["started"] = True
            with _store.open_store(base["store_uri"]) as other:
                winner.update(real_replace(other, "default", "erin", ""))
        return real_replace(self, *args, **kwargs)

    monkeypatch.setattr(_store.SqliteStore, "replace_key", other_run_first)
    failed, rotated = run_module(csr_create, dict(base, users=users("erin"), expiration_seconds=3600, renew_before="2h", rotate_key=True))
    assert not failed, rotated
    assert rotated["csrs"][0]["public_key_sha256"] == winner["public_key_sha256"]
    with _store.open_store(base["store_uri"]) as store:
        assert store.get_key("default", "erin")["public_key_sha256"] == winner["public_key_sha256"]
