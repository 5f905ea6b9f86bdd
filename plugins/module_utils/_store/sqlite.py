# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The embedded credential store, the default: one SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import tempfile
import time
import urllib.parse

from ansible_collections.kubepki.certs.plugins.module_utils import _files
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._store.base import KEY_LISTING_FIELDS, PROTECTION_NAME, REKEY_ROUNDS, CredentialStore, _Changed

SQLITE_BUSY_SECONDS = 30.0


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
                    with contextlib.suppress(OSError):
                        os.unlink(name)

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
        return self._run("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (PROTECTION_NAME, _record.dumps(protection))).rowcount == 1

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
                    self._run("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (PROTECTION_NAME, _record.dumps(job.protection)))
                # the old ciphertext (or plaintext) lives on in the WAL until it is checkpointed: best effort, as
                # another connection reading at this moment keeps the WAL from being truncated
                with contextlib.suppress(sqlite3.DatabaseError):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return
            except _Changed:
                job.replan()
        raise KubePkiError("embedded store %s: its keys kept changing while they were rekeyed; nothing was rekeyed, run again" % self.path)

    def _put_key_row(self, conflict, row):
        """``INSERT OR <conflict>`` (IGNORE, REPLACE) of a key row; the cursor."""
        return self._run("INSERT OR %s INTO keys (%s) VALUES (%s)" % (conflict, ", ".join(_KEY_COLUMNS), ", ".join("?" * len(_KEY_COLUMNS))),
                         tuple(int(row[c]) if c == "encrypted" else row[c] for c in _KEY_COLUMNS))

    def _insert_key_if_absent(self, row):
        return self._put_key_row("IGNORE", row).rowcount == 1

    def _upsert_key(self, row):
        self._put_key_row("REPLACE", row)

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

    # a batch (ensure_keys, put_certs, put_cert) is one write transaction: all of it is stored, or none
    _batch = _transaction

    def _write_cert_now(self, scope, cluster, user, text):
        if not _record.replaces(self._read_cert(scope, cluster, user), text):
            return False
        self._run("INSERT OR REPLACE INTO certificates (scope, cluster, user, record) VALUES (?, ?, ?, ?)", (scope, cluster, user, text))
        return True

    def _delete_cert(self, scope, cluster, user):
        return self._run("DELETE FROM certificates WHERE scope = ? AND cluster = ? AND user = ?", (scope, cluster, user)).rowcount > 0

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None
