"""The embedded store written by several processes at once (forked from this one): one key per user whoever wins,
one rotation of several started together. The contract tests of the store, in one process, are unit tests
(tests/unit/plugins/module_utils/test_store.py, whose ``_rotate`` these tests share)."""

import multiprocessing
import sqlite3

from ansible_collections.kubepki.certs.plugins.module_utils import _store

from .unit_files import unit_module

UNIT = unit_module("plugins/module_utils/test_store.py")
quick_kdf = UNIT.quick_kdf  # the same autouse fixture: these tests are about the processes, not the KDF's cost
_rotate = UNIT._rotate  # pylint: disable=protected-access


def _race(path, user, queue):
    store = _store.open_store(path, "")
    record, created = store.ensure_key("default", user)
    queue.put((record["public_key_sha256"], created))
    store.close()


def _outcomes_of_four(context, target, args, queue):
    """What four forked processes running ``target(*args)`` at once put into ``queue``, once each has ended well."""
    workers = [context.Process(target=target, args=args) for _index in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    return [queue.get(timeout=5) for _worker in workers]


def test_embedded_two_processes_end_with_one_key(tmp_path):
    path = str(tmp_path / "race" / "store.db")
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        user = "racer-%d" % attempt
        queue = context.Queue()
        outcomes = _outcomes_of_four(context, _race, (path, user, queue), queue)
        assert len({sha for sha, _created in outcomes}) == 1
        assert sum(1 for _sha, created in outcomes if created) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 3


def _rotate_in_process(path, sha, barrier, queue):
    queue.put(_rotate(lambda: _store.open_store(path, "pw"), sha, barrier))


def test_embedded_concurrent_rotations_in_processes(tmp_path):
    path = str(tmp_path / "store.db")
    sha = _store.open_store(path, "pw").ensure_key("default", "alice")[0]["public_key_sha256"]
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(4), context.Queue()
    outcomes = _outcomes_of_four(context, _rotate_in_process, (path, sha, barrier, queue), queue)
    assert sorted(kind for kind, _sha in outcomes) == ["conflict"] * 3 + ["rotated"]
    assert {new for _kind, new in outcomes} == {_store.open_store(path, "pw").get_key("default", "alice")["public_key_sha256"]}
