"""EtcdTransport against a real etcd (plain and TLS with client certificates); etcd is never mocked."""

import json
import re
import threading
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


def dated(user="alice", serial="1a", not_before="2025-01-01T00:00:00Z", not_after="2026-01-01T00:00:00Z", cluster="c1"):
    """A record with validity times (the form cert_to_etcd writes; the PEM is a stand-in, the transport never parses it)."""
    return dict(record(user=user, cluster=cluster, serial=serial), certificate="PEM-" + serial, not_before=not_before, not_after=not_after)


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
    assert [changed for changed, _key, _action in transport.put_records(batch, check_mode=True)] == [i != 1 for i in range(150)] + [True]
    assert transport.get_record("default", "c1", "u2") is None
    posts.clear()
    outcome = transport.put_records(batch)
    assert [changed for changed, _key, _action in outcome] == [i != 1 for i in range(150)] + [True]
    assert [action for _changed, _key, action in outcome][:3] == ["created", "unchanged", "created"]
    # one range read per cluster prefix, then 150 puts in ceil(150 / TXN_CHUNK) transactions
    assert posts.count("/kv/range") == 2
    assert posts.count("/kv/txn") == -(-150 // _etcd.TXN_CHUNK)
    assert transport.get_record("default", "c1", "u149")["user"] == "u149"
    assert all(changed is False for changed, _key, _action in transport.put_records(batch))


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


# ---------------------------------------------------------------- concurrent identical runs, older over newer


def test_identical_concurrent_runs_both_succeed(kp_etcd):
    """Two writers put the same batch at the same moment, again and again: both always succeed, each key is reported
    changed by exactly one of them, and the lost-transaction counter shows the race really happened."""
    rounds, lost = 25, 0
    for round_number in range(rounds):
        if round_number >= 6 and lost > 0:
            break  # enough: they raced
        prefix = "/race-%d-%s" % (round_number, uuid.uuid4().hex[:6])
        batch = [dated(user="u%d" % i, cluster="c%d" % (i % 3)) for i in range(12)]
        writers = [_etcd.EtcdTransport([kp_etcd.url], prefix=prefix) for _writer in range(2)]
        for writer in writers:
            writer.get_record("default", "c0", "warm-up")  # connected before the start line
        start, outcomes, errors = threading.Barrier(2), [None, None], []

        def work(index):
            start.wait()
            try:
                outcomes[index] = writers[index].put_records(batch)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for first, second in zip(*outcomes):
            assert first[1] == second[1]
            assert sorted([first[2], second[2]]) == ["created", "unchanged"], (first, second)
        lost += sum(writer.lost_transactions for writer in writers)
        stored = dict(writers[0].list_records())
        assert len(stored) == len(batch)
        for writer in writers:
            writer.close()
    assert lost > 0, "the two writers never raced: the test proved nothing"


def interleave(monkeypatch, transport, kp_etcd, prefix, value_of_the_other):
    """Between ``transport``'s read and its transaction another writer (a second real client) stores
    ``value_of_the_other`` under each key read, once."""
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    real_get = transport.get
    done = set()

    def read_then_someone_writes(key):
        seen = real_get(key)
        if key not in done:
            done.add(key)
            other.put_if_changed(key, value_of_the_other)
        return seen

    monkeypatch.setattr(transport, "get", read_then_someone_writes)
    return other


def test_lost_race_to_an_identical_value_is_unchanged(transport, kp_etcd, prefix, monkeypatch):
    mine = dated(user="fay")
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _etcd.record_value(mine))
    assert transport.put_records([mine]) == [(False, prefix + "/certs/default/c1/fay", "unchanged")]
    assert transport.lost_transactions == 1
    other.close()


def test_lost_race_to_a_newer_certificate_keeps_it(transport, kp_etcd, prefix, monkeypatch):
    newer = dated(user="gus", serial="2b", not_before="2025-06-01T00:00:00Z", not_after="2026-06-01T00:00:00Z")
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _etcd.record_value(newer))
    assert transport.put_records([dated(user="gus")])[0][2] == "kept_newer"
    assert transport.lost_transactions == 1
    assert transport.get_record("default", "c1", "gus")["serial"] == "2b"
    other.close()


