"""The MongoDB backend against a real MongoDB wire-protocol server: nx-27017 (pure Python on SQLite, from PyPI).

mongomock (tests/unit) runs pymongo's API without the wire, the server selection, the write and read concerns or a
connection that can drop. Here pymongo talks to a server process on 127.0.0.1, started on a free port by a fixture
and stopped by its PID (a watchdog stops it too should this process die first):

- every contract test of tests/unit/plugins/module_utils/test_store.py that takes a ``backend`` runs again, against
  it (a database of its own for each test);
- a server that is down when a run starts, a server killed between two key writes (and during a rekey), two runs
  writing one store at once (two processes), and what goes over the wire: indexes created once, key writes with
  write concern majority and journaled, key reads with read concern majority.

nx-27017 0.8.1 has neither authentication nor TLS: those stay covered by the unit tests, and by
``KUBEPKI_TEST_MONGODB_URI`` against a real mongod (skipped, saying so, when it is not set). It accepts
``w: majority`` (which on its single node means what ``w: 1`` does) and maps ``j: true`` to SQLite's
``synchronous=FULL``; it accepts ``readConcern`` and ignores it (one node, nothing to roll back). It names the
indexes it creates itself (``idx_<collection>_<fields>``), which the store's index check (by key pattern) allows.
"""

import contextlib
import importlib.util
import inspect
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(TESTS)
sys.path.insert(0, os.path.join(TESTS, "harness"))
sys.path.insert(0, os.path.join(REPO, ".cache", "collections"))

import pymongo  # noqa: E402  pylint: disable=wrong-import-position
from pymongo import monitoring  # noqa: E402  pylint: disable=wrong-import-position

from kubeharness.processes import start_watchdog  # noqa: E402  pylint: disable=wrong-import-position
from playbook_files import playbook  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError  # noqa: E402  pylint: disable=wrong-import-position


