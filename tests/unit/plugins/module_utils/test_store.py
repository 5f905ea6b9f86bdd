"""Contract tests of the credential store, run against every backend.

- ``embedded``: the real SQLite store in a temporary directory.
- ``mongomock``: MongoDB through mongomock. This is a stand-in: no MongoDB server can run on these
  machines, so the pymongo code paths (unique indexes, duplicate-key handling) run against mongomock.

The same contract tests run against real servers in the functional tier, with the ``Backend`` of this file: a MongoDB
wire-protocol server (tests/functional/modules/test_store_mongodb_wire.py) and a real mongod when
``KUBEPKI_TEST_MONGODB_URI`` is set (tests/functional/inprocess/test_store_mongodb_server.py); so do the races between
processes (tests/functional/inprocess/test_store_processes.py). This file starts nothing.
"""

import base64
import contextlib
import json
import os
import re
import sqlite3
import sys
import uuid

import mongomock
import pytest

# tests/unit, for pki_support, also when the functional tier loads this file by its path
UNIT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if UNIT_DIR not in sys.path:
    sys.path.insert(0, UNIT_DIR)

import pki_support  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError  # noqa: E402

REAL_MONGO = os.environ.get("KUBEPKI_TEST_MONGODB_URI")


class Backend:
    """Opens stores of one backend that share their data within one test."""

    def __init__(self, kind, tmp_path, base_uri=None):
        """``kind``: embedded, mongomock or mongodb (a real server: ``base_uri``, by default KUBEPKI_TEST_MONGODB_URI;
        each Backend gets a database of its own there)."""
        self.kind = kind
        self.tmp_path = tmp_path
        self.opened = []
        self.factory = None
        if kind == "embedded":
            self.uri = str(tmp_path / "state" / "store.db")
        elif kind == "mongomock":
            self.uri = "mongodb://kubepki:secretpw@mongo.invalid:27017/kubepki_test"
            self.client = mongomock.MongoClient(self.uri)
            self.factory = lambda uri, **kwargs: self.client
        else:
            base = (base_uri or REAL_MONGO).rstrip("/")
            database = "kubepki_test_%s" % uuid.uuid4().hex[:8]
            head, _sep, query = base.partition("?")
            authority = head.split("://", 1)[1].split("/", 1)[0]
            self.uri = "%s://%s/%s%s" % (head.split("://", 1)[0], authority, database, "?" + query if query else "")
            self.database = database

    def open(self, passphrase=""):
        store = _store.open_store(self.uri, passphrase, mongo_client_factory=self.factory)
        self.opened.append(store)
        return store

    def raw_dump(self):
        """Everything the backend holds, as text (to look for plaintext keys)."""
        if self.kind == "embedded":
            chunks = []
            for suffix in ("", "-wal"):
                path = self.uri + suffix
                if os.path.exists(path):
                    with open(path, "rb") as handle:
                        chunks.append(handle.read().decode("latin-1"))
            return "".join(chunks)
        if self.kind == "mongomock":
            database = self.client["kubepki_test"]
        else:
            import pymongo  # pylint: disable=import-outside-toplevel
            database = pymongo.MongoClient(self.uri)[self.database]
        return repr(list(database["keys"].find())) + repr(list(database["certificates"].find()))

    def _database(self):
        if self.kind == "mongomock":
            return self.client["kubepki_test"]
        import pymongo  # pylint: disable=import-outside-toplevel
        return pymongo.MongoClient(self.uri)[self.database]

    def drop_protection(self):
        """Remove the key_protection record, as in a store written before the record existed."""
        if self.kind == "embedded":
            with sqlite3.connect(self.uri) as db:
                db.execute("DELETE FROM meta")
        else:
            self._database()["meta"].delete_many({})

    def insert_raw_key(self, row):
        """Store a key row as it is, past every check (as an older version of the collection could have)."""
        if self.kind == "embedded":
            with sqlite3.connect(self.uri) as db:
                db.execute("INSERT INTO keys (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                           [int(v) if isinstance(v, bool) else v for v in row.values()])
        else:
            self._database()["keys"].insert_one(dict(row))

    def raw_key(self, user, scope="default", cluster=""):
        """The stored key row as it is at rest (private_key_pem as stored)."""
        if self.kind == "embedded":
            with contextlib.closing(sqlite3.connect(self.uri)) as db:
                cursor = db.execute("SELECT * FROM keys WHERE scope = ? AND user = ? AND cluster = ?", (scope, user, cluster))
                return dict(zip([column[0] for column in cursor.description], cursor.fetchone()))
        return self._database()["keys"].find_one({"scope": scope, "user": user, "cluster": cluster})

    def set_raw_key_text(self, user, text, scope="default", cluster=""):
        """Overwrite a stored key's text at rest, past every check (as someone with write access to the store could)."""
        if self.kind == "embedded":
            with sqlite3.connect(self.uri) as db:
                db.execute("UPDATE keys SET private_key_pem = ? WHERE scope = ? AND user = ? AND cluster = ?", (text, scope, user, cluster))
        else:
            self._database()["keys"].update_one({"scope": scope, "user": user, "cluster": cluster}, {"$set": {"private_key_pem": text}})

    def put_raw_protection(self, record):
        """Store a key_protection record as it is, past every check."""
        if self.kind == "embedded":
            with sqlite3.connect(self.uri) as db:
                db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('key_protection', ?)", (json.dumps(record),))
        else:
            self._database()["meta"].replace_one({"_id": "key_protection"}, dict(record), upsert=True)

    def edit_protection(self, change):
        """Change the stored key_protection record with ``change(record)`` (it edits the dict in place)."""
        if self.kind == "embedded":
            with contextlib.closing(sqlite3.connect(self.uri)) as db:
                record = json.loads(db.execute("SELECT value FROM meta WHERE name = 'key_protection'").fetchone()[0])
        else:
            record = self._database()["meta"].find_one({"_id": "key_protection"})
            record.pop("_id")
        change(record)
        self.put_raw_protection(record)

    def insert_raw_cert(self, scope, cluster, user, text):
        """Store a certificate record's text as it is, past every check (a damaged record)."""
        if self.kind == "embedded":
            with sqlite3.connect(self.uri) as db:
                db.execute("INSERT INTO certificates (scope, cluster, user, record) VALUES (?, ?, ?, ?)", (scope, cluster, user, text))
        else:
            self._database()["certificates"].insert_one({"scope": scope, "cluster": cluster, "user": user, "record": text})

    def key_count(self):
        if self.kind == "embedded":
            if not os.path.exists(self.uri):
                return 0
            with sqlite3.connect(self.uri) as db:
                return db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
        return self._database()["keys"].count_documents({})

    def cleanup(self):
        for store in self.opened:
            store.close()
        if self.kind == "mongodb":
            import pymongo  # pylint: disable=import-outside-toplevel
            pymongo.MongoClient(self.uri).drop_database(self.database)


@pytest.fixture(autouse=True)
def quick_kdf(monkeypatch):
    """scrypt at the smallest cost a store accepts: these tests are about the protocol, not the KDF's cost (which
    test_a_fresh_store_records_a_strong_kdf checks); a store records its parameters, so it opens whatever they are."""
    monkeypatch.setitem(_store.KDF_DEFAULTS, "n", 2 ** 10)


@pytest.fixture(params=["embedded", "mongomock"])
def backend(request, tmp_path):
    item = Backend(request.param, tmp_path)
    yield item
    item.cleanup()


def cert_record(key_pem, user="alice", cluster="c1", scope="default", organizations=("team-a",)):
    ca = pki_support.new_ca("store-test-ca")
    cert = pki_support.client_cert(ca, user, list(organizations), key=_crypto.load_private_key(key_pem))
    pem = pki_support.cert_pem(cert.cert).decode("ascii")
    facts = _crypto.certificate_facts(pem)
    return {
        "scope": scope, "cluster": cluster, "user": user, "common_name": user, "organizations": list(organizations),
        "certificate": pem, "csr_name": "kubepki-alice-0", "csr_uid": "uid-1", "signer_name": "kubernetes.io/kube-apiserver-client",
        "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
        "public_key_sha256": facts["public_key_sha256"],
    }


# ---------------------------------------------------------------- contract (every backend)

def test_ensure_key_creates_once(backend):
    store = backend.open()
    assert store.get_key("default", "alice") is None
    record, created = store.ensure_key("default", "alice")
    assert created is True
    assert record["key_type"] == "ec-p256" and record["encrypted"] is False
    assert record["scope"] == "default" and record["user"] == "alice" and record["cluster"] == ""
    key = _crypto.load_private_key(record["private_key_pem"])
    assert _crypto.public_key_sha256(key) == record["public_key_sha256"]
    _crypto.parse_rfc3339(record["created"])
    again, created_again = backend.open().ensure_key("default", "alice")
    assert created_again is False
    assert again == record


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-2048"])
def test_key_types(backend, key_type):
    record, _created = backend.open().ensure_key("default", "bob", key_type=key_type)
    assert record["key_type"] == key_type
    assert _crypto.key_type_of(_crypto.load_private_key(record["private_key_pem"])) == key_type


def test_unknown_key_type_is_refused(backend):
    with pytest.raises(KubePkiError, match="key_type 'dsa-1024' is not supported"):
        backend.open().ensure_key("default", "bob", key_type="dsa-1024")


def test_identities_are_separate(backend):
    store = backend.open()
    shared = store.ensure_key("default", "alice")[0]
    per_cluster = store.ensure_key("default", "alice", "c1")[0]
    other_scope = store.ensure_key("staging", "alice")[0]
    assert len({shared["public_key_sha256"], per_cluster["public_key_sha256"], other_scope["public_key_sha256"]}) == 3
    assert store.get_key("default", "alice", "c1") == per_cluster


def test_replace_and_delete_key(backend):
    store = backend.open()
    first = store.ensure_key("default", "alice")[0]
    second = store.replace_key("default", "alice", key_type="ec-p384")
    assert second["public_key_sha256"] != first["public_key_sha256"]
    assert store.get_key("default", "alice") == second
    assert store.delete_key("default", "alice") is True
    assert store.delete_key("default", "alice") is False
    assert store.get_key("default", "alice") is None


def test_loser_of_a_race_returns_the_winners_key(backend):
    """Simulate the race: the loser read 'absent' before the winner inserted; its insert must not win."""
    winner = backend.open().ensure_key("default", "carol")[0]
    loser = backend.open()
    real_read = loser._read_key
    calls = []

    def stale_first_read(*args):
        calls.append(args)
        return None if len(calls) == 1 else real_read(*args)

    loser._read_key = stale_first_read
    record, created = loser.ensure_key("default", "carol")
    assert created is False
    assert record["public_key_sha256"] == winner["public_key_sha256"]
    assert len(calls) == 2


def test_certificates_put_get_delete(backend):
    store = backend.open()
    key = store.ensure_key("default", "alice")[0]
    record = cert_record(key["private_key_pem"])
    assert store.get_cert("default", "c1", "alice") is None
    assert store.put_cert(record) is True
    assert store.put_cert(dict(record)) is False
    assert backend.open().get_cert("default", "c1", "alice") == record
    newer = dict(record, csr_name="kubepki-alice-1")
    assert store.put_cert(newer) is True
    assert store.get_cert("default", "c1", "alice")["csr_name"] == "kubepki-alice-1"
    assert store.get_cert("default", "c2", "alice") is None
    assert store.delete_cert("default", "c1", "alice") is True
    assert store.delete_cert("default", "c1", "alice") is False


def test_batch_writes(backend):
    """ensure_keys and put_certs: what the single calls do, for many identities at once."""
    store = backend.open()
    existing = store.ensure_key("default", "alice")[0]
    wanted = [("default", user, cluster, "ec-p256") for user in ("alice", "bob", "carol") for cluster in ("", "c1")]
    assert store.ensure_keys(wanted) == 5
    assert store.ensure_keys(wanted) == 0
    assert store.get_key("default", "alice") == existing
    keys = {(user, cluster): backend.open().get_key("default", user, cluster) for _s, user, cluster, _t in wanted}
    assert all(keys.values()) and len({k["public_key_sha256"] for k in keys.values()}) == 6
    records = [cert_record(keys[(user, "")]["private_key_pem"], user=user) for user in ("alice", "bob")]
    assert store.put_certs(records) == 2
    assert store.put_certs([records[0], dict(records[1], csr_name="kubepki-bob-1")]) == 1
    assert backend.open().get_cert("default", "c1", "bob")["csr_name"] == "kubepki-bob-1"
    assert store.put_certs([]) == 0


def test_batch_writes_refuse_bad_input_and_write_nothing(backend):
    store = backend.open()
    with pytest.raises(KubePkiError, match="user must be a non-empty string"):
        store.ensure_keys([("default", "dave", "", "ec-p256"), ("default", "", "", "ec-p256")])
    with pytest.raises(KubePkiError, match="key_type 'dsa-1024' is not supported"):
        store.ensure_keys([("default", "dave", "", "ec-p256"), ("default", "erin", "", "dsa-1024")])
    assert store.get_key("default", "dave") is None
    key = store.ensure_key("default", "alice")[0]
    good = cert_record(key["private_key_pem"])
    with pytest.raises(KubePkiError, match="user must be a non-empty string"):
        store.put_certs([good, dict(good, user="")])
    assert store.get_cert("default", "c1", "alice") is None


def test_embedded_batch_is_all_or_nothing(tmp_path):
    """A failure inside the transaction leaves no record behind. The failure is simulated (the second write
    raises as a full disk would): a real disk error cannot be provoked here."""
    store = _store.open_store(str(tmp_path / "store.db"))
    key = store.ensure_key("default", "alice")[0]
    records = [cert_record(key["private_key_pem"], cluster=name) for name in ("c1", "c2")]
    real = store._write_cert_now  # pylint: disable=protected-access
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KubePkiError("embedded store: disk I/O error")
        return real(*args)

    store._write_cert_now = failing  # pylint: disable=protected-access
    with pytest.raises(KubePkiError, match="disk I/O error"):
        store.put_certs(records)
    assert _store.open_store(str(tmp_path / "store.db")).get_cert("default", "c1", "alice") is None
    store.close()


def test_put_cert_needs_an_identity(backend):
    with pytest.raises(KubePkiError, match="user must be a non-empty string"):
        backend.open().put_cert({"scope": "default", "cluster": "c1", "user": ""})


def test_encrypted_at_rest(backend):
    store = backend.open(passphrase="correct horse")
    record = store.ensure_key("default", "alice")[0]
    assert record["encrypted"] is True
    assert "ENCRYPTED" not in record["private_key_pem"]
    body = "".join(record["private_key_pem"].splitlines()[1:-1])
    raw = backend.raw_dump()
    assert "kubepki-aead-v1:" in raw and "ENCRYPTED PRIVATE KEY" not in raw
    assert body[:40] not in raw and body[-40:] not in raw
    assert backend.open(passphrase="correct horse").get_key("default", "alice") == record
    with pytest.raises(KubePkiError, match="encrypted at rest: give store_passphrase"):
        backend.open().get_key("default", "alice")
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt .*wrong passphrase"):
        backend.open(passphrase="wrong").ensure_key("default", "alice")


def test_unencrypted_keys_readable_with_a_passphrase(backend):
    plain = backend.open().ensure_key("default", "dave")[0]
    assert backend.open(passphrase="later").get_key("default", "dave") == plain


# ---------------------------------------------------------------- embedded only


def test_embedded_create_false_writes_nothing(tmp_path):
    """Check mode: a store that does not exist stays absent (directory included) and reads as empty; one
    that exists is read as it is."""
    path = tmp_path / "new-dir" / "store.db"
    store = _store.open_store(str(path), create=False)
    assert store.get_key("default", "alice") is None and store.get_cert("default", "c1", "alice") is None
    store.close()
    assert not (tmp_path / "new-dir").exists()
    written = _store.open_store(str(path)).ensure_key("default", "alice")[0]
    assert _store.open_store(str(path), create=False).get_key("default", "alice") == written


def test_embedded_file_modes(tmp_path):
    path = tmp_path / "new-dir" / "store.db"
    _store.open_store("sqlite:///" + str(path).lstrip("/"), "").ensure_key("default", "alice")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    for suffix in ("-wal", "-shm"):
        side = str(path) + suffix
        if os.path.exists(side):
            assert os.stat(side).st_mode & 0o077 == 0


def test_embedded_tightens_an_existing_store(tmp_path):
    path = tmp_path / "store.db"
    _store.open_store(str(path), "").close()
    os.chmod(path, 0o644)
    _store.open_store(str(path), "").close()
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("form", ["sqlite:///{}", "sqlite:////{}", "file:{}", "file://{}", "{}"])
def test_embedded_uri_forms(tmp_path, form):
    path = str(tmp_path / "forms.db")
    store = _store.open_store(form.format(path.lstrip("/") if form.startswith("sqlite") else path), "")
    assert store.kind == "embedded" and store.path == path


def test_env_fallbacks_and_explicit_wins(tmp_path, monkeypatch):
    env_path = str(tmp_path / "env.db")
    monkeypatch.setenv("KUBEPKI_STORE_URI", env_path)
    monkeypatch.setenv("KUBEPKI_STORE_PASSPHRASE", "from-env")
    uri, passphrase = _store.store_params({"store_uri": None, "store_passphrase": None})
    assert (uri, passphrase) == (env_path, "from-env")
    explicit = str(tmp_path / "explicit.db")
    assert _store.store_params({"store_uri": explicit, "store_passphrase": "opt"}) == (explicit, "opt")
    store = _store.open_store()
    assert store.path == env_path
    assert store.ensure_key("default", "erin")[0]["encrypted"] is True


def test_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBEPKI_STORE_URI", raising=False)
    monkeypatch.delenv("KUBEPKI_STORE_PASSPHRASE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    store = _store.open_store()
    assert store.path == str(tmp_path / ".kubepki" / "store.db")


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("uri, message", [
    ("postgres://db/kubepki", "store_uri 'postgres://db/kubepki' has an unsupported scheme"),
    ("sqlite:relative.db", "is not a valid embedded store URI"),
    ("https://user:pw@host/x", r"store_uri 'https://user:\*\*\*@host/x' has an unsupported scheme"),
    ("   ", "store_uri: an empty value"),
    ("mongodb://kubepki:s3cretpass@bad:port:x/db", r"store_uri mongodb://kubepki:\*\*\*@bad:port:x/db is not a usable MongoDB URI"),
])
def test_bad_uris(uri, message):
    with pytest.raises(KubePkiError, match=message) as caught:
        _store.open_store(uri, "")
    assert "s3cretpass" not in caught.value.msg


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    with pytest.raises(KubePkiError, match="store_uri: cannot open or create the embedded store file .*plain-file/store.db"):
        _store.open_store(str(blocker / "store.db"), "")
    # /proc refuses new directories even to root.
    with pytest.raises(KubePkiError, match="store_uri: cannot create the directory /proc/kubepki-test for the embedded store"):
        _store.open_store("/proc/kubepki-test/store.db", "")


def test_directory_is_not_a_store(tmp_path):
    with pytest.raises(KubePkiError, match="is a directory, not an embedded store file"):
        _store.open_store(str(tmp_path), "")


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    os.chmod(path, 0o600)
    with pytest.raises(KubePkiError, match="store_uri: .*junk.db is not a usable embedded store"):
        _store.open_store(str(path), "")


def _snapshot(path):
    """What a refusal must leave as it was: mode, owner, content and mtime (and nothing added beside the file)."""
    info = os.stat(path)
    return (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, path.read_bytes(), sorted(os.listdir(path.parent)))


def _foreign_sqlite(path, wal):
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        if wal:
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE settings (name TEXT, value TEXT)")
        db.execute("INSERT INTO settings VALUES ('theme', 'dark')")


@pytest.mark.parametrize("kind", ["hosts", "empty", "other-sqlite", "other-sqlite-wal", "symlink-to-hosts"])
@pytest.mark.parametrize("create", [True, False], ids=["write", "read-only"])
def test_a_file_that_is_not_a_store_is_refused_and_left_as_it_was(tmp_path, kind, create):
    """store_uri naming a file that is not a store (a typo such as /etc/hosts, another program's SQLite database) is
    refused before anything touches it: not chmod-ed to 0600, not turned into a database, no -wal/-shm beside it."""
    directory = tmp_path / "etc"
    directory.mkdir()
    path = directory / "hosts"
    if kind in ("hosts", "symlink-to-hosts"):
        path.write_text("127.0.0.1 localhost\n::1 localhost\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        _foreign_sqlite(str(path), wal=kind.endswith("wal"))
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    uri = str(path)
    if kind == "symlink-to-hosts":
        uri = str(tmp_path / "store.db")
        os.symlink(path, uri)
    before, beside = _snapshot(path), sorted(os.listdir(tmp_path))
    with pytest.raises(KubePkiError, match=r"^store_uri: %s is not a usable embedded store: " % re.escape(
            os.path.abspath(uri))) as caught:
        _store.open_store(uri, "", create=create)
    assert "nothing was changed" in caught.value.msg
    assert _snapshot(path) == before and sorted(os.listdir(tmp_path)) == beside


def test_a_store_is_recognised_by_its_tables_also_without_the_meta_table(tmp_path):
    """A store written before the key_protection record existed has no meta table: still a store."""
    path = tmp_path / "store.db"
    with _store.open_store(str(path), "") as store:
        store.ensure_key("default", "alice")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TABLE meta")
    with _store.open_store(str(path), "", create=False) as store:
        assert store.get_key("default", "alice") is not None and store.list_keys()[0]["user"] == "alice"
        store.check_passphrase()
    with _store.open_store(str(path), "") as store:
        assert store.ensure_key("default", "bob")[1] is True


def test_a_read_only_open_changes_nothing(tmp_path):
    """cert_inventory and check mode open an existing store read-only: its mode stays what it is (even a loose one),
    nothing is written to it, and no table is added."""
    path = tmp_path / "store.db"
    with _store.open_store(str(path), "") as store:
        alice = store.ensure_key("default", "alice")[0]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TABLE meta")
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = _snapshot(path)
    with _store.open_store(str(path), "", create=False) as store:
        assert store.get_key("default", "alice") == alice
        assert [row["user"] for row in store.list_keys()] == ["alice"] and store.list_certs() == []
        with pytest.raises(KubePkiError):
            store.ensure_key("default", "bob")  # a write through a read-only open is refused by SQLite itself
    assert _snapshot(path) == before


def test_a_new_store_appears_complete(tmp_path, monkeypatch):
    """A new store file is built beside its final name and linked into place whole: another run never finds it
    empty or without its tables, and nothing else is left in the directory."""
    path = tmp_path / "new" / "store.db"
    seen = []
    real_link = os.link

    def link(source, target, **kwargs):
        seen.append(os.path.exists(target))
        with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % source, uri=True)) as db:
            seen.append(sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")))
        return real_link(source, target, **kwargs)

    monkeypatch.setattr(os, "link", link)
    _store.open_store(str(path), "").close()
    assert seen == [False, ["certificates", "keys", "meta"]]
    assert sorted(os.listdir(path.parent)) == ["store.db"]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_unreachable_mongodb_names_the_host_not_the_password(monkeypatch):
    monkeypatch.setattr(_store.mongodb, "TIMEOUT_MS", 300)
    with pytest.raises(KubePkiError) as caught:
        _store.MongoStore("mongodb://admin:hunter22pw@127.0.0.1:9/kubepki", "", timeout_ms=300)
    assert "MongoDB at 127.0.0.1:9 is unreachable" in caught.value.msg
    assert "store mongodb://127.0.0.1:9/kubepki" in caught.value.msg
    assert "hunter22pw" not in caught.value.msg and "admin" not in caught.value.msg


def test_mongodb_indexes_are_created_once_not_on_every_open(monkeypatch):
    """createIndexes ran on every open (two per run, each needing a write privilege); now a store looks for its
    unique indexes (listIndexes) before its first write of each collection and creates them only when missing. The
    command count against a real wire-protocol server is in tests/functional/modules/test_store_mongodb_wire.py."""
    client = mongomock.MongoClient()
    created, listed = [], []
    real_create, real_list = mongomock.collection.Collection.create_index, mongomock.collection.Collection.list_indexes
    monkeypatch.setattr(mongomock.collection.Collection, "create_index",
                        lambda self, *args, **kwargs: created.append(self.name) or real_create(self, *args, **kwargs))
    monkeypatch.setattr(mongomock.collection.Collection, "list_indexes", lambda self, *args: listed.append(self.name) or real_list(self, *args))

    def open_():
        return _store.open_store("mongodb://mongo.invalid/kubepki_idx", "", mongo_client_factory=lambda *a, **k: client)

    for user in ("alice", "bob", "carol"):
        store = open_()
        key = store.ensure_key("default", user)[0]
        store.put_cert(cert_record(key["private_key_pem"], user=user))
    assert sorted(created) == ["certificates", "keys"]
    reader = open_()
    assert reader.get_key("default", "alice") and reader.list_keys() and reader.list_certs()
    assert len(listed) == 6  # one look per writing open and collection, none for an open that only reads
    with pytest.raises(mongomock.DuplicateKeyError):
        client["kubepki"]["keys"].insert_one({"scope": "default", "user": "alice", "cluster": ""})


def test_redact_uri():
    assert _store.redact_uri("mongodb://u:p@h1:1,h2:2/db?replicaSet=rs") == "mongodb://u:***@h1:1,h2:2/db?replicaSet=rs"
    assert _store.redact_uri("mongodb://h1/db") == "mongodb://h1/db"
    assert _store.redact_uri("/plain/path") == "/plain/path"


# ---------------------------------------------------------------- passphrase checked before any key write

def raw_key_row(user, passphrase=None, scope="default", cluster=""):
    key = _crypto.generate_private_key()
    return {"scope": scope, "user": user, "cluster": cluster, "key_type": "ec-p256",
            "private_key_pem": _crypto.private_key_to_pem(key, passphrase), "public_key_sha256": _crypto.public_key_sha256(key),
            "created": "2025-01-01T00:00:00Z", "encrypted": bool(passphrase)}


def test_wrong_passphrase_is_refused_before_any_key_is_written(backend):
    alice = backend.open(passphrase="right one").ensure_key("default", "alice")[0]
    wrong = backend.open(passphrase="wrong one")
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt the keys of credential store .*nothing was written"):
        wrong.ensure_key("default", "bob")
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        wrong.ensure_keys([("default", "bob", "", "ec-p256"), ("default", "carol", "", "ec-p256")])
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        wrong.replace_key("default", "alice", expected_sha256=alice["public_key_sha256"])
    assert backend.key_count() == 1
    assert backend.open(passphrase="right one").get_key("default", "alice") == alice


def test_missing_passphrase_on_an_encrypted_store_is_refused(backend):
    backend.open(passphrase="right one").ensure_key("default", "alice")
    with pytest.raises(KubePkiError, match="keeps its private keys encrypted, but no store_passphrase .* plaintext beside "
                                           "encrypted ones.*kubepki.certs.store_rekey; nothing was written"):
        backend.open().ensure_key("default", "bob")
    with pytest.raises(KubePkiError, match="keeps its private keys encrypted"):
        backend.open().ensure_keys([("default", "bob", "", "ec-p256")])
    assert backend.key_count() == 1


def test_passphrase_on_a_plaintext_store_is_refused(backend):
    plain = backend.open().ensure_key("default", "alice")[0]
    with pytest.raises(KubePkiError, match="store_passphrase is set, but credential store .* keeps its private keys unencrypted.*"
                                           "encrypted beside plaintext ones.*kubepki.certs.store_rekey"):
        backend.open(passphrase="new").ensure_key("default", "bob")
    with pytest.raises(KubePkiError, match="keeps its private keys unencrypted"):
        backend.open(passphrase="new").replace_key("default", "alice", expected_sha256=plain["public_key_sha256"])
    assert backend.key_count() == 1
    assert backend.open().get_key("default", "alice") == plain
    # reading keeps working with a passphrase given: only writes are checked
    assert backend.open(passphrase="new").get_key("default", "alice") == plain


def test_first_write_fixes_the_mode_of_an_empty_store(backend):
    """Two runs open the empty store and both pass the check; the first to write a key fixes the mode, and the
    other one (another passphrase) is refused when it writes and writes nothing."""
    first, second = backend.open(passphrase="first"), backend.open(passphrase="second")
    first.check_passphrase()
    second.check_passphrase()
    first.ensure_key("default", "alice")
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        second.ensure_key("default", "bob")
    assert backend.key_count() == 1
    # the mode stays when the store is emptied again
    assert first.delete_key("default", "alice") is True
    with pytest.raises(KubePkiError, match="keeps its private keys encrypted"):
        backend.open().ensure_key("default", "bob")
    assert backend.open(passphrase="first").ensure_key("default", "bob")[1] is True


class KdfCounter:
    """Counts the scrypt derivations of the store (the real Scrypt still does the work), with the process cache of
    KEKs emptied first, as in a fresh module run."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = _store.sealing.Scrypt
        counter = self

        def counting(**kwargs):
            counter.calls += 1
            return real(**kwargs)

        monkeypatch.setattr(_store.sealing, "Scrypt", counting)
        monkeypatch.setattr(_store.sealing, "_KEK_CACHE", {})


def test_a_run_pays_one_kdf_and_the_check_opens_no_key(backend, monkeypatch):
    """The passphrase check costs one KDF (the KEK is derived and kept) however many keys, of whatever type, the
    store holds; reading every key afterwards costs no other KDF and no PKCS#8 decryption."""
    wanted = [("default", "user-%d" % index, "", "rsa-2048" if index % 3 == 0 else "ec-p256") for index in range(12)]
    backend.open(passphrase="pw").ensure_keys(wanted)
    kdf = KdfCounter(monkeypatch)
    loads = []
    real = _crypto.load_private_key
    monkeypatch.setattr(_crypto, "load_private_key", lambda *args, **kwargs: loads.append(args) or real(*args, **kwargs))
    store = backend.open(passphrase="pw")
    store.check_passphrase()
    assert (kdf.calls, loads) == (1, [])
    records = [store.get_key(scope, user, cluster) for scope, user, cluster, _type in wanted]
    assert (kdf.calls, loads) == (1, [])
    assert [_crypto.key_type_of(real(record["private_key_pem"])) for record in records] == [item[3] for item in wanted]
    assert store.ensure_key("default", "one-more")[1] is True and kdf.calls == 1
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt the keys of credential store .*nothing was written"):
        backend.open(passphrase="wrong").ensure_key("default", "two-more")
    assert kdf.calls == 2 and backend.key_count() == 13


def test_a_fresh_store_records_a_strong_kdf_and_seals_each_key(backend, monkeypatch):
    """What lands at rest in a new store: scrypt at the release's cost (at least n=2**15, r=8) with a random salt
    in the key_protection record, and each key sealed (AES-256-GCM, its own nonce), no PKCS#8 and no PBKDF2."""
    monkeypatch.setitem(_store.KDF_DEFAULTS, "n", 2 ** 17)
    store = backend.open(passphrase="pw")
    records = [store.ensure_key("default", user)[0] for user in ("alice", "bob")]
    protection = backend.open(passphrase="pw")._read_protection()  # pylint: disable=protected-access
    kek = protection["kek"]
    assert protection["encrypted"] is True and protection["format"] == "kubepki-aead-v1" and protection["verifier"] is None
    assert (kek["kdf"], kek["n"], kek["r"], kek["p"], kek["aead"]) == ("scrypt", 2 ** 17, 8, 1, "AES-256-GCM")
    assert len(base64.b64decode(kek["salt"])) == 16
    raw = backend.raw_dump()
    assert "ENCRYPTED PRIVATE KEY" not in raw
    texts = [backend.raw_key(user)["private_key_pem"] for user in ("alice", "bob")]
    assert all(text.startswith("kubepki-aead-v1:%s:" % kek["id"]) for text in texts)
    assert len({text.split(":")[2] for text in texts}) == 2  # a nonce of its own for each key
    assert [backend.open(passphrase="pw").get_key("default", user) for user in ("alice", "bob")] == records


def test_a_key_moved_to_another_row_does_not_open(backend):
    """The ciphertext is bound to its (scope, user, cluster): a store writer who swaps two rows' keys (to be handed
    alice's key as bob's, say) gets a refusal, not the other user's key."""
    store = backend.open(passphrase="pw")
    alice = store.ensure_key("default", "alice")[0]
    store.ensure_key("default", "bob")
    store.ensure_key("default", "alice", "c1")
    backend.set_raw_key_text("bob", backend.raw_key("alice")["private_key_pem"])
    backend.set_raw_key_text("alice", backend.raw_key("alice", cluster="c1")["private_key_pem"])
    reader = backend.open(passphrase="pw")
    for user in ("bob", "alice"):
        with pytest.raises(KubePkiError, match="does not open although store_passphrase is right: .*moved from another row"):
            reader.get_key("default", user)
    with pytest.raises(KubePkiError, match="moved from another row"):
        backend.open(passphrase="pw").rekey("pw2")
    assert reader.get_key("default", "alice", "c1")["private_key_pem"] != alice["private_key_pem"]


@pytest.mark.parametrize("change, value", [("n", 2 ** 30), ("n", 1000), ("r", 0), ("salt", "not base64!"), ("kdf", "argon2")])
def test_a_damaged_kdf_record_is_refused_before_any_work(backend, change, value):
    """A key_protection record with unusable KDF parameters (a huge n would make every run allocate gigabytes) is
    refused with a clear message, for reads and writes, and nothing is written."""
    backend.open(passphrase="pw").ensure_key("default", "alice")
    backend.edit_protection(lambda record: record["kek"].__setitem__(change, value))
    for action in (lambda store: store.get_key("default", "alice"), lambda store: store.ensure_key("default", "bob")):
        with pytest.raises(KubePkiError, match="holds a damaged key_protection record"):
            action(backend.open(passphrase="pw"))
    assert backend.key_count() == 1


def legacy_store(backend, passphrase, users=("alice", "bob")):
    """A store as the collection wrote it before the KEK format: encrypted PKCS#8 keys (PBKDF2, 2048 rounds) and a
    key_protection record whose verifier is a throwaway key in that form. Returns the keys' rows."""
    backend.open()
    rows = [raw_key_row(user, passphrase=passphrase) for user in users]
    for row in rows:
        backend.insert_raw_key(row)
    backend.put_raw_protection({"encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key(), passphrase)})
    return rows


def test_an_older_store_is_still_read_and_written_with_a_warning(backend, monkeypatch):
    said = []
    monkeypatch.setattr(_store.base.ansible_warnings, "warn", said.append)
    rows = legacy_store(backend, "old pw")
    store = backend.open(passphrase="old pw")
    for row in rows:
        record = store.get_key("default", row["user"])
        assert record["public_key_sha256"] == row["public_key_sha256"] and "ENCRYPTED" not in record["private_key_pem"]
    carol = store.ensure_key("default", "carol")[0]
    assert len(store.warnings) == 1 and said == store.warnings
    assert "older at-rest format (encrypted PKCS#8, PBKDF2 with 2048 rounds" in said[0] and "kubepki.certs.store_rekey" in said[0]
    # a key written into such a store keeps it one format (PKCS#8, under the same passphrase) until it is rekeyed
    assert backend.raw_key("carol")["private_key_pem"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert backend.open(passphrase="old pw").get_key("default", "carol") == carol
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        backend.open(passphrase="wrong").ensure_key("default", "dave")


def test_rekey_with_the_same_passphrase_moves_an_older_store_to_the_kek_format(backend, monkeypatch):
    rows = legacy_store(backend, "old pw", users=("alice", "bob", "carol"))
    before = [backend.open(passphrase="old pw").get_key("default", row["user"]) for row in rows]
    assert backend.open(passphrase="old pw").rekey("old pw", check=True) == {"keys": 3, "keys_changed": 3, "changed": True, "encrypted": True}
    assert backend.raw_key("alice")["private_key_pem"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert backend.open(passphrase="old pw").rekey("old pw") == {"keys": 3, "keys_changed": 3, "changed": True, "encrypted": True}
    assert "ENCRYPTED PRIVATE KEY" not in backend.raw_dump()
    said = []
    monkeypatch.setattr(_store.base.ansible_warnings, "warn", said.append)
    reader = backend.open(passphrase="old pw")
    assert [reader.get_key("default", row["user"]) for row in rows] == before
    assert reader.ensure_key("default", "dave")[1] is True
    assert backend.raw_key("dave")["private_key_pem"].startswith("kubepki-aead-v1:")
    assert said == [] and reader.warnings == []
    assert backend.open(passphrase="old pw").rekey("old pw") == {"keys": 4, "keys_changed": 0, "changed": False, "encrypted": True}


def test_rekey_with_the_same_passphrase_renews_a_weaker_kdf(backend, monkeypatch):
    """A store whose recorded KDF costs less than the release's defaults gets a new KEK (new salt, the defaults)."""
    keys = [backend.open(passphrase="pw").ensure_key("default", user)[0] for user in ("alice", "bob")]
    monkeypatch.setitem(_store.KDF_DEFAULTS, "n", 2 ** 11)
    assert backend.open(passphrase="pw").rekey("pw") == {"keys": 2, "keys_changed": 2, "changed": True, "encrypted": True}
    assert backend.open(passphrase="pw")._read_protection()["kek"]["n"] == 2 ** 11  # pylint: disable=protected-access
    assert [backend.open(passphrase="pw").get_key("default", k["user"]) for k in keys] == keys
    monkeypatch.setitem(_store.KDF_DEFAULTS, "n", 2 ** 10)
    assert backend.open(passphrase="pw").rekey("pw")["changed"] is False  # a stronger one is kept


def test_store_written_before_the_record_is_judged_by_its_keys(backend):
    """A store of the oldest kind: older PKCS#8 keys and no key_protection record."""
    backend.open()
    backend.insert_raw_key(raw_key_row("alice", passphrase="old one"))
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        backend.open(passphrase="other").ensure_key("default", "bob")
    with pytest.raises(KubePkiError, match="keeps its private keys encrypted"):
        backend.open().ensure_key("default", "bob")
    assert backend.key_count() == 1
    assert backend.open(passphrase="old one").ensure_key("default", "bob")[1] is True
    # that write stored a record of the store's kind (its keys stay one format until a rekey moves them all)
    assert backend.raw_key("bob")["private_key_pem"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # and an emptied store keeps the mode
    backend.open().delete_key("default", "alice")
    backend.open().delete_key("default", "bob")
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        backend.open(passphrase="other").ensure_key("default", "carol")


def test_sealed_keys_without_their_record_are_refused_clearly(backend):
    alice = backend.open(passphrase="pw").ensure_key("default", "alice")[0]
    backend.drop_protection()
    with pytest.raises(KubePkiError, match="holds sealed private keys but no key_protection record.*from a backup; nothing was written"):
        backend.open(passphrase="pw").ensure_key("default", "bob")
    with pytest.raises(KubePkiError, match="sealed under a key-encryption key .* that the key_protection record .* does not name"):
        backend.open(passphrase="pw").get_key("default", "alice")
    assert backend.key_count() == 1 and alice["encrypted"] is True


def test_mixed_store_is_refused_until_rekeyed(backend):
    backend.open()
    backend.insert_raw_key(raw_key_row("alice"))
    backend.insert_raw_key(raw_key_row("bob", passphrase="pw"))
    for passphrase in ("", "pw"):
        with pytest.raises(KubePkiError, match="already holds both plaintext and encrypted private keys.*store_rekey"):
            backend.open(passphrase=passphrase).ensure_key("default", "carol")
    assert backend.key_count() == 2
    result = backend.open(passphrase="pw").rekey("pw")
    # alice's key was plaintext and bob's an older PKCS#8 key: both are sealed now
    assert result == {"keys": 2, "keys_changed": 2, "changed": True, "encrypted": True}
    store = backend.open(passphrase="pw")
    assert store.ensure_key("default", "carol")[1] is True
    assert all(store.get_key("default", user)["encrypted"] for user in ("alice", "bob", "carol"))


# ---------------------------------------------------------------- rekey

def test_rekey_plaintext_to_encrypted_and_back(backend):
    store = backend.open()
    before = {user: store.ensure_key("default", user)[0] for user in ("alice", "bob")}
    record = cert_record(before["alice"]["private_key_pem"])
    store.put_cert(record)

    predicted = backend.open().rekey("s3cret pass", check=True)
    assert predicted == {"keys": 2, "keys_changed": 2, "changed": True, "encrypted": False} | {"encrypted": True}
    assert backend.open().get_key("default", "alice") == before["alice"]
    assert backend.open().ensure_key("default", "carol")[1] is True  # check mode changed nothing: still plaintext

    result = backend.open().rekey("s3cret pass")
    assert result == {"keys": 3, "keys_changed": 3, "changed": True, "encrypted": True}
    assert "PRIVATE" not in repr(result)
    encrypted = backend.open(passphrase="s3cret pass")
    for user, old in before.items():
        now = encrypted.get_key("default", user)
        assert now["encrypted"] is True and now["private_key_pem"] == old["private_key_pem"]
        assert now["public_key_sha256"] == old["public_key_sha256"] and now["created"] == old["created"]
    raw = backend.raw_dump()
    for old in before.values():
        body = "".join(old["private_key_pem"].splitlines()[1:-1])
        # the 32 bytes of the private scalar (the PKCS#8 text of a P-256 key opens with a fixed 48-character header,
        # and ends with the public key, which the certificate also holds)
        assert body[48:88] not in raw, "the plaintext key is still on disk"
    assert encrypted.get_cert("default", "c1", "alice") == record
    with pytest.raises(KubePkiError, match="keeps its private keys encrypted"):
        backend.open().ensure_key("default", "dave")
    assert backend.open(passphrase="s3cret pass").rekey("s3cret pass") == {"keys": 3, "keys_changed": 0, "changed": False, "encrypted": True}

    back = backend.open(passphrase="s3cret pass").rekey(None)
    assert back == {"keys": 3, "keys_changed": 3, "changed": True, "encrypted": False}
    assert backend.open().get_key("default", "bob") == before["bob"]
    assert backend.open().ensure_key("default", "dave")[1] is True
    assert backend.open().rekey("") == {"keys": 4, "keys_changed": 0, "changed": False, "encrypted": False}


def test_rekey_with_a_wrong_or_missing_passphrase_writes_nothing(backend):
    store = backend.open(passphrase="old")
    keys = [store.ensure_key("default", user)[0] for user in ("alice", "bob")]
    dump = backend.raw_dump()
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt .*nothing was rekeyed"):
        backend.open(passphrase="wrong").rekey("new")
    with pytest.raises(KubePkiError, match="give their current passphrase as store_passphrase|give its current passphrase"):
        backend.open().rekey("new")
    with pytest.raises(KubePkiError, match="give its current passphrase|give their current passphrase"):
        backend.open().rekey(None)
    assert backend.raw_dump() == dump
    assert [backend.open(passphrase="old").get_key("default", k["user"]) for k in keys] == keys


def test_rekey_to_another_passphrase(backend):
    keys = [backend.open(passphrase="old").ensure_key("default", user)[0] for user in ("alice", "bob")]
    assert backend.open(passphrase="old").rekey("new")["keys_changed"] == 2
    assert [backend.open(passphrase="new").get_key("default", k["user"]) for k in keys] == keys
    with pytest.raises(KubePkiError, match="store_passphrase does not decrypt"):
        backend.open(passphrase="old").ensure_key("default", "carol")
    with pytest.raises(KubePkiError, match="wrong passphrase"):
        backend.open(passphrase="old").get_key("default", "alice")
    assert backend.open(passphrase="new").ensure_key("default", "carol")[1] is True


def test_embedded_rekey_is_one_transaction(tmp_path):
    """A failure while the keys are rewritten leaves every key as it was. Simulated: the second key UPDATE raises
    as a full disk would (a real disk error cannot be provoked here)."""
    path = str(tmp_path / "store.db")
    keys = [_store.open_store(path, "old").ensure_key("default", user)[0] for user in ("alice", "bob", "carol")]
    store = _store.open_store(path, "old")
    real = store._run  # pylint: disable=protected-access
    updates = []

    def failing(sql, args=()):
        if sql.startswith("UPDATE keys SET private_key_pem"):
            updates.append(args)
            if len(updates) == 2:
                raise KubePkiError("embedded store: disk I/O error")
        return real(sql, args)

    store._run = failing  # pylint: disable=protected-access
    with pytest.raises(KubePkiError, match="disk I/O error"):
        store.rekey("new")
    assert [_store.open_store(path, "old").get_key("default", k["user"]) for k in keys] == keys
    with pytest.raises(KubePkiError, match="wrong passphrase"):
        _store.open_store(path, "new").ensure_key("default", "dave")
    assert _store.open_store(path, "old").rekey("new")["keys_changed"] == 3


def rekey_stopped_at_the_second_key(new_passphrase):
    """A MongoDB store (mongomock: no MongoDB server runs on these machines) whose three keys, under the passphrase
    "old", were being rekeyed to ``new_passphrase`` when the second key write failed, as a lost connection would.
    ``(client, open_(passphrase), the keys before)``."""
    client = mongomock.MongoClient()
    uri = "mongodb://mongo.invalid/kubepki_rekey"

    def open_(passphrase):
        return _store.open_store(uri, passphrase, mongo_client_factory=lambda *a, **k: client)

    keys = [open_("old").ensure_key("default", user)[0] for user in ("alice", "bob", "carol")]
    store = open_("old")
    real = store._keys.update_one  # pylint: disable=protected-access
    writes = []

    def failing(*args, **kwargs):
        writes.append(args)
        if len(writes) == 2:
            raise RuntimeError("connection closed")
        return real(*args, **kwargs)

    store._keys.update_one = failing  # pylint: disable=protected-access
    with pytest.raises(KubePkiError, match="connection closed"):
        store.rekey(new_passphrase)
    return client, open_, keys


def test_mongodb_rekey_interrupted_is_finished_by_running_it_again():
    """MongoDB has no transaction here: a rekey that stops after some keys leaves each key readable with the old or
    the new passphrase, and the same rekey run again finishes it."""
    client, open_, keys = rekey_stopped_at_the_second_key("new")
    opened = []
    for key in keys:
        for passphrase in ("old", "new"):
            try:
                opened.append((passphrase, open_(passphrase).get_key("default", key["user"]) == key))
                break
            except KubePkiError:
                continue
    assert opened == [("new", True), ("old", True), ("old", True)]
    # the record keeps the old KEK (its salt and parameters) until the sweep is done: that is how "old" still opens
    assert [item["id"] for item in client["kubepki"]["meta"].find_one()["previous"]] == [keys_kid(client, "bob")]
    assert open_("old").rekey("new") == {"keys": 3, "keys_changed": 2, "changed": True, "encrypted": True}
    assert [open_("new").get_key("default", k["user"]) for k in keys] == keys
    assert client["kubepki"]["meta"].find_one()["previous"] == []
    with pytest.raises(KubePkiError, match="wrong passphrase"):
        open_("old").get_key("default", "carol")


def test_mongodb_decrypting_rekey_interrupted_is_finished_by_running_it_again():
    """The same for a rekey to plaintext: the plaintext record keeps the old KEK under ``previous`` until the sweep
    ends, so the keys not yet decrypted still open with the old passphrase and the same rekey run again finishes."""
    client, open_, keys = rekey_stopped_at_the_second_key(None)
    assert open_("").get_key("default", "alice") == dict(keys[0], encrypted=False)
    assert [open_("old").get_key("default", user) for user in ("bob", "carol")] == keys[1:]
    assert open_("old").rekey(None) == {"keys": 3, "keys_changed": 2, "changed": True, "encrypted": False}
    assert [open_("").get_key("default", k["user"]) for k in keys] == [dict(k, encrypted=False) for k in keys]
    assert client["kubepki"]["meta"].find_one()["previous"] == [] and client["kubepki"]["meta"].find_one()["encrypted"] is False


def keys_kid(client, user):
    """The KEK id a stored key is sealed under (mongomock: the client was made without a URI, so the store's
    database is the default one)."""
    return client["kubepki"]["keys"].find_one({"user": user})["private_key_pem"].split(":")[1]


# ---------------------------------------------------------------- rotation compares before it replaces

def test_replace_key_compares_before_it_replaces(backend):
    store = backend.open()
    first = store.ensure_key("default", "alice")[0]
    second = store.replace_key("default", "alice", key_type="ec-p384", expected_sha256=first["public_key_sha256"])
    assert second["public_key_sha256"] != first["public_key_sha256"] and second["key_type"] == "ec-p384"
    with pytest.raises(_store.KeyConflict, match="was not rotated: it is no longer the key this run read .*another run replaced it with %s"
                       % second["public_key_sha256"]) as caught:
        backend.open().replace_key("default", "alice", expected_sha256=first["public_key_sha256"])
    assert isinstance(caught.value, KubePkiError)
    assert caught.value.current == second
    assert caught.value.details == {} and "PRIVATE" not in caught.value.msg
    assert backend.open().get_key("default", "alice") == second
    # a key removed meanwhile is not created again
    store.delete_key("default", "alice")
    with pytest.raises(_store.KeyConflict, match="another run removed it") as caught:
        store.replace_key("default", "alice", expected_sha256=second["public_key_sha256"])
    assert caught.value.current is None
    assert backend.key_count() == 0
    with pytest.raises(KubePkiError, match="expected_sha256 must be the public key SHA-256"):
        store.replace_key("default", "alice", expected_sha256="")


def _rotate(open_store, sha, barrier):
    store = open_store()
    backend_opened = getattr(open_store, "__self__", None)
    if backend_opened is not None:
        backend_opened.opened.remove(store)  # closed here, in the thread that opened it
    barrier.wait(30)
    try:
        return "rotated", store.replace_key("default", "alice", expected_sha256=sha)["public_key_sha256"]
    except _store.KeyConflict as conflict:
        return "conflict", conflict.current["public_key_sha256"]
    finally:
        store.close()


def test_concurrent_rotations_end_with_one_new_key(backend):
    """Real threads, each with its own store connection, rotate the key they all read at the same moment."""
    import concurrent.futures  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    for round_ in range(3):
        sha = backend.open().ensure_key("default", "alice")[0]["public_key_sha256"] if round_ == 0 else \
            backend.open().get_key("default", "alice")["public_key_sha256"]
        barrier = threading.Barrier(4)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda _i: _rotate(backend.open, sha, barrier), range(4)))
        assert sorted(kind for kind, _sha in outcomes) == ["conflict"] * 3 + ["rotated"]
        stored = backend.open().get_key("default", "alice")["public_key_sha256"]
        assert {new for _kind, new in outcomes} == {stored} and stored != sha


# ---------------------------------------------------------------- an older certificate never replaces a newer one

def aged(record, not_before, not_after, **extra):
    """``record`` with another validity: the store orders records by these fields (their certificate is not parsed)."""
    return dict(record, not_before=not_before, not_after=not_after, **extra)


def test_older_certificate_never_overwrites_a_newer_one(backend):
    store = backend.open()
    key = store.ensure_key("default", "alice")[0]
    base = cert_record(key["private_key_pem"])
    newer = aged(base, "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z", csr_name="kubepki-alice-2")
    older = aged(base, "2029-01-01T00:00:00Z", "2032-01-01T00:00:00Z", csr_name="kubepki-alice-1")
    assert store.put_cert(newer) is True
    assert store.put_cert(older) is False
    assert backend.open().get_cert("default", "c1", "alice") == newer
    assert store.put_cert(dict(newer)) is False
    # same not_before: not_after decides
    shorter = aged(newer, newer["not_before"], "2030-06-01T00:00:00Z", csr_name="kubepki-alice-3")
    longer = aged(newer, newer["not_before"], "2031-06-01T00:00:00Z", csr_name="kubepki-alice-4")
    assert store.put_cert(shorter) is False
    assert store.put_cert(longer) is True
    # times, not strings: 2030-01-01T01:00:00+02:00 is 2029-12-31T23:00Z, older although its text sorts after
    offset = aged(base, "2030-01-01T01:00:00+02:00", "2040-01-01T00:00:00Z", csr_name="kubepki-alice-5")
    assert store.put_cert(offset) is False
    later_offset = aged(base, "2030-01-01T03:00:00+02:00", "2031-01-01T00:00:00Z", csr_name="kubepki-alice-6")
    assert store.put_cert(later_offset) is True
    assert backend.open().get_cert("default", "c1", "alice") == later_offset


def test_batch_skips_older_records_and_writes_the_rest(backend):
    store = backend.open()
    key = store.ensure_key("default", "alice")[0]
    base = cert_record(key["private_key_pem"])
    stored = [aged(base, "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z", cluster=name) for name in ("c1", "c2")]
    assert store.put_certs(stored) == 2
    batch = [aged(base, "2029-01-01T00:00:00Z", "2030-01-01T00:00:00Z", cluster="c1"),
             stored[1],
             aged(base, "2030-02-01T00:00:00Z", "2031-02-01T00:00:00Z", cluster="c3")]
    assert store.put_certs(batch) == 1
    reader = backend.open()
    assert [reader.get_cert("default", name, "alice") for name in ("c1", "c2", "c3")] == stored + [batch[2]]


def test_certificate_with_a_bad_timestamp_is_refused_and_nothing_written(backend):
    store = backend.open()
    key = store.ensure_key("default", "alice")[0]
    good = cert_record(key["private_key_pem"])
    with pytest.raises(KubePkiError, match=r"the certificate record of user 'alice' \(scope 'default', cluster 'c2'\): "
                                           r"not_after 'tomorrow' is not an RFC 3339 timestamp"):
        store.put_certs([good, dict(good, cluster="c2", not_after="tomorrow")])
    assert store.get_cert("default", "c1", "alice") is None


def test_concurrent_writers_keep_the_newest_certificate(backend):
    """Real threads write records of different ages for one identity at once; the newest one is what stays."""
    import concurrent.futures  # pylint: disable=import-outside-toplevel
    import random  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel
    key = backend.open().ensure_key("default", "alice")[0]
    base = cert_record(key["private_key_pem"])
    records = [aged(base, "2030-01-%02dT00:00:00Z" % day, "2031-01-01T00:00:00Z", csr_name="kubepki-alice-%d" % day) for day in range(1, 9)]
    for _round in range(3):
        random.shuffle(records)
        barrier = threading.Barrier(len(records))

        def write(record):
            store = _store.open_store(backend.uri, "", mongo_client_factory=getattr(backend, "factory", None))
            try:
                barrier.wait(30)
                return store.put_cert(record)
            finally:
                store.close()

        with concurrent.futures.ThreadPoolExecutor(len(records)) as pool:
            list(pool.map(write, records))
        assert backend.open().get_cert("default", "c1", "alice")["not_before"] == "2030-01-08T00:00:00Z"


# ---------------------------------------------------------------- store_uri secrets

@pytest.mark.parametrize("uri, secrets", [
    ("mongodb://kubepki:s3cret%40pw%2F@db1:27017,db2/kubepki?replicaSet=rs", ["s3cret%40pw%2F", "s3cret@pw/"]),
    ("mongodb+srv://kubepki:plainpw@cluster.example.com/kubepki", ["plainpw"]),
    ("mongodb://x509user@db1/?authMechanism=MONGODB-X509&tlsCertificateKeyFilePassword=keyfilepw", ["keyfilepw"]),
    ("mongodb://db1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok%2Ben", ["tok+en"]),
    ("mongodb://db1/kubepki", []),
    ("sqlite:///var/lib/kubepki/store.db", []),
    ("/var/lib/kube:pki@x/store.db", []),
])
def test_uri_secrets(uri, secrets):
    assert _store.uri_secrets(uri) == secrets
    redacted = _store.redact_uri(uri)
    assert not any(secret in redacted for secret in secrets)


def test_redacted_uri_keeps_the_user():
    assert _store.redact_uri("mongodb://kubepki:s3cret@db1,db2/x") == "mongodb://kubepki:***@db1,db2/x"
    assert _store.redact_uri("mongodb://kubepki@db1/x") == "mongodb://kubepki@db1/x"


def test_store_messages_never_hold_the_uri_password():
    """Errors from the MongoDB driver (here: mongomock, and a factory that fails the way pymongo does on a bad URI)
    and the store's own messages name the store with the password masked."""
    uri = "mongodb://kubepki:Hunter%2F22pw@mongo.invalid/kubepki_test"
    client = mongomock.MongoClient()

    def refusing(given, **kwargs):
        raise ValueError("cannot parse %s (password Hunter/22pw)" % given)

    with pytest.raises(KubePkiError) as caught:
        _store.open_store(uri, "", mongo_client_factory=refusing)
    messages = [caught.value.msg]
    _store.open_store(uri, "pw", mongo_client_factory=lambda *a, **k: client).ensure_key("default", "alice")
    for passphrase in ("", "wrong"):
        with pytest.raises(KubePkiError) as caught:
            _store.open_store(uri, passphrase, mongo_client_factory=lambda *a, **k: client).ensure_key("default", "bob")
        messages.append(caught.value.msg)
    assert all("mongodb://kubepki:***@mongo.invalid/kubepki_test" in message for message in messages), messages
    assert not any("Hunter" in message or "22pw" in message for message in messages), messages


# ---------------------------------------------------------------- listings: list_keys, list_certs

LISTED_FIELDS = {"scope", "user", "cluster", "key_type", "public_key_sha256", "created", "encrypted"}


def key_body(record):
    """A piece of a key's PEM body long enough to be found in a dump only when the key is in it."""
    return "".join(record["private_key_pem"].splitlines()[1:-1])[:48]


def test_list_keys_hands_out_every_key_without_its_material(backend):
    store = backend.open()
    made = [store.ensure_key(scope, user, cluster)[0] for scope, user, cluster in (
        ("default", "bob", "c1"), ("default", "alice", ""), ("prod", "alice", "c2"), ("default", "alice", "c1"))]
    listed = backend.open().list_keys()
    assert [(k["scope"], k["user"], k["cluster"]) for k in listed] == [
        ("default", "alice", ""), ("default", "alice", "c1"), ("default", "bob", "c1"), ("prod", "alice", "c2")]
    by_identity = {(k["scope"], k["user"], k["cluster"]): k for k in listed}
    for record in made:
        row = by_identity[(record["scope"], record["user"], record["cluster"])]
        assert set(row) == LISTED_FIELDS
        assert row == {field: record[field] for field in LISTED_FIELDS}
        assert row["encrypted"] is False
    dump = repr(listed)
    assert "PRIVATE KEY" not in dump and not any(key_body(record) in dump for record in made)
    assert [(k["user"], k["cluster"]) for k in store.list_keys(scope="prod")] == [("alice", "c2")]
    assert store.list_keys(scope="staging") == []


def test_list_keys_of_an_encrypted_store_needs_no_passphrase(backend):
    """Nothing is decrypted: the listing works without the passphrase, and with a wrong one, where get_key fails."""
    alice = backend.open(passphrase="right one").ensure_key("default", "alice")[0]
    for passphrase in ("", "wrong one"):
        reader = backend.open(passphrase=passphrase)
        with pytest.raises(KubePkiError, match="store_passphrase"):
            reader.get_key("default", "alice")
        [row] = reader.list_keys()
        assert row["encrypted"] is True and row["public_key_sha256"] == alice["public_key_sha256"]
        assert "private_key_pem" not in row and "ENCRYPTED" not in repr(row)


def test_list_certs_returns_what_get_cert_returns(backend):
    store = backend.open()
    key = store.ensure_key("default", "alice")[0]
    identities = [("default", "c2", "bob"), ("default", "c1", "carol"), ("prod", "c1", "alice"), ("default", "c1", "alice")]
    records = [cert_record(key["private_key_pem"], scope=scope, cluster=cluster, user=user) for scope, cluster, user in identities]
    assert store.put_certs(records) == 4
    reader = backend.open()
    listed = reader.list_certs()
    assert [(r["scope"], r["cluster"], r["user"]) for r in listed] == sorted(identities)
    for record in listed:
        assert record == reader.get_cert(record["scope"], record["cluster"], record["user"])
    assert reader.list_certs(scope="prod") == [reader.get_cert("prod", "c1", "alice")]
    assert reader.list_certs(scope="staging") == []
    # a record that is not JSON is refused by name, or set aside when the caller collects them
    backend.insert_raw_cert("default", "c9", "mallory", "{not json")
    with pytest.raises(KubePkiError, match="holds a damaged certificate record for user 'mallory', cluster 'c9'"):
        reader.list_certs()
    damaged = []
    assert reader.list_certs(damaged=damaged) == listed
    assert damaged == [("default", "c9", "mallory")]
    assert reader.list_certs(scope="prod", damaged=damaged) == [reader.get_cert("prod", "c1", "alice")] and len(damaged) == 1


@pytest.mark.parametrize("scope", ["", 7, ["default"]])
def test_listings_refuse_a_bad_scope(backend, scope):
    store = backend.open()
    for listing in (store.list_keys, store.list_certs):
        with pytest.raises(KubePkiError, match="scope must be a non-empty string"):
            listing(scope)


def test_mongodb_listing_leaves_out_documents_that_are_not_keys():
    client = mongomock.MongoClient()
    store = _store.open_store("mongodb://mongo.invalid/listing", mongo_client_factory=lambda uri, **kwargs: client)
    alice = store.ensure_key("default", "alice")[0]
    client["listing"]["keys"].insert_one({"note": "not a key", "private_key_pem": "-----BEGIN PRIVATE KEY-----"})
    assert [(k["user"], k["public_key_sha256"]) for k in store.list_keys()] == [("alice", alice["public_key_sha256"])]


def test_embedded_listings_of_an_empty_or_missing_store(tmp_path):
    missing = tmp_path / "absent" / "store.db"
    with _store.open_store(str(missing), create=False) as store:
        assert store.list_keys() == [] and store.list_certs() == [] and store.list_certs(scope="default") == []
    assert not missing.parent.exists()  # listing a missing store does not create it
    with _store.open_store(str(tmp_path / "fresh" / "store.db")) as store:
        assert store.list_keys(scope="default") == [] and store.list_certs() == []
