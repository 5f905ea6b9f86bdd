"""The built collection is what users get: the tarball of ``make build``, installed into an empty collections path,
run from outside the source tree.

- ``make build DIST=<tmp>`` builds the tarball (``ansible-galaxy collection build``, galaxy.yml's build_ignore).
- A fresh venv gets only the tarball's ``meta/ee-requirements.txt`` at the newest versions they allow, and the
  ``ansible`` package (ansible-core and the collections kubepki.certs depends on: kubernetes.core,
  community.crypto), as a user's controller or execution environment would.
- ``ansible-galaxy collection install <tarball> -p <empty dir> --offline`` installs it: no Galaxy, the dependencies
  galaxy.yml declares must be met by the collections the venv has.
- ``ansible-playbook kubepki.certs.onboard_users`` runs in a temporary directory, with no PYTHONPATH and
  ANSIBLE_COLLECTIONS_PATH = the install dir and the venv's site-packages, against two real clusters
  (KUBEPKI_K8S_ASSETS, started by the test harness of the checkout: the harness may come from the checkout, the
  collection under test does not). The users log in with the kubeconfigs it wrote (``kubectl auth whoami``).
- The unit tests the tarball ships (tests/unit) run in the installed tree, importing the installed collection: every
  one passes, none is skipped. None needs what the tarball leaves out (tests/harness, tests/sandbox, tests/functional and
  tests/requirements.txt are in galaxy.yml's build_ignore; an installed collection has MANIFEST.json, not galaxy.yml):
  a shipped file that imports or reads them, or a test failing only for that, fails the last test here, naming it.

``make test-artifact`` runs this file (``make pytest`` leaves it out); it builds its own venv (about 30 s).
"""

import json
import os
import re
import subprocess
import sys
import tarfile
from xml.etree import ElementTree

import pytest

from inprocess.unit_files import unit_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "/kubepki-artifact"
USERS = [{"name": "artifact-alice", "groups": ["dev", "ops"]}, {"name": "artifact-bob", "groups": ["dev"]}]


def _run(cmd, **kwargs):
    kwargs.setdefault("timeout", 600)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, "%s failed (%d)\nSTDOUT:\n%s\nSTDERR:\n%s" % (
        " ".join(map(str, cmd)), proc.returncode, proc.stdout[-6000:], proc.stderr[-6000:])
    return proc


def _outside_env(tmp, extra=None):
    """os.environ without anything that points into the checkout (PYTHONPATH, ANSIBLE_*, make's variables)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "KUBECONFIG", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")
           and not key.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_HOME": os.path.join(tmp, "ansible-home"), "ANSIBLE_LOCAL_TEMP": os.path.join(tmp, "ansible-tmp"),
                "ANSIBLE_REMOTE_TEMP": os.path.join(tmp, "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "0"})
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The tarball ``make build`` writes (into a directory of this test's, not dist/)."""
    dist = tmp_path_factory.mktemp("dist")
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    _run(["make", "--no-print-directory", "-C", REPO, "build", "DIST=%s" % dist], env=env, timeout=300)
    found = sorted(dist.glob("kubepki-certs-*.tar.gz"))
    assert len(found) == 1, list(dist.iterdir())
    return found[0]


@pytest.fixture(scope="module")
def user_venv(tarball, tmp_path_factory):
    """A fresh venv with the tarball's meta/ee-requirements.txt (newest allowed) and the newest ``ansible``."""
    base = tmp_path_factory.mktemp("user")
    with tarfile.open(str(tarball)) as archive:
        requirements = archive.extractfile("meta/ee-requirements.txt").read()
    (base / "ee-requirements.txt").write_bytes(requirements)
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    # --no-compile: Python compiles what runs, not all of the ansible package
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "--upgrade", "-r", str(base / "ee-requirements.txt"),
          "ansible"], timeout=900)
    _run([python, "-m", "pip", "check"], timeout=120)
    freeze = _run([python, "-m", "pip", "freeze", "--all"]).stdout
    wanted = re.compile(r"^(ansible|ansible-core|kubernetes|cryptography|pymongo|etcd3gw|pyyaml|urllib3)==", re.I)
    print("built-artifact venv: %s" % ", ".join(line for line in freeze.splitlines() if wanted.match(line)))
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    return {"python": python, "bin": str(venv / "bin"), "site": site, "base": base}


