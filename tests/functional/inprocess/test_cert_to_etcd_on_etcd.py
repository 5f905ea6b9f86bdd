"""cert_to_etcd run in-process against a real etcd (never mocked): writes, idempotence, check mode, removal, races
between two processes. What fails before any etcd is reached is unit-tested in
tests/unit/plugins/modules/test_cert_to_etcd.py, whose CA fixture and record maker these tests share."""

import multiprocessing
import re
import uuid

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.modules import cert_to_etcd

import pki_support  # pylint: disable=wrong-import-order

from .unit_files import unit_module

UNIT = unit_module("plugins/modules/test_cert_to_etcd.py")
ca = UNIT.ca
issued = UNIT.issued


@pytest.fixture
def base(kp_etcd):
    return {"etcd_endpoints": [kp_etcd.url], "etcd_prefix": "/t-%s" % uuid.uuid4().hex[:8]}


def test_put_idempotent_check_and_absent(run_module, base, ca):
    records = [issued(ca, "alice"), issued(ca, "bob", cluster=None)]
    args = dict(base, certificates=records, cluster="c2")
    failed, result = run_module(cert_to_etcd, dict(args, _ansible_check_mode=True))
    assert not failed and result["changed"] is True
    failed, result = run_module(cert_to_etcd, dict(args, _ansible_diff=True))
    assert not failed and result["changed"] is True, result
    assert [r["key"] for r in result["records"]] == [base["etcd_prefix"] + "/certs/default/c1/alice",
                                                     base["etcd_prefix"] + "/certs/default/c2/bob"]
    assert "certificate" not in str(result["diff"]["after"])
    assert result["records"][0]["serial"] == records[0]["serial"]
    failed, result = run_module(cert_to_etcd, args)
    assert not failed and result["changed"] is False
    assert [r["changed"] for r in result["records"]] == [False, False]
    failed, result = run_module(cert_to_etcd, dict(args, state="absent", certificates=[{"user": "bob"}]))
    assert not failed and result["changed"] is True
    failed, result = run_module(cert_to_etcd, dict(args, state="absent", certificates=[{"user": "bob"}]))
    assert not failed and result["changed"] is False


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(serial="abc"), r"certificates\[0\].serial is 'abc' but the certificate says"),
    (lambda r: r.update(not_after="2000-01-01T00:00:00Z"), r"certificates\[0\].not_after is '2000-01-01T00:00:00Z'"),
    (lambda r: r.update(public_key_sha256="00" * 32), r"certificates\[0\].public_key_sha256 is"),
    (lambda r: r.update(certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
     r"certificates\[0\].certificate cannot be parsed"),
    (lambda r: r.update(certificate="hello"), r"certificates\[0\].certificate is not a PEM CERTIFICATE"),
    (lambda r: r.pop("certificate"), r"certificates\[0\] has no certificate"),
    (lambda r: r.update(user="mallory"), r"certificates\[0\].user is 'mallory' but the certificate CN is 'alice'"),
    (lambda r: r.update(organizations=["system:masters"]), r"certificates\[0\].organizations is \['system:masters'\]"),
    (lambda r: r.update(cluster=None), r"certificates\[0\] has no cluster and the cluster option is not set"),
    (lambda r: r.update(cluster="a/b"), r"cluster 'a/b' must not contain '/'"),
    (lambda r: r.update(cluster=".."), r"certificates\[0\].cluster '..' is not a usable name"),
    (lambda r: r.update(scope="."), r"certificates\[0\].scope '.' is not a usable name"),
    (lambda r: r.update(scope="a/b"), r"certificates\[0\].scope 'a/b' must not contain '/'"),
])
def test_bad_records(run_module, base, ca, mutate, message):
    record = issued(ca)
    mutate(record)
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record]))
    assert failed
    assert re.search(message, result["msg"]), result["msg"]


def test_user_from_a_cn_that_is_no_key_segment(run_module, base, ca):
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[issued(ca, "a/b")]))
    assert failed and "certificates[0].user 'a/b' must not contain '/'" in result["msg"], result["msg"]
    from_cn = issued(ca, "..")
    del from_cn["user"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[from_cn]))
    assert failed and "certificates[0].user (the certificate CN) '..' is not a usable name" in result["msg"], result["msg"]


