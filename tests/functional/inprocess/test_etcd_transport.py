"""EtcdTransport against a real etcd (plain, and TLS with client certificates); etcd is never mocked. The checks of
EtcdTransport's options and of the key layout, which reach no etcd, are unit tests
(tests/unit/plugins/module_utils/test_etcd.py)."""

import json
import threading
import uuid

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
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
    assert posts.count("/kv/txn") == -(-150 // _etcd.transport.TXN_CHUNK)
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
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _record.dumps(mine))
    assert transport.put_records([mine]) == [(False, prefix + "/certs/default/c1/fay", "unchanged")]
    assert transport.lost_transactions == 1
    other.close()


def test_lost_race_to_a_newer_certificate_keeps_it(transport, kp_etcd, prefix, monkeypatch):
    newer = dated(user="gus", serial="2b", not_before="2025-06-01T00:00:00Z", not_after="2026-06-01T00:00:00Z")
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _record.dumps(newer))
    assert transport.put_records([dated(user="gus")])[0][2] == "kept_newer"
    assert transport.lost_transactions == 1
    assert transport.get_record("default", "c1", "gus")["serial"] == "2b"
    other.close()


def test_lost_race_to_an_older_certificate_writes_ours(transport, kp_etcd, prefix, monkeypatch):
    older = dated(user="hal", serial="0a", not_before="2024-06-01T00:00:00Z", not_after="2025-06-01T00:00:00Z")
    other = interleave(monkeypatch, transport, kp_etcd, prefix, _record.dumps(older))
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
    size = _etcd.transport.TXN_CHUNK + 3
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
    assert "%d other key(s) of this batch were written before" % _etcd.transport.TXN_CHUNK in caught.value.msg
    assert len(caught.value.details["written_keys"]) == _etcd.transport.TXN_CHUNK
    stored = {key for key, _r in transport.list_records()}
    assert stored == set(caught.value.details["written_keys"])
    other.close()


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
        other.put_if_changed(touched, _record.dumps(dated(user="ned", serial="00", not_before="2020-01-01T00:00:00Z")))
        return seen

    monkeypatch.setattr(transport, "range_with_revisions", read_then_someone_writes)
    outcome = transport.put_records([dated(user="nat"), dated(user="ned")])
    assert [action for _changed, _key, action in outcome] == ["updated", "updated"]
    assert transport.lost_transactions == 1
    assert transport.get_record("default", "c1", "nat")["serial"] == "1a"
    assert transport.get_record("default", "c1", "ned")["serial"] == "1a"
    other.close()
