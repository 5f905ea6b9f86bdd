"""Session fixtures shared by all tests: a real etcd and a two-cluster sandbox.

Module-level imports stay in the standard library so that ``tests/unit`` runs without starting anything;
the sandbox package is imported lazily inside the fixtures.
"""

import os
import subprocess
import sys

import pytest

SANDBOX_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox")
if SANDBOX_PATH not in sys.path:
    sys.path.insert(0, SANDBOX_PATH)


# Stops a process (argv[2]) once its owner (argv[1]) is gone, so an aborted run leaves no etcd behind.
_WATCHDOG = """
import os, sys, time
owner, child = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
while alive(owner) and alive(child):
    time.sleep(1)
if alive(child):
    with open("/proc/%d/cmdline" % child, "rb") as handle:
        if b"etcd" in handle.read():
            os.kill(child, 15)
"""


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """A plain etcd (kubesandbox.etcd.EtcdServer) on loopback; ``.url`` is its client URL."""
    from kubesandbox.etcd import EtcdServer  # pylint: disable=import-outside-toplevel
    server = EtcdServer(str(tmp_path_factory.mktemp("etcd")))
    server.start()
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server.pid)],  # pylint: disable=consider-using-with
                                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    yield server
    server.stop()
    watchdog.wait(timeout=10)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """Two sandbox clusters plus etcd (kubesandbox.testing.Sandbox), stopped at session end."""
    from kubesandbox import testing  # pylint: disable=import-outside-toplevel
    box = testing.start(str(tmp_path_factory.mktemp("sandbox")), clusters=2)
    yield box
    box.stop()


@pytest.fixture
def fresh_sandbox(tmp_path):
    """One isolated cluster (plus etcd) for tests that change timings or global state."""
    from kubesandbox import testing  # pylint: disable=import-outside-toplevel
    box = testing.start(str(tmp_path / "sandbox"), clusters=1)
    yield box
    box.stop()
