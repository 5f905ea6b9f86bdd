"""Session fixtures shared by all tests: a real etcd and the two clusters the functional tests run against.

Those clusters are the sandbox's by default. With KUBEPKI_TEST_CLUSTERS=real (``make pytest`` runs the functional
suite a second time so when KUBEPKI_K8S_ASSETS is set) they are real kube-apiservers and kube-controller-managers
v1.36 started from those binaries; the ``sandbox`` fixture keeps its name and its surface. A test that needs what only
the sandbox has (fault injection, timing knobs, the admin endpoint) is marked ``sandbox_only("why")`` and is skipped
on real clusters with that reason; a test using ``fresh_sandbox`` is so too.

Module-level imports stay in the standard library so that ``tests/unit`` runs without starting anything;
the sandbox package is imported lazily inside the fixtures.
"""

import os
import sys

import pytest

SANDBOX_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox")
if SANDBOX_PATH not in sys.path:
    sys.path.insert(0, SANDBOX_PATH)


def _real_mode():
    from kubesandbox.testing import real_mode  # pylint: disable=import-outside-toplevel
    return real_mode()


def pytest_configure(config):
    config.addinivalue_line("markers", "sandbox_only(reason): needs what only the sandbox has; skipped with "
                                       "KUBEPKI_TEST_CLUSTERS=real, naming the reason")


# Fixtures that give a test clusters; with KUBEPKI_TEST_CLUSTERS=real only the tests using one of them are run
# (the others, file-only role tests say, do not change with the clusters and ran in the sandbox pass).
CLUSTER_FIXTURES = {"sandbox", "fresh_sandbox", "flow"}


def pytest_collection_modifyitems(config, items):
    if not _real_mode():
        return
    kept, dropped = [], []
    for item in items:
        (kept if CLUSTER_FIXTURES & set(item.fixturenames) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    for item in kept:
        marker = item.get_closest_marker("sandbox_only")
        if marker is not None:
            why = marker.args[0]
        elif "fresh_sandbox" in item.fixturenames:
            why = "it changes the timings of a sandbox of its own"
        else:
            continue
        item.add_marker(pytest.mark.skip(reason="sandbox only (KUBEPKI_TEST_CLUSTERS=real): %s" % why))


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """A plain etcd on loopback, stopped by its PID even if this test process dies without its teardown; ``.url``
    is its client URL."""
    from kubesandbox.etcd import EtcdServer  # pylint: disable=import-outside-toplevel
    from kubesandbox.testing import WatchedEtcd  # pylint: disable=import-outside-toplevel
    server = WatchedEtcd(EtcdServer(str(tmp_path_factory.mktemp("etcd"))))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """Two clusters plus an etcd for the records, stopped at session end: sandbox clusters
    (kubesandbox.testing.Sandbox), or real ones with KUBEPKI_TEST_CLUSTERS=real (kubesandbox.controlplane.RealClusters)."""
    from kubesandbox import testing  # pylint: disable=import-outside-toplevel
    box = testing.start_under_test(str(tmp_path_factory.mktemp("clusters")), clusters=2)
    yield box
    box.stop()


@pytest.fixture
def fresh_sandbox(tmp_path):
    """One isolated cluster (plus etcd) for tests that change timings or global state."""
    from kubesandbox import testing  # pylint: disable=import-outside-toplevel
    box = testing.start(str(tmp_path / "sandbox"), clusters=1)
    yield box
    box.stop()
