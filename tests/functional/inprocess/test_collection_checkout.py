"""Checks of the collection that need more than the unit tier may use: ``ansible-doc`` (a process) showing the action
group membership meta/runtime.yml gives, and the test tooling's requirement files, which only a checkout has (the
tarball leaves tests/requirements*.txt out). They share their readers with tests/unit/test_collection_interfaces.py
and tests/unit/test_dependency_minimums.py."""

import json
import os
import subprocess
import sys

from .unit_files import unit_module

INTERFACES = unit_module("test_collection_interfaces.py")
MINIMUMS = unit_module("test_dependency_minimums.py")
REPO, MODULES, runtime_groups = INTERFACES.REPO, INTERFACES.MODULES, INTERFACES.runtime_groups
_key, ee_minimums = MINIMUMS._key, MINIMUMS.ee_minimums  # pylint: disable=protected-access


def _ansible_doc(names):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".cache", "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=os.path.join(REPO, ".cache", "ansible-home"))
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "-t", "module", "-j"] + ["kubepki.certs.%s" % name for name in names],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_documented_action_group_membership_matches_runtime(runtime_groups):
    """``ansible-doc`` shows, for every module, exactly the groups meta/runtime.yml puts it in."""
    rc, out, _err = _ansible_doc(MODULES)
    if rc == 0:
        docs = {name: json.loads(out)["kubepki.certs.%s" % name]["doc"] for name in MODULES}
    else:
        # one module's documentation does not load: read them one by one to name it and still check the others
        docs = {}
        for name in MODULES:
            rc, out, err = _ansible_doc([name])
            docs[name] = json.loads(out)["kubepki.certs.%s" % name]["doc"] if rc == 0 else err.strip()
    wrong = {}
    for name in MODULES:
        doc = docs[name]
        if isinstance(doc, str):
            wrong[name] = "documentation does not load: %s" % doc
            continue
        documented = sorted((doc.get("attributes") or {}).get("action_group", {}).get("membership", []))
        expected = sorted("kubepki.certs.%s" % group for group, members in runtime_groups.items() if name in members)
        if documented != expected:
            wrong[name] = {"documented": documented, "meta/runtime.yml": expected}
    assert wrong == {}, "attributes.action_group.membership differs from meta/runtime.yml (use the matching " \
                        "kubepki.certs._attributes.ACTIONGROUP_* fragment): %s" % json.dumps(wrong, indent=1)


def _names(path):
    """{normalised name: pinned version or None} of a requirements file."""
    found = {}
    with open(os.path.join(REPO, path), encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#")[0].strip()
            if line:
                name, _sep, version = line.partition("==")
                found[_key(name.strip())] = version.strip() or None
    return found


def test_dependency_set_tooling_is_pinned():
    """Every package of the test tooling of make test-deps (tests/requirements-deps*.txt) has its version pinned, in
    tests/requirements.txt (which tools/dep_sets.sh uses as constraints) or in the file itself; none is a runtime
    dependency."""
    pinned = {name for name, version in _names(os.path.join("tests", "requirements.txt")).items() if version}
    for path in (os.path.join("tests", "requirements-deps.txt"), os.path.join("tests", "requirements-deps-nodeps.txt")):
        tooling = _names(path)
        unpinned = sorted(name for name, version in tooling.items() if not version and name not in pinned)
        assert tooling and not unpinned, "%s: not pinned: %s" % (path, unpinned)
        assert not set(tooling) & set(ee_minimums()), (path, sorted(set(tooling) & set(ee_minimums())))