def _contract():
    """tests/unit/plugins/module_utils/test_store.py, loaded under a name of its own."""
    path = os.path.join(TESTS, "unit", "plugins", "module_utils", "test_store.py")
    spec = importlib.util.spec_from_file_location("kubepki_store_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = _contract()
quick_kdf = contract.quick_kdf  # the same autouse fixture: these tests are about the wire, not the KDF's cost
# every contract test that takes a backend, collected here once more with the ``backend`` fixture below
for test_name, test_function in vars(contract).items():
    if test_name.startswith("test_") and "backend" in inspect.signature(test_function).parameters:
        globals()[test_name] = test_function


def free_port():
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WireServer:
    """One nx-27017 process on 127.0.0.1 keeping its databases under ``workdir``; restartable on the same port
    and data, so that what a killed server had acknowledged can be read back."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        self.watchdog = None
        self.log = os.path.join(workdir, "nx-27017.log")

    def start(self, timeout=60):
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", data, "--host", "127.0.0.1", "-p", str(self.port),
                 "--pid-file", os.path.join(self.workdir, "nx-27017.pid"), "--log-file", os.path.join(self.workdir, "server.log")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.watchdog = start_watchdog(os.getpid(), [(self.proc.pid, "nx_27017")])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            raise RuntimeError("nx-27017 did not start on 127.0.0.1:%d:\n%s" % (self.port, handle.read()[-3000:]))

    def _end(self, stop_signal):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(stop_signal)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.watchdog is not None:
            self.watchdog.wait(timeout=15)
        self.proc = self.watchdog = None

    def stop(self):
        """SIGTERM by PID, then SIGKILL if it does not end."""
        self._end(15)

    def kill(self):
        """SIGKILL by PID: no goodbye, as a crashed server or a dropped network link."""
        self._end(9)

    def uri(self, database="", userinfo=""):
        return "mongodb://%s127.0.0.1:%d/%s" % (userinfo + "@" if userinfo else "", self.port, database)


@pytest.fixture(scope="module")
def wire_server(tmp_path_factory):
    server = WireServer(str(tmp_path_factory.mktemp("nx-27017"))).start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server for one test, which the test may stop, kill and start again."""
    server = WireServer(str(tmp_path))
    yield server
    server.stop()


@pytest.fixture
def backend(wire_server, tmp_path):
    item = contract.Backend("mongodb", tmp_path, base_uri=wire_server.uri())
    yield item
    item.cleanup()


class Wire(monitoring.CommandListener):
    """Every command a client sends: ``(name, collection, command document)``; ``after`` runs a callback once the
    n-th successful command matching a predicate has been answered."""

    def __init__(self):
        self.commands = []
        self._pending = {}
        self._trigger = None

    def after(self, count, predicate, action):
        self._trigger = [count, predicate, action]

    def started(self, event):
        collection = event.command.get(event.command_name)
        self.commands.append((event.command_name, collection if isinstance(collection, str) else None, dict(event.command)))
        self._pending[event.request_id] = self.commands[-1]

    def succeeded(self, event):
        command = self._pending.pop(event.request_id, None)
        if command is not None and self._trigger is not None and self._trigger[1](*command[:2]):
            self._trigger[0] -= 1
            if self._trigger[0] == 0:
                action, self._trigger = self._trigger[2], None
                action()

    def failed(self, event):
        self._pending.pop(event.request_id, None)

    def count(self, name, collection=None):
        return sum(1 for item in self.commands if item[0] == name and (collection is None or item[1] == collection))


def open_watched(uri, passphrase, wire):
    return _store.open_store(uri, passphrase, mongo_client_factory=lambda target, **kwargs: pymongo.MongoClient(
        target, event_listeners=[wire], **kwargs))


def database(server, name):
    return pymongo.MongoClient(server.uri(), serverSelectionTimeoutMS=5000)[name]


# ---------------------------------------------------------------- indexes once; concerns on the wire

def test_indexes_are_created_once_not_on_every_open(wire_server):
    """Before, every open sent two createIndexes (and needed the privilege to); now only the first write to a new
    store creates them, later writing opens look them up (listIndexes), and an open that only reads sends neither."""
    uri, wire = wire_server.uri("kp_indexes_%s" % uuid.uuid4().hex[:8]), Wire()
    for user in ("alice", "bob", "carol"):
        with open_watched(uri, "", wire) as store:
            key = store.ensure_key("default", user)[0]
            store.put_cert(contract.cert_record(key["private_key_pem"], user=user))
    assert (wire.count("createIndexes", "keys"), wire.count("createIndexes", "certificates")) == (1, 1)
    assert wire.count("listIndexes") == 6
    before = len(wire.commands)
    with open_watched(uri, "", wire) as reader:
        assert [k["user"] for k in reader.list_keys()] == ["alice", "bob", "carol"] and reader.get_key("default", "bob")
    assert {name for name, _collection, _doc in wire.commands[before:]} - {"endSessions"} == {"ping", "find"}
    # the index is there and unique: a second key document for alice is refused by the server itself
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        pymongo.MongoClient(uri)[uri.rsplit("/", 1)[1]]["keys"].insert_one({"scope": "default", "user": "alice", "cluster": ""})


def test_key_writes_are_majority_and_journaled_and_key_reads_majority(wire_server):
    uri, wire = wire_server.uri("kp_concerns_%s" % uuid.uuid4().hex[:8]), Wire()
    with open_watched(uri, "pw", wire) as store:
        first = store.ensure_key("default", "alice")[0]
        store.replace_key("default", "alice", expected_sha256=first["public_key_sha256"])
        store.ensure_keys([("default", "bob", "", "ec-p256")])
        store.put_cert(contract.cert_record(store.get_key("default", "bob")["private_key_pem"], user="bob"))
        store.delete_key("default", "bob")
    with open_watched(uri, "pw", wire) as store:
        store.rekey("pw2")
    writes = [doc for name, collection, doc in wire.commands if name in ("insert", "update", "delete") and collection in ("keys", "meta")]
    reads = [doc for name, collection, doc in wire.commands if name == "find" and collection in ("keys", "meta")]
    assert len(writes) >= 8 and len(reads) >= 5
    assert all(doc.get("writeConcern") == {"w": "majority", "j": True} for doc in writes), writes
    assert all(doc.get("readConcern") == {"level": "majority"} for doc in reads), reads


# ---------------------------------------------------------------- the server is down, or goes away

PLAY = playbook("modules/store_rekey.yml")


def test_a_server_down_at_start_fails_naming_the_uri_and_nothing_is_written(run_playbook, own_server, tmp_path):
    own_server.start()
    own_server.stop()
    uri = own_server.uri("kp_down", userinfo="kpadmin:Mongo-Secret-9")
    home = tmp_path / "home"
    home.mkdir()
    started = time.monotonic()
    outcome = run_playbook(PLAY, extra_vars={"uri": uri, "new": "New-Phrase-7"}, env={"HOME": str(home)})
    result = outcome.result("Rekey")
    assert result.get("failed"), outcome
    assert "store_uri: MongoDB at 127.0.0.1:%d is unreachable" % own_server.port in result["msg"], result["msg"]
    assert "store mongodb://127.0.0.1:%d/kp_down" % own_server.port in result["msg"], result["msg"]
    assert "Mongo-Secret-9" not in outcome.stdout + outcome.stderr and "New-Phrase-7" not in outcome.stdout + outcome.stderr
    assert time.monotonic() - started < 60
    assert not (home / ".kubepki").exists()  # no fallback to the embedded store
    own_server.start()
    assert "kp_down" not in pymongo.MongoClient(own_server.uri(), serverSelectionTimeoutMS=5000).list_database_names()


def test_a_server_killed_between_key_writes_loses_nothing_and_a_rerun_converges(own_server):
    own_server.start()
    uri, wire = own_server.uri("kp_lost"), Wire()
    wanted = [("default", "user-%d" % index, "", "ec-p256") for index in range(6)]
    store = open_watched(uri, "pw", wire)
    wire.after(3, lambda name, collection: (name, collection) == ("insert", "keys"), own_server.kill)
    with pytest.raises(KubePkiError, match="connection to MongoDB at 127.0.0.1:%d was lost .*what was written before is kept, run again"
                       % own_server.port):
        store.ensure_keys(wanted)
    store.close()
    own_server.start()
    with _store.open_store(uri, "pw") as store:
        kept = {k["user"]: k["public_key_sha256"] for k in store.list_keys()}
        assert sorted(kept) == ["user-0", "user-1", "user-2"]  # every acknowledged key survived the kill
        assert all(store.get_key("default", user)["public_key_sha256"] == sha for user, sha in kept.items())
        assert store.ensure_keys(wanted) == 3
        assert store.ensure_keys(wanted) == 0
        after = {k["user"]: k["public_key_sha256"] for k in store.list_keys()}
    assert len(after) == 6 and all(after[user] == sha for user, sha in kept.items())
    assert database(own_server, "kp_lost")["keys"].count_documents({}) == 6


def test_a_rekey_cut_off_by_a_killed_server_is_finished_by_running_it_again(own_server):
    own_server.start()
    uri, wire = own_server.uri("kp_rekey"), Wire()
    with _store.open_store(uri, "old") as store:
        keys = [store.ensure_key("default", "user-%d" % index)[0] for index in range(5)]
    store = open_watched(uri, "old", wire)
    wire.after(2, lambda name, collection: (name, collection) == ("update", "keys"), own_server.kill)
    with pytest.raises(KubePkiError, match="was lost"):
        store.rekey("new")
    store.close()
    own_server.start()
    opened = {}
    for key in keys:
        for passphrase in ("new", "old"):
            with _store.open_store(uri, passphrase) as reader, contextlib.suppress(KubePkiError):
                opened[key["user"]] = (passphrase, reader.get_key("default", key["user"]) == key)
                break
    assert sorted(opened.values()) == [("new", True)] * 2 + [("old", True)] * 3
    with _store.open_store(uri, "old") as store:
        assert store.rekey("new") == {"keys": 5, "keys_changed": 3, "changed": True, "encrypted": True}
    with _store.open_store(uri, "new") as reader:
        assert [reader.get_key("default", key["user"]) for key in keys] == keys
    assert database(own_server, "kp_rekey")["meta"].find_one({"_id": "key_protection"})["previous"] == []


# ---------------------------------------------------------------- two runs at once

RACER = r"""
import json, os, sys, time
from ansible_collections.kubepki.certs.plugins.module_utils import _store
uri, go, users = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = _store.open_store(uri, "pw")
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
created = store.ensure_keys([("default", "user-%d" % index, "", "ec-p256") for index in range(users)])
seen = {user: store.get_key("default", user)["public_key_sha256"] for user in ("user-%d" % index for index in range(users))}
print(json.dumps({"created": created, "keys": seen}), flush=True)
"""


def test_two_runs_writing_one_store_at_once_end_with_one_key_per_user(wire_server, tmp_path):
    """Two processes start on an empty store at the same moment (each also races to store the key_protection
    record): every user ends with one key, each run sees that key, and the keys created add up to the users."""
    uri, go, users = wire_server.uri("kp_race_%s" % uuid.uuid4().hex[:8]), str(tmp_path / "go"), 24
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".cache", "collections"))
    runs = [subprocess.Popen([sys.executable, "-c", RACER, uri, go, str(users)], env=env, text=True,  # pylint: disable=consider-using-with
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _run in range(2)]
    try:
        for run in runs:
            assert run.stdout.readline().strip() == "ready", run.stderr.read()
        with open(go, "w", encoding="utf-8"):
            pass
        outcomes = []
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
            outcomes.append(json.loads(out))
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert sum(outcome["created"] for outcome in outcomes) == users
    assert outcomes[0]["keys"] == outcomes[1]["keys"] and len(set(outcomes[0]["keys"].values())) == users
    documents = list(database(wire_server, uri.rsplit("/", 1)[1])["keys"].find({}, {"_id": 0, "user": 1}))
    assert sorted(doc["user"] for doc in documents) == sorted(outcomes[0]["keys"])
