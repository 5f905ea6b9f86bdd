"""store_rekey run in-process against the embedded store and against MongoDB through mongomock.

mongomock is a stand-in: no MongoDB server runs on these machines. The module opens MongoDB through
``pymongo.MongoClient``, so for that backend the store module's ``pymongo`` is given a MongoClient that hands out
the test's mongomock client (the real pymongo error classes stay).
"""

import types

import mongomock
import pytest
from ansible.module_utils import basic

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.modules import store_rekey


@pytest.fixture(params=["embedded", "mongomock"])
def store_uri(request, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBEPKI_STORE_URI", raising=False)
    monkeypatch.delenv("KUBEPKI_STORE_PASSPHRASE", raising=False)
    if request.param == "embedded":
        return str(tmp_path / "state" / "store.db")
    client = mongomock.MongoClient("mongodb://kubepki:mongopw1@mongo.invalid/kubepki_rekey")
    assert _store.import_pymongo()
    monkeypatch.setattr(_store, "pymongo", types.SimpleNamespace(MongoClient=lambda *args, **kwargs: client))
    return "mongodb://kubepki:mongopw1@mongo.invalid/kubepki_rekey"


def keys_of(uri, passphrase, users=("alice", "bob", "carol")):
    store = _store.open_store(uri, passphrase)
    try:
        return [store.get_key("default", user) for user in users]
    finally:
        store.close()


def test_encrypt_change_and_decrypt_a_store(run_module, store_uri, monkeypatch):
    warned = []  # the run_module fixture replaces exit_json, which would carry the warnings: collect them here
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    store = _store.open_store(store_uri, "")
    before = [store.ensure_key("default", user)[0] for user in ("alice", "bob", "carol")]
    store.close()

    failed, preview = run_module(store_rekey, {"store_uri": store_uri, "new_store_passphrase": "first secret", "_ansible_check_mode": True})
    assert not failed, preview
    assert (preview["changed"], preview["keys"], preview["keys_changed"], preview["encrypted"]) == (True, 3, 3, True)
    assert keys_of(store_uri, "") == before

    failed, result = run_module(store_rekey, {"store_uri": store_uri, "new_store_passphrase": "first secret"})
    assert not failed, result
    assert (result["changed"], result["keys"], result["keys_changed"], result["encrypted"]) == (True, 3, 3, True)
    assert result["store"] in (_store.open_store(store_uri, "first secret").location,) and "mongopw1" not in result["store"]
    assert "PRIVATE" not in str(result) and "first secret" not in str(result)
    assert keys_of(store_uri, "first secret") == [dict(key, encrypted=True) for key in before]

    failed, again = run_module(store_rekey, {"store_uri": store_uri, "store_passphrase": "first secret", "new_store_passphrase": "first secret"})
    assert not failed and again["changed"] is False and again["keys_changed"] == 0

    failed, changed = run_module(store_rekey, {"store_uri": store_uri, "store_passphrase": "first secret", "new_store_passphrase": "second"})
    assert not failed and changed["changed"] is True and changed["keys_changed"] == 3
    assert keys_of(store_uri, "second") == [dict(key, encrypted=True) for key in before]

    failed, plain = run_module(store_rekey, {"store_uri": store_uri, "store_passphrase": "second"})
    assert not failed and plain["changed"] is True and plain["encrypted"] is False
    assert len(warned) == 1 and warned[0].startswith("new_store_passphrase is not set: the 3 private keys of ")
    assert keys_of(store_uri, "") == before


def test_wrong_passphrase_fails_and_changes_nothing(run_module, store_uri):
    store = _store.open_store(store_uri, "right")
    before = [store.ensure_key("default", user)[0] for user in ("alice", "bob", "carol")]
    store.close()
    failed, result = run_module(store_rekey, {"store_uri": store_uri, "store_passphrase": "wrong", "new_store_passphrase": "next"})
    assert failed
    assert "store_passphrase does not decrypt" in result["msg"] and "nothing was rekeyed" in result["msg"]
    assert "wrong" not in result["msg"].replace("wrong passphrase", "") and "mongopw1" not in result["msg"]
    failed, result = run_module(store_rekey, {"store_uri": store_uri, "new_store_passphrase": "next"})
    assert failed and "store_passphrase" in result["msg"]
    assert keys_of(store_uri, "right") == before
    with pytest.raises(KubePkiError, match="wrong passphrase"):
        keys_of(store_uri, "next")


def test_check_mode_on_a_missing_embedded_store_creates_nothing(run_module, tmp_path):
    path = tmp_path / "absent" / "store.db"
    failed, result = run_module(store_rekey, {"store_uri": str(path), "new_store_passphrase": "pw", "_ansible_check_mode": True})
    assert not failed
    assert (result["keys"], result["keys_changed"]) == (0, 0)
    assert not (tmp_path / "absent").exists()


def test_options_are_no_log():
    spec = store_rekey.argument_spec()
    assert spec["store_passphrase"]["no_log"] is True and spec["new_store_passphrase"]["no_log"] is True