def test_lost_race_to_an_older_certificate_writes_ours(transport, kp_etcd, prefix, monkeypatch):
    older = dated(user="hal", serial="0a", not_before="2024-06-01T00:00:00Z", not_after="2025-06-01T00:00:00Z")
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _etcd.record_value(older))
    assert transport.put_records([dated(user="hal")])[0][2] == "updated"  # over the older record the other writer left
    assert transport.lost_transactions == 1
    assert transport.get_record("default", "c1", "hal")["serial"] == "1a"
    other.close()


def test_older_certificate_never_overwrites_a_newer_one(transport):
    current = dated(user="ida", serial="2b", not_before="2025-06-01T00:00:00Z", not_after="2026-06-01T00:00:00Z")
    assert transport.put_records([current])[0][2] == "created"
    older = dated(user="ida", serial="1a", not_before="2025-01-01T00:00:00Z", not_after="2027-01-01T00:00:00Z")
    assert transport.put_records([older], check_mode=True) == [(False, transport.key_for("default", "c1", "ida"), "kept_newer")]
    assert transport.put_records([older])[0][:1] == (False,)
    assert transport.get_record("default", "c1", "ida")["serial"] == "2b"
    # same not_before: the later not_after is newer
    longer = dated(user="ida", serial="3c", not_before="2025-06-01T00:00:00Z", not_after="2026-07-01T00:00:00Z")
    assert transport.put_records([longer])[0][2] == "updated"
    shorter = dated(user="ida", serial="4d", not_before="2025-06-01T00:00:00Z", not_after="2026-06-15T00:00:00Z")
    assert transport.put_records([shorter])[0][2] == "kept_newer"
    # another certificate exactly as new: the stored one stays
    twin = dated(user="ida", serial="5e", not_before="2025-06-01T00:00:00Z", not_after="2026-07-01T00:00:00Z")
    assert transport.put_records([twin])[0][2] == "kept_equal"
    # the same certificate with other metadata is refreshed
    assert transport.put_records([dict(longer, csr_name="renamed")])[0][2] == "updated"
    assert transport.get_record("default", "c1", "ida")["serial"] == "3c"


def test_validity_is_compared_as_times_not_text(transport):
    """10:00+02:00 is 08:00Z: earlier than 09:00Z although it sorts later as text."""
    transport.put_records([dated(user="jo", serial="aa", not_before="2025-01-01T10:00:00+02:00")])
    assert transport.put_records([dated(user="jo", serial="bb", not_before="2025-01-01T09:00:00Z")])[0][2] == "updated"
    assert transport.get_record("default", "c1", "jo")["serial"] == "bb"


def test_deleting_what_a_concurrent_run_deleted_is_unchanged(transport, kp_etcd, prefix, monkeypatch):
    transport.put_records([dated(user="kim")])
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    real_get = transport.get

    def read_then_someone_deletes(key):
        seen = real_get(key)
        other.delete_if_present(key)
        return seen

    monkeypatch.setattr(transport, "get", read_then_someone_deletes)
    assert transport.delete_records([("default", "c1", "kim")]) == [(False, prefix + "/certs/default/c1/kim", "unchanged")]
    assert transport.lost_transactions == 1
    other.close()


def test_a_failure_mid_batch_names_what_was_written(transport, kp_etcd, prefix, monkeypatch):
    """Batches go in transactions of TXN_CHUNK keys: when a later one cannot be written (here a concurrent writer
    leaves a value that is no dated record), the keys already written are named and stay written."""
    size = _etcd.TXN_CHUNK + 3
    batch = [dated(user="m%03d" % i) for i in range(size)]
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    real_range = transport.range_with_revisions
    victim = transport.key_for("default", "c1", "m%03d" % (size - 1))

    def read_then_someone_writes(key_prefix):
        seen = real_range(key_prefix)
        other.put_if_changed(victim, "not a record")
        return seen

    monkeypatch.setattr(transport, "range_with_revisions", read_then_someone_writes)
    with pytest.raises(KubePkiError) as caught:
        transport.put_records(batch)
    assert "etcd key %s was changed by another writer" % victim in caught.value.msg
    assert "%d other key(s) of this batch were written before" % _etcd.TXN_CHUNK in caught.value.msg
    assert len(caught.value.details["written_keys"]) == _etcd.TXN_CHUNK
    stored = {key for key, _r in transport.list_records()}
    assert stored == set(caught.value.details["written_keys"])
    other.close()


