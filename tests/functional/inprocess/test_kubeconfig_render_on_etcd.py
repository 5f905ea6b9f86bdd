"""kubeconfig_render run in-process with etcd configured, against a real etcd (never mocked): the lazy load of a
certificate etcd holds, a newer one in etcd replacing the stored one, an older or bad record ignored, kept contexts
judged with etcd. The rest is unit-tested in tests/unit/plugins/modules/test_kubeconfig_render.py, whose ``World``
and ``rendered`` fixture these tests share."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.modules import kubeconfig_render

from .unit_files import unit_module

UNIT = unit_module("plugins/modules/test_kubeconfig_render.py")
World, rendered, cert_of, contexts_of = UNIT.World, UNIT.rendered, UNIT.cert_of, UNIT.contexts_of


@pytest.fixture
def world(tmp_path, kp_etcd):
    return World(tmp_path, kp_etcd.url)


def test_lazy_load_from_etcd(run_module, world):
    record = world.cert()
    world.to_etcd(record)
    failed, result = run_module(kubeconfig_render, world.with_etcd(_ansible_check_mode=True))
    assert not failed and result["changed"] and result["clusters"][0]["loaded_from_etcd"]
    assert world.stored() is None
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert not failed and result["changed"] and result["clusters"][0]["source"] == "etcd"
    assert world.stored()["serial"] == record["serial"]
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert not failed and result["changed"] is False and result["clusters"][0]["source"] == "store"


def test_newer_certificate_in_etcd_replaces_the_stored_one(run_module, world):
    old, new = world.cert(days=5), world.cert(days=20)
    world.to_store(old)
    world.to_etcd(new)
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert not failed and result["clusters"][0]["serial"] == new["serial"]
    assert world.stored()["serial"] == new["serial"]


def test_older_or_bad_etcd_record_is_ignored_when_the_store_is_good(run_module, world):
    good = world.cert(days=20)
    world.to_store(good)
    world.to_etcd(world.cert(days=5))
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert not failed and result["clusters"][0]["serial"] == good["serial"] and result["changed"] is False


def test_expired_in_etcd_and_nothing_in_store(run_module, world):
    world.to_etcd(world.cert(days=-0.001))
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert failed and "expired at" in result["msg"] and "found in etcd; the store has none" in result["msg"]


def test_no_certificate_anywhere(run_module, world):
    failed, result = run_module(kubeconfig_render, world.with_etcd())
    assert failed and "no certificate for user 'alice' on cluster 'c1' in the credential store nor in etcd" in result["msg"]


def test_a_kept_context_is_loaded_from_etcd_like_the_others(run_module, world, rendered):
    newer = world.cert("c2", days=60)
    world.to_etcd(newer)
    failed, result = run_module(kubeconfig_render, world.with_etcd(dest=str(rendered)))
    assert cert_of(contexts_of(rendered)[1], "alice@c2") == newer["certificate"]
    assert not failed and result["changed"] is True, result
    assert [(k["name"], k["source"], k["loaded_from_etcd"]) for k in result["kept"]] == [("c2", "etcd", True)]
    assert world.stored("c2")["serial"] == newer["serial"]


def test_with_etcd_a_cluster_neither_the_store_nor_etcd_knows_is_dropped(run_module, world, rendered):
    """etcd records what was issued (and offboarding deletes it): with etcd configured and no record of c2 anywhere,
    the user holds no certificate there, whatever the file still carries."""
    with _store.open_store(world.uri, "") as store:
        store.delete_cert("default", "c2", "alice")
    failed, result = run_module(kubeconfig_render, world.with_etcd(dest=str(rendered)))
    assert contexts_of(rendered)[0] == ["alice@c1"]
    assert not failed and result["changed"] is True, result
    assert [d["reason"] for d in result["dropped"]] == ["neither the credential store nor etcd holds a certificate of user 'alice' for cluster 'c2'"]
