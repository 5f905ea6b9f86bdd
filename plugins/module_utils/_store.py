# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The credential store: private keys and issued certificates, one interface over two backends.

``open_store(uri, passphrase)`` picks the backend from the URI:

- ``mongodb://`` / ``mongodb+srv://``: MongoDB through pymongo. Database from the URI path (default
  ``kubepki``); collections ``keys`` and ``certificates`` with unique indexes on their identity.
- ``sqlite:///PATH``, ``file:PATH``, a plain path, or nothing at all (``KUBEPKI_STORE_URI``, then
  ``~/.kubepki/store.db``): the embedded store, one SQLite file created 0600 in a 0700 directory. An existing
  path is recognised as a store (SQLite header, ``keys`` and ``certificates`` tables) before anything changes it;
  a file that is not one is refused untouched. ``create=False`` (check mode, reports) opens it read-only.

Key creation is atomic in both: the row/document is inserted only if absent under a unique constraint,
and the loser of a race reads and returns the winner's key. With a passphrase, keys are kept as
encrypted PKCS#8 at rest; records always hand out the decrypted PEM.

Key protection (``check_passphrase``): a store keeps all its keys one way, plaintext or encrypted under one
passphrase. A small record (``key_protection``: the mode, and for an encrypted store a throwaway EC P-256 key
encrypted under the passphrase, the *verifier*) says which; every write of a key checks the caller's passphrase
against it first and refuses a wrong, missing or superfluous passphrase before anything is written. The verifier
is used instead of trial-decrypting a stored key because its cost is fixed and small (one KDF and an EC P-256
load, about 1 ms; a stored RSA key costs 50 ms and more to load) and because it exists in an empty store: the
first write fixes the mode (inserted if absent, so of two first writers with different passphrases one loses and
writes nothing). A store written before the record existed is judged by its keys (one encrypted key is
decrypted) and gets the record with its next write. ``rekey`` (module ``store_rekey``) changes the mode or the
passphrase of every key at once.

Certificates never go back in time: ``put_cert``/``put_certs`` skip a record when the stored record of the same
identity is newer (``not_before``, then ``not_after``, compared as times).

Listings (``list_keys``, ``list_certs``) read everything of a scope, or of the whole store, for reports such as
the inventory: key rows come without ``private_key_pem`` and nothing is decrypted, so they need no passphrase.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import tempfile
import time
import urllib.parse

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _files
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

# pymongo is imported only when a MongoDB store is opened: it costs close to a second of start-up that
# the embedded store does not need.
pymongo = None
mongo_errors = None


def import_pymongo():
    """Import pymongo into this module's globals; False when it is not installed."""
    global pymongo, mongo_errors  # pylint: disable=global-statement
    if pymongo is None:
        try:
            import pymongo as pymongo_lib  # pylint: disable=import-outside-toplevel
            from pymongo import errors as errors_lib  # pylint: disable=import-outside-toplevel
        except ImportError:
            return False
        pymongo, mongo_errors = pymongo_lib, errors_lib
    return True


ENV_URI = "KUBEPKI_STORE_URI"
ENV_PASSPHRASE = "KUBEPKI_STORE_PASSPHRASE"
DEFAULT_PATH = os.path.join("~", ".kubepki", "store.db")
DEFAULT_MONGO_DATABASE = "kubepki"
MONGO_TIMEOUT_MS = 3000
SQLITE_BUSY_SECONDS = 30.0

STORE_ARG_SPEC = {
    "store_uri": {"type": "str"},
    "store_passphrase": {"type": "str", "no_log": True},
}

# Fields of a certificate record (etcd value and store record); see docs/internals.md.
CERT_FIELDS = (
    "scope", "cluster", "user", "common_name", "organizations", "certificate", "csr_name", "csr_uid",
    "signer_name", "serial", "not_before", "not_after", "public_key_sha256",
)


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


def _userinfo(uri):
    """``(userinfo, rest after it)`` of a URI with ``scheme://userinfo@hosts...``, else ``(None, None)``.

    The authority ends at the first ``/`` as pymongo reads it; when a (wrongly unescaped) ``/`` in the password
    hides the ``@`` from that reading, everything up to the last ``@`` is taken instead, so the secret is still found.
    """
    if not isinstance(uri, str):
        return None, None
    rest = uri.partition("://")[2]
    authority = rest.partition("/")[0]
    if "@" in authority:
        userinfo, _at, hosts = authority.rpartition("@")
        return userinfo, hosts + rest[len(authority):]
    if "@" in rest:
        userinfo, _at, tail = rest.rpartition("@")
        return userinfo, tail
    return None, None


# URI options whose values are secrets (pymongo: the password of an encrypted client key; AWS session tokens)
_SECRET_OPTIONS = ("tlscertificatekeyfilepassword",)
_SECRET_PROPERTIES = ("aws_session_token",)


def uri_secrets(uri):
    """The secret parts of a store URI, for ``module.no_log_values``: the password of its user information, as written
    and URL-decoded, and the values of secret options (``tlsCertificateKeyFilePassword``, ``AWS_SESSION_TOKEN`` in
    ``authMechanismProperties``). An embedded store URI has none. Returns a list of distinct non-empty strings."""
    if not isinstance(uri, str) or "://" not in uri:
        return []
    found = []
    userinfo, tail = _userinfo(uri)
    if userinfo is not None and ":" in userinfo:
        password = userinfo.partition(":")[2]
        found += [password, urllib.parse.unquote(password)]
    query = (tail if tail is not None else uri).partition("?")[2]
    for part in query.split("&"):
        name, _eq, value = part.partition("=")
        name = name.lower()
        if name in _SECRET_OPTIONS:
            found += [value, urllib.parse.unquote(value)]
        elif name == "authmechanismproperties":
            for prop in urllib.parse.unquote(value).split(","):
                prop_name, _colon, prop_value = prop.partition(":")
                if prop_name.lower() in _SECRET_PROPERTIES:
                    found.append(prop_value)
    distinct = []
    for item in found:
        if item and item not in distinct:
            distinct.append(item)
    return distinct


