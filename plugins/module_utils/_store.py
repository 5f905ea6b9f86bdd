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

import base64
import contextlib
import json
import os
import random
import sqlite3
import stat
import tempfile
import time
import urllib.parse

from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.kubepki.certs.plugins.module_utils import _deps, _files
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError:  # pragma: no cover - reported by _deps.require()
    pass

# pymongo is imported only when a MongoDB store is opened: it costs close to a second of start-up that
# the embedded store does not need.
pymongo = None
mongo_errors = None
mongo_concerns = None


def import_pymongo():
    """Import pymongo into this module's globals; False when it is not installed."""
    global pymongo, mongo_errors, mongo_concerns  # pylint: disable=global-statement
    if pymongo is None:
        loaded = _deps.load("pymongo.errors", "pymongo.read_concern", "pymongo.write_concern", "pymongo")
        if loaded is None:
            return False
        errors, reads, writes = loaded[:3]
        mongo_errors, mongo_concerns = errors, (writes.WriteConcern(w="majority", j=True), reads.ReadConcern("majority"))
        pymongo = loaded[3]
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


class _Rekey:
    """One rekey: the plan (every key opened, before anything is written), the target KEK and the record to store."""

    def __init__(self, store, new_passphrase, stored, target):
        self.store = store
        self.new_passphrase = new_passphrase
        self.stored = stored
        self.target = target
        self.aead = None
        self.protection = None
        self.rows, self.changes = store._rekey_plan(new_passphrase, self.target_kid)  # pylint: disable=protected-access

    @property
    def target_kid(self):
        return None if self.target is None else self.target["id"]

    def prepare(self):
        """The target KEK (a new one costs one KDF) and the key_protection record that goes with it."""
        if self.new_passphrase:
            if self.target is None:
                self.target, self.aead = new_kek(self.new_passphrase, self.store.location)
            else:
                self.aead = open_kek(self.target, self.new_passphrase, self.store.location)
        self.protection = _protection_record(self.target)

    def seal(self, row, pem):
        """``(stored text, encrypted)`` of a key under the target."""
        if self.aead is None:
            return pem, False
        return seal_key(self.aead, self.target["id"], row["scope"], row["user"], row["cluster"], pem), True

    def replan(self):
        """The plan made again from what is stored now (the target KEK stays)."""
        self.stored = self.store._protection_now(fresh=True)  # pylint: disable=protected-access
        self.rows, self.changes = self.store._rekey_plan(self.new_passphrase, self.target_kid)  # pylint: disable=protected-access


PROTECTION_NAME = "key_protection"
REKEY_ROUNDS = 5
# A compare-and-replace of one certificate record is lost only when another writer's newer record won meanwhile, so
# a record loses at most once per concurrent writer: the bound is there against a livelock, not against contention.
CERT_WRITE_ROUNDS = 50

# the fields of a key row that list_keys hands out: everything but the private key
KEY_LISTING_FIELDS = ("scope", "user", "cluster", "key_type", "public_key_sha256", "created", "encrypted")

# ---------------------------------------------------------------------- keys at rest: one KEK, one AEAD per key

WRAP_FORMAT = "kubepki-aead-v1"
# scrypt at OWASP's first recommended setting (128 MiB, about a second on a slow core), paid once per run; recorded
# in the key_protection record, so a store keeps opening when a later release changes these, and store_rekey with
# the same passphrase moves a store to the defaults of its release
KDF_DEFAULTS = {"kdf": "scrypt", "n": 2 ** 17, "r": 8, "p": 1}
# what a stored record may ask for: a damaged or hostile record must not make a run allocate gigabytes
_KDF_LIMITS = {"n": (2 ** 10, 2 ** 20), "r": (1, 32), "p": (1, 16)}
_KDF_MAX_BYTES = 2 ** 30
_SALT_BYTES = 16
_NONCE_BYTES = 12
_CHECK_PLAINTEXT = b"kubepki key_protection check"
_KEK_CACHE = {}
_KEK_CACHE_SIZE = 8
LEGACY_FORMAT_WARNING = (
    "credential store %s keeps its private keys in the older at-rest format (encrypted PKCS#8, PBKDF2 with 2048 "
    "rounds, one KDF per key); it is still read and written, but run kubepki.certs.store_rekey with new_store_passphrase "
    "equal to store_passphrase to move it to scrypt and AES-256-GCM")


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


def is_sealed(text):
    """Whether a stored ``private_key_pem`` value is a key sealed under the store's KEK (the current format)."""
    return isinstance(text, str) and text.startswith(WRAP_FORMAT + ":")


