"""What every unit test gets: the collection on the import path, a module's main() run in-process (ansible-core 2.19
style), and a guard that keeps the tier free of processes.

The unit tier starts no process and needs nothing but this directory and the collection it tests: it runs in a
checkout and in an installed collection alike (tests/functional/test_built_artifact.py runs it there). A unit test
that starts a process (subprocess, fork, multiprocessing, os.system, posix_spawn) fails, naming what it started;
tests against real etcd, clusters or other processes belong to tests/functional.
"""

import _posixsubprocess
import json
import os
import subprocess
import sys

import pytest

UNIT = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(UNIT))


def _collections_root():
    """The directory holding ``ansible_collections/kubepki/certs`` for this collection: the install root when this is
    an installed collection, else (a checkout) a symlink tree under the checkout's .cache/ (not committed)."""
    parts = COLLECTION.split(os.sep)
    if parts[-3:-2] == ["ansible_collections"] and parts[-2:] == ["kubepki", "certs"]:
        return os.sep.join(parts[:-3])
    root = os.path.join(COLLECTION, ".cache", "collections")
    link = os.path.join(root, "ansible_collections", "kubepki", "certs")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(COLLECTION, link)
        except FileExistsError:
            pass
    return root


# tests/unit itself for the helpers (pki_support), the collection for ``ansible_collections.kubepki.certs``
for _path in (UNIT, _collections_root()):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from ansible.module_utils import basic  # noqa: E402  pylint: disable=wrong-import-position
from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position


class ProcessRefused(BaseException):
    """A unit test tried to start a process. A BaseException, so that no ``except Exception`` of the code under test
    swallows it."""


# the calls through which Python starts a process: subprocess through its own reference to _posixsubprocess.fork_exec
# (or os.posix_spawn), multiprocessing's spawn through _posixsubprocess.fork_exec, its fork and os.spawn* through os.fork
_STARTERS = [(subprocess, "_fork_exec"), (_posixsubprocess, "fork_exec"), (os, "fork"), (os, "forkpty"), (os, "posix_spawn"), (os, "posix_spawnp"),
             (os, "system")]


@pytest.fixture(autouse=True)
def process_guard(monkeypatch):
    """Refuse every process start during a unit test, and fail the test at teardown if it tried one (even if the
    code under test caught the refusal). Yields the list of attempts."""
    attempts = []

    def refuser(name):
        def refuse(*args, **_kwargs):
            what = "%s(%s)" % (name, ", ".join(repr(arg)[:80] for arg in args[:2]))
            attempts.append(what)
            raise ProcessRefused("a unit test started a process: %s; tests that need processes belong to tests/functional" % what)
        return refuse

    for owner, name in _STARTERS:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, refuser("%s.%s" % (owner.__name__, name)))
    yield attempts
    if attempts:
        pytest.fail("this unit test started processes (%s): the unit tier starts none, move it to tests/functional"
                    % "; ".join(attempts), pytrace=False)


class AnsibleExitJson(Exception):
    """exit_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    """fail_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def run_module(monkeypatch):
    """``run_module(module, args) -> (failed: bool, result: dict)`` for a module object with ``main()``.

    The result is passed through a JSON round trip, as Ansible would serialise it.
    """

    def exit_json(self, **kwargs):
        kwargs.setdefault("changed", False)
        raise AnsibleExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs["failed"] = True
        raise AnsibleFailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def runner(module, args):
        with patch_module_args(args):
            try:
                module.main()
            except AnsibleExitJson as done:
                return False, json.loads(json.dumps(done.result, default=str))
            except AnsibleFailJson as failed:
                return True, json.loads(json.dumps(failed.result, default=str))
        raise AssertionError("module returned without exit_json or fail_json")

    return runner