def _mask_options(query):
    """A URI query string with the values of secret options masked."""
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if name.lower() in _SECRET_OPTIONS:
            value = "***"
        elif name.lower() == "authmechanismproperties":
            props = []
            for prop in urllib.parse.unquote(value).split(","):
                prop_name, colon, prop_value = prop.partition(":")
                props.append(prop_name + colon + ("***" if prop_name.lower() in _SECRET_PROPERTIES else prop_value))
            value = ",".join(props)
        parts.append(name + eq + value)
    return "&".join(parts)


def redact_uri(uri):
    """``uri`` with its secrets masked (``mongodb://user:***@host/db``), safe for messages and results."""
    if not isinstance(uri, str):
        return repr(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    userinfo, tail = _userinfo(uri)
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        rest = (user + ":***" if colon else user) + "@" + tail
    head, question, query = rest.partition("?")
    return scheme + sep + head + question + _mask_options(query)


# a shorter password would mask every occurrence of a letter or two in a message: it is masked in the URI only
_MIN_SCRUB = 3


def _scrub(text, uri):
    """``text`` (an error message) with every secret of ``uri`` masked."""
    text = str(text)
    userinfo, _tail = _userinfo(uri)
    if userinfo and ":" in userinfo:
        text = text.replace(userinfo, userinfo.partition(":")[0] + ":***")
    for secret in sorted(uri_secrets(uri), key=len, reverse=True):
        if len(secret) >= _MIN_SCRUB:
            text = text.replace(secret, "***")
    return text


def canonical_json(record):
    """The byte-stable JSON form of a record, as stored in etcd and compared for ``changed``."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def open_store(uri=None, passphrase=None, mongo_client_factory=None, create=True):
    """Open the credential store named by ``uri`` (see the module docstring).

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


class KeyConflict(KubePkiError):
    """``replace_key(..., expected_sha256=...)`` found another key than the one the caller read: another run rotated
    (or removed) it first, and it was not replaced again. ``current`` is the KeyRecord stored now (None when there is
    none); it is an attribute only, never part of ``details`` (which fail_json returns)."""

    def __init__(self, msg, current=None):
        super().__init__(msg)
        self.current = current


class _Changed(Exception):
    """Inside a rekey transaction: the keys differ from the ones the plan was made from."""


PROTECTION_NAME = "key_protection"
REKEY_ROUNDS = 5

# the fields of a key row that list_keys hands out: everything but the private key
KEY_LISTING_FIELDS = ("scope", "user", "cluster", "key_type", "public_key_sha256", "created", "encrypted")


def _times(record, what):
    """``(not_before, not_after)`` of a certificate record as aware datetimes; None when either is missing.
    ``what`` names the record in the KubePkiError raised for a value that is not a timestamp."""
    values = []
    for field in ("not_before", "not_after"):
        text = record.get(field)
        if text is None or text == "":
            return None
        try:
            values.append(_crypto.parse_rfc3339(text))
        except KubePkiError:
            raise KubePkiError("%s: %s %r is not an RFC 3339 timestamp" % (what, field, text)) from None
    return tuple(values)


def _stored_times(text):
    """The validity of a stored record's JSON text, or None when it has none (or is damaged): it is then replaced."""
    try:
        record = json.loads(text)
        return _times(record, "stored record") if isinstance(record, dict) else None
    except (ValueError, KubePkiError):
        return None


def _should_write(stored_text, text, times):
    """Whether a certificate record ``text`` (validity ``times``) replaces ``stored_text``: never when equal, never
    when the stored record is newer (not_before, then not_after); a record of the same age replaces it."""
    if stored_text == text:
        return False
    if stored_text is None or times is None:
        return True
    stored = _stored_times(stored_text)
    return stored is None or stored <= times


class CredentialStore:
    """The common part of both backends: key records, encryption at rest, the public contract."""

    kind = None
    location = None

    def __init__(self, passphrase=None):
        self._passphrase = passphrase or None
        self._protection_ok = False
        self._protection_pending = False

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_identity(scope, user, cluster):
        for name, value in (("scope", scope), ("user", user)):
            if not isinstance(value, str) or not value:
                raise KubePkiError("%s must be a non-empty string to address the credential store, got %r" % (name, value))
        if not isinstance(cluster, str):
            raise KubePkiError("cluster must be a string to address the credential store, got %r" % (cluster,))

    @staticmethod
    def _what(row):
        return "the stored key of user %r (scope %r%s)" % (
            row["user"], row["scope"], ", cluster %r" % row["cluster"] if row["cluster"] else "")

    def _new_key_row(self, scope, user, cluster, key_type):
        key = _crypto.generate_private_key(key_type)
        return {
            "scope": scope, "user": user, "cluster": cluster, "key_type": key_type,
            "private_key_pem": _crypto.private_key_to_pem(key, self._passphrase),
            "public_key_sha256": _crypto.public_key_sha256(key),
            "created": _crypto.rfc3339(_crypto.utc_now()),
            "encrypted": bool(self._passphrase),
        }

    def _record_from_row(self, row):
        """The KeyRecord of a stored row: the private key decrypted, everything else as stored."""
        record = dict(row)
        record["encrypted"] = bool(record.get("encrypted"))
        what = self._what(record)
        if record["encrypted"]:
            if not self._passphrase:
                raise KubePkiError("%s is encrypted at rest: give store_passphrase (or KUBEPKI_STORE_PASSPHRASE)" % what)
            try:
                key = _crypto.load_private_key(record["private_key_pem"], self._passphrase, what=what)
            except KubePkiError:
                raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase" % what) from None
            record["private_key_pem"] = _crypto.private_key_to_pem(key)
        return record

    # ------------------------------------------------------------------ key protection

    @staticmethod
    def _protection_for(passphrase):
        """A new key_protection record for ``passphrase`` (None: plaintext). The verifier is a throwaway EC P-256 key
        encrypted with the passphrase: it proves the passphrase, and holds nothing worth having."""
        if not passphrase:
            return {"encrypted": False, "verifier": None}
        canary = _crypto.generate_private_key("ec-p256")
        return {"encrypted": True, "verifier": _crypto.private_key_to_pem(canary, passphrase)}

    @staticmethod
    def _opens(pem, passphrase):
        """Whether ``passphrase`` decrypts the encrypted PEM ``pem``."""
        if not passphrase or not pem:
            return False
        try:
            _crypto.load_private_key(pem, passphrase)
        except KubePkiError:
            return False
        return True

    def _protection_from_keys(self):
        """The key_protection of a store written before the record existed, judged by its keys; None when it has none."""
        modes = self._key_modes()
        if not modes:
            return None
        if len(modes) > 1:
            raise KubePkiError(
                "credential store %s already holds both plaintext and encrypted private keys: bring them under one passphrase "
                "(or none) with kubepki.certs.store_rekey first; nothing was written" % self.location)
        if True in modes:
            return {"encrypted": True, "verifier": self._sample_encrypted_pem()}
        return {"encrypted": False, "verifier": None}

    def _judge(self, protection):
        """KubePkiError unless this store's passphrase fits ``protection`` (None: an empty store, anything fits)."""
        if protection is None:
            return
        if protection.get("encrypted"):
            if not self._passphrase:
                raise KubePkiError(
                    "credential store %s keeps its private keys encrypted, but no store_passphrase (or KUBEPKI_STORE_PASSPHRASE) "
                    "is given: a key written now would be plaintext beside encrypted ones. Give the store's passphrase, or "
                    "decrypt the whole store with kubepki.certs.store_rekey; nothing was written" % self.location)
            if not self._opens(protection.get("verifier"), self._passphrase):
                raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                                   "nothing was written" % self.location)
        elif self._passphrase:
            raise KubePkiError(
                "store_passphrase is set, but credential store %s keeps its private keys unencrypted: a key written now would "
                "be encrypted beside plaintext ones. Omit store_passphrase, or encrypt the whole store first with "
                "kubepki.certs.store_rekey (new_store_passphrase); nothing was written" % self.location)

    def check_passphrase(self):
        """Refuse (KubePkiError naming ``store_passphrase``) a passphrase that does not fit the store, writing nothing.

        An encrypted store needs its passphrase; a plaintext store takes none; an empty store takes either (its first
        key write fixes the mode). Costs one read and, for an encrypted store, one decryption of the small verifier.
        Every key write (ensure_key, ensure_keys, replace_key) runs it first; it is checked once per store object.
        Read-only: callers may run it in check mode too.
        """
        if self._protection_ok:
            return
        protection = self._read_protection()
        pending = protection is None
        if pending:
            protection = self._protection_from_keys()
        self._judge(protection)
        self._protection_ok = True
        self._protection_pending = pending

    def _before_key_write(self):
        """check_passphrase, then the key_protection record stored if it is missing (the first write fixes the mode).
        Of two writers racing to store it, the loser checks against the winner's record and writes nothing."""
        self.check_passphrase()
        if not self._protection_pending:
            return
        if not self._insert_protection_if_absent(self._protection_for(self._passphrase)):
            self._protection_ok = False
            self._judge(self._read_protection())
            self._protection_ok = True
        self._protection_pending = False

    # ------------------------------------------------------------------ keys

    def get_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        return None if row is None else self._record_from_row(row)

    def ensure_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE):
        """``(KeyRecord, created)``; two concurrent callers end with one key (the loser returns the winner's).
        Before a key is created the passphrase is checked (check_passphrase)."""
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        if row is not None:
            return self._record_from_row(row), False
        _crypto.check_key_type(key_type)
        self._before_key_write()
        new_row = self._new_key_row(scope, user, cluster, key_type)
        created = self._insert_key_if_absent(new_row)
        row = new_row if created else self._read_key(scope, user, cluster)
        if row is None:
            raise KubePkiError("credential store %s lost the key of user %r while creating it" % (self.location, user))
        return self._record_from_row(row), created

    def ensure_keys(self, wanted):
        """``ensure_key`` for each ``(scope, user, cluster, key_type)`` of ``wanted``; a backend may do it in
        one transaction. Returns how many keys were created. Bad input (and a passphrase that does not fit the
        store) is refused before anything is written."""
        self._check_batch_keys(wanted)
        if any(self._read_key(*item[:3]) is None for item in wanted):
            self._before_key_write()
        return sum(1 for item in wanted if self.ensure_key(*item)[1])

    def _check_batch_keys(self, wanted):
        for scope, user, cluster, key_type in wanted:
            self._check_identity(scope, user, cluster)
            _crypto.check_key_type(key_type)

    def _check_batch_certs(self, records):
        """``(scope, cluster, user, canonical JSON, validity)`` of each certificate record, all checked before any is
        written (validity: ``(not_before, not_after)`` as datetimes, or None when the record lacks them)."""
        rows = []
        for record in records:
            if not isinstance(record, dict):
                raise KubePkiError("a certificate record must be a dict, got %s" % type(record).__name__)
            self._check_identity(record.get("scope"), record.get("user"), record.get("cluster"))
            what = "the certificate record of user %r (scope %r, cluster %r)" % (record["user"], record["scope"], record["cluster"])
            rows.append((record["scope"], record["cluster"], record["user"], canonical_json(record), _times(record, what)))
        return rows

    def replace_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE, expected_sha256=None):
        """Rotate a key: a new one of ``key_type`` replaces the stored one; returns the new KeyRecord.

        ``expected_sha256``: the ``public_key_sha256`` of the key the caller read and means to replace. The
        replacement is then one atomic compare-and-replace in both backends: it happens only while that key is still
        the stored one. Otherwise nothing is written and KeyConflict is raised, its ``current`` attribute holding the
        KeyRecord stored now (another run's rotation, or None when the key was deleted), so of two concurrent
        rotations exactly one replaces the key and the other can go on with the winner's key. Without
        ``expected_sha256`` the key is replaced (or created) unconditionally, as before; rotations should pass it.
        The passphrase is checked first (check_passphrase).
        """
        self._check_identity(scope, user, cluster)
        _crypto.check_key_type(key_type)
        if expected_sha256 is not None and (not isinstance(expected_sha256, str) or not expected_sha256):
            raise KubePkiError("expected_sha256 must be the public key SHA-256 (hex) of the key to replace, got %r" % (expected_sha256,))
        self._before_key_write()
        row = self._new_key_row(scope, user, cluster, key_type)
        if expected_sha256 is None:
            self._upsert_key(row)
        elif not self._replace_key_if(row, expected_sha256.lower()):
            stored = self._read_key(scope, user, cluster)
            current = None if stored is None else self._record_from_row(stored)
            raise KeyConflict(
                "the key of user %r (scope %r%s) was not rotated: it is no longer the key this run read (public key SHA-256 "
                "%s), %s; run again to work with the stored key" % (
                    user, scope, ", cluster %r" % cluster if cluster else "", expected_sha256,
                    "another run removed it" if current is None else "another run replaced it with %s" % current["public_key_sha256"]),
                current=current)
        return self._record_from_row(row)

    def delete_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        return self._delete_key(scope, user, cluster)

    # ------------------------------------------------------------------ rekey

    def _open_for_rekey(self, row, new_passphrase):
        """``(private key, already as wanted)`` of a stored key row. An encrypted key opens with the current passphrase
        or, when a rekey stopped halfway (MongoDB), with the new one; KubePkiError when neither opens it."""
        what = self._what(row)
        if not row.get("encrypted"):
            return _crypto.load_private_key(row["private_key_pem"], what=what), not new_passphrase
        tries = [(self._passphrase, False), (new_passphrase, True)]
        if new_passphrase and new_passphrase == self._passphrase:
            tries = [(new_passphrase, True)]
        for passphrase, as_wanted in tries:
            if passphrase:
                try:
                    return _crypto.load_private_key(row["private_key_pem"], passphrase, what=what), as_wanted
                except KubePkiError:
                    pass
        if not self._passphrase:
            raise KubePkiError("%s is encrypted: give its current passphrase as store_passphrase; nothing was rekeyed" % what)
        raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase; nothing was rekeyed" % what)

    def _rekey_plan(self, new_passphrase):
        """``(rows, changes)``: every stored key row, and ``(old row, new row)`` for each one not yet as wanted.
        Every key is opened here, before anything is written."""
        rows = self._list_key_rows()
        changes = []
        for row in rows:
            key, as_wanted = self._open_for_rekey(row, new_passphrase)
            if not as_wanted:
                changes.append((row, dict(row, private_key_pem=_crypto.private_key_to_pem(key, new_passphrase),
                                          encrypted=bool(new_passphrase))))
        return rows, changes

    def _protection_change(self, new_passphrase):
        """``(stored record or None, new record or None)``: the new key_protection record when it must change."""
        stored = self._read_protection()
        if stored is not None and stored.get("encrypted"):
            if not (self._opens(stored.get("verifier"), self._passphrase) or self._opens(stored.get("verifier"), new_passphrase)):
                if not self._passphrase:
                    raise KubePkiError("credential store %s keeps its private keys encrypted: give their current passphrase as "
                                       "store_passphrase; nothing was rekeyed" % self.location)
                raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                                   "nothing was rekeyed" % self.location)
            if new_passphrase and self._opens(stored.get("verifier"), new_passphrase):
                return stored, None
        elif stored is not None and not new_passphrase:
            return stored, None
        return stored, self._protection_for(new_passphrase)

    def rekey(self, new_passphrase=None, check=False):
        """Bring every key of the store under ``new_passphrase`` (None or '': plaintext), opening each with this store's
        passphrase (a plaintext key needs none). All or nothing: every key is decrypted before anything is written,
        and a key that does not open fails the whole rekey with nothing written. ``check``: only count.

        Returns ``{"keys": stored keys, "keys_changed": keys re-encrypted (or that would be), "changed": bool,
        "encrypted": bool (the mode afterwards)}``, never key material. See the backends for how the writes stay
        safe against concurrent writers. The store object keeps its old passphrase: open a new one to use the keys.
        """
        new_passphrase = new_passphrase or None
        rows, changes = self._rekey_plan(new_passphrase)
        stored, protection = self._protection_change(new_passphrase)
        if not check and (changes or protection is not None):
            self._apply_rekey(new_passphrase, rows, changes, stored, protection)
            self._protection_ok = False
        return {"keys": len(rows), "keys_changed": len(changes), "changed": bool(changes) or protection is not None,
                "encrypted": bool(new_passphrase)}

    # ------------------------------------------------------------------ certificates

    def get_cert(self, scope, cluster, user):
        self._check_identity(scope, user, cluster)
        text = self._read_cert(scope, cluster, user)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise KubePkiError("credential store %s holds a damaged certificate record for user %r, cluster %r" % (
                self.location, user, cluster)) from None

    def put_cert(self, record):
        """Store a certificate record; ``True`` when it was written. A record equal to the stored one, or older
        than it (``not_before``, then ``not_after``, compared as times), is not written (``False``); one of the
        same age that differs replaces it. A value that is not a timestamp is refused."""
        return self._write_cert(*self._check_batch_certs([record])[0])

    def put_certs(self, records):
        """``put_cert`` for each record; a backend may do it in one transaction. Returns how many were written (an
        older or equal record is skipped without failing the batch). Bad input is refused before anything is written."""
        return sum(1 for row in self._check_batch_certs(records) if self._write_cert(*row))

    def delete_cert(self, scope, cluster, user):
        self._check_identity(scope, user, cluster)
        return self._delete_cert(scope, cluster, user)

    # ------------------------------------------------------------------ listings

    @staticmethod
    def _check_scope(scope):
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise KubePkiError("scope must be a non-empty string (or None for every scope) to list the credential store, got %r" % (scope,))

    def list_keys(self, scope=None):
        """Every stored key (of ``scope`` when given, else of every scope), sorted by (scope, user, cluster), as a dict
        of KEY_LISTING_FIELDS: ``scope, user, cluster, key_type, public_key_sha256, created, encrypted`` (a bool).

        ``private_key_pem`` is never read from the backend and nothing is decrypted, so no passphrase is needed (and
        none is checked). A document that is not a key row (a MongoDB document without a string identity or
        fingerprint) is left out. A missing embedded store opened with ``create=False`` lists nothing."""
        self._check_scope(scope)
        keys = []
        for row in self._list_key_facts(scope):
            row = {field: row.get(field) for field in KEY_LISTING_FIELDS}
            if not all(isinstance(row[field], str) for field in ("scope", "user", "cluster", "public_key_sha256")):
                continue
            row["encrypted"] = bool(row["encrypted"])
            keys.append(row)
        return sorted(keys, key=lambda k: (k["scope"], k["user"], k["cluster"]))

    def list_certs(self, scope=None, damaged=None):
        """Every stored certificate record (of ``scope`` when given), as get_cert returns it, sorted by (scope, cluster,
        user). A stored record that is not a JSON object is refused like get_cert refuses it (KubePkiError naming its
        user and cluster), unless ``damaged`` is a list: its ``(scope, cluster, user)`` is then appended there and the
        record left out, so a report can name it and go on. A missing embedded store lists nothing."""
        self._check_scope(scope)
        records = []
        for item_scope, cluster, user, text in sorted(self._list_cert_texts(scope), key=lambda item: tuple(str(v) for v in item[:3])):
            try:
                record = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif damaged is not None:
                damaged.append((item_scope, cluster, user))
            else:
                raise KubePkiError("credential store %s holds a damaged certificate record for user %r, cluster %r (scope %r)" % (
                    self.location, user, cluster, item_scope))
        return records

    def close(self):
        """Release the connection; the store is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ backend hooks

    def _read_key(self, scope, user, cluster):
        raise NotImplementedError

    def _list_key_rows(self):
        raise NotImplementedError

    def _list_key_facts(self, scope):
        """The stored key rows of ``scope`` (None: all) with the KEY_LISTING_FIELDS only, never the private key."""
        raise NotImplementedError

    def _list_cert_texts(self, scope):
        """``[(scope, cluster, user, record text)]`` of the stored certificate records of ``scope`` (None: all)."""
        raise NotImplementedError

    def _key_modes(self):
        """The set of ``encrypted`` values (bools) among the stored keys."""
        raise NotImplementedError

    def _sample_encrypted_pem(self):
        raise NotImplementedError

    def _read_protection(self):
        raise NotImplementedError

    def _insert_protection_if_absent(self, protection):
        raise NotImplementedError

    def _insert_key_if_absent(self, row):
        raise NotImplementedError

    def _upsert_key(self, row):
        raise NotImplementedError

    def _replace_key_if(self, row, expected_sha256):
        raise NotImplementedError

    def _apply_rekey(self, new_passphrase, rows, changes, stored_protection, protection):
        raise NotImplementedError

    def _delete_key(self, scope, user, cluster):
        raise NotImplementedError

    def _read_cert(self, scope, cluster, user):
        raise NotImplementedError

    def _write_cert(self, scope, cluster, user, text, times):
        raise NotImplementedError

    def _delete_cert(self, scope, cluster, user):
        raise NotImplementedError


# ====================================================================== embedded (SQLite)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS keys (
        scope TEXT NOT NULL, user TEXT NOT NULL, cluster TEXT NOT NULL,
        key_type TEXT NOT NULL, private_key_pem TEXT NOT NULL, public_key_sha256 TEXT NOT NULL,
        created TEXT NOT NULL, encrypted INTEGER NOT NULL,
        PRIMARY KEY (scope, user, cluster))""",
    """CREATE TABLE IF NOT EXISTS certificates (
        scope TEXT NOT NULL, cluster TEXT NOT NULL, user TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (scope, cluster, user))""",
    """CREATE TABLE IF NOT EXISTS meta (name TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)""",
)
_SCHEMA_TABLES = ("keys", "certificates", "meta")
# what makes an existing file a store (meta came later: a store written before it has none)
_STORE_TABLES = ("keys", "certificates")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE = 100
_KEY_COLUMNS = ("scope", "user", "cluster", "key_type", "private_key_pem", "public_key_sha256", "created", "encrypted")