def _key_aad(kid, scope, user, cluster):
    """The associated data of a sealed key: it binds the ciphertext to its row."""
    return canonical_json([WRAP_FORMAT, kid, "key", scope, user, cluster]).encode("utf-8")


def _check_aad(kid):
    return canonical_json([WRAP_FORMAT, kid, "key_protection"]).encode("utf-8")


def _kdf_params(descriptor, where):
    """``(salt, n, r, p)`` of a KEK descriptor, checked; KubePkiError naming ``where`` for a damaged one."""
    try:
        params = tuple(int(descriptor[name]) for name in ("n", "r", "p"))
        salt = _unb64(descriptor["salt"])
        ok = descriptor.get("kdf") == "scrypt" and isinstance(descriptor.get("id"), str) and len(salt) >= _SALT_BYTES
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if ok:
        n, r = params[:2]
        ok = n & (n - 1) == 0 and 128 * n * r <= _KDF_MAX_BYTES and all(
            low <= value <= high for value, (low, high) in zip(params, (_KDF_LIMITS[k] for k in ("n", "r", "p"))))
    if not ok:
        raise KubePkiError("credential store %s holds a damaged key_protection record (its key-encryption key parameters are not usable); "
                           "nothing was written" % where)
    return (salt,) + params


def _derive(passphrase, descriptor, where):
    """The AESGCM of ``descriptor``'s KEK for ``passphrase`` (one scrypt, then cached for the process)."""
    salt, n, r, p = _kdf_params(descriptor, where)
    cache_key = (passphrase, descriptor["id"], salt, n, r, p)
    aead = _KEK_CACHE.get(cache_key)
    if aead is None:
        kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
        aead = AESGCM(kek)
        while len(_KEK_CACHE) >= _KEK_CACHE_SIZE:
            _KEK_CACHE.pop(next(iter(_KEK_CACHE)))
        _KEK_CACHE[cache_key] = aead
    return aead


def new_kek(passphrase, where=""):
    """A new KEK descriptor for ``passphrase`` (random salt and id, KDF_DEFAULTS) and its AESGCM."""
    descriptor = dict(KDF_DEFAULTS, id=os.urandom(6).hex(), salt=_b64(os.urandom(_SALT_BYTES)), aead="AES-256-GCM")
    aead = _derive(passphrase, descriptor, where)
    nonce = os.urandom(_NONCE_BYTES)
    descriptor["check"] = _b64(nonce + aead.encrypt(nonce, _CHECK_PLAINTEXT, _check_aad(descriptor["id"])))
    return descriptor, aead


def open_kek(descriptor, passphrase, where):
    """The AESGCM of a stored KEK descriptor when ``passphrase`` is its passphrase (its check value opens), else None."""
    if not passphrase:
        return None
    aead = _derive(passphrase, descriptor, where)
    try:
        sealed = _unb64(descriptor["check"])
        if aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _check_aad(descriptor["id"])) == _CHECK_PLAINTEXT:
            return aead
    except (InvalidTag, KeyError, TypeError, ValueError):
        pass
    return None


def _kdf_is_current(descriptor):
    """Whether a stored KEK costs at least what KDF_DEFAULTS costs (else store_rekey renews it)."""
    try:
        cost = int(descriptor["n"]) * int(descriptor["r"]) * int(descriptor["p"])
    except (KeyError, TypeError, ValueError):
        return False
    return descriptor.get("kdf") == KDF_DEFAULTS["kdf"] and cost >= KDF_DEFAULTS["n"] * KDF_DEFAULTS["r"] * KDF_DEFAULTS["p"]


def seal_key(aead, kid, scope, user, cluster, pem):
    """The stored text of a private key PEM sealed under a KEK, bound to its row."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = aead.encrypt(nonce, pem.encode("ascii"), _key_aad(kid, scope, user, cluster))
    return "%s:%s:%s:%s" % (WRAP_FORMAT, kid, _b64(nonce), _b64(sealed))


def _sealed_parts(text, what):
    """``(kid, nonce, ciphertext)`` of a sealed key's stored text."""
    parts = text.split(":")
    try:
        if len(parts) == 4 and parts[1]:
            nonce, sealed = _unb64(parts[2]), _unb64(parts[3])
            if len(nonce) == _NONCE_BYTES:
                return parts[1], nonce, sealed
    except ValueError:
        pass
    raise KubePkiError("%s is damaged (not a sealed key)" % what)


