"""store_rekey through ansible-playbook: the store is rekeyed, and no passphrase or URI password reaches the output."""

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from playbook_files import playbook

PLAY = playbook("modules/store_rekey.yml")

SECRETS = ("Old-Store-Phrase-1", "New-Store-Phrase-2", "Mongo-Pass-3", "Wrong-Phrase-4")


def assert_no_secret(outcome):
    for secret in SECRETS:
        assert secret not in outcome.stdout and secret not in outcome.stderr, secret


def test_rekey_and_no_secret_in_the_output(run_playbook, tmp_path):
    path = str(tmp_path / "store.db")
    store = _store.open_store(path, SECRETS[0])
    keys = [store.ensure_key("default", user)[0] for user in ("alice", "bob")]
    store.close()

    checked = run_playbook(PLAY, extra_vars={"uri": path, "current": SECRETS[0], "new": SECRETS[1]}, check=True)
    result = checked.result("Rekey")
    assert not result.get("failed"), checked
    assert (result["changed"], result["keys"], result["keys_changed"]) == (True, 2, 2)
    assert_no_secret(checked)

    done = run_playbook(PLAY, extra_vars={"uri": path, "current": SECRETS[0], "new": SECRETS[1]})
    result = done.result("Rekey")
    assert result["changed"] is True and result["keys_changed"] == 2 and result["encrypted"] is True, done
    assert_no_secret(done)
    reader = _store.open_store(path, SECRETS[1])
    assert [reader.get_key("default", key["user"]) for key in keys] == keys
    reader.close()

    again = run_playbook(PLAY, extra_vars={"uri": path, "current": SECRETS[0], "new": SECRETS[1]})
    result = again.result("Rekey")
    assert result["changed"] is False and result["keys_changed"] == 0, again  # the same task twice: done the first time

    wrong = run_playbook(PLAY, extra_vars={"uri": path, "current": SECRETS[3], "new": SECRETS[0]})
    result = wrong.result("Rekey")
    assert result.get("failed") and "store_passphrase does not decrypt" in result["msg"], wrong
    assert_no_secret(wrong)


def test_mongodb_password_is_not_in_the_output(run_playbook):
    """Nothing listens on 127.0.0.1:9: the task fails, naming the host, and the URI's password is masked."""
    outcome = run_playbook(PLAY, extra_vars={"uri": "mongodb://kubepki:%s@127.0.0.1:9/kubepki" % SECRETS[2], "new": SECRETS[1]})
    result = outcome.result("Rekey")
    assert result.get("failed") and "MongoDB at 127.0.0.1:9 is unreachable" in result["msg"], outcome
    assert_no_secret(outcome)


RENDER = playbook("modules/kubeconfig_render.yml")


def test_an_older_store_warns_until_the_same_passphrase_moves_it(run_playbook, tmp_path):
    """A store written by an earlier release (encrypted PKCS#8 keys, PBKDF2 with 2048 rounds) keeps working, and every
    task that uses it says how to move it; store_rekey with the same passphrase does, and the kubeconfig rendered
    from the moved store is the same file (changed=false)."""
    from kubeharness import pki  # pylint: disable=import-outside-toplevel
    from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # pylint: disable=import-outside-toplevel

    path, passphrase = str(tmp_path / "store.db"), SECRETS[0]
    key = _crypto.generate_private_key()
    with _store.open_store(path, "") as store:
        store._insert_key_if_absent({  # pylint: disable=protected-access
            "scope": "default", "user": "alice", "cluster": "", "key_type": "ec-p256",
            "private_key_pem": _crypto.private_key_to_pem(key, passphrase), "public_key_sha256": _crypto.public_key_sha256(key),
            "created": "2025-01-01T00:00:00Z", "encrypted": True})
        store._insert_protection_if_absent({  # pylint: disable=protected-access
            "encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key(), passphrase)})
        ca = pki.make_ca("rekey-functional-ca")
        pem = pki.cert_pem(pki.issue(ca, "alice", ["team-a"], client=True, key=key).cert).decode()
        facts = _crypto.certificate_facts(pem)
        store.put_cert({"scope": "default", "cluster": "c1", "user": "alice", "common_name": "alice", "organizations": ["team-a"],
                        "certificate": pem, "csr_name": "kubepki-alice-x", "csr_uid": "uid", "signer_name": "kubernetes.io/kube-apiserver-client",
                        "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
                        "public_key_sha256": facts["public_key_sha256"]})
    (tmp_path / "ca.crt").write_bytes(pki.cert_pem(ca.cert))
    render_vars = {"user": "alice", "store": path, "passphrase": passphrase, "ca_file": str(tmp_path / "ca.crt"),
                   "dest": str(tmp_path / "kubeconfig")}

    first = run_playbook(RENDER, extra_vars=render_vars)
    assert first.rc == 0 and first.changed == 1, first
    assert "older at-rest format" in first.stdout and "kubepki.certs.store_rekey" in first.stdout, first
    rendered = (tmp_path / "kubeconfig").read_text()

    moved = run_playbook(PLAY, extra_vars={"uri": path, "current": passphrase, "new": passphrase})
    result = moved.result("Rekey")
    assert (result["changed"], result["keys"], result["keys_changed"], result["encrypted"]) == (True, 1, 1, True), moved
    assert_no_secret(moved)
    with open(path, "rb") as handle:
        assert b"ENCRYPTED PRIVATE KEY" not in handle.read()

    again = run_playbook(RENDER, extra_vars=render_vars)
    assert again.rc == 0 and again.changed == 0, again
    assert "older at-rest format" not in again.stdout, again
    assert (tmp_path / "kubeconfig").read_text() == rendered
    assert_no_secret(again)
