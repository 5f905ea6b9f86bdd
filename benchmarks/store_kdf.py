"""Keys at rest, old format against new, at 1000 keys: what one run pays, in one run of this script.

- old: each key encrypted PKCS#8 (PBKDF2-SHA256, 2048 rounds, AES-256-CBC): one KDF per key read or written,
  and the passphrase check decrypts a PKCS#8 verifier. Stores written by earlier releases are read and written
  this way until store_rekey moves them; the store code below is the same path the earlier release ran (with
  ``--old-rev REV`` the earlier release's own _store.py is loaded from git instead).
- new: one scrypt KDF per run (``_store.KDF_DEFAULTS``) derives a key-encryption key, each key is sealed with
  AES-256-GCM under it.

Each figure is the median of ``--repeat`` runs; every run starts with the process's KEK cache emptied, as a new
module process would. Measured:

- create N: open, then ``ensure_keys`` of N missing keys (the embedded store: one transaction), key generation
  and the passphrase check included;
- open + read N: open the store, check the passphrase (shown apart), then ``get_key`` every key (PEM out);
- open + read 1: the same for one key: the fixed cost of a run that touches the store.

``--backends embedded,mongodb``: also against MongoDB, a local nx-27017 wire-protocol server (pip package
nx-27017, started on 127.0.0.1 on a free port and stopped by its PID), where the opens are also counted in commands
(createIndexes before and after).

usage: .venv/bin/python benchmarks/store_kdf.py [--keys 1000] [--repeat 3] [--backends embedded[,mongodb]] [--old-rev REV]
"""

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")


