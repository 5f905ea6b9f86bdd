# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The credential store: private keys and issued certificates, one interface over two backends.

The package: ``base`` (CredentialStore, what both backends share), ``sqlite`` and ``mongodb`` (the backends),
``sealing`` (keys at rest) and ``uri`` (the secrets of a store URI). Callers use what this file names.

``open_store(uri, passphrase)`` picks the backend from the URI:

- ``mongodb://`` / ``mongodb+srv://``: MongoDB through pymongo. Database from the URI path (default
  ``kubepki``); collections ``keys`` and ``certificates`` with unique indexes on their identity.
- ``sqlite:///PATH``, ``file:PATH``, a plain path, or nothing at all (``KUBEPKI_STORE_URI``, then
  ``~/.kubepki/store.db``): the embedded store, one SQLite file created 0600 in a 0700 directory. An existing
  path is recognised as a store (SQLite header, ``keys`` and ``certificates`` tables) before anything changes it;
  a file that is not one is refused untouched. ``create=False`` (check mode, reports) opens it read-only.

Key creation is atomic in both: the row/document is inserted only if absent under a unique constraint,
and the loser of a race reads and returns the winner's key. Records always hand out the decrypted PEM.

Keys at rest (``key_protection``): a store keeps all its keys one way, plaintext or encrypted under one passphrase.
A small record (``key_protection``) says which. For an encrypted store it holds a key-encryption key (KEK)
descriptor: its id, the KDF (scrypt, ``KDF_DEFAULTS``) with its parameters and random salt, and a check value
(a constant sealed with the KEK). The KEK is derived from the passphrase once per store object (and cached for the
process, so several opens in one module run pay one KDF); each private key is then sealed with AES-256-GCM under
it, with a random 96-bit nonce and, as associated data, the row's (scope, user, cluster), so a ciphertext moved to
another row does not open. A stored key is then the text ``kubepki-aead-v1:<kek id>:<nonce>:<ciphertext>``.

Every write of a key checks the caller's passphrase against the record first (one KDF, then opening the check
value: microseconds) and refuses a wrong, missing or superfluous passphrase before anything is written. The record
exists in an empty store too: the first write fixes the mode (inserted if absent, so of two first writers with
different passphrases one loses and writes nothing). ``rekey`` (module ``store_rekey``) changes the mode, the
passphrase or the format of every key at once.

Older stores (written before this format) keep each key as encrypted PKCS#8 (PBKDF2-SHA256, 2048 rounds, one KDF
per key) and a record whose *verifier* is a throwaway EC key in that form; a store older still has no record and
is judged by its keys (one encrypted key is decrypted) and gets a record of its kind with its next write. Such a
store is still read and written in its own format, and says so in a warning (``CredentialStore.warnings``, and the
module's warnings) until ``rekey`` moves it to the format above; a fresh store is only ever written in the new one.

Certificates never go back in time: ``put_cert``/``put_certs`` skip a record when the stored record of the same
identity is newer (``not_before``, then ``not_after``, compared as times).

Listings (``list_keys``, ``list_certs``) read everything of a scope, or of the whole store, for reports such as
the inventory: key rows come without ``private_key_pem`` and nothing is decrypted, so they need no passphrase.
"""

from __future__ import annotations

import os

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._store.base import CredentialStore, KeyConflict  # noqa: F401 (the package's interface)
from ansible_collections.kubepki.certs.plugins.module_utils._store.mongodb import MongoStore, import_pymongo  # noqa: F401
from ansible_collections.kubepki.certs.plugins.module_utils._store.sealing import KDF_DEFAULTS, WRAP_FORMAT, is_sealed  # noqa: F401
from ansible_collections.kubepki.certs.plugins.module_utils._store.sqlite import SqliteStore
from ansible_collections.kubepki.certs.plugins.module_utils._store.uri import redact_uri, uri_secrets  # noqa: F401

ENV_URI = "KUBEPKI_STORE_URI"
ENV_PASSPHRASE = "KUBEPKI_STORE_PASSPHRASE"
DEFAULT_PATH = os.path.join("~", ".kubepki", "store.db")

STORE_ARG_SPEC = {
    "store_uri": {"type": "str"},
    "store_passphrase": {"type": "str", "no_log": True},
}


def store_params(params):
    """``(uri, passphrase)`` from module params, the environment applied late (an explicit option wins)."""
    uri = params.get("store_uri") or os.environ.get(ENV_URI) or None
    passphrase = params.get("store_passphrase")
    if passphrase is None:
        passphrase = os.environ.get(ENV_PASSPHRASE) or None
    return uri, passphrase


def open_store_from_params(params, create=True):
    """The store selected by a module's ``store_uri``/``store_passphrase`` options (``create``: see open_store)."""
    uri, passphrase = store_params(params)
    return open_store(uri, passphrase, create=create)


def open_store(uri=None, passphrase=None, mongo_client_factory=None, create=True):
    """Open the credential store named by ``uri`` (see the package docstring).

    ``passphrase`` None falls back to ``KUBEPKI_STORE_PASSPHRASE``; an empty string means "no passphrase".
    ``mongo_client_factory`` (tests only) replaces ``pymongo.MongoClient``. ``create=False`` (check mode)
    leaves a missing embedded store file (and its directory) uncreated and reads it as empty.
    """
    if uri is None:
        uri = os.environ.get(ENV_URI) or DEFAULT_PATH
    if passphrase is None:
        passphrase = os.environ.get(ENV_PASSPHRASE) or None
    passphrase = passphrase or None
    if not isinstance(uri, str) or not uri.strip():
        raise KubePkiError("store_uri: an empty value is not a store location")
    uri = uri.strip()
    lowered = uri.lower()
    if lowered.startswith("mongodb://") or lowered.startswith("mongodb+srv://"):
        return MongoStore(uri, passphrase, client_factory=mongo_client_factory)
    if lowered.startswith("sqlite:"):
        rest = uri[len("sqlite:"):]
        if not rest.startswith("///"):
            raise KubePkiError("store_uri %r is not a valid embedded store URI: write sqlite:///PATH" % redact_uri(uri))
        return SqliteStore("/" + rest.lstrip("/"), passphrase, create=create)
    if lowered.startswith("file:"):
        rest = uri[len("file:"):]
        if rest.startswith("//"):
            rest = "/" + rest.lstrip("/")
        if not rest:
            raise KubePkiError("store_uri %r names no file" % uri)
        return SqliteStore(rest, passphrase, create=create)
    if "://" in uri or lowered.startswith("mongodb:"):
        raise KubePkiError(
            "store_uri %r has an unsupported scheme; use mongodb://, mongodb+srv://, sqlite:///PATH, file:PATH or a path"
            % redact_uri(uri))
    return SqliteStore(uri, passphrase, create=create)
