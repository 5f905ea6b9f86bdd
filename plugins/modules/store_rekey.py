#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: store_rekey
short_description: Re-encrypt every private key of the credential store under a new passphrase, or none
version_added: 0.1.0
description:
  - Opens every private key of the credential store with its current passphrase O(store_passphrase) and stores it
    again encrypted with O(new_store_passphrase), or unencrypted when O(new_store_passphrase) is not set. The keys
    themselves (and so every issued certificate) stay the same; only their protection at rest changes.
  - Use it to encrypt a store that was written without a passphrase, to change the passphrase, to decrypt a store,
    or to repair a store that holds both plaintext and encrypted keys (the other modules refuse to write keys into
    such a store, and into any store whose keys the given passphrase does not fit).
  - Encrypted keys end in the current format. A key-encryption key is derived from O(new_store_passphrase) with
    scrypt (a new random salt; the parameters are recorded in the store), and each key is sealed with AES-256-GCM,
    bound to its scope, user and cluster.
  - Use it with O(new_store_passphrase) equal to O(store_passphrase) to move a store written by an earlier release
    (encrypted PKCS#8 keys, PBKDF2 with 2048 rounds) to the current format; the other modules keep reading such a
    store and warn about it until then. The same is done for a store whose recorded scrypt parameters are weaker
    than this release's. A store already in the current format is left as it is (V(changed=false)).
  - All or nothing. Every key is decrypted before anything is written, so a wrong O(store_passphrase) or a damaged
    key fails the task with nothing changed. The embedded store is rewritten in one transaction.
  - MongoDB has no transaction here. The store's key protection record is switched first (from then on other runs
    with the old passphrase are refused; the record keeps the old key-encryption key's salt and parameters until the
    end), then each key is replaced only while it still holds the ciphertext that was decrypted, then the keys are
    read again and any key still under the old passphrase is done again. A task stopped halfway leaves every key
    readable with the old or the new passphrase; run the same task again to finish.
  - Run it while no other run uses the store. Other runs started with the old passphrase fail once the store is
    rekeyed; give them the new one.
  - The result holds counts only, never key material or passphrases.
author:
  - kubepki.certs contributors (@kubepki)
options:
  store_passphrase:
    description:
      - The current passphrase of the store's keys. Omit it for a store whose keys are not encrypted.
      - When not set, the environment variable E(KUBEPKI_STORE_PASSPHRASE) is used.
  new_store_passphrase:
    description:
      - The passphrase to encrypt every key with afterwards.
      - When not set (or empty), every key is stored unencrypted, and the task warns about it.
      - The same value as O(store_passphrase) changes nothing (V(changed=false)) for a store already in the current
        format, and moves an older store to it.
    type: str
    version_added: 0.1.0
extends_documentation_fragment:
  - kubepki.certs._store
  - kubepki.certs._requirements.STORE
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_STORE
attributes:
  check_mode:
    support: full
    details:
      - Every key is decrypted and the number of keys that would change is reported; nothing is written.
  diff_mode:
    support: none
notes:
  - Keep the new passphrase where your other tasks take O(store_passphrase) from (for example Ansible Vault) before
    running this module.
"""

EXAMPLES = r"""
- name: Encrypt a store that was written without a passphrase
  kubepki.certs.store_rekey:
    store_uri: /var/lib/kubepki/store.db
    new_store_passphrase: "{{ vault_store_passphrase }}"

- name: Change the passphrase of a MongoDB store
  kubepki.certs.store_rekey:
    store_uri: "mongodb://kubepki:{{ vault_mongo_password | urlencode }}@mongo1.example.com,mongo2.example.com/kubepki?replicaSet=rs0"
    store_passphrase: "{{ vault_old_store_passphrase }}"
    new_store_passphrase: "{{ vault_store_passphrase }}"

- name: Move a store written by an earlier release (encrypted PKCS#8 keys) to the current format
  kubepki.certs.store_rekey:
    store_passphrase: "{{ vault_store_passphrase }}"
    new_store_passphrase: "{{ vault_store_passphrase }}"

- name: Preview how many keys a rekey would change
  kubepki.certs.store_rekey:
    store_passphrase: "{{ vault_old_store_passphrase }}"
    new_store_passphrase: "{{ vault_store_passphrase }}"
  check_mode: true
  register: preview
"""

RETURN = r"""
keys:
  description: How many private keys the store holds.
  returned: always
  type: int
  sample: 42
keys_changed:
  description: How many keys were (in check mode, would be) stored again under the new protection.
  returned: always
  type: int
  sample: 42
encrypted:
  description: Whether the store's keys are encrypted afterwards (O(new_store_passphrase) was given).
  returned: always
  type: bool
  sample: true
store:
  description: The store that was rekeyed, with any password in its URI masked.
  returned: always
  type: str
  sample: sqlite:///var/lib/kubepki/store.db
"""

import os  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main, options  # noqa: E402  pylint: disable=wrong-import-position


def argument_spec():
    return options(_store.STORE_ARG_SPEC, {"new_store_passphrase": {"type": "str", "no_log": True}})


def run(ctx, params):
    new_passphrase = params.get("new_store_passphrase") or None
    probe = _store.open_store_from_params(params, create=False)
    missing = probe.kind == "embedded" and not os.path.lexists(probe.path)
    probe.close()
    if missing:
        # a mistyped store_uri: re-encrypting makes no store, it would only report an empty new one as changed
        raise KubePkiError("store_uri: there is no credential store at %s; store_rekey re-encrypts an existing store and "
                           "creates none" % probe.location)
    store = _store.open_store_from_params(params, create=not ctx.check_mode)
    try:
        outcome = store.rekey(new_passphrase, check=ctx.check_mode)
        location = store.location
    finally:
        store.close()
    if not new_passphrase and outcome["keys"]:
        ctx.warn("new_store_passphrase is not set: the %d private keys of %s are %s unencrypted at rest" % (
            outcome["keys"], location, "would be stored" if ctx.check_mode else "stored"))
    return {"changed": outcome["changed"], "keys": outcome["keys"], "keys_changed": outcome["keys_changed"],
            "encrypted": outcome["encrypted"], "store": location}


def main():
    module_main(argument_spec(), run, ("cryptography",))


if __name__ == "__main__":
    main()
