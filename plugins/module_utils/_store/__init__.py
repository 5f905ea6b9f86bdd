# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The credential store: private keys and issued certificates, one interface over two backends.

The package: ``base`` (CredentialStore, what both backends share), ``sqlite`` and ``mongodb`` (the backends) and
``sealing`` (keys at rest); the secrets of a store URI are ``_uri``'s. Callers use what this file names.

``open_store(uri, passphrase)`` picks the backend from the URI:

- ``mongodb://`` / ``mongodb+srv://``: MongoDB through pymongo (database from the URI path, default ``kubepki``).
- ``sqlite:///PATH``, ``file:PATH``, a plain path, or nothing at all (``KUBEPKI_STORE_URI``, then
  ``~/.kubepki/store.db``): the embedded store, one SQLite file created 0600 in a 0700 directory. An existing
  path is recognised as a store (SQLite header, ``keys`` and ``certificates`` tables) before anything changes it;
  a file that is not one is refused untouched. ``create=False`` (check mode, reports) opens it read-only.

docs/internals.md, "Credential store", tells the whole contract: keys created atomically, the format at rest and
key_protection, older stores, certificates that never go back in time, rotation, rekey, MongoDB's concerns.
"""

from __future__ import annotations

import os

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._store.base import CredentialStore, KeyConflict  # noqa: F401 (the package's interface)
from ansible_collections.kubepki.certs.plugins.module_utils._store.mongodb import MongoStore, import_pymongo  # noqa: F401
from ansible_collections.kubepki.certs.plugins.module_utils._store.sealing import KDF_DEFAULTS, WRAP_FORMAT, is_sealed  # noqa: F401
from ansible_collections.kubepki.certs.plugins.module_utils._store.sqlite import SqliteStore
from ansible_collections.kubepki.certs.plugins.module_utils._uri import redact_uri, uri_secrets  # noqa: F401

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


def is_mongodb(uri):
    """Whether the store URI ``uri`` selects the MongoDB backend (``mongodb://`` or ``mongodb+srv://``, any case)."""
    return isinstance(uri, str) and uri.strip().lower().startswith(("mongodb://", "mongodb+srv://"))


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
    passphrase = (os.environ.get(ENV_PASSPHRASE) if passphrase is None else passphrase) or None
    if not isinstance(uri, str) or not uri.strip():
        raise KubePkiError("store_uri: an empty value is not a store location")
    uri = uri.strip()
    lowered = uri.lower()
    if is_mongodb(uri):
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
