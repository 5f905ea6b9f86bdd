"""store_rekey run in-process against the embedded store and against MongoDB through mongomock.

mongomock is a stand-in: no MongoDB server runs on these machines. The module opens MongoDB through
``pymongo.MongoClient``, so for that backend the store module's ``pymongo`` is given a MongoClient that hands out
the test's mongomock client (the real pymongo error classes stay).
"""


import mongomock
import pytest
from ansible.module_utils import basic

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.modules import store_rekey


@pytest.fixture(autouse=True)
def quick_kdf(monkeypatch):
    """scrypt at the smallest cost a store accepts (the stores record it); the tests are about what rekey does."""
    monkeypatch.setitem(_store.KDF_DEFAULTS, "n", 2 ** 10)


@pytest.fixture(params=["embedded", "mongomock"])
def store_uri(request, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBEPKI_STORE_URI", raising=False)
    monkeypatch.delenv("KUBEPKI_STORE_PASSPHRASE", raising=False)
    if request.param == "embedded":
        return str(tmp_path / "state" / "store.db")
    client = mongomock.MongoClient("mongodb://kubepki:mongopw1@mongo.invalid/kubepki_rekey")
    assert _store.import_pymongo()
    monkeypatch.setattr(_store.mongodb.pymongo.lib, "MongoClient", lambda *args, **kwargs: client)
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


def legacy_store(uri, passphrase, users=("alice", "bob", "carol")):
    """A store as earlier releases wrote it: encrypted PKCS#8 keys and a record whose verifier is a PKCS#8 key too.
    Returns the keys as the store hands them out."""
    store = _store.open_store(uri, "")
    try:
        for user in users:
            key = _crypto.generate_private_key()
            store._insert_key_if_absent({  # pylint: disable=protected-access
                "scope": "default", "user": user, "cluster": "", "key_type": "ec-p256",
                "private_key_pem": _crypto.private_key_to_pem(key, passphrase), "public_key_sha256": _crypto.public_key_sha256(key),
                "created": "2025-01-01T00:00:00Z", "encrypted": True})
        store._insert_protection_if_absent({  # pylint: disable=protected-access
            "encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key(), passphrase)})
    finally:
        store.close()
    return keys_of(uri, passphrase, users)


def test_the_same_passphrase_moves_an_older_store_to_the_current_format(run_module, store_uri, monkeypatch):
    said = []
    monkeypatch.setattr(_store.base.ansible_warnings, "warn", said.append)
    before = legacy_store(store_uri, "the pass")
    assert len(said) == 1 and "older at-rest format" in said[0]  # reading it warns
    args = {"store_uri": store_uri, "store_passphrase": "the pass", "new_store_passphrase": "the pass"}
    failed, preview = run_module(store_rekey, dict(args, _ansible_check_mode=True))
    assert not failed and (preview["changed"], preview["keys_changed"]) == (True, 3), preview
    failed, result = run_module(store_rekey, args)
    assert not failed and (result["changed"], result["keys"], result["keys_changed"], result["encrypted"]) == (True, 3, 3, True), result
    said.clear()
    store = _store.open_store(store_uri, "the pass")
    assert [store.get_key("default", key["user"]) for key in before] == before
    assert said == [] and store.warnings == []
    assert all(_store.is_sealed(store._read_key("default", key["user"], "")["private_key_pem"]) for key in before)  # pylint: disable=protected-access
    store.close()
    failed, again = run_module(store_rekey, args)
    assert not failed and again["changed"] is False and again["keys_changed"] == 0


@pytest.mark.parametrize("check", [False, True])
def test_a_mistyped_store_uri_is_refused_and_creates_nothing(run_module, tmp_path, check):
    """store_rekey re-encrypts a store that exists; a path with no store behind it is a typo, not a new store."""
    path = tmp_path / "absent" / "store.db"
    failed, result = run_module(store_rekey, {"store_uri": str(path), "new_store_passphrase": "pw", "_ansible_check_mode": check})
    assert failed and "there is no credential store at" in result["msg"] and str(path).lstrip("/") in result["msg"], result
    assert not (tmp_path / "absent").exists()


def test_options_are_no_log():
    spec = store_rekey.argument_spec()
    assert spec["store_passphrase"]["no_log"] is True and spec["new_store_passphrase"]["no_log"] is True
