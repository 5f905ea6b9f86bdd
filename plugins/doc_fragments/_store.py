# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_store/__init__.py STORE_ARG_SPEC one to one.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  store_uri:
    description:
      - Where the credential store (private keys and issued certificates) lives.
      - V(mongodb://...) or V(mongodb+srv://...) selects MongoDB; the database comes from the URI path
        (default V(kubepki)), with collections C(keys) and C(certificates).
      - V(sqlite:///PATH), V(file:PATH) or a plain path selects the embedded store, one SQLite file created with
        mode C(0600) (its directory C(0700) when this module creates it).
      - An existing file must already be an embedded store (an SQLite database with the store's tables). Anything
        else, for example a mistyped path such as C(/etc/hosts), an empty file or another program's database, fails
        the task before the file is touched; its mode, owner, content and modification time stay as they were.
      - Reading only (check mode, M(kubepki.certs.cert_inventory)) never changes the mode of the store file and
        never creates it.
      - When not set, the environment variable E(KUBEPKI_STORE_URI) is used, then the embedded store
        C(~/.kubepki/store.db) on the host that runs the module.
      - A password in the URI is kept out of the task's output and of error messages (shown as C(user:***@host)).
      - With MongoDB, private keys and the key protection record are written with write concern C(majority),
        journaled, and read with read concern C(majority), whatever the URI asks for, so that an acknowledged key
        survives a failover. Certificate records follow the URI's settings.
      - With MongoDB, the unique indexes are created when the store is first written to (a task that only reads
        never creates them and needs only read access); later runs look them up and create nothing.
      - An unreachable MongoDB fails the task naming the URI without its user and password, before anything is written.
    type: str
    version_added: 0.1.0
  store_passphrase:
    description:
      - Passphrase protecting private keys at rest.
      - A key-encryption key is derived from it once per run with scrypt (V(N=2**17), V(r=8), V(p=1), a random salt;
        the parameters are recorded in the store), and each private key is sealed with AES-256-GCM under that key,
        bound to its scope, user and cluster, so a key moved to another row of the store does not open.
      - A store written by an earlier release keeps its keys as encrypted PKCS#8 (PBKDF2 with 2048 rounds, one
        derivation per key). It is still read and written the old way, with a warning on every task that uses it,
        until M(kubepki.certs.store_rekey) runs with O(kubepki.certs.store_rekey#module:new_store_passphrase) equal to
        this passphrase and moves all of its keys to the current format.
      - A store keeps all its keys one way. The first key written to an empty store fixes it; afterwards a key is
        written only when the passphrase fits the store, checked before anything is written. A wrong passphrase, none
        for an encrypted store, or one for a store whose keys are not encrypted fails the task naming this option.
        Use M(kubepki.certs.store_rekey) to encrypt, decrypt or change the passphrase of a whole store.
      - Reading an encrypted key fails without it.
      - When not set, the environment variable E(KUBEPKI_STORE_PASSPHRASE) is used.
    type: str
    version_added: 0.1.0
"""