def test_nothing_written_when_one_record_is_bad(run_module, base, ca, kp_etcd):
    good, bad = issued(ca, "carol"), issued(ca, "dave", serial="1")
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[good, bad]))
    assert failed and "certificates[1].serial" in result["msg"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[good], _ansible_check_mode=True))
    assert result["changed"] is True


def test_duplicate_targets(run_module, base, ca):
    record = issued(ca)
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record, dict(record)]))
    assert failed and "certificates[0] and certificates[1] both address" in result["msg"]


def test_endpoint_from_environment(run_module, ca, kp_etcd, monkeypatch):
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", kp_etcd.url)
    failed, result = run_module(cert_to_etcd, {"certificates": [issued(ca, "erin")], "etcd_prefix": "/env-%s" % uuid.uuid4().hex[:6]})
    assert not failed and result["changed"] and result["etcd_endpoint"] == kp_etcd.url


def stored_keys(kp_etcd, prefix):
    with _etcd.EtcdTransport([kp_etcd.url], prefix="/") as transport:
        return [key for key, _value in transport.list_prefix(prefix)]


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory, ca):
    folder = tmp_path_factory.mktemp("cte-pem")
    (folder / "ca.crt").write_bytes(pki_support.cert_pem(ca.cert))
    (folder / "client.key").write_text("-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n")
    (folder / "empty.crt").write_text("")
    return folder


@pytest.mark.parametrize("options, message", [
    ({"etcd_prefix": "/p//q"}, r"^etcd_prefix '/bad-\w+/p//q' has an empty segment"),
    ({"etcd_prefix": "/p/../q"}, r"^etcd_prefix '/bad-\w+/p/\.\./q' must not contain a '\.\.' segment"),
    ({"etcd_prefix": "p"}, r"^etcd_prefix must start with '/'"),
    ({"etcd_endpoints": ["GOOD", "http://127.0.0.1:70000"]}, r"^etcd_endpoints: 'http://127.0.0.1:70000' has an invalid port"),
    ({"etcd_endpoints": ["GOOD", "127.0.0.1:2379"]}, r"^etcd_endpoints: '127.0.0.1:2379' is not an http:// or https:// URL"),
    ({"etcd_ca_cert": "CA"}, r"^etcd_endpoints: 'http://127.0.0.1:\d+' is plain http but etcd_ca_cert is given"),
    ({"etcd_ca_cert": "/nonexistent/ca.crt"}, r"^etcd_ca_cert: /nonexistent/ca.crt is not a readable file"),
    ({"etcd_ca_cert": "EMPTY"}, r"^etcd_ca_cert: .*empty.crt holds no PEM certificate"),
    ({"etcd_client_cert": "CA"}, r"^etcd_client_cert and etcd_client_key must be given together"),
    ({"etcd_client_cert": "KEY", "etcd_client_key": "KEY"}, r"^etcd_client_cert: .*client.key holds no PEM certificate"),
    ({"etcd_timeout": 0}, r"^etcd_timeout must be positive"),
    ({"cluster": ".."}, r"^cluster '..' is not a usable name"),
    ({"scope": "a/b"}, r"^scope 'a/b' must not contain '/'"),
])
def test_bad_option_refused_before_anything_is_written(run_module, kp_etcd, ca, pem_files, options, message):
    """Every other option is good and etcd is up: the bad one alone stops the task, and etcd holds nothing new."""
    files = {"CA": str(pem_files / "ca.crt"), "KEY": str(pem_files / "client.key"), "EMPTY": str(pem_files / "empty.crt"),
             "GOOD": kp_etcd.url}
    given = {key: [files.get(item, item) for item in value] if isinstance(value, list) else files.get(value, value)
             for key, value in options.items()}
    root = "/bad-%s" % uuid.uuid4().hex[:8]
    good = {"etcd_endpoints": [kp_etcd.url], "etcd_prefix": root + "/p", "cluster": "c1", "certificates": [issued(ca, "olga")]}
    if given.get("etcd_prefix", "").startswith("/"):
        given["etcd_prefix"] = root + given["etcd_prefix"]
    failed, result = run_module(cert_to_etcd, dict(good, **given))
    assert failed, result
    assert re.search(message, result["msg"]), result["msg"]
    assert result["records"] == []
    assert stored_keys(kp_etcd, root) == []
    # the same task without the bad option writes: the refusal was about that option alone
    failed, result = run_module(cert_to_etcd, good)
    assert not failed and result["changed"], result
    assert stored_keys(kp_etcd, root) == [root + "/p/certs/default/c1/olga"]


