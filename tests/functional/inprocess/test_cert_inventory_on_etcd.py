"""cert_inventory run in-process with etcd configured, against a real etcd (never mocked): the store and etcd compared,
records only etcd holds, damaged records on either side, filters and the Prometheus output over both. The rest is
unit-tested in tests/unit/plugins/modules/test_cert_inventory.py, whose ``World`` and readers these tests share."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.modules import cert_inventory

from .unit_files import unit_module

UNIT = unit_module("plugins/modules/test_cert_inventory.py")
World, by_identity, pem_facts = UNIT.World, UNIT.by_identity, UNIT.pem_facts
parse_exposition, series = UNIT.parse_exposition, UNIT.series


@pytest.fixture
def world(tmp_path, kp_etcd):
    return World(tmp_path, kp_etcd.url)


@pytest.fixture(params=["embedded", "mongomock"])
def any_world(request, tmp_path, kp_etcd, monkeypatch):
    return World(tmp_path, kp_etcd.url, request.param, monkeypatch)


def test_store_and_etcd_compared(run_module, any_world, monkeypatch):
    w = any_world
    alice = w.key("alice")
    same = w.cert("alice", "c1", alice["private_key_pem"])
    w.to_store(same)
    w.to_etcd(same)
    old, new = w.cert("alice", "c2", alice["private_key_pem"], days=20), w.cert("alice", "c2", alice["private_key_pem"], days=60)
    w.to_store(old)
    w.to_etcd(new)  # etcd holds a newer certificate than the store
    w.to_store(w.cert("alice", "c3", alice["private_key_pem"], days=60))
    w.to_etcd(w.cert("alice", "c3", alice["private_key_pem"], days=20))  # the store is ahead
    only_etcd = w.cert("bob", "c1", w.key("bob")["private_key_pem"])
    w.to_etcd(only_etcd)
    w.to_store(w.cert("carol", "c1", w.key("carol")["private_key_pem"]))
    with _etcd.EtcdTransport([w.etcd_url], prefix=w.prefix) as transport:
        transport.put_if_changed(w.prefix + "/certs/default/c9/mallory", "not json")
        transport.put_if_changed(w.prefix + "/certs/not-a-record", "{}")

    failed, result = run_module(cert_inventory, w.with_etcd(warn_within="30d"))
    assert not failed, result
    assert result["etcd_endpoint"] == w.etcd_url
    rows = by_identity(result)
    c1 = rows[("default", "alice", "c1")]
    assert (c1["found_in"], c1["sources_differ"], c1["newer_in"], c1["state"]) == ("both", False, None, "valid")
    assert c1["etcd"]["key"] == w.prefix + "/certs/default/c1/alice"
    c2 = rows[("default", "alice", "c2")]
    assert (c2["found_in"], c2["sources_differ"], c2["newer_in"]) == ("both", True, "etcd")
    assert c2["serial"] == pem_facts(new["certificate"])["serial"] and c2["state"] == "valid"
    assert c2["store"]["serial"] == pem_facts(old["certificate"])["serial"]
    assert any("etcd holds a newer certificate" in note for note in c2["notes"])
    c3 = rows[("default", "alice", "c3")]
    assert (c3["newer_in"], c3["state"]) == ("store", "valid") and c3["etcd"]["not_after"] < c3["not_after"]
    assert any(n.startswith("the store holds a newer certificate (serial %s" % c3["serial"]) and "than etcd (serial %s" % c3["etcd"]["serial"] in n
               for n in c3["notes"]), c3["notes"]
    bob = rows[("default", "bob", "c1")]
    assert (bob["found_in"], bob["state"], bob["serial"]) == ("etcd", "valid", pem_facts(only_etcd["certificate"])["serial"])
    assert rows[("default", "carol", "c1")]["found_in"] == "store"
    mallory = rows[("default", "mallory", "c9")]
    assert mallory["state"] == "invalid" and "is not a JSON certificate record" in mallory["etcd"]["problem"]
    assert len(rows) == 6

    # without the etcd options only the store is read: bob's key has no certificate there
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    failed, result = run_module(cert_inventory, w.args())
    assert not failed and result["etcd_endpoint"] is None
    assert {r["found_in"] for r in result["inventory"] if r["user"] != "bob"} == {"store"}
    assert by_identity(result)[("default", "bob", "")]["state"] == "missing_certificate"
    assert by_identity(result)[("default", "alice", "c2")]["serial"] == pem_facts(old["certificate"])["serial"]


def test_a_damaged_store_record_leaves_the_etcd_one(run_module, world):
    alice = world.key("alice")
    good = world.cert("alice", "c1", alice["private_key_pem"])
    world.to_etcd(good)
    damaged = dict(good, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    world.to_store(damaged)
    failed, result = run_module(cert_inventory, world.with_etcd())
    assert not failed, result
    [row] = result["inventory"]
    assert (row["state"], row["sources_differ"], row["serial"]) == ("valid", True, good["serial"])
    assert "cannot be parsed" in row["store"]["problem"]


def test_filters(run_module, world):
    alice = world.key("alice")
    world.to_store(world.cert("alice", "c1", alice["private_key_pem"]))
    world.to_store(world.cert("alice", "c2", alice["private_key_pem"]))
    bob_c1 = world.key("bob", "c1")
    world.to_store(world.cert("bob", "c1", bob_c1["private_key_pem"]))
    world.key("bob", "c3")
    prod = world.key("alice", scope="prod")
    world.to_etcd(world.cert("alice", "c1", prod["private_key_pem"], scope="prod"))

    def identities(**args):
        failed, result = run_module(cert_inventory, world.with_etcd(**args))
        assert not failed, result
        return sorted(by_identity(result))

    assert identities(scope="prod") == [("prod", "alice", "c1")]
    assert identities(users=["bob"]) == [("default", "bob", "c1"), ("default", "bob", "c3")]
    assert identities(scope="default", clusters=["c2"]) == [("default", "alice", "c2")]
    # a listed cluster where a user with a key has no certificate is reported missing
    failed, result = run_module(cert_inventory, world.with_etcd(scope="default", clusters=["c1", "c3", "c4"]))
    rows = by_identity(result)
    assert sorted(rows) == [("default", "alice", c) for c in ("c1", "c3", "c4")] + [("default", "bob", "c1"), ("default", "bob", "c3")]
    assert rows[("default", "alice", "c4")]["state"] == "missing_certificate"
    assert rows[("default", "alice", "c4")]["key_scope"] == "shared"
    assert rows[("default", "bob", "c3")]["key_scope"] == "per_cluster"


def test_prometheus(run_module, world):
    alice = world.key("alice")
    records = [world.cert("alice", "c1", alice["private_key_pem"], days=40), world.cert("alice", "c2", alice["private_key_pem"], days=5)]
    records.append(world.cert('we"ird\\name', "c1", world.key('we"ird\\name')["private_key_pem"]))
    for record in records:
        world.to_store(record)
    world.to_etcd(records[0])
    world.key("bob")
    failed, result = run_module(cert_inventory, world.with_etcd(format="prometheus"))
    assert not failed, result
    families = parse_exposition(result["report"])
    assert "kubepki_certificate_days_left" not in families  # the reader computes expiry - time()
    for name in ("kubepki_certificate_expiry_timestamp_seconds", "kubepki_certificate_state"):
        assert families[name]["type"] == "gauge" and families[name]["help"]
    for record in records:
        facts = pem_facts(record["certificate"])
        labels = {"scope": "default", "user": record["user"], "cluster": record["cluster"], "serial": facts["serial"]}
        assert series(families, "kubepki_certificate_expiry_timestamp_seconds", **labels) == facts["expiry"]
        assert series(families, "kubepki_certificate_not_before_timestamp_seconds", **labels) == facts["not_before"]
    assert series(families, "kubepki_certificate_state", user="alice", cluster="c2") == 1
    assert ("state", "expiring") in next(k for k in families["kubepki_certificate_state"]["samples"] if ("cluster", "c2") in k)
    assert series(families, "kubepki_certificate_state", user="bob", state="missing_certificate") == 1
    assert len(families["kubepki_certificate_expiry_timestamp_seconds"]["samples"]) == 3  # a key without a certificate has no expiry
    assert series(families, "kubepki_certificate_sources_differ", user="alice", cluster="c1") == 0
    assert len(families["kubepki_certificate_sources_differ"]["samples"]) == 1