class SqliteStore(CredentialStore):
    """The embedded default: one SQLite file (WAL journal), mode 0600, parent directory 0700 when we create it.

    Tables ``keys``, ``certificates`` and ``meta`` (the key_protection record). Batches and rekey are one write
    transaction each; a conditional replace_key is one ``UPDATE ... WHERE public_key_sha256 = ?``.
    """

    kind = "embedded"

    def __init__(self, path, passphrase=None, create=True):
        super().__init__(passphrase)
        self.path = os.path.abspath(os.path.expanduser(path))
        self.location = "sqlite:///" + self.path.lstrip("/")
        self._db = None
        if not os.path.lexists(self.path):
            if not create:
                # check mode: nothing is written, and a store that does not exist yet holds nothing
                self._db = sqlite3.connect(":memory:", isolation_level=None)
                for statement in _SCHEMA:
                    self._db.execute(statement)
                return
            self._create_file()
        # an existing path is recognised as a store before anything touches it; a refusal changes nothing
        self._recognise()
        if create:
            self._tighten()
        self._connect(read_only=not create)

    def _refuse(self, why):
        return KubePkiError("store_uri: %s is not a usable embedded store: %s; nothing was changed, check store_uri" % (self.path, why))

    def _recognise(self):
        """KubePkiError unless the existing ``self.path`` is an embedded store: a regular file (not opened
        otherwise), with the SQLite header and the store's ``keys`` and ``certificates`` tables. Reads only: its
        mode, owner, content and mtime stay as they are, and nothing is created beside it."""
        if os.path.isdir(self.path):
            raise KubePkiError("store_uri: %s is a directory, not an embedded store file" % self.path)
        if not os.path.exists(self.path):
            raise self._refuse("it is a symbolic link to a missing file")
        try:
            header = _files.read_regular_file(self.path, "store_uri", limit=_SQLITE_HEADER_SIZE)
        except _files.NotRegularFile as exc:
            raise self._refuse("it is %s, not a regular file" % exc.kind) from None
        except OSError as exc:
            raise KubePkiError("store_uri: cannot read the embedded store file %s: %s" % (self.path, exc.strerror or exc)) from None
        if not header:
            raise self._refuse("the file is empty (a new store is created only where no file exists)")
        if not header.startswith(_SQLITE_MAGIC) or len(header) < _SQLITE_HEADER_SIZE:
            raise self._refuse("it is not an SQLite database")
        tables = self._tables(header)
        missing = [name for name in _STORE_TABLES if name not in tables]
        if missing:
            raise self._refuse("an SQLite database without the store's %s table%s" % (
                " and ".join(missing), "s" if len(missing) > 1 else ""))

    def _tables(self, header):
        """The table names of the SQLite file, read without writing or creating anything: with ``immutable`` while
        the file is in WAL mode and no WAL file exists (no connection is open, all content is in the file: a
        read-only connection would otherwise leave -wal and -shm files behind), else read-only."""
        wal = header[18:20] == b"\x02\x02"
        option = "immutable=1" if wal and not os.path.lexists(self.path + "-wal") else "mode=ro"
        uri = "file:%s?%s" % (urllib.parse.quote(self.path), option)
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_SECONDS, isolation_level=None)) as db:
                return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise self._refuse(str(exc)) from None

    def _create_file(self):
        """A new store file: built under a temporary name beside ``self.path`` (0600, WAL mode, all tables), then
        linked into place whole. Another run never finds it half made; of two runs creating it at once the
        first link wins and the other uses that store."""
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent, mode=0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise KubePkiError("store_uri: cannot create the directory %s for the embedded store: %s" % (
                    parent, exc.strerror or exc)) from None
        temp = None
        try:
            fd, temp = tempfile.mkstemp(dir=parent, prefix=".%s." % os.path.basename(self.path), suffix=".new")
            os.close(fd)
            with contextlib.closing(sqlite3.connect(temp, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode = WAL")
                for statement in _SCHEMA:
                    db.execute(statement)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another run created it first: that store is used
            except OSError:
                self._copy_into_place(temp)  # a file system without hard links
        except (OSError, sqlite3.DatabaseError) as exc:
            raise KubePkiError("store_uri: cannot open or create the embedded store file %s: %s" % (
                self.path, getattr(exc, "strerror", None) or exc)) from None
        finally:
            if temp is not None:
                for name in (temp, temp + "-wal", temp + "-shm", temp + "-journal"):
                    try:
                        os.unlink(name)
                    except OSError:
                        pass

    def _copy_into_place(self, temp):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as target, open(temp, "rb") as source:
            target.write(source.read())
            target.flush()
            os.fsync(target.fileno())

    def _tighten(self):
        """Mode 0600 for the recognised store file when it is looser (a writing open only)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            return  # the connection reports what is wrong
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _connect(self, read_only=False):
        """The connection. Writing: WAL journal, tables created if missing. ``read_only`` (check mode, reports): no
        pragma or statement that writes; a table missing in an older store is stood in for by an empty TEMP table,
        and SQLite itself then refuses any write (``query_only``)."""
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        while True:
            try:
                self._db = sqlite3.connect(self.path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None)
                self._db.execute("PRAGMA busy_timeout = %d" % int(SQLITE_BUSY_SECONDS * 1000))
                # a replaced or deleted key is overwritten with zeros in the file, not left in a free page
                self._db.execute("PRAGMA secure_delete = ON")
                if read_only:
                    present = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    for name, statement in zip(_SCHEMA_TABLES, _SCHEMA):
                        if name not in present:
                            self._db.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
                    self._db.execute("PRAGMA query_only = ON")
                    return
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
                if not mode or str(mode[0]).lower() != "wal":
                    raise sqlite3.OperationalError("database is locked (journal mode %r)" % (mode,))
                for statement in _SCHEMA:
                    self._db.execute(statement)
                return
            except sqlite3.DatabaseError as exc:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise KubePkiError("store_uri: %s is not a usable embedded store: %s" % (self.path, exc)) from None

    def _run(self, sql, args=()):
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise KubePkiError("embedded store %s: %s" % (self.path, exc)) from None

    def _read_key(self, scope, user, cluster):
        row = self._run("SELECT %s FROM keys WHERE scope = ? AND user = ? AND cluster = ?" % ", ".join(_KEY_COLUMNS),
                        (scope, user, cluster)).fetchone()
        return None if row is None else dict(zip(_KEY_COLUMNS, row))

    def _list_key_rows(self):
        cursor = self._run("SELECT %s FROM keys ORDER BY scope, user, cluster" % ", ".join(_KEY_COLUMNS))
        return [dict(zip(_KEY_COLUMNS, row)) for row in cursor.fetchall()]

    def _list_key_facts(self, scope):
        sql, args = "SELECT %s FROM keys" % ", ".join(KEY_LISTING_FIELDS), ()
        if scope is not None:
            sql, args = sql + " WHERE scope = ?", (scope,)
        return [dict(zip(KEY_LISTING_FIELDS, row)) for row in self._run(sql, args).fetchall()]

    def _list_cert_texts(self, scope):
        sql, args = "SELECT scope, cluster, user, record FROM certificates", ()
        if scope is not None:
            sql, args = sql + " WHERE scope = ?", (scope,)
        return [tuple(row) for row in self._run(sql, args).fetchall()]

    def _key_modes(self):
        return {bool(row[0]) for row in self._run("SELECT DISTINCT encrypted FROM keys").fetchall()}

    def _sample_encrypted_pem(self):
        row = self._run("SELECT private_key_pem FROM keys WHERE encrypted = 1 LIMIT 1").fetchone()
        return None if row is None else row[0]

    def _read_protection(self):
        row = self._run("SELECT value FROM meta WHERE name = ?", (PROTECTION_NAME,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise KubePkiError("embedded store %s holds a damaged key_protection record" % self.path)
        return value

    def _insert_protection_if_absent(self, protection):
        return self._run("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (PROTECTION_NAME, canonical_json(protection))).rowcount == 1

    def _replace_key_if(self, row, expected_sha256):
        cursor = self._run(
            "UPDATE keys SET key_type = ?, private_key_pem = ?, public_key_sha256 = ?, created = ?, encrypted = ? "
            "WHERE scope = ? AND user = ? AND cluster = ? AND public_key_sha256 = ?",
            (row["key_type"], row["private_key_pem"], row["public_key_sha256"], row["created"], int(row["encrypted"]),
             row["scope"], row["user"], row["cluster"], expected_sha256))
        return cursor.rowcount == 1

    def _apply_rekey(self, new_passphrase, rows, changes, stored_protection, protection):
        """All keys and the key_protection record in one write transaction. The plan was made (every key decrypted)
        before the lock was taken; inside, the keys are compared with the ones planned from, and when another writer
        changed them meanwhile the transaction is dropped and the plan made again."""
        for _round in range(REKEY_ROUNDS):
            try:
                with self._transaction():
                    if self._list_key_rows() != rows or self._read_protection() != stored_protection:
                        raise _Changed()
                    for old, new in changes:
                        if self._run("UPDATE keys SET private_key_pem = ?, encrypted = ? WHERE scope = ? AND user = ? AND cluster = ? "
                                     "AND private_key_pem = ?", (new["private_key_pem"], int(new["encrypted"]), old["scope"], old["user"],
                                                                 old["cluster"], old["private_key_pem"])).rowcount != 1:
                            raise _Changed()
                    if protection is not None:
                        self._run("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (PROTECTION_NAME, canonical_json(protection)))
                # the old ciphertext (or plaintext) lives on in the WAL until it is checkpointed: best effort, as
                # another connection reading at this moment keeps the WAL from being truncated
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.DatabaseError:
                    pass
                return
            except _Changed:
                rows, changes = self._rekey_plan(new_passphrase)
                stored_protection, protection = self._protection_change(new_passphrase)
                if not changes and protection is None:
                    return
        raise KubePkiError("embedded store %s: its keys kept changing while they were rekeyed; nothing was rekeyed, run again" % self.path)

    def _key_values(self, row):
        return tuple(int(row[c]) if c == "encrypted" else row[c] for c in _KEY_COLUMNS)

    def _insert_key_if_absent(self, row):
        cursor = self._run("INSERT OR IGNORE INTO keys (%s) VALUES (%s)" % (", ".join(_KEY_COLUMNS), ", ".join("?" * len(_KEY_COLUMNS))),
                           self._key_values(row))
        return cursor.rowcount == 1

    def _upsert_key(self, row):
        self._run("INSERT OR REPLACE INTO keys (%s) VALUES (%s)" % (", ".join(_KEY_COLUMNS), ", ".join("?" * len(_KEY_COLUMNS))),
                  self._key_values(row))

    def _delete_key(self, scope, user, cluster):
        return self._run("DELETE FROM keys WHERE scope = ? AND user = ? AND cluster = ?", (scope, user, cluster)).rowcount > 0

    def _read_cert(self, scope, cluster, user):
        row = self._run("SELECT record FROM certificates WHERE scope = ? AND cluster = ? AND user = ?", (scope, cluster, user)).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (taken at once, so a read inside it cannot go stale); rolled back on error."""
        self._run("BEGIN IMMEDIATE")
        try:
            yield
            self._run("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _write_cert_now(self, scope, cluster, user, text, times):
        if not _should_write(self._read_cert(scope, cluster, user), text, times):
            return False
        self._run("INSERT OR REPLACE INTO certificates (scope, cluster, user, record) VALUES (?, ?, ?, ?)", (scope, cluster, user, text))
        return True

    def _write_cert(self, scope, cluster, user, text, times):
        with self._transaction():
            return self._write_cert_now(scope, cluster, user, text, times)

    def put_certs(self, records):
        """All records in one transaction: every one is stored (or skipped as older or equal), or (on an error) none."""
        rows = self._check_batch_certs(records)
        if not rows:
            return 0
        with self._transaction():
            return sum(1 for row in rows if self._write_cert_now(*row))

    def ensure_keys(self, wanted):
        """The missing keys of ``wanted`` generated and stored in one transaction (all of them, or none)."""
        self._check_batch_keys(wanted)
        missing = [item for item in wanted if self._read_key(*item[:3]) is None]
        if not missing:
            return 0
        self._before_key_write()
        # keys are generated before the write lock is taken; a key another writer stored meanwhile wins
        rows = [self._new_key_row(*item) for item in missing]
        with self._transaction():
            return sum(1 for row in rows if self._insert_key_if_absent(row))

    def _delete_cert(self, scope, cluster, user):
        return self._run("DELETE FROM certificates WHERE scope = ? AND cluster = ? AND user = ?", (scope, cluster, user)).rowcount > 0

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None


# ====================================================================== MongoDB

class MongoStore(CredentialStore):
    """MongoDB through pymongo: collections ``keys`` and ``certificates``, unique indexes on their identity, and
    ``meta`` (the key_protection record, ``_id: key_protection``).

    No multi-document transaction is used (they need a replica set), so every write that must not overwrite another
    writer's is a single-document compare: a conditional replace_key replaces only the document whose
    ``public_key_sha256`` is the expected one; a certificate record is replaced only while the stored text is the one
    compared (else it is read and compared again); rekey replaces each key only while its ciphertext is the one
    decrypted. How rekey stays safe without a transaction: (1) every key is decrypted first, so a wrong passphrase or
    a damaged key writes nothing; (2) the key_protection record is switched (compare-and-replace), so from then on
    writers with the old passphrase are refused; (3) each key is replaced with a compare on its old ciphertext;
    (4) the keys are read again and any still under the old passphrase (a key another writer stored meanwhile, or
    replaced under the compare) is done again, until none is left. Interrupted between (2) and (4), every key is
    readable with the old or the new passphrase, and running the same rekey again finishes it (a key already under
    the new passphrase counts as unchanged).
    """

    kind = "mongodb"

    def __init__(self, uri, passphrase=None, client_factory=None, timeout_ms=MONGO_TIMEOUT_MS):
        super().__init__(passphrase)
        self.location = redact_uri(uri)
        have_pymongo = import_pymongo()
        if client_factory is None:
            if not have_pymongo:
                raise KubePkiError("store_uri selects MongoDB, but the pymongo library is not installed on the host that runs this module")
            client_factory = pymongo.MongoClient
        try:
            self._client = client_factory(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        except Exception as exc:  # pymongo raises InvalidURI, ConfigurationError, ValueError, TypeError here
            raise KubePkiError("store_uri %s is not a usable MongoDB URI: %s" % (self.location, _scrub(exc, uri))) from None
        try:
            database = self._client.get_default_database(default=DEFAULT_MONGO_DATABASE)
        except Exception as exc:  # pylint: disable=broad-except
            self._client.close()
            raise KubePkiError("store_uri %s names no usable database: %s" % (self.location, _scrub(exc, uri))) from None
        self._keys = database["keys"]
        self._certs = database["certificates"]
        self._meta = database["meta"]
        self._uri = uri
        self._guard(self._create_indexes)

    def _create_indexes(self):
        self._keys.create_index([("scope", 1), ("user", 1), ("cluster", 1)], unique=True, name="kubepki_key_identity")
        self._certs.create_index([("scope", 1), ("cluster", 1), ("user", 1)], unique=True, name="kubepki_cert_identity")

    def _hosts(self):
        rest = self._uri.partition("://")[2]
        authority = rest.partition("/")[0].partition("?")[0]
        return authority.rpartition("@")[2] or "localhost"

    def _guard(self, func, *args):
        try:
            return func(*args)
        except KubePkiError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if mongo_errors is not None and isinstance(exc, mongo_errors.ServerSelectionTimeoutError):
                raise KubePkiError("store_uri: MongoDB at %s is unreachable (no server answered within %.1fs)" % (
                    self._hosts(), MONGO_TIMEOUT_MS / 1000.0), store=self.location) from None
            if mongo_errors is not None and isinstance(exc, mongo_errors.OperationFailure):
                raise KubePkiError("store_uri: MongoDB at %s refused the operation: %s" % (self._hosts(), _scrub(exc, self._uri))) from None
            raise KubePkiError("store_uri: MongoDB at %s failed: %s" % (self._hosts(), _scrub(exc, self._uri))) from None

    @staticmethod
    def _strip(document):
        if document is None:
            return None
        document = dict(document)
        document.pop("_id", None)
        return document

    def _read_key(self, scope, user, cluster):
        return self._strip(self._guard(self._keys.find_one, {"scope": scope, "user": user, "cluster": cluster}))

    def _list_key_rows(self):
        def listing():
            return [self._strip(doc) for doc in self._keys.find({}).sort([("scope", 1), ("user", 1), ("cluster", 1)])]
        return self._guard(listing)

    def _list_key_facts(self, scope):
        query = {} if scope is None else {"scope": scope}
        projection = dict.fromkeys(KEY_LISTING_FIELDS, 1)
        projection["_id"] = 0
        return self._guard(lambda: [dict(doc) for doc in self._keys.find(query, projection)])

    def _list_cert_texts(self, scope):
        query = {} if scope is None else {"scope": scope}
        projection = {"_id": 0, "scope": 1, "cluster": 1, "user": 1, "record": 1}
        return self._guard(lambda: [(doc.get("scope"), doc.get("cluster"), doc.get("user"), doc.get("record"))
                                    for doc in self._certs.find(query, projection)])

    def _key_modes(self):
        return {mode for mode in (True, False) if self._guard(self._keys.find_one, {"encrypted": mode}) is not None}

    def _sample_encrypted_pem(self):
        document = self._guard(self._keys.find_one, {"encrypted": True})
        return None if document is None else document.get("private_key_pem")

    def _read_protection(self):
        document = self._strip(self._guard(self._meta.find_one, {"_id": PROTECTION_NAME}))
        return None if document is None else {"encrypted": bool(document.get("encrypted")), "verifier": document.get("verifier")}

    def _insert_protection_if_absent(self, protection):
        def insert():
            try:
                self._meta.insert_one(dict(protection, _id=PROTECTION_NAME))
            except mongo_errors.DuplicateKeyError:
                return False
            return True
        return self._guard(insert)

    def _replace_key_if(self, row, expected_sha256):
        identity = {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"], "public_key_sha256": expected_sha256}
        return self._guard(self._keys.replace_one, identity, dict(row)).matched_count == 1

    def _apply_rekey(self, new_passphrase, rows, changes, stored_protection, protection):
        """See the class docstring: protection record switched, keys replaced under a compare, then swept again."""
        if protection is not None:
            if stored_protection is None:
                switched = self._insert_protection_if_absent(protection)
            else:
                switched = self._guard(self._meta.replace_one, dict(stored_protection, _id=PROTECTION_NAME), dict(protection)).matched_count == 1
            if not switched:
                raise KubePkiError("credential store %s: its key_protection record changed while it was rekeyed (another "
                                   "store_rekey?); nothing was rekeyed, run again" % self.location)
        for _round in range(REKEY_ROUNDS):
            for old, new in changes:
                identity = {"scope": old["scope"], "user": old["user"], "cluster": old["cluster"], "private_key_pem": old["private_key_pem"]}
                self._guard(self._keys.update_one, identity, {"$set": {"private_key_pem": new["private_key_pem"], "encrypted": new["encrypted"]}})
            rows, changes = self._rekey_plan(new_passphrase)
            if not changes:
                return
        raise KubePkiError("credential store %s: keys kept changing while they were rekeyed; every key opens with the old or "
                           "the new passphrase: run the same store_rekey again to finish" % self.location)

    def _insert_key_if_absent(self, row):
        def insert():
            try:
                self._keys.insert_one(dict(row))
            except mongo_errors.DuplicateKeyError:
                return False
            return True
        return self._guard(insert)

    def _upsert_key(self, row):
        self._guard(self._keys.replace_one, {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"]}, dict(row), True)

    def _delete_key(self, scope, user, cluster):
        result = self._guard(self._keys.delete_one, {"scope": scope, "user": user, "cluster": cluster})
        return result.deleted_count > 0

    def _read_cert(self, scope, cluster, user):
        document = self._guard(self._certs.find_one, {"scope": scope, "cluster": cluster, "user": user})
        return None if document is None else document.get("record")

    def _write_cert(self, scope, cluster, user, text, times):
        """Compare, then replace only while the stored record is the one compared (a changed one is compared again)."""
        identity = {"scope": scope, "cluster": cluster, "user": user}

        def insert():
            try:
                self._certs.insert_one(dict(identity, record=text))
            except mongo_errors.DuplicateKeyError:
                return False
            return True

        for _round in range(REKEY_ROUNDS):
            stored = self._read_cert(scope, cluster, user)
            if not _should_write(stored, text, times):
                return False
            if stored is None:
                if self._guard(insert):
                    return True
            elif self._guard(self._certs.replace_one, dict(identity, record=stored), dict(identity, record=text)).matched_count == 1:
                return True
        raise KubePkiError("credential store %s: the certificate record of user %r, cluster %r kept changing while it was "
                           "written; run again" % (self.location, user, cluster))

    def _delete_cert(self, scope, cluster, user):
        result = self._guard(self._certs.delete_one, {"scope": scope, "cluster": cluster, "user": user})
        return result.deleted_count > 0

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None