def _protection_record(descriptor, previous=()):
    """A key_protection record: encrypted under ``descriptor`` (None: plaintext). ``previous``: KEK descriptors
    keys may still be sealed under while a MongoDB rekey sweeps them (see MongoStore)."""
    record = {"encrypted": descriptor is not None, "verifier": None, "rev": os.urandom(8).hex()}
    if descriptor is not None:
        record["format"] = WRAP_FORMAT
        record["kek"] = descriptor
        record["previous"] = list(previous)
    return record


def _is_legacy(protection):
    """Whether a key_protection record is of the older kind (an encrypted store with a PKCS#8 verifier)."""
    return bool(protection) and bool(protection.get("encrypted")) and not protection.get("kek")


def _descriptors(protection):
    """The KEK descriptors a record names: the current one first (an encrypted record's), then those of an unfinished
    rekey (a MongoDB rekey to plaintext too leaves the old one there until its sweep ends)."""
    if not protection:
        return []
    current = [protection["kek"]] if isinstance(protection.get("kek"), dict) else []
    return current + [item for item in protection.get("previous") or () if isinstance(item, dict)]


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


def _should_write(stored_text, text, times):
    """Whether a certificate record ``text`` (validity ``times``) replaces ``stored_text``: never when equal, never
    when the stored record is newer (not_before, then not_after); a record of the same age replaces it."""
    if stored_text == text:
        return False
    if stored_text is None or times is None:
        return True
    try:
        stored = json.loads(stored_text)
    except ValueError:
        return True  # a damaged record is replaced
    return _record.order(stored, json.loads(text)) in (None, -1, 0)


