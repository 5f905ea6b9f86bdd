"""The Monitor (extensions/eda) under the real engine: ansible-rulebook runs the collection's rulebooks against real
v1.36 clusters (the fixtures of tests/functional/real/conftest.py, reused here) and a real kubelet on fakecri.

Skipped, with the reason, when KUBEPKI_K8S_ASSETS, java or ansible-rulebook is missing. Every process started here
(ansible-rulebook, the kubelet and fakecri) is stopped by its PID, and a watchdog stops it when this test process
dies first.
"""

import importlib.util
import os
import sys

import pytest

from eda_support import Monitor, engine_executable, engine_missing  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))


def _real_fixtures():
    """tests/functional/real/conftest.py, loaded under a name of its own: its fixtures are the one real-cluster
    harness."""
    path = os.path.join(os.path.dirname(HERE), "real", "conftest.py")
    spec = importlib.util.spec_from_file_location("kubepki_real_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_REAL = _real_fixtures()
real_assets = _REAL.real_assets
real_version = _REAL.real_version
real_clusters = _REAL.real_clusters


@pytest.fixture(scope="session")
def engine():
    """The ansible-rulebook executable; skips when it or java is missing."""
    reason = engine_missing()
    if reason:
        pytest.skip(reason)
    return engine_executable()


@pytest.fixture
def start_monitor(engine, tmp_path, request):
    """``start_monitor(rulebook, variables, env=None) -> Monitor``, started; stopped after the test (its log is
    printed when the test failed)."""
    started = []

    def start(rulebook, variables, env=None, name="monitor"):
        monitor = Monitor(engine, tmp_path / ("%s-%d" % (name, len(started))), rulebook, variables, env).start()
        started.append(monitor)
        return monitor

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for monitor in started:
        monitor.stop()
        if failed:
            sys.stderr.write("---- %s\n%s\n" % (monitor.log, monitor.output()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
