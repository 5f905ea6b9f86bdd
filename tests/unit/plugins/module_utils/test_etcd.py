"""EtcdTransport against a real etcd (plain and TLS with client certificates); etcd is never mocked."""

import json
import uuid

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


@pytest.fixture
def prefix():
    return "/kubepki-test-%s" % uuid.uuid4().hex[:8]


@pytest.fixture
def transport(kp_etcd, prefix):
    item = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    yield item
    item.close()


def record(user="alice", cluster="c1", scope="default", serial="1a"):
    return {"scope": scope, "cluster": cluster, "user": user, "serial": serial, "certificate": "PEM"}


def test_put_is_compare_before_put(transport, prefix):
    changed, key = transport.put_record(record())
    assert (changed, key) == (True, prefix + "/certs/default/c1/alice")
    assert transport.put_record(record()) == (False, key)
    value, revision = transport.get(key)
    assert value == json.dumps(record(), sort_keys=True, separators=(",", ":")).encode()
    assert revision > 0
    assert transport.get_record("default", "c1", "alice") == record()
    assert transport.put_record(record(serial="2b"))[0] is True
    assert transport.get_record("default", "c1", "alice")["serial"] == "2b"


def test_check_mode_writes_nothing(transport):
    assert transport.put_record(record(user="bob"), check_mode=True)[0] is True
    assert transport.get_record("default", "c1", "bob") is None
    transport.put_record(record(user="bob"))
    assert transport.delete_record("default", "c1", "bob", check_mode=True)[0] is True
    assert transport.get_record("default", "c1", "bob") is not None


def test_delete(transport):
    transport.put_record(record(user="carol"))
    assert transport.delete_record("default", "c1", "carol")[0] is True
    assert transport.delete_record("default", "c1", "carol")[0] is False
    assert transport.get_record("default", "c1", "carol") is None


def test_list_records(transport, prefix):
    for user, cluster, scope in (("a", "c1", "s1"), ("b", "c2", "s1"), ("c", "c1", "s2")):
        transport.put_record(record(user=user, cluster=cluster, scope=scope))
    transport.put_if_changed(prefix + "/certs/s1/c1/junk", "not json")
    assert [key for key, _r in transport.list_records()] == [
        prefix + "/certs/s1/c1/a", prefix + "/certs/s1/c2/b", prefix + "/certs/s2/c1/c"]
    assert [r["user"] for _k, r in transport.list_records("s1")] == ["a", "b"]
    assert [r["user"] for _k, r in transport.list_records("s1", "c2")] == ["b"]


def test_concurrent_writer_is_detected(transport, kp_etcd, prefix):
    transport.put_record(record(user="dave"))
    key = prefix + "/certs/default/c1/dave"
    stale = transport.get(key)
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    other.put_record(record(user="dave", serial="ff"))
    other.close()
    transport.get = lambda _key: stale
    with pytest.raises(KubePkiError, match="was changed by another writer .* nothing was written"):
        transport.put_record(record(user="dave", serial="ee"))
    with pytest.raises(KubePkiError, match="was changed by another writer"):
        transport.delete_record("default", "c1", "dave")
    del transport.get
    assert transport.get_record("default", "c1", "dave")["serial"] == "ff"


def test_creation_race_is_detected(transport, prefix):
    """The key appeared after we read 'absent': the create-revision guard stops the put."""
    transport.put_record(record(user="erin"))
    transport.get = lambda _key: (None, 0)
    with pytest.raises(KubePkiError, match="changed by another writer"):
        transport.put_record(record(user="erin", serial="99"))


def test_unreachable_endpoints_named_then_failover(kp_etcd, prefix):
    dead = ["http://127.0.0.1:9", "http://127.0.0.1:10"]
    with pytest.raises(KubePkiError) as caught:
        _etcd.EtcdTransport(dead, prefix=prefix, timeout=1).get_record("default", "c1", "alice")
    assert "etcd_endpoints: no etcd endpoint answered" in caught.value.msg
    assert "127.0.0.1:9" in caught.value.msg and "127.0.0.1:10" in caught.value.msg
    working = _etcd.EtcdTransport(dead + [kp_etcd.url], prefix=prefix, timeout=1)
    assert working.put_record(record())[0] is True
    assert working.endpoint == kp_etcd.url


def test_tls_with_client_certificate(kp_etcd_tls, prefix, monkeypatch):
    # REQUESTS_CA_BUNDLE points at the system bundle here; it must not replace etcd_ca_cert.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    server = kp_etcd_tls
    good = _etcd.EtcdTransport([server.url], prefix=prefix, ca_cert=server.ca_cert,
                               client_cert=server.client_cert, client_key=server.client_key)
    assert good.put_record(record())[0] is True
    assert good.put_record(record())[0] is False
    with pytest.raises(KubePkiError, match="no etcd endpoint answered .*CERTIFICATE_VERIFY_FAILED"):
        _etcd.EtcdTransport([server.url], prefix=prefix, client_cert=server.client_cert,
                            client_key=server.client_key).get_record("default", "c1", "alice")
    with pytest.raises(KubePkiError, match="no etcd endpoint answered"):
        _etcd.EtcdTransport([server.url], prefix=prefix, ca_cert=server.ca_cert).get_record("default", "c1", "alice")


