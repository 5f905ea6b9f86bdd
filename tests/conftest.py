"""Session fixtures shared by all tests: a real etcd and a two-cluster sandbox.

Module-level imports stay in the standard library so that ``tests/unit`` runs without starting anything;
the sandbox package is imported lazily inside the fixtures.
"""

import os
import sys

import pytest

SANDBOX_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox")
if SANDBOX_PATH not in sys.path:
    sys.path.insert(0, SANDBOX_PATH)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """A plain etcd (kubesandbox.etcd.EtcdServer) on loopback; ``.url`` is its client URL."""
    from kubesandbox.controlplane import start_watchdog  # pylint: disable=import-outside-toplevel
    from kubesandbox.etcd import EtcdServer  # pylint: disable=import-outside-toplevel
    server = EtcdServer(str(tmp_path_factory.mktemp("etcd")))
    server.start()
    # stops etcd by its PID if this test process dies without its teardown
    watchdog = start_watchdog(os.getpid(), [(server.pid, "etcd")])
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
