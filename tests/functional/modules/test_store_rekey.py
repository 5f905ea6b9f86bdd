"""store_rekey through ansible-playbook: the store is rekeyed, and no passphrase or URI password reaches the output."""

from ansible_collections.kubepki.certs.plugins.module_utils import _store

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Rekey
      kubepki.certs.store_rekey:
        store_uri: "{{ uri }}"
        store_passphrase: "{{ current | default(omit) }}"
        new_store_passphrase: "{{ new | default(omit) }}"
      ignore_errors: true
"""

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