# ---------------------------------------------------------------- static checks


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory):
    from kubesandbox import pki  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("etcd-pem")
    ca = pki.make_ca("etcd-static-ca")
    (folder / "ca.crt").write_bytes(pki.cert_pem(ca.cert))
    (folder / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n")
    (folder / "notpem.txt").write_text("hello")
    return folder


def test_endpoints_problem_accepts_good_options(pem_files, monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    assert _etcd.endpoints_problem({"etcd_endpoints": None}) is None
    assert _etcd.endpoints_problem({"etcd_endpoints": ["http://127.0.0.1:2379", "http://[::1]", "http://etcd/"]}) is None
    assert _etcd.endpoints_problem({
        "etcd_endpoints": ["https://etcd.example:2379"], "etcd_prefix": "/a/b/", "etcd_ca_cert": str(pem_files / "ca.crt"),
        "etcd_client_cert": str(pem_files / "ca.crt"), "etcd_client_key": str(pem_files / "key.pem"), "etcd_timeout": 2}) is None
    assert _etcd.endpoints_problem({"etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_prefix": "/"}) is None


@pytest.mark.parametrize("params, message", [
    ({"etcd_endpoints": ["127.0.0.1:2379"]}, "etcd_endpoints: '127.0.0.1:2379' is not an http:// or https:// URL"),
    ({"etcd_endpoints": ["ftp://h:1"]}, "etcd_endpoints: 'ftp://h:1' is not an http"),
    ({"etcd_endpoints": ["http://:2379"]}, "etcd_endpoints: 'http://:2379' is not an http:// or https:// URL with a host"),
    ({"etcd_endpoints": ["http://h:99999"]}, "etcd_endpoints: 'http://h:99999' has an invalid port"),
    ({"etcd_endpoints": ["http://h:0"]}, "etcd_endpoints: 'http://h:0' has an invalid port"),
    ({"etcd_endpoints": ["http://h:x"]}, "etcd_endpoints: 'http://h:x' has an invalid port"),
    ({"etcd_endpoints": ["http://u:p@h:1"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": ["http://h:1/v3"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": ["http://h:1#x"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": [""]}, "etcd_endpoints: '' is not a URL"),
    ({"etcd_prefix": "kubepki"}, "etcd_prefix must start with '/'"),
    ({"etcd_prefix": "/a//b"}, "etcd_prefix '/a//b' has an empty segment"),
    ({"etcd_prefix": "/a/../b"}, "etcd_prefix '/a/../b' must not contain a '..' segment"),
    ({"etcd_prefix": "/a/."}, "etcd_prefix '/a/.' must not contain a '.' segment"),
    ({"etcd_prefix": " /a"}, "etcd_prefix must start with '/'"),
    ({"etcd_client_cert": "CA"}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"etcd_client_key": "KEY"}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"etcd_username": "root"}, "etcd_username and etcd_password must be given together"),
    ({"etcd_ca_cert": "/nonexistent/ca.crt"}, "etcd_ca_cert: /nonexistent/ca.crt is not a readable file"),
    ({"etcd_ca_cert": "DIR"}, "etcd_ca_cert: .* is not a readable file"),
    ({"etcd_ca_cert": "NOTPEM"}, "etcd_ca_cert: .*notpem.txt holds no PEM certificate"),
    ({"etcd_client_cert": "CA", "etcd_client_key": "CA"}, "etcd_client_key: .*ca.crt holds no PEM private key"),
    ({"etcd_client_cert": "KEY", "etcd_client_key": "KEY"}, "etcd_client_cert: .*key.pem holds no PEM certificate"),
    ({"etcd_endpoints": ["https://h:1", "http://h:2"], "etcd_ca_cert": "CA"},
     r"etcd_endpoints: 'http://h:2' is plain http but etcd_ca_cert is given"),
    ({"etcd_client_cert": "CA", "etcd_client_key": "KEY"}, "is plain http but etcd_client_cert is given"),
    ({"etcd_timeout": 0}, "etcd_timeout must be positive"),
    ({"etcd_timeout": -1.5}, "etcd_timeout must be positive"),
    ({"etcd_timeout": "soon"}, "etcd_timeout must be a number of seconds"),
    ({"etcd_endpoints": {"a": 1}}, "etcd_endpoints must be a list of URLs"),
])
def test_endpoints_problem_names_the_option(pem_files, params, message):
    files = {"CA": str(pem_files / "ca.crt"), "KEY": str(pem_files / "key.pem"), "NOTPEM": str(pem_files / "notpem.txt"),
             "DIR": str(pem_files)}
    given = {"etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_prefix": "/kubepki", "etcd_timeout": 5.0}
    given.update({key: files.get(value, value) if isinstance(value, str) else value for key, value in params.items()})
    problem = _etcd.endpoints_problem(given)
    assert problem is not None and re.search(message, problem), problem
    # the transport refuses the same options with the same message
    if isinstance(given["etcd_endpoints"], list):
        with pytest.raises(KubePkiError) as caught:
            _etcd.EtcdTransport(given["etcd_endpoints"], prefix=given["etcd_prefix"], ca_cert=given.get("etcd_ca_cert"),
                                client_cert=given.get("etcd_client_cert"), client_key=given.get("etcd_client_key"),
                                username=given.get("etcd_username"), password=given.get("etcd_password"),
                                timeout=given["etcd_timeout"])
        assert caught.value.msg == problem


def test_endpoints_problem_missing_and_from_environment(monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    assert _etcd.endpoints_problem({}, required=True).startswith("etcd_endpoints: no etcd endpoint given")
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", "http://ok:1,nonsense")
    assert _etcd.endpoints_problem({"etcd_endpoints": None}) == (
        "etcd_endpoints (from KUBEPKI_ETCD_ENDPOINTS): 'nonsense' is not an http:// or https:// URL with a host")


@pytest.mark.parametrize("value, message", [
    ("a/b", "cluster 'a/b' must not contain '/'"),
    (".", "cluster '.' is not a usable name"),
    ("..", "cluster '..' is not a usable name"),
    ("", "cluster must be a non-empty string"),
    (None, "cluster must be a non-empty string"),
    ("a\nb", "cluster 'a\\nb' must not contain control characters"),
])
def test_key_segment_problem(value, message):
    problem = _etcd.key_segment_problem(value, "cluster")
    assert problem is not None and message in problem, problem


def test_key_segment_problem_accepts_ordinary_names():
    for value in ("alice", "system:node:n1", "Jane Doe", "a.b", "...", "prod-1", "ünïcode"):
        assert _etcd.key_segment_problem(value, "user") is None


def test_keys_held_back_by_a_lost_transaction_are_not_conflicts(transport, kp_etcd, prefix, monkeypatch):
    """One key of a transaction is changed by another writer, the other is not: the transaction loses as a whole, the
    untouched key is simply written on the next attempt (not refused as a conflict, although its old value is no
    dated record), and the touched one is decided again (an older certificate there: ours replaces it)."""
    transport.put_if_changed(transport.key_for("default", "c1", "nat"), "legacy value")
    other = _etcd.EtcdTransport([kp_etcd.url], prefix=prefix)
    real_range = transport.range_with_revisions
    touched = transport.key_for("default", "c1", "ned")

    def read_then_someone_writes(key_prefix):
        seen = real_range(key_prefix)
        other.put_if_changed(touched, _etcd.record_value(dated(user="ned", serial="00", not_before="2020-01-01T00:00:00Z")))
        return seen

    monkeypatch.setattr(transport, "range_with_revisions", read_then_someone_writes)
    outcome = transport.put_records([dated(user="nat"), dated(user="ned")])
    assert [action for _changed, _key, action in outcome] == ["updated", "updated"]
    assert transport.lost_transactions == 1
    assert transport.get_record("default", "c1", "nat")["serial"] == "1a"
    assert transport.get_record("default", "c1", "ned")["serial"] == "1a"
    other.close()


def test_the_key_layout_is_built_and_read_in_one_place():
    """key_for builds <prefix>/certs/<scope>/<cluster>/<user>; identity_of reads it back, and nothing else."""
    transport = _etcd.EtcdTransport(["http://127.0.0.1:1"], prefix="/kp")
    key = transport.key_for("default", "c1", "alice")
    assert key == "/kp/certs/default/c1/alice" and transport.identity_of(key) == ("default", "c1", "alice")
    for other in ("/kp/certs/default/c1", "/kp/certs/default/c1/alice/extra", "/kp/certs//c1/alice", "/other/certs/default/c1/alice"):
        assert transport.identity_of(other) is None, other