def collections_root():
    link = os.path.join(COLLECTIONS, "ansible_collections", "kubepki", "certs")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.symlink(REPO, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


collections_root()

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402  pylint: disable=wrong-import-position

PASSPHRASE = "benchmark passphrase"


def old_store_module(rev):
    """The _store module of an earlier release, from git (its imports resolve to today's _crypto and _files)."""
    source = subprocess.run(["git", "-C", REPO, "show", "%s:plugins/module_utils/_store.py" % rev], capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("kubepki_store_%s" % rev.replace("^", "_").replace("~", "_"), loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, "%s:_store.py" % rev, "exec"), module.__dict__)  # pylint: disable=exec-used
    return module


class WireServer:
    """nx-27017 on 127.0.0.1 (a free port), stopped by its PID."""

    def __init__(self, workdir):
        with contextlib.closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", os.path.join(workdir, "nx-data"), "--host", "127.0.0.1",
             "-p", str(self.port), "--pid-file", os.path.join(workdir, "nx.pid"), "--log-file", os.path.join(workdir, "nx.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nx-27017 did not start (pip install nx-27017)") from None
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Place:
    """Fresh stores of one backend: ``uri()`` names a new, empty one each time."""

    count = 0

    def __init__(self, backend, workdir, server=None):
        self.backend, self.workdir, self.server = backend, workdir, server

    def uri(self):
        Place.count += 1
        if self.backend == "embedded":
            return os.path.join(self.workdir, "store-%d" % Place.count, "store.db")
        return "mongodb://127.0.0.1:%d/bench_%d_%d" % (self.server.port, os.getpid(), Place.count)


def make_old_format(store_module, uri):
    """An empty store that is written in the old format: its key_protection record is of the older kind."""
    store = store_module.open_store(uri, "")
    store._insert_protection_if_absent({  # pylint: disable=protected-access
        "encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key(), PASSPHRASE)})
    store.close()


def fresh_run():
    """What a new module process starts with: no KEK derived yet."""
    _store.sealing._KEK_CACHE.clear()  # pylint: disable=protected-access


def one_run(place, store_module, old, wanted):
    """One fresh store of one format, in seconds: ``create`` (N keys), ``open`` (open + passphrase check) and
    ``read`` (then get_key of every key), ``one`` (open + check + one key: a run's fixed cost)."""
    figures = {}
    uri = place.uri()
    if old and store_module is _store:
        make_old_format(store_module, uri)
    fresh_run()
    started = time.perf_counter()
    with contextlib.closing(store_module.open_store(uri, PASSPHRASE)) as store:
        assert store.ensure_keys(wanted) == len(wanted)
    figures["create"] = time.perf_counter() - started
    for count in (len(wanted), 1):
        fresh_run()
        started = time.perf_counter()
        with contextlib.closing(store_module.open_store(uri, PASSPHRASE)) as store:
            store.check_passphrase()
            opened = time.perf_counter()
            for scope, user, cluster, _type in wanted[:count]:
                assert "PRIVATE KEY" in store.get_key(scope, user, cluster)["private_key_pem"]
            done = time.perf_counter()
        if count == 1:
            figures["one"] = done - started
        else:
            figures["open"], figures["read"] = opened - started, done - opened
    with contextlib.closing(store_module.open_store(uri, PASSPHRASE)) as store:
        stored = store._read_key(*wanted[0][:3])["private_key_pem"]  # pylint: disable=protected-access
    expected = "-----BEGIN ENCRYPTED PRIVATE KEY-----" if old else _store.WRAP_FORMAT + ":"
    assert stored.startswith(expected), "the %s run did not store its format" % ("old" if old else "new")
    figures["open_read"] = figures["open"] + figures["read"]
    return figures


def measure(place, old_module, keys, repeat):
    """``(old, new)``: the medians of ``repeat`` runs of each format, old and new runs taking turns (the machine's
    load drifts: a shared machine's scrypt time alone varies by half between runs)."""
    wanted = [("default", "user-%05d" % index, "", "ec-p256") for index in range(keys)]
    runs = {True: [], False: []}
    for _attempt in range(repeat):
        for old in (True, False):
            runs[old].append(one_run(place, old_module if old else _store, old, wanted))
    return [{name: statistics.median(run[name] for run in runs[old]) for name in runs[old][0]} for old in (True, False)]


def mongo_opens(place, opens):
    """Commands and time per open of a MongoDB store that writes one key, and of one that only reads, against the
    cost of the two createIndexes every open sent before."""
    from pymongo import MongoClient, monitoring  # pylint: disable=import-outside-toplevel

    class Count(monitoring.CommandListener):
        def __init__(self):
            self.names = []

        def started(self, event):
            self.names.append(event.command_name)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    uri, count = place.uri(), Count()

    def factory(target, **kwargs):
        return MongoClient(target, event_listeners=[count], **kwargs)

    spent = {"write": [], "read": [], "old_indexes": []}
    for index in range(opens):
        started = time.perf_counter()
        with contextlib.closing(_store.open_store(uri, "", mongo_client_factory=factory)) as store:
            store.ensure_key("default", "user-%d" % index)
        spent["write"].append(time.perf_counter() - started)
    written = list(count.names)
    del count.names[:]
    for index in range(opens):
        started = time.perf_counter()
        with contextlib.closing(_store.open_store(uri, "", mongo_client_factory=factory)) as store:
            store.get_key("default", "user-%d" % index)
        spent["read"].append(time.perf_counter() - started)
    read = list(count.names)
    client = MongoClient(uri)
    database = client.get_default_database()
    for _index in range(opens):
        started = time.perf_counter()
        database["keys"].create_index([("scope", 1), ("user", 1), ("cluster", 1)], unique=True, name="kubepki_key_identity")
        database["certificates"].create_index([("scope", 1), ("cluster", 1), ("user", 1)], unique=True, name="kubepki_cert_identity")
        spent["old_indexes"].append(time.perf_counter() - started)
    client.close()
    return {"opens": opens, "createIndexes_writing": written.count("createIndexes"), "listIndexes_writing": written.count("listIndexes"),
            "createIndexes_reading": read.count("createIndexes"), "listIndexes_reading": read.count("listIndexes"),
            "ms_write_open": 1000 * statistics.median(spent["write"]), "ms_read_open": 1000 * statistics.median(spent["read"]),
            "ms_two_createIndexes": 1000 * statistics.median(spent["old_indexes"])}


def scrypt_seconds():
    fresh_run()
    descriptor = dict(_store.KDF_DEFAULTS, id="bench", salt="AAAAAAAAAAAAAAAAAAAAAA==")
    started = time.perf_counter()
    _store.sealing.derive(PASSPHRASE, descriptor, "benchmark")
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="embedded", help="comma-separated: embedded, mongodb (nx-27017)")
    parser.add_argument("--old-rev", default=None, help="load the old format's store code from this git revision")
    parser.add_argument("--opens", type=int, default=20, help="MongoDB: opens timed for the index comparison")
    args = parser.parse_args()

    old_module = old_store_module(args.old_rev) if args.old_rev else _store
    kdf = _store.KDF_DEFAULTS
    print("keys at rest, %d keys (ECDSA P-256), median of %d; %s; Python %s; %d CPU" % (
        args.keys, args.repeat, "old = %s" % (args.old_rev or "older format through today's code"), sys.version.split()[0], os.cpu_count()))
    print("new: scrypt n=%d r=%d p=%d once per run (%.3f s here), AES-256-GCM per key; old: PBKDF2-SHA256 2048 rounds per key\n" % (
        kdf["n"], kdf["r"], kdf["p"], scrypt_seconds()))
    workdir = tempfile.mkdtemp(prefix="kubepki-store-kdf-")
    server = None
    try:
        print("| backend | measure | old (s) | new (s) | old / new |")
        print("|---|---|---:|---:|---:|")
        for backend in args.backends.split(","):
            if backend == "mongodb" and server is None:
                server = WireServer(workdir)
            place = Place(backend, workdir, server)
            old, new = measure(place, old_module, args.keys, args.repeat)
            for name, label in (("create", "create %d keys" % args.keys), ("open_read", "open + read %d keys" % args.keys),
                                ("open", "of which: open + passphrase check"), ("read", "of which: read the %d keys" % args.keys),
                                ("one", "open + read 1 key (fixed cost of a run)")):
                print("| %s | %s | %.3f | %.3f | %.2f |" % (backend, label, old[name], new[name], old[name] / new[name]))
        if server is not None:
            opens = mongo_opens(Place("mongodb", workdir, server), args.opens)
            print("\nMongoDB opens (nx-27017, %d each): a writing open now sends %d createIndexes in all and %d listIndexes "
                  "(%d per open), a reading open %d createIndexes and %d listIndexes; before, every open sent 2 createIndexes." % (
                      opens["opens"], opens["createIndexes_writing"], opens["listIndexes_writing"], opens["listIndexes_writing"] // opens["opens"],
                      opens["createIndexes_reading"], opens["listIndexes_reading"]))
            print("median ms: open + write 1 key %.2f, open + read 1 key %.2f; the 2 createIndexes each open used to send: %.2f" % (
                opens["ms_write_open"], opens["ms_read_open"], opens["ms_two_createIndexes"]))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
