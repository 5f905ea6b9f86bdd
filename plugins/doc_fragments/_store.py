# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_store.py STORE_ARG_SPEC one to one.

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
    type: str
    version_added: 0.1.0
  store_passphrase:
    description:
      - Passphrase protecting private keys at rest (encrypted PKCS#8).
      - A store keeps all its keys one way. The first key written to an empty store fixes it; afterwards a key is
        written only when the passphrase fits the store, checked before anything is written. A wrong passphrase, none
        for an encrypted store, or one for a store whose keys are not encrypted fails the task naming this option.
        Use M(kubepki.certs.store_rekey) to encrypt, decrypt or change the passphrase of a whole store.
      - Reading an encrypted key fails without it.
      - When not set, the environment variable E(KUBEPKI_STORE_PASSPHRASE) is used.
    type: str
    version_added: 0.1.0
"""