@pytest.fixture(scope="module")
def installed(tarball, user_venv):
    """``ansible-galaxy collection install <tarball> -p <empty dir> --offline`` with the venv's ansible-galaxy."""
    base = user_venv["base"]
    root = base / "collections"
    root.mkdir()
    env = _outside_env(str(base), {"ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(root), user_venv["site"]])})
    proc = _run([os.path.join(user_venv["bin"], "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(root),
                 "--offline"], cwd=str(base), env=env, timeout=300)
    print(proc.stdout)
    collection = root / "ansible_collections" / "kubepki" / "certs"
    assert collection.is_dir() and not collection.is_symlink(), proc.stdout
    # an empty path before: kubepki.certs is all it holds, its dependencies came from the venv
    assert sorted(os.listdir(root / "ansible_collections")) == ["kubepki"], proc.stdout
    return {"root": str(root), "collection": str(collection), "env": env}


@pytest.fixture(scope="module")
def clusters(etcd_server, tmp_path_factory):
    """Two real clusters (kubeharness.controlplane, from the checkout's test harness) and the session's etcd."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    assets = controlplane.assets_dir()
    if not assets:
        pytest.skip("KUBEPKI_K8S_ASSETS not set: the built collection's onboarding on real clusters is skipped")
    reason = controlplane.missing_assets(assets)
    if reason:
        pytest.skip("%s: the built collection's onboarding on real clusters is skipped" % reason)
    started = controlplane.start_clusters(str(tmp_path_factory.mktemp("artifact-real")), assets, etcd_server.url)
    yield started
    started.stop()


def test_the_install_dir_is_the_only_kubepki_certs(installed, user_venv):
    """ansible-galaxy, in the users' environment, finds kubepki.certs in the install dir and nowhere else."""
    listing = _run([os.path.join(user_venv["bin"], "ansible-galaxy"), "collection", "list", "kubepki.certs", "--format", "json"],
                   cwd=installed["root"], env=installed["env"]).stdout
    found = {path: names for path, names in json.loads(listing).items() if "kubepki.certs" in names}
    assert list(found) == [os.path.join(installed["root"], "ansible_collections")], found
    with open(os.path.join(installed["collection"], "MANIFEST.json")) as handle:
        manifest = json.load(handle)["collection_info"]
    assert manifest["dependencies"], manifest  # the declared dependencies were met offline, by the venv's collections


def test_the_installed_onboarding_playbook_gives_users_working_kubeconfigs(installed, user_venv, clusters, tmp_path):
    work = tmp_path / "work"  # the current directory: outside the checkout, no ansible.cfg
    work.mkdir()
    assert not str(work).startswith(REPO)
    inventory = {"all": {"hosts": {}}}
    for name in clusters.names:
        info = clusters.cluster(name)
        inventory["all"]["hosts"][name] = {"ansible_connection": "local", "ansible_python_interpreter": user_venv["python"],
                                           "user_access_kubeconfig": info.kubeconfig, "user_access_ca_cert": info.ca_cert,
                                           "user_access_server": info.server}
    (work / "inventory.json").write_text(json.dumps(inventory))
    out = tmp_path / "kubeconfigs"
    extra = {"onboard_hosts": "all", "onboard_users": USERS, "user_access_store_uri": str(tmp_path / "store.db"),
             "user_access_output_dir": str(out), "user_access_etcd_endpoints": [clusters.etcd_url],
             "user_access_etcd_prefix": PREFIX, "user_access_verify": True, "user_access_wait_timeout": 60}
    (work / "extra-vars.json").write_text(json.dumps(extra))
    env = dict(installed["env"], HOME=str(tmp_path / "home"), PATH=user_venv["bin"] + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(user_venv["bin"], "ansible-playbook"), "-i", "inventory.json", "kubepki.certs.onboard_users",
           "-e", "@extra-vars.json"]
    proc = _run(cmd, cwd=str(work), env=env, timeout=600)
    recap = dict(re.findall(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M))
    assert sorted(recap) == sorted(clusters.names), proc.stdout[-4000:]
    for name, counts in recap.items():
        assert re.search(r"\bfailed=0\b", counts) and re.search(r"\bunreachable=0\b", counts), (name, counts)

    from kubeharness.client import kubectl_json  # pylint: disable=import-outside-toplevel
    for user in USERS:
        path = out / ("%s.kubeconfig" % user["name"])
        assert path.is_file(), sorted(os.listdir(out))
        for name in clusters.names:
            who = kubectl_json(path, "--context", "%s@%s" % (user["name"], name), "auth", "whoami")["status"]["userInfo"]
            assert who["username"] == user["name"]
            assert sorted(who["groups"]) == sorted(user["groups"] + ["system:authenticated"])


# --- the unit tests the tarball ships, run in the installed tree -------------------------------------------------


def _checkout_lines(collection):
    """{path relative to the collection: first use of what the tarball leaves out} for the shipped Python files under
    tests/ (the harness of tests/harness, the sandbox of tests/sandbox, tests/functional)."""
    found = {}
    for root, dirs, files in os.walk(os.path.join(collection, "tests")):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                hits = unit_module("test_unit_tier.py")._checkout_uses(os.path.join(root, name))  # pylint: disable=protected-access
                if hits:
                    found[os.path.relpath(os.path.join(root, name), collection)] = hits[0]
    return found


def _site():
    return next(path for path in sys.path if path.endswith("site-packages"))


def _checkout_need(text, collection):
    """Why a failure is only that of a test needing the checkout, or None: it imports kubeharness or kubesandbox, or reads a file of
    the checkout that the installed collection lacks (galaxy.yml's build_ignore, or galaxy.yml itself: ansible-galaxy
    installs MANIFEST.json instead)."""
    found = re.search(r"No module named '?(kubeharness|kubesandbox)", text or "")
    if found:
        return "imports %s (%s)" % (found.group(1), "tests/harness" if found.group(1) == "kubeharness" else "tests/sandbox")
    for path in re.findall(r"No such file or directory: '([^']+)'", text or ""):
        if path.startswith(collection + os.sep):
            relative = os.path.relpath(path, collection)
            if os.path.exists(os.path.join(REPO, relative)) and not os.path.exists(path):
                return "reads %s" % relative
    return None


@pytest.fixture(scope="module")
def shipped_units(installed, tmp_path_factory):
    """The shipped unit tests run in the installed tree with this venv's Python, ansible and pytest (as ``ansible-test
    units --local`` would), the installed collection first on the import path and nothing of the checkout."""
    collection = installed["collection"]
    assert os.path.isdir(os.path.join(collection, "tests", "unit")), "the tarball ships no tests/unit"
    found = {"lines": _checkout_lines(collection), "checkout_only": {}, "failures": {}, "skipped": {}, "passed": 0}
    tmp = str(tmp_path_factory.mktemp("shipped-units"))
    env = _outside_env(tmp, {"PYTHONPATH": installed["root"],
                             "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([installed["root"], _site()])})
    where = _run([sys.executable, "-c", "import ansible_collections.kubepki.certs.plugins.module_utils._deps as m; print(m.__file__)"],
                 cwd=collection, env=env).stdout.strip()
    assert where.startswith(installed["root"] + os.sep), where  # the installed copy, not the checkout's
    junit = os.path.join(tmp, "units.xml")
    args = ["tests/unit"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", "-q",
                           "--continue-on-collection-errors", "--junitxml", junit] + args,
                          cwd=collection, env=env, capture_output=True, text=True, timeout=900, check=False)
    found["output"] = proc.stdout[-6000:] + proc.stderr[-3000:]
    print("shipped unit tests in the installed tree: pytest %s\n%s" % (" ".join(args), proc.stdout[-1500:]))
    assert os.path.exists(junit), found["output"]
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = "%s::%s" % (case.get("classname"), case.get("name")) if case.get("classname") else case.get("name")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            skipped = case.find("skipped")
            if skipped is None:
                found["passed"] += 1
            else:
                found["skipped"][name] = skipped.get("message") or ""
            continue
        text = (problem.get("message") or "") + "\n" + (problem.text or "")
        need = _checkout_need(text, collection)
        if need:
            found["checkout_only"][name] = need
        else:
            found["failures"][name] = text[-3000:]
    return found


def test_shipped_unit_tests_run_from_the_installed_collection(shipped_units):
    """Every shipped unit test passes in the installed tree; a skipped one does not count as passing."""
    assert shipped_units["failures"] == {}, shipped_units["output"]
    assert shipped_units["skipped"] == {}, shipped_units["output"]
    assert shipped_units["passed"] > 0, shipped_units["output"]


def test_shipped_unit_tests_that_need_the_checkout(shipped_units):
    """No shipped Python file under tests/ imports the sandbox harness or tests/functional (galaxy.yml leaves both
    out), and no shipped unit test failed only for what the tarball lacks."""
    assert shipped_units["lines"] == {}, "shipped files that need the checkout: %s" % shipped_units["lines"]
    assert shipped_units["checkout_only"] == {}, "shipped unit tests that need the checkout: %s" % shipped_units["checkout_only"]