@pytest.mark.parametrize("kwargs, message", [
    ({"endpoints": []}, "etcd_endpoints: give at least one etcd URL"),
    ({"endpoints": ["127.0.0.1:2379"]}, "etcd_endpoints: '127.0.0.1:2379' is not an http:// or https:// URL"),
    ({"endpoints": ["http://127.0.0.1:2379/v3"]}, "must be scheme://host:port only"),
    ({"endpoints": ["http://127.0.0.1:notaport"]}, "has an invalid port"),
    ({"prefix": "kubepki"}, "etcd_prefix must start with '/'"),
    ({"ca_cert": "/nonexistent/ca.crt"}, "etcd_ca_cert: /nonexistent/ca.crt is not a readable file"),
    ({"client_cert": __file__}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"username": "root"}, "etcd_username and etcd_password must be given together"),
    ({"timeout": 0}, "etcd_timeout must be positive"),
])
def test_bad_options(kwargs, message):
    options = dict(kwargs)
    endpoints = options.pop("endpoints", ["http://127.0.0.1:2379"])
    with pytest.raises(KubePkiError, match=message):
        _etcd.EtcdTransport(endpoints, **options)


@pytest.mark.parametrize("parts, message", [
    (("default", "c/1", "alice"), "cluster 'c/1' must not contain '/'"),
    (("default", "c1", ""), "user must be a non-empty string"),
    ((None, "c1", "alice"), "scope must be a non-empty string"),
])
def test_key_parts_are_checked(transport, parts, message):
    with pytest.raises(KubePkiError, match=message):
        transport.key_for(*parts)


def test_damaged_record(transport, prefix):
    transport.put_if_changed(prefix + "/certs/default/c1/zed", "{not json")
    with pytest.raises(KubePkiError, match="does not hold a JSON certificate record"):
        transport.get_record("default", "c1", "zed")


def test_endpoints_from_environment(monkeypatch):
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", "http://a:1, http://b:2,")
    assert _etcd.endpoints_from_params({"etcd_endpoints": None}) == ["http://a:1", "http://b:2"]
    assert _etcd.endpoints_from_params({"etcd_endpoints": ["http://c:3"]}) == ["http://c:3"]
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS")
    assert _etcd.transport_from_params({"etcd_endpoints": None}) is None


def test_username_password_authentication(kp_etcd_tls, tmp_path):
    """etcd user/password auth: a failing login is reported naming etcd_username (auth is not enabled on the test
    server, so etcd answers the authenticate call with an error)."""
    server = kp_etcd_tls
    item = _etcd.EtcdTransport([server.url], ca_cert=server.ca_cert, client_cert=server.client_cert,
                               client_key=server.client_key, username="root", password="nope")
    with pytest.raises(KubePkiError, match="etcd_username: etcd at .* refused the credentials of 'root'"):
        item.get_record("default", "c1", "alice")


def test_batch_put_writes_only_what_changed_in_few_transactions(transport, prefix, monkeypatch):
    transport.put_record(record(user="u1"))
    batch = [record(user="u%d" % i) for i in range(150)] + [record(user="v1", cluster="c2")]
    posts = []
    real_post = transport._post
    monkeypatch.setattr(transport, "_post", lambda path, payload: posts.append(path) or real_post(path, payload))
    assert [changed for changed, _key in transport.put_records(batch, check_mode=True)] == [i != 1 for i in range(150)] + [True]
    assert transport.get_record("default", "c1", "u2") is None
    posts.clear()
    outcome = transport.put_records(batch)
    assert [changed for changed, _key in outcome] == [i != 1 for i in range(150)] + [True]
    # one range read per cluster prefix, then 150 puts in ceil(150 / TXN_CHUNK) transactions
    assert posts.count("/kv/range") == 2
    assert posts.count("/kv/txn") == -(-150 // _etcd.TXN_CHUNK)
    assert transport.get_record("default", "c1", "u149")["user"] == "u149"
    assert all(changed is False for changed, _key in transport.put_records(batch))


def test_batch_put_refuses_to_overwrite_a_concurrent_writer(transport, kp_etcd, prefix, monkeypatch):
    transport.put_record(record(user="w1"))
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    real_range = transport.range_with_revisions

    def read_then_someone_writes(key_prefix):
        seen = real_range(key_prefix)
        other.put_record(record(user="w1", serial="from-the-other-writer"))
        return seen

    monkeypatch.setattr(transport, "range_with_revisions", read_then_someone_writes)
    with pytest.raises(KubePkiError, match="changed by another writer"):
        transport.put_records([record(user="w1", serial="mine"), record(user="w2", serial="mine")])
    other.close()
    assert transport.get_record("default", "c1", "w1")["serial"] == "from-the-other-writer"
    assert transport.get_record("default", "c1", "w2") is None