class CredentialStore:
    """The common part of both backends: key records, encryption at rest, the public contract."""

    kind = None
    location = None

    def __init__(self, passphrase=None):
        self._passphrase = passphrase or None
        self._protection_ok = False
        self._protection_pending = False
        # the key_protection record as last read (None: none stored), and the one this store's new keys follow
        self._protection = None
        self._protection_read = False
        self._governing = None
        self.warnings = []

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

    def _warn(self, message):
        """``message`` once per store object: in ``warnings``, and among the warnings of the module that runs."""
        if message not in self.warnings:
            self.warnings.append(message)
            ansible_warnings.warn(message)

    def _protection_now(self, fresh=False):
        """The stored key_protection record (None when there is none), read once per store object unless ``fresh``."""
        if fresh or not self._protection_read:
            self._protection = self._read_protection()
            self._protection_read = True
        return self._protection

    def _descriptor(self, kid):
        """The KEK descriptor ``kid`` of the key_protection record, read again once when it is not there (a rekey may
        have switched the record since it was read); None when the record does not name it."""
        for fresh in (False, True):
            for descriptor in _descriptors(self._protection_now(fresh)):
                if descriptor.get("id") == kid:
                    return descriptor
        return None

    def _new_key_row(self, scope, user, cluster, key_type):
        """``(row, PEM)``: a new key, its row stored the way the store's record says (after _before_key_write)."""
        key = _crypto.generate_private_key(key_type)
        pem = _crypto.private_key_to_pem(key)
        protection = self._governing or {}
        if not protection.get("encrypted"):
            text, encrypted = pem, False
        elif _is_legacy(protection):
            text, encrypted = _crypto.private_key_to_pem(key, self._passphrase), True
        else:
            descriptor = protection["kek"]
            aead = open_kek(descriptor, self._passphrase, self.location)
            if aead is None:
                raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                                   "nothing was written" % self.location)
            text, encrypted = seal_key(aead, descriptor["id"], scope, user, cluster, pem), True
        row = {
            "scope": scope, "user": user, "cluster": cluster, "key_type": key_type, "private_key_pem": text,
            "public_key_sha256": _crypto.public_key_sha256(key), "created": _crypto.rfc3339(_crypto.utc_now()),
            "encrypted": encrypted,
        }
        return row, pem

    @staticmethod
    def _record_of_new(row, pem):
        return dict(row, private_key_pem=pem, encrypted=bool(row["encrypted"]))

    def _open_key(self, row, passphrase, what):
        """The PEM of the encrypted key ``row`` opened with ``passphrase``; None when that is not its passphrase.
        A sealed key costs one AES-GCM open once the store's KEK is derived; an older PKCS#8 key its own KDF."""
        text = row["private_key_pem"]
        if is_sealed(text):
            kid, nonce, sealed = _sealed_parts(text, what)
            descriptor = self._descriptor(kid)
            if descriptor is None:
                raise KubePkiError("%s is sealed under a key-encryption key (%s) that the key_protection record of credential "
                                   "store %s does not name: the record is damaged or was replaced" % (what, kid, self.location))
            aead = open_kek(descriptor, passphrase, self.location)
            if aead is None:
                return None
            try:
                return aead.decrypt(nonce, sealed, _key_aad(kid, row["scope"], row["user"], row["cluster"])).decode("ascii")
            except InvalidTag:
                raise KubePkiError("%s does not open although store_passphrase is right: it is damaged, or it was moved "
                                   "from another row (a stored key is bound to its scope, user and cluster)" % what) from None
        if not passphrase:
            return None
        try:
            key = _crypto.load_private_key(text, passphrase, what=what)
        except KubePkiError:
            return None
        return _crypto.private_key_to_pem(key)

    def _record_from_row(self, row):
        """The KeyRecord of a stored row: the private key decrypted, everything else as stored."""
        record = dict(row)
        record["encrypted"] = bool(record.get("encrypted"))
        what = self._what(record)
        if record["encrypted"]:
            if not self._passphrase:
                raise KubePkiError("%s is encrypted at rest: give store_passphrase (or KUBEPKI_STORE_PASSPHRASE)" % what)
            if not is_sealed(record["private_key_pem"]):
                self._warn(LEGACY_FORMAT_WARNING % self.location)
            pem = self._open_key(row, self._passphrase, what)
            if pem is None:
                raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase" % what)
            record["private_key_pem"] = pem
        return record

    # ------------------------------------------------------------------ key protection

    def _protection_for(self, passphrase, legacy=False):
        """A new key_protection record for ``passphrase`` (None: plaintext): a new KEK (one KDF). ``legacy``: of the
        older kind, for a store whose keys are older encrypted PKCS#8 keys (its verifier a throwaway EC key in that
        form), so that its keys stay one kind until store_rekey moves them all."""
        if not passphrase:
            return _protection_record(None)
        if legacy:
            return {"encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key("ec-p256"), passphrase)}
        return _protection_record(new_kek(passphrase, self.location)[0])

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

    def _record_opens(self, protection, passphrase, any_kek=False):
        """Whether ``passphrase`` is the passphrase of an encrypted key_protection record (its current KEK; with
        ``any_kek`` also one a rekey left behind)."""
        if not passphrase:
            return False
        if _is_legacy(protection):
            return self._opens(protection.get("verifier"), passphrase)
        descriptors = _descriptors(protection)
        if not any_kek:
            descriptors = [protection["kek"]] if isinstance(protection.get("kek"), dict) else []
        return any(open_kek(descriptor, passphrase, self.location) is not None for descriptor in descriptors)

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
            sample = self._sample_encrypted_pem()
            if is_sealed(sample):
                raise KubePkiError(
                    "credential store %s holds sealed private keys but no key_protection record, which holds the salt and KDF "
                    "parameters they need: restore the record (the meta table or collection) from a backup; nothing was "
                    "written" % self.location)
            return {"encrypted": True, "verifier": sample}
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
            if _is_legacy(protection):
                self._warn(LEGACY_FORMAT_WARNING % self.location)
            if not self._record_opens(protection, self._passphrase):
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
        key write fixes the mode). Costs one read and, for an encrypted store, the one KDF of this run (scrypt: its
        KEK is derived and kept for the keys) and the opening of the small check value. Every key write
        (ensure_key, ensure_keys, replace_key) runs it first; it is checked once per store object.
        Read-only: callers may run it in check mode too.
        """
        if self._protection_ok:
            return
        protection = self._protection_now(fresh=True)
        pending = protection is None
        if pending:
            protection = self._protection_from_keys()
        self._judge(protection)
        self._governing = protection
        self._protection_ok = True
        self._protection_pending = pending

    def _before_key_write(self):
        """check_passphrase, then the key_protection record stored if it is missing (the first write fixes the mode).
        Of two writers racing to store it, the loser checks against the winner's record and writes nothing."""
        self.check_passphrase()
        if not self._protection_pending:
            return
        judged_by_keys = self._governing
        record = self._protection_for(self._passphrase, legacy=bool(judged_by_keys and judged_by_keys.get("encrypted")))
        if not self._insert_protection_if_absent(record):
            self._protection_ok = False
            record = self._protection_now(fresh=True)
            self._judge(record)
            self._protection_ok = True
        self._protection, self._protection_read, self._governing = record, True, record
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
        new_row, pem = self._new_key_row(scope, user, cluster, key_type)
        if self._insert_key_if_absent(new_row):
            return self._record_of_new(new_row, pem), True
        row = self._read_key(scope, user, cluster)
        if row is None:
            raise KubePkiError("credential store %s lost the key of user %r while creating it" % (self.location, user))
        return self._record_from_row(row), False

    def ensure_keys(self, wanted):
        """``ensure_key`` for each ``(scope, user, cluster, key_type)`` of ``wanted``; a backend may do it in
        one transaction. Returns how many keys were created. Bad input (and a passphrase that does not fit the
        store) is refused before anything is written."""
        self._check_batch_keys(wanted)
        missing = [item for item in wanted if self._read_key(*item[:3]) is None]
        if not missing:
            return 0
        self._before_key_write()
        created = 0
        for item in missing:
            if self._insert_key_if_absent(self._new_key_row(*item)[0]):
                created += 1
        return created

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
        row, pem = self._new_key_row(scope, user, cluster, key_type)
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
        return self._record_of_new(row, pem)

    def delete_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        return self._delete_key(scope, user, cluster)

    # ------------------------------------------------------------------ rekey

    def _open_for_rekey(self, row, new_passphrase, target_kid):
        """``(PEM, already as wanted)`` of a stored key row. An encrypted key opens with the current passphrase or,
        when a rekey stopped halfway (MongoDB), with the new one; KubePkiError when neither opens it. A key is as
        wanted when it is plaintext and no passphrase is wanted, or sealed under the target KEK ``target_kid``."""
        what = self._what(row)
        if not row.get("encrypted"):
            return _crypto.private_key_to_pem(_crypto.load_private_key(row["private_key_pem"], what=what)), not new_passphrase
        tries = [self._passphrase] if self._passphrase else []
        if new_passphrase and new_passphrase != self._passphrase:
            tries.append(new_passphrase)
        for passphrase in tries:
            pem = self._open_key(row, passphrase, what)
            if pem is not None:
                text = row["private_key_pem"]
                return pem, target_kid is not None and is_sealed(text) and text.split(":")[1] == target_kid
        if not self._passphrase:
            raise KubePkiError("%s is encrypted: give its current passphrase as store_passphrase; nothing was rekeyed" % what)
        raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase; nothing was rekeyed" % what)

    def _rekey_plan(self, new_passphrase, target_kid):
        """``(rows, changes)``: every stored key row, and ``(old row, PEM)`` for each one not yet as wanted.
        Every key is opened here, before anything is written."""
        rows = self._list_key_rows()
        changes = []
        for row in rows:
            pem, as_wanted = self._open_for_rekey(row, new_passphrase, target_kid)
            if not as_wanted:
                changes.append((row, pem))
        return rows, changes

    def _check_rekey_passphrase(self, stored, new_passphrase):
        """KubePkiError (nothing written) unless the current or the new passphrase opens an encrypted store's record."""
        if stored is None or not stored.get("encrypted"):
            return
        if self._record_opens(stored, self._passphrase, any_kek=True) or self._record_opens(stored, new_passphrase, any_kek=True):
            return
        if not self._passphrase:
            raise KubePkiError("credential store %s keeps its private keys encrypted: give their current passphrase as "
                               "store_passphrase; nothing was rekeyed" % self.location)
        raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                           "nothing was rekeyed" % self.location)

    def _reusable_kek(self, stored, new_passphrase):
        """The stored current KEK when it is the new passphrase's and as strong as KDF_DEFAULTS, else None (a new one)."""
        if not new_passphrase or not stored or not stored.get("encrypted") or _is_legacy(stored):
            return None
        descriptor = stored["kek"]
        if _kdf_is_current(descriptor) and open_kek(descriptor, new_passphrase, self.location) is not None:
            return descriptor
        return None

    def rekey(self, new_passphrase=None, check=False):
        """Bring every key of the store under ``new_passphrase`` (None or '': plaintext), opening each with this store's
        passphrase (a plaintext key needs none). All or nothing: every key is decrypted before anything is written,
        and a key that does not open fails the whole rekey with nothing written. ``check``: only count.

        Keys end sealed under one KEK of ``new_passphrase`` (the current format): the store's KEK when it already is
        the new passphrase's and as strong as KDF_DEFAULTS (then nothing changes), else a new one (new salt, one
        KDF). So the same passphrase moves an older store (PKCS#8 keys) or an older KDF setting to the current one.

        Returns ``{"keys": stored keys, "keys_changed": keys re-encrypted (or that would be), "changed": bool,
        "encrypted": bool (the mode afterwards)}``, never key material. See the backends for how the writes stay
        safe against concurrent writers. The store object keeps its old passphrase: open a new one to use the keys.
        """
        new_passphrase = new_passphrase or None
        stored = self._protection_now(fresh=True)
        job = _Rekey(self, new_passphrase, stored, self._reusable_kek(stored, new_passphrase))
        self._check_rekey_passphrase(stored, new_passphrase)
        if stored is None:
            record_changes = True
        elif not new_passphrase:
            record_changes = bool(stored.get("encrypted")) or bool(stored.get("previous"))
        else:
            record_changes = job.target is None or bool(stored.get("previous"))
        outcome = {"keys": len(job.rows), "keys_changed": len(job.changes), "changed": bool(job.changes) or record_changes,
                   "encrypted": bool(new_passphrase)}
        if not check and outcome["changed"]:
            job.prepare()
            self._apply_rekey(job)
            self._protection_ok = False
            self._protection_read = False
        return outcome

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
    # What each backend (SqliteStore, MongoStore) defines; everything above is written on these alone.
    # keys:   _read_key(scope, user, cluster); _list_key_rows(); _list_key_facts(scope) (the rows of scope, None
    #         for all, with KEY_LISTING_FIELDS only: never the private key); _key_modes() (the set of ``encrypted``
    #         values stored); _sample_encrypted_pem(); _insert_key_if_absent(row); _upsert_key(row);
    #         _replace_key_if(row, expected_sha256); _delete_key(scope, user, cluster)
    # rekey:  _read_protection(); _insert_protection_if_absent(protection); _apply_rekey(job) (the changed keys of a
    #         prepared _Rekey and its key_protection record, together)
    # certs:  _list_cert_texts(scope) ([(scope, cluster, user, record text)] of scope, None for all);
    #         _read_cert(scope, cluster, user); _write_cert(scope, cluster, user, text, times);
    #         _delete_cert(scope, cluster, user)


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

    def _apply_rekey(self, job):
        """All keys and the key_protection record in one write transaction. The plan was made (every key decrypted)
        before the lock was taken; inside, the keys are compared with the ones planned from, and when another writer
        changed them meanwhile the transaction is dropped and the plan made again."""
        for _round in range(REKEY_ROUNDS):
            try:
                with self._transaction():
                    if self._list_key_rows() != job.rows or self._read_protection() != job.stored:
                        raise _Changed()
                    for old, pem in job.changes:
                        text, encrypted = job.seal(old, pem)
                        if self._run("UPDATE keys SET private_key_pem = ?, encrypted = ? WHERE scope = ? AND user = ? AND cluster = ? "
                                     "AND private_key_pem = ?", (text, int(encrypted), old["scope"], old["user"],
                                                                 old["cluster"], old["private_key_pem"])).rowcount != 1:
                            raise _Changed()
                    self._run("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (PROTECTION_NAME, canonical_json(job.protection)))
                # the old ciphertext (or plaintext) lives on in the WAL until it is checkpointed: best effort, as
                # another connection reading at this moment keeps the WAL from being truncated
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.DatabaseError:
                    pass
                return
            except _Changed:
                job.replan()
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
        rows = [self._new_key_row(*item)[0] for item in missing]
        with self._transaction():
            return sum(1 for row in rows if self._insert_key_if_absent(row))

    def _delete_cert(self, scope, cluster, user):
        return self._run("DELETE FROM certificates WHERE scope = ? AND cluster = ? AND user = ?", (scope, cluster, user)).rowcount > 0

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None


# ====================================================================== MongoDB

# the unique indexes of the MongoDB store: (collection attribute, key pattern, name)
MONGO_INDEXES = (
    ("_keys", (("scope", 1), ("user", 1), ("cluster", 1)), "kubepki_key_identity"),
    ("_certs", (("scope", 1), ("cluster", 1), ("user", 1)), "kubepki_cert_identity"),
)


class MongoStore(CredentialStore):
    """MongoDB through pymongo: collections ``keys`` and ``certificates``, unique indexes on their identity, and
    ``meta`` (the key_protection record, ``_id: key_protection``).

    Keys and the key_protection record are written with write concern ``majority`` and journaled (``j``), and read
    with read concern ``majority``, whatever the URI says: an acknowledged key survives a failover and a restart,
    and a read never sees a key that could still be rolled back. Certificate records (which etcd also holds) follow
    the URI's concerns.

    Indexes are created once, not on every open: before the first write of a collection (an open that only reads
    needs none, and needs no privilege to create them), ``listIndexes`` looks for a unique index on the identity
    (by its key pattern, whatever its name) and ``createIndexes`` runs only when there is none, in practice once in
    the life of the store. Opening costs one ``ping``, so an unreachable server fails the open, before anything else.

    No multi-document transaction is used (they need a replica set), so every write that must not overwrite another
    writer's is a single-document compare: a conditional replace_key replaces only the document whose
    ``public_key_sha256`` is the expected one; a certificate record is replaced only while the stored text is the one
    compared (else it is read and compared again); rekey replaces each key only while its stored text is the one
    decrypted. How rekey stays safe without a transaction: (1) every key is decrypted first, so a wrong passphrase or
    a damaged key writes nothing; (2) the key_protection record is switched (compare-and-replace on its ``rev``), so
    from then on writers with the old passphrase are refused; the new record keeps the old KEK descriptors under
    ``previous`` so that keys not yet rekeyed still open with the old passphrase; (3) each key is replaced with a
    compare on its old text; (4) the keys are read again and any still under the old protection (a key another writer
    stored meanwhile, or replaced under the compare) is done again, until none is left; (5) ``previous`` is dropped.
    Interrupted before (5), every key is readable with the old or the new passphrase, and running the same rekey
    again finishes it (a key already under the new KEK counts as unchanged).
    """

    kind = "mongodb"

    def __init__(self, uri, passphrase=None, client_factory=None, timeout_ms=MONGO_TIMEOUT_MS):
        super().__init__(passphrase)
        self.location = redact_uri(uri)
        self._uri = uri
        self._client = None
        self._database_name = DEFAULT_MONGO_DATABASE
        self._indexed = set()
        self._reached = False
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
        self._database_name = database.name
        pinned = {}
        if mongo_concerns is not None:
            pinned = {"write_concern": mongo_concerns[0], "read_concern": mongo_concerns[1]}
        self._keys = database.get_collection("keys", **pinned)
        self._certs = database["certificates"]
        self._meta = database.get_collection("meta", **pinned)
        try:
            self._guard(self._client.admin.command, "ping")
        except KubePkiError:
            self.close()
            raise
        self._reached = True

    def _ensure_index(self, attribute):
        """The unique identity index of one collection (``_keys``/``_certs``), created when ``listIndexes`` shows
        none with its key pattern; looked for once per store object, before its first write there."""
        if attribute in self._indexed:
            return
        pattern, index_name = next((list(fields), name) for item, fields, name in MONGO_INDEXES if item == attribute)
        collection = getattr(self, attribute)

        def present():
            return any(index.get("unique") and list(dict(index.get("key") or {}).items()) == pattern for index in collection.list_indexes())

        if not self._guard(present):
            self._guard(lambda: collection.create_index(pattern, unique=True, name=index_name))
        self._indexed.add(attribute)

    def _public_uri(self):
        """The store URI without its user information (no user, no password), for messages."""
        rest = self._uri.partition("://")[2]
        tail = rest.partition("/")[2]
        return "%s://%s/%s" % (self._uri.partition("://")[0], self._hosts(), tail.partition("?")[0] or self._database_name)

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
            if mongo_errors is not None and isinstance(exc, mongo_errors.ServerSelectionTimeoutError) and not self._reached:
                raise KubePkiError("store_uri: MongoDB at %s is unreachable (no server answered within %.1fs; store %s)" % (
                    self._hosts(), MONGO_TIMEOUT_MS / 1000.0, self._public_uri()), store=self.location) from None
            if mongo_errors is not None and isinstance(exc, mongo_errors.ServerSelectionTimeoutError):
                raise KubePkiError("store_uri: the connection to MongoDB at %s was lost (no server answered within %.1fs any more; "
                                   "store %s): what was written before is kept, run again" % (
                                       self._hosts(), MONGO_TIMEOUT_MS / 1000.0, self._public_uri()), store=self.location) from None
            if mongo_errors is not None and isinstance(exc, mongo_errors.ConnectionFailure):
                raise KubePkiError("store_uri: the connection to MongoDB at %s was lost (%s; store %s): what was written before "
                                   "is kept, run again" % (self._hosts(), _scrub(exc, self._uri), self._public_uri()), store=self.location) from None
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
        if document is None:
            return None
        document["encrypted"] = bool(document.get("encrypted"))
        document.setdefault("verifier", None)
        return document

    @staticmethod
    def _protection_filter(stored):
        """The filter that matches the key_protection record ``stored`` only while it is unchanged."""
        return {"_id": PROTECTION_NAME, "encrypted": stored.get("encrypted"), "verifier": stored.get("verifier"), "rev": stored.get("rev")}

    def _replace_protection(self, stored, protection):
        return self._guard(self._meta.replace_one, self._protection_filter(stored), dict(protection)).matched_count == 1

    def _insert_new(self, collection, document):
        """Insert ``document``; False when the collection holds one with the same unique key already."""
        def insert():
            try:
                collection.insert_one(document)
            except mongo_errors.DuplicateKeyError:
                return False
            return True
        return self._guard(insert)

    def _insert_protection_if_absent(self, protection):
        return self._insert_new(self._meta, dict(protection, _id=PROTECTION_NAME))

    def _replace_key_if(self, row, expected_sha256):
        identity = {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"], "public_key_sha256": expected_sha256}
        return self._guard(self._keys.replace_one, identity, dict(row)).matched_count == 1

    def _apply_rekey(self, job):
        """See the class docstring: record switched (old KEKs kept as ``previous``), keys replaced under a compare,
        swept again, then ``previous`` dropped."""
        stored, protection = job.stored, job.protection
        switching = stored is None or bool(stored.get("encrypted")) != protection["encrypted"] or \
            (stored.get("kek") or {}).get("id") != (protection.get("kek") or {}).get("id")
        current = stored
        if switching:
            kept = [item for item in _descriptors(stored) if item.get("id") != job.target_kid]
            if kept:
                protection = dict(protection, previous=kept)
            if stored is None:
                switched = self._insert_protection_if_absent(protection)
            else:
                switched = self._replace_protection(stored, protection)
            if not switched:
                raise KubePkiError("credential store %s: its key_protection record changed while it was rekeyed (another "
                                   "store_rekey?); nothing was rekeyed, run again" % self.location)
            current = protection
        for _round in range(REKEY_ROUNDS):
            for old, pem in job.changes:
                text, encrypted = job.seal(old, pem)
                identity = {"scope": old["scope"], "user": old["user"], "cluster": old["cluster"], "private_key_pem": old["private_key_pem"]}
                self._guard(self._keys.update_one, identity, {"$set": {"private_key_pem": text, "encrypted": encrypted}})
            job.replan()
            if not job.changes:
                if current.get("previous") and not self._replace_protection(current, dict(current, previous=[], rev=os.urandom(8).hex())):
                    raise KubePkiError("credential store %s: its key_protection record changed while it was rekeyed (another "
                                       "store_rekey?); every key opens with the old or the new passphrase: run the same "
                                       "store_rekey again to finish" % self.location)
                return
        raise KubePkiError("credential store %s: keys kept changing while they were rekeyed; every key opens with the old or "
                           "the new passphrase: run the same store_rekey again to finish" % self.location)

    def _insert_key_if_absent(self, row):
        self._ensure_index("_keys")
        return self._insert_new(self._keys, dict(row))

    def _upsert_key(self, row):
        self._ensure_index("_keys")
        self._guard(self._keys.replace_one, {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"]}, dict(row), True)

    def _delete_key(self, scope, user, cluster):
        result = self._guard(self._keys.delete_one, {"scope": scope, "user": user, "cluster": cluster})
        return result.deleted_count > 0

    def _read_cert(self, scope, cluster, user):
        document = self._guard(self._certs.find_one, {"scope": scope, "cluster": cluster, "user": user})
        return None if document is None else document.get("record")

    def _write_cert(self, scope, cluster, user, text, times):
        """Compare, then replace only while the stored record is the one compared (a changed one is compared again)."""
        self._ensure_index("_certs")
        identity = {"scope": scope, "cluster": cluster, "user": user}
        for attempt in range(CERT_WRITE_ROUNDS):
            stored = self._read_cert(scope, cluster, user)
            if not _should_write(stored, text, times):
                return False
            if stored is None:
                if self._insert_new(self._certs, dict(identity, record=text)):
                    return True
            elif self._guard(self._certs.replace_one, dict(identity, record=stored), dict(identity, record=text)).matched_count == 1:
                return True
            # another writer replaced the record in between: let it finish before comparing again
            time.sleep(random.uniform(0.001, 0.005) * min(attempt + 1, 10))
        raise KubePkiError("credential store %s: the certificate record of user %r, cluster %r kept changing while it was "
                           "written (%d attempts); run again" % (self.location, user, cluster, CERT_WRITE_ROUNDS))

    def _delete_cert(self, scope, cluster, user):
        result = self._guard(self._certs.delete_one, {"scope": scope, "cluster": cluster, "user": user})
        return result.deleted_count > 0

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None
