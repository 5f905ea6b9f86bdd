"""The minimum versions of the runtime dependencies are declared alike everywhere, and they are the ones tested.

Three places declare them: meta/ee-requirements.txt (``name>=version`` lines, what an execution environment
installs, and what ``make test-deps`` installs exactly, tools/dep_sets.sh minimum), plugins/module_utils/_deps.py
(``MINIMUM``, what the modules check at run time) and the doc fragment plugins/doc_fragments/_requirements.py
(what ``ansible-doc`` shows). A module's own ``requirements:`` that names a version must agree as well.
"""

import glob
import importlib
import os
import re

import pytest
import yaml

from ansible_collections.kubepki.certs.plugins.doc_fragments._requirements import ModuleDocFragment
from ansible_collections.kubepki.certs.plugins.module_utils import _deps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EE_REQUIREMENTS = os.path.join(REPO, "meta", "ee-requirements.txt")
# the line tools/dep_sets.sh reads (its sed expression, in Python)
REQUIREMENT_LINE = re.compile(r"^([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)\s*(#.*)?$")
# "name >= version" at the start of a documented requirement, whatever follows it
DOCUMENTED = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)")
FRAGMENTS = ("DOCUMENTATION", "STORE_ETCD", "ETCD")
MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))
                 if not os.path.basename(path).startswith("_"))
# Modules whose own requirements are known to be stale, with the reason; they are reported, not failed.
KNOWN_STALE = {}


def _key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def ee_minimums():
    """{normalised name: (name, version)} of the ``name>=version`` lines of meta/ee-requirements.txt."""
    found = {}
    with open(EE_REQUIREMENTS, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = REQUIREMENT_LINE.match(line)
            assert match, "meta/ee-requirements.txt: %r is not a name>=version line (tools/dep_sets.sh reads only those)" % line
            assert _key(match.group(1)) not in found, "meta/ee-requirements.txt names %s twice" % match.group(1)
            found[_key(match.group(1))] = (match.group(1), match.group(2))
    return found


def documented(requirements):
    """{normalised name: version} of the ``name >= version`` entries of a documentation ``requirements`` list
    (python is not a library and is left out)."""
    found = {}
    for entry in requirements or []:
        match = DOCUMENTED.match(str(entry))
        if match and _key(match.group(1)) != "python":
            found[_key(match.group(1))] = match.group(2)
    return found


def test_ee_requirements_declare_the_libraries_with_minimums():
    names = sorted(name for name, _version in ee_minimums().values())
    assert {"cryptography", "kubernetes", "pymongo", "etcd3gw"} <= {_key(name) for name in names}, names


def test_deps_minimum_is_ee_requirements():
    """_deps.MINIMUM names the same libraries, spelled as pip spells them, with the same minimums."""
    ee = dict(ee_minimums().values())
    declared = {name: minimum for name, (_import_name, minimum) in _deps.MINIMUM.items()}
    assert declared == ee


def test_deps_checked_with_names_known_libraries():
    for name, others in _deps.CHECKED_WITH.items():
        assert name in _deps.MINIMUM and set(others) <= set(_deps.MINIMUM), (name, others)


def test_deps_import_names_are_importable_here():
    """The import names of MINIMUM are right: each library imports under it in the test venv, at least at its minimum."""
    for name, (import_name, minimum) in _deps.MINIMUM.items():
        present, version, _minimum = _deps.probe(name)
        assert present, (name, import_name, version)
        assert version is not None, "%s: no version found for the distribution %s" % (import_name, name)
        assert _deps._version_tuple(version) >= _deps._version_tuple(minimum), (name, version, minimum)  # pylint: disable=protected-access


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_doc_fragment_versions_are_ee_requirements(fragment):
    ee = {key: version for key, (_name, version) in ee_minimums().items()}
    doc = yaml.safe_load(getattr(ModuleDocFragment, fragment))
    listed = documented(doc["requirements"])
    assert listed, "%s lists no library with a version" % fragment
    wrong = {key: {"documented": version, "meta/ee-requirements.txt": ee.get(key)} for key, version in listed.items()
             if ee.get(key) != version}
    assert wrong == {}, "plugins/doc_fragments/_requirements.py %s: %s" % (fragment, wrong)


def test_doc_fragment_for_every_module_names_every_library():
    doc = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)
    assert sorted(documented(doc["requirements"])) == sorted(ee_minimums())


@pytest.mark.parametrize("name", MODULES)
def test_module_own_requirements_agree(name, request):
    if name in KNOWN_STALE:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_STALE[name], strict=False))
    module = importlib.import_module("ansible_collections.kubepki.certs.plugins.modules.%s" % name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    ee = {key: version for key, (_name, version) in ee_minimums().items()}
    listed = documented(doc.get("requirements"))
    wrong = {key: {"documented": version, "meta/ee-requirements.txt": ee.get(key)} for key, version in listed.items()
             if ee.get(key) != version}
    assert wrong == {}, "plugins/modules/%s.py requirements: %s" % (name, wrong)
