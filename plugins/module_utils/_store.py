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
  ``~/.kubepki/store.db``): the embedded store, one SQLite file created 0600 in a 0700 directory.

Key creation is atomic in both: the row/document is inserted only if absent under a unique constraint,
and the loser of a race reads and returns the winner's key. With a passphrase, keys are kept as
encrypted PKCS#8 at rest; records always hand out the decrypted PEM.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto
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


def redact_uri(uri):
    """``uri`` without user information (``user:password@``), safe for messages and results."""
    if not isinstance(uri, str):
        return repr(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return scheme + sep + authority + slash + tail


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


class CredentialStore:
    """The common part of both backends: key records, encryption at rest, the public contract."""

    kind = None
    location = None

    def __init__(self, passphrase=None):
        self._passphrase = passphrase or None

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_identity(scope, user, cluster):
        for name, value in (("scope", scope), ("user", user)):
            if not isinstance(value, str) or not value:
                raise KubePkiError("%s must be a non-empty string to address the credential store, got %r" % (name, value))
        if not isinstance(cluster, str):
            raise KubePkiError("cluster must be a string to address the credential store, got %r" % (cluster,))

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
        what = "the stored key of user %r (scope %r%s)" % (
            record["user"], record["scope"], ", cluster %r" % record["cluster"] if record["cluster"] else "")
        if record["encrypted"]:
            if not self._passphrase:
                raise KubePkiError("%s is encrypted at rest: give store_passphrase (or KUBEPKI_STORE_PASSPHRASE)" % what)
            try:
                key = _crypto.load_private_key(record["private_key_pem"], self._passphrase, what=what)
            except KubePkiError:
                raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase" % what) from None
            record["private_key_pem"] = _crypto.private_key_to_pem(key)
        return record

    # ------------------------------------------------------------------ keys

    def get_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        return None if row is None else self._record_from_row(row)

    def ensure_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE):
        """``(KeyRecord, created)``; two concurrent callers end with one key (the loser returns the winner's)."""
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        if row is not None:
            return self._record_from_row(row), False
        new_row = self._new_key_row(scope, user, cluster, key_type)
        created = self._insert_key_if_absent(new_row)
        row = new_row if created else self._read_key(scope, user, cluster)
        if row is None:
            raise KubePkiError("credential store %s lost the key of user %r while creating it" % (self.location, user))
        return self._record_from_row(row), created

    def ensure_keys(self, wanted):
        """``ensure_key`` for each ``(scope, user, cluster, key_type)`` of ``wanted``; a backend may do it in
        one transaction. Returns how many keys were created. Bad input is refused before anything is written."""
        self._check_batch_keys(wanted)
        return sum(1 for item in wanted if self.ensure_key(*item)[1])

    def _check_batch_keys(self, wanted):
        for scope, user, cluster, key_type in wanted:
            self._check_identity(scope, user, cluster)
            _crypto.check_key_type(key_type)

    def _check_batch_certs(self, records):
        """``(scope, cluster, user, canonical JSON)`` of each certificate record, all checked before any is written."""
        rows = []
        for record in records:
            if not isinstance(record, dict):
                raise KubePkiError("a certificate record must be a dict, got %s" % type(record).__name__)
            self._check_identity(record.get("scope"), record.get("user"), record.get("cluster"))
            rows.append((record["scope"], record["cluster"], record["user"], canonical_json(record)))
        return rows

    def replace_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE):
        self._check_identity(scope, user, cluster)
        row = self._new_key_row(scope, user, cluster, key_type)
        self._upsert_key(row)
        return self._record_from_row(row)

    def delete_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        return self._delete_key(scope, user, cluster)

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
        """Store a certificate record; ``True`` when it differed from what was stored."""
        return self._write_cert(*self._check_batch_certs([record])[0])

    def put_certs(self, records):
        """``put_cert`` for each record; a backend may do it in one transaction. Returns how many differed.
        Bad input is refused before anything is written."""
        return sum(1 for row in self._check_batch_certs(records) if self._write_cert(*row))

    def delete_cert(self, scope, cluster, user):
        self._check_identity(scope, user, cluster)
        return self._delete_cert(scope, cluster, user)

    def close(self):
        """Release the connection; the store is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ backend hooks

    def _read_key(self, scope, user, cluster):
        raise NotImplementedError

    def _insert_key_if_absent(self, row):
        raise NotImplementedError

    def _upsert_key(self, row):
        raise NotImplementedError

    def _delete_key(self, scope, user, cluster):
        raise NotImplementedError

    def _read_cert(self, scope, cluster, user):
        raise NotImplementedError

    def _write_cert(self, scope, cluster, user, text):
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
)
_KEY_COLUMNS = ("scope", "user", "cluster", "key_type", "private_key_pem", "public_key_sha256", "created", "encrypted")


class SqliteStore(CredentialStore):
    """The embedded default: one SQLite file (WAL journal), mode 0600, parent directory 0700 when we create it."""

    kind = "embedded"

    def __init__(self, path, passphrase=None, create=True):
        super().__init__(passphrase)
        self.path = os.path.abspath(os.path.expanduser(path))
        self.location = "sqlite:///" + self.path.lstrip("/")
        self._db = None
        if not create and not os.path.lexists(self.path):
            # check mode: nothing is written, and a store that does not exist yet holds nothing
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            for statement in _SCHEMA:
                self._db.execute(statement)
            return
        self._prepare_file()
        self._connect()

    def _prepare_file(self):
        parent = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise KubePkiError("store_uri: %s is a directory, not an embedded store file" % self.path)
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent, mode=0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise KubePkiError("store_uri: cannot create the directory %s for the embedded store: %s" % (
                    parent, exc.strerror or exc)) from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KubePkiError("store_uri: cannot open or create the embedded store file %s: %s" % (
                self.path, exc.strerror or exc)) from None
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _connect(self):
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        while True:
            try:
                self._db = sqlite3.connect(self.path, timeout=SQLITE_BUSY_SECONDS, isolation_level=None)
                self._db.execute("PRAGMA busy_timeout = %d" % int(SQLITE_BUSY_SECONDS * 1000))
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

    def _write_cert_now(self, scope, cluster, user, text):
        if self._read_cert(scope, cluster, user) == text:
            return False
        self._run("INSERT OR REPLACE INTO certificates (scope, cluster, user, record) VALUES (?, ?, ?, ?)", (scope, cluster, user, text))
        return True

    def _write_cert(self, scope, cluster, user, text):
        with self._transaction():
            return self._write_cert_now(scope, cluster, user, text)

    def put_certs(self, records):
        """All records in one transaction: every one is stored, or (on an error) none."""
        rows = self._check_batch_certs(records)
        if not rows:
            return 0
        with self._transaction():
            return sum(1 for row in rows if self._write_cert_now(*row))

    def ensure_keys(self, wanted):
        """The missing keys of ``wanted`` generated and stored in one transaction (all of them, or none)."""
        self._check_batch_keys(wanted)
        # keys are generated before the write lock is taken; a key another writer stored meanwhile wins
        rows = [self._new_key_row(*item) for item in wanted if self._read_key(*item[:3]) is None]
        if not rows:
            return 0
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
    """MongoDB through pymongo: collections ``keys`` and ``certificates``, unique indexes on their identity."""

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

    def _write_cert(self, scope, cluster, user, text):
        identity = {"scope": scope, "cluster": cluster, "user": user}
        if self._read_cert(scope, cluster, user) == text:
            return False
        self._guard(self._certs.replace_one, identity, dict(identity, record=text), True)
        return True

    def _delete_cert(self, scope, cluster, user):
        result = self._guard(self._certs.delete_one, {"scope": scope, "cluster": cluster, "user": user})
        return result.deleted_count > 0

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


def _scrub(exc, uri):
    """The text of ``exc`` with the URI's credentials (if any) removed."""
    text = str(exc)
    authority = uri.partition("://")[2].partition("/")[0]
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        text = text.replace(userinfo, "***")
        password = userinfo.partition(":")[2]
        if len(password) >= 4:
            text = text.replace(password, "***")
    return text
