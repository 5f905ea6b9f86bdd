"""Running ansible-playbook against this collection, for the functional tests.

The collection is made importable as ``kubepki.certs`` through a symlink tree under ``.cache/`` (not
committed); kubernetes.core and community.crypto come from the ``ansible`` package in the venv.

Session fixtures (the unit tier, tests/unit, uses none of them: it starts nothing): a real etcd and the two
clusters the functional tests run against. Those clusters are the sandbox's by default. With
KUBEPKI_TEST_CLUSTERS=real (``make pytest`` runs the functional suite a second time so when KUBEPKI_K8S_ASSETS is set)
they are real kube-apiservers and kube-controller-managers v1.36 started from those binaries; the ``sandbox`` fixture
keeps its name and its surface. A test that needs what only the sandbox has (fault injection, timing knobs, the admin
endpoint) is marked ``sandbox_only("why")`` and is skipped on real clusters with that reason; a test using
``fresh_sandbox`` is so too. The harness (tests/harness: real clusters, etcd, the choice of clusters) and the sandbox
(tests/sandbox) are imported lazily inside the fixtures.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANDBOX_PATH = os.path.join(REPO, "tests", "sandbox")
HARNESS_PATH = os.path.join(REPO, "tests", "harness")
for _path in (SANDBOX_PATH, HARNESS_PATH):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def collections_root():
    """A directory holding ``ansible_collections/kubepki/certs`` -> the repository."""
    root = os.path.join(REPO, ".cache", "collections")
    link = os.path.join(root, "ansible_collections", "kubepki", "certs")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(REPO, link)
        except FileExistsError:
            pass
    return root


# Made at load, before any test module of tests/functional is imported: some import the collection directly.
collections_root()


def ansible_env(tmp_dir, extra=None):
    """The environment for ansible-playbook: this venv's interpreter, our collection, JSON output."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([collections_root(), site]),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp_dir, "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(tmp_dir, "ansible-remote"),
        "ANSIBLE_HOME": os.path.join(tmp_dir, "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PYTHONPATH": collections_root(),
    })
    env.pop("KUBECONFIG", None)
    env.update(extra or {})
    return env


class PlaybookResult:
    """The outcome of one ansible-playbook run, parsed from the ansible.posix.json callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout)
        except ValueError:
            self.data = {"plays": [], "stats": {}}

    @property
    def stats(self):
        return self.data.get("stats", {}).get("localhost", {})

    @property
    def changed(self):
        return sum(host.get("changed", 0) for host in self.data.get("stats", {}).values())

    def tasks(self):
        for play in self.data.get("plays", []):
            yield from play.get("tasks", [])

    def result(self, task_name, host="localhost"):
        """The result dict of the task named ``task_name`` for ``host`` (the last such task)."""
        found = None
        for task in self.tasks():
            if task["task"]["name"] == task_name:
                found = task["hosts"].get(host)
        if found is None:
            raise AssertionError("no task %r in the playbook output:\n%s\n%s" % (task_name, self.stdout[-4000:], self.stderr[-4000:]))
        return found

    def failures(self):
        """``[(task name, host, msg)]`` of every failed task result."""
        found = []
        for task in self.tasks():
            for host, result in task["hosts"].items():
                if result.get("failed"):
                    found.append((task["task"]["name"], host, result.get("msg")))
        return found

    def __repr__(self):
        return "PlaybookResult(rc=%s, stats=%s)\nFAILED TASKS: %s\nSTDERR: %s\nSTDOUT tail: %s" % (
            self.rc, self.data.get("stats"), self.failures(), self.stderr[-3000:], self.stdout[-3000:])


@pytest.fixture
def run_playbook(tmp_path):
    """``run_playbook(yaml_text, extra_vars=None, check=False, diff=False, env=None, hosts=None)``.

    ``hosts`` is an optional dict host -> vars for the inventory; by default one ``localhost``. Every
    host runs locally with this venv's Python.
    """

    def runner(playbook, extra_vars=None, check=False, diff=False, env=None, hosts=None, timeout=600):
        book = tmp_path / ("playbook-%d.yml" % len(list(tmp_path.glob("playbook-*.yml"))))
        book.write_text(textwrap.dedent(playbook) if isinstance(playbook, str) else json.dumps(playbook))
        inventory = {"all": {"hosts": {}}}
        for host, host_vars in (hosts or {"localhost": {}}).items():
            inventory["all"]["hosts"][host] = dict(host_vars, ansible_connection="local", ansible_python_interpreter=sys.executable)
        inv = tmp_path / "inventory.json"
        inv.write_text(json.dumps(inventory))
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inv), str(book)]
        if extra_vars:
            evars = tmp_path / "extra-vars.json"
            evars.write_text(json.dumps(extra_vars))
            cmd += ["-e", "@%s" % evars]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(str(tmp_path), env), timeout=timeout, check=False)
        return PlaybookResult(proc)

    return runner


# ---------------------------------------------------------------- the session's etcd and clusters

def _real_mode():
    from kubeharness.clusters import real_mode  # pylint: disable=import-outside-toplevel
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
    from kubeharness.clusters import WatchedEtcd  # pylint: disable=import-outside-toplevel
    from kubeharness.etcd import EtcdServer  # pylint: disable=import-outside-toplevel
    server = WatchedEtcd(EtcdServer(str(tmp_path_factory.mktemp("etcd"))))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """Two clusters plus an etcd for the records, stopped at session end: sandbox clusters
    (kubesandbox.testing.Sandbox), or real ones with KUBEPKI_TEST_CLUSTERS=real (kubeharness.controlplane.RealClusters)."""
    from kubeharness.clusters import start_under_test  # pylint: disable=import-outside-toplevel
    box = start_under_test(str(tmp_path_factory.mktemp("clusters")), clusters=2)
    yield box
    box.stop()


@pytest.fixture
def fresh_sandbox(tmp_path):
    """One isolated cluster (plus etcd) for tests that change timings or global state."""
    from kubesandbox import testing  # pylint: disable=import-outside-toplevel
    box = testing.start(str(tmp_path / "sandbox"), clusters=1)
    yield box
    box.stop()