def test_older_certificate_is_kept_out(run_module, base, ca):
    """A second issue for the same user is published; the first certificate, published again later (an old task
    result replayed), does not replace it."""
    first = issued(ca, "pat", cluster="c1", days=30)
    # issued in the same second or later, and valid for longer: newer either way
    second = issued(ca, "pat", cluster="c1", days=60)
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[second]))
    assert not failed and result["records"][0]["action"] == "created"
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[first], _ansible_diff=True))
    assert not failed and result["changed"] is False, result
    assert result["records"][0]["action"] == "kept_newer"
    assert result["diff"] == {"before": {}, "after": {}}
    with _etcd.EtcdTransport(base["etcd_endpoints"], prefix=base["etcd_prefix"]) as transport:
        assert transport.get_record("default", "c1", "pat")["serial"] == second["serial"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[first], _ansible_check_mode=True))
    assert not failed and result["changed"] is False and result["records"][0]["action"] == "kept_newer"
    # removal still works whatever the record holds
    failed, result = run_module(cert_to_etcd, dict(base, state="absent", cluster="c1", certificates=[{"user": "pat"}]))
    assert not failed and result["records"][0]["action"] == "deleted"


def _publish_in_a_process(run_module, args, start, results, lost):
    """cert_to_etcd's main() in this (forked) process once ``start`` lets both go; lost guarded transactions are
    counted on the real transport's way back from etcd (a spy, nothing is replaced)."""
    real = _etcd.EtcdTransport._guarded_txn

    def counting(self, writes):
        succeeded, seen = real(self, writes)
        if not succeeded:
            with lost.get_lock():
                lost.value += 1
        return succeeded, seen

    _etcd.EtcdTransport._guarded_txn = counting
    start.wait()
    results.put(run_module(cert_to_etcd, args))


def test_identical_runs_in_two_processes_at_once_both_succeed(run_module, base, ca, kp_etcd):
    """Two processes run the same cert_to_etcd task at the same moment, round after round (fresh keys each round):
    neither fails, each record is written by exactly one of them, and the lost-transaction count shows they raced."""
    context = multiprocessing.get_context("fork")
    batch = [issued(ca, "q%d" % index, cluster="c%d" % (index % 2)) for index in range(6)]
    lost = context.Value("i", 0)
    # at least 4 rounds, and on until the processes raced at least once (25 at most)
    rounds = 25
    for round_number in range(rounds):
        if round_number >= 4 and lost.value > 0:
            break
        args = dict(base, etcd_prefix="%s-%d" % (base["etcd_prefix"], round_number), certificates=batch)
        start, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_publish_in_a_process, args=(run_module, args, start, results, lost)) for _worker in range(2)]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _worker in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        for failed, result in outcomes:
            assert not failed, result
        for first, second in zip(outcomes[0][1]["records"], outcomes[1][1]["records"]):
            assert first["key"] == second["key"]
            assert sorted([first["action"], second["action"]]) == ["created", "unchanged"], (first, second)
            assert first["changed"] != second["changed"]
        assert len(stored_keys(kp_etcd, args["etcd_prefix"] + "/")) == len(batch)
    assert lost.value > 0, "the two processes never raced in %d rounds: the test proved nothing" % rounds


def test_organizations_are_a_set(run_module, base, ca):
    """The signer DER-sorts the organizations; a record listing the requested groups in another order is the same
    certificate's (groups are a set everywhere else in the collection)."""
    record = issued(ca, "carol", orgs=("dev", "ops"))
    record["organizations"] = ["ops", "dev"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record]))
    assert not failed, result
    record["organizations"] = ["ops"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record]))
    assert failed and "organizations is ['ops'] but the certificate carries ['dev', 'ops']" in result["msg"]
