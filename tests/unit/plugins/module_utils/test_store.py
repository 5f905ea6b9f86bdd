"""Contract tests of the credential store, run against every backend.

- ``embedded``: the real SQLite store in a temporary directory.
- ``mongomock``: MongoDB through mongomock. This is a stand-in: no MongoDB server can run on these
  machines, so the pymongo code paths (unique indexes, duplicate-key handling) run against mongomock.
- ``mongodb``: a real MongoDB server, only when ``KUBEPKI_TEST_MONGODB_URI`` is set.
"""

import multiprocessing
import os
import sqlite3
import uuid

import mongomock
import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _store
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

REAL_MONGO = os.environ.get("KUBEPKI_TEST_MONGODB_URI")


class Backend:
    """Opens stores of one backend that share their data within one test."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.tmp_path = tmp_path
        self.opened = []
        if kind == "embedded":
            self.uri = str(tmp_path / "state" / "store.db")
        elif kind == "mongomock":
            self.uri = "mongodb://kubepki:secretpw@mongo.invalid:27017/kubepki_test"
            self.client = mongomock.MongoClient(self.uri)
        else:
            base = REAL_MONGO.rstrip("/")
            database = "kubepki_test_%s" % uuid.uuid4().hex[:8]
            head, _sep, query = base.partition("?")
            authority = head.split("://", 1)[1].split("/", 1)[0]
            self.uri = "%s://%s/%s%s" % (head.split("://", 1)[0], authority, database, "?" + query if query else "")
            self.database = database

    def open(self, passphrase=""):
        factory = None
        if self.kind == "mongomock":
            def factory(uri, **kwargs):  # pylint: disable=unused-argument
                return self.client
        store = _store.open_store(self.uri, passphrase, mongo_client_factory=factory)
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

    def cleanup(self):
        for store in self.opened:
            store.close()
        if self.kind == "mongodb":
            import pymongo  # pylint: disable=import-outside-toplevel
            pymongo.MongoClient(self.uri).drop_database(self.database)


@pytest.fixture(params=["embedded", "mongomock", "mongodb"])
def backend(request, tmp_path):
    if request.param == "mongodb" and not REAL_MONGO:
        pytest.skip("KUBEPKI_TEST_MONGODB_URI is not set: no real MongoDB server to test against")
    item = Backend(request.param, tmp_path)
    yield item
    item.cleanup()


def cert_record(key_pem, user="alice", cluster="c1", scope="default", organizations=("team-a",)):
    from kubesandbox import pki  # pylint: disable=import-outside-toplevel
    ca = pki.make_ca("store-test-ca")
    cert = pki.issue(ca, user, list(organizations), client=True, key=_crypto.load_private_key(key_pem))
    pem = pki.cert_pem(cert.cert).decode("ascii")
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
    assert "ENCRYPTED PRIVATE KEY" in raw
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

def _race(path, user, queue):
    store = _store.open_store(path, "")
    record, created = store.ensure_key("default", user)
    queue.put((record["public_key_sha256"], created))
    store.close()


def test_embedded_two_processes_end_with_one_key(tmp_path):
    path = str(tmp_path / "race" / "store.db")
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        user = "racer-%d" % attempt
        queue = context.Queue()
        workers = [context.Process(target=_race, args=(path, user, queue)) for _index in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        outcomes = [queue.get(timeout=5) for _worker in workers]
        assert len({sha for sha, _created in outcomes}) == 1
        assert sum(1 for _sha, created in outcomes if created) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 3


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


def test_embedded_tightens_an_existing_file(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    _store.open_store(str(path), "")
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


def test_unreachable_mongodb_names_the_host_not_the_password(monkeypatch):
    monkeypatch.setattr(_store, "MONGO_TIMEOUT_MS", 300)
    with pytest.raises(KubePkiError) as caught:
        _store.MongoStore("mongodb://admin:hunter22pw@127.0.0.1:9/kubepki", "", timeout_ms=300)
    assert "MongoDB at 127.0.0.1:9 is unreachable" in caught.value.msg
    assert "hunter22pw" not in caught.value.msg and "admin" not in caught.value.msg


def test_redact_uri():
    assert _store.redact_uri("mongodb://u:p@h1:1,h2:2/db?replicaSet=rs") == "mongodb://u:***@h1:1,h2:2/db?replicaSet=rs"
    assert _store.redact_uri("mongodb://h1/db") == "mongodb://h1/db"
    assert _store.redact_uri("/plain/path") == "/plain/path"
