"""The collection's public interfaces agree with each other, so they cannot drift apart.

- meta/runtime.yml: each action group is exactly the modules whose argument spec takes every option of the
  group's shared option set (module_defaults for a group would otherwise hand a member an option it rejects);
- the modules' documented ``action_group`` attribute names exactly the groups the module is in (as ``ansible-doc``
  shows it: tests/functional/inprocess/test_collection_checkout.py, a process);
- every role variable named in docs/*.md, README.md and the roles' READMEs exists in that role's argument specs.

Argument specs are taken from each module's own ``main()``: ``AnsibleModule`` is replaced, in that module only, by
a recorder that keeps the keyword arguments and stops the module (nothing else of the module runs).
"""

import glob
import importlib
import json
import os
import re

import pytest
import yaml

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._steps import context

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))
                 if not os.path.basename(path).startswith("_"))
ROLES = sorted(os.path.basename(path) for path in glob.glob(os.path.join(REPO, "roles", "*")) if os.path.isdir(path))

# group -> the shared option set every member must take
GROUP_OPTIONS = {
    "k8s": _kube.AUTH_ARG_SPEC,
    "etcd": _etcd.ETCD_ARG_SPEC,
    "store": _store.STORE_ARG_SPEC,
}


class _Recorded(Exception):
    pass


def _argument_spec(name):
    module = importlib.import_module("ansible_collections.kubepki.certs.plugins.modules.%s" % name)
    seen = {}

    class Recorder:  # pylint: disable=too-few-public-methods
        def __init__(self, *args, **kwargs):
            seen["kwargs"] = kwargs
            raise _Recorded()

    # a module builds its AnsibleModule itself, or through the shared _steps.context.module_main
    holder = module if hasattr(module, "AnsibleModule") else context
    original = holder.AnsibleModule
    holder.AnsibleModule = Recorder
    try:
        module.main()
    except _Recorded:
        pass
    finally:
        holder.AnsibleModule = original
    assert "kwargs" in seen, "%s.main() did not build an AnsibleModule" % name
    return seen["kwargs"]["argument_spec"]


@pytest.fixture(scope="module")
def specs():
    return {name: _argument_spec(name) for name in MODULES}


@pytest.fixture(scope="module")
def runtime_groups():
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as handle:
        runtime = yaml.safe_load(handle)
    return {group: [m for m in members if isinstance(m, str)] for group, members in runtime.get("action_groups", {}).items()}


def test_specs_are_read_from_the_modules(specs):
    """The recorder sees the real specs: csr_create takes users and cluster, k8s_component_flags path."""
    assert {"users", "cluster", "kubeconfig", "store_uri", "etcd_endpoints"} <= set(specs["csr_create"])
    assert "path" in specs["k8s_component_flags"] and "kubeconfig" not in specs["k8s_component_flags"]


def test_every_action_group_is_known(runtime_groups):
    assert sorted(runtime_groups) == sorted(GROUP_OPTIONS), "meta/runtime.yml has groups this test does not know how to check"


@pytest.mark.parametrize("group", sorted(GROUP_OPTIONS))
def test_action_group_is_exactly_the_modules_taking_its_options(group, specs, runtime_groups):
    options = GROUP_OPTIONS[group]
    taking = sorted(name for name, spec in specs.items() if set(options) <= set(spec))
    listed = runtime_groups.get(group, [])
    assert len(listed) == len(set(listed)), "meta/runtime.yml lists a module twice in %s: %s" % (group, listed)
    missing = sorted(set(taking) - set(listed))
    extra = sorted(set(listed) - set(taking))
    lacking = {name: sorted(set(options) - set(specs[name])) for name in extra if name in specs}
    absent = [name for name in extra if name not in specs]
    assert not missing and not extra, (
        "action group %s must be exactly the modules that take every option %s.\n"
        "  take them all but are not listed: %s\n"
        "  listed but lack options: %s\n"
        "  listed but no such module in plugins/modules: %s" % (group, sorted(options), missing, lacking, absent))


@pytest.mark.parametrize("group", sorted(GROUP_OPTIONS))
def test_members_take_the_group_options_with_the_shared_types(group, specs, runtime_groups):
    """A default set for the group is valid for every member: same type (and no_log) as the shared spec."""
    for name in runtime_groups.get(group, []):
        if name not in specs:
            continue  # reported by the exact-membership test
        for option, shared in GROUP_OPTIONS[group].items():
            if option not in specs[name]:
                continue  # reported by the exact-membership test
            own = specs[name][option]
            assert own.get("type", "str") == shared.get("type", "str"), (name, option, own, shared)
            assert bool(own.get("no_log")) == bool(shared.get("no_log")), (name, option, own, shared)


# --- role variables named in the docs ---------------------------------------------------------------------------

def _doc_files():
    files = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    files.append(os.path.join(REPO, "README.md"))
    files.extend(sorted(glob.glob(os.path.join(REPO, "roles", "*", "README.md"))))
    return files


def _role_options(role):
    path = os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")
    with open(path, encoding="utf-8") as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    return {option for entry in specs.values() for option in (entry.get("options") or {})}


def _role_registered(role):
    """What the role's tasks register: results the docs may name for the user to read."""
    with open(os.path.join(REPO, "roles", role, "tasks", "main.yml"), encoding="utf-8") as handle:
        return {task["register"] for task in yaml.safe_load(handle) or [] if "register" in task}


def _named_variables():
    """[(file, role, variable)] for every word of the form <role>_<name> in the docs."""
    pattern = re.compile(r"\b(%s)_[a-z0-9_]*[a-z0-9]\b" % "|".join(re.escape(role) for role in ROLES))
    found = []
    for path in _doc_files():
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for match in pattern.finditer(text):
            found.append((os.path.relpath(path, REPO), match.group(1), match.group(0)))
    return found


def test_docs_name_role_variables():
    """The check below has something to check: the user_access README and docs/awx.md name role variables."""
    files = {path for path, role, _name in _named_variables() if role == "user_access"}
    assert {"roles/user_access/README.md", "docs/awx.md"} <= files, files


def test_every_role_variable_in_the_docs_exists():
    known = {role: _role_options(role) | _role_registered(role)
             for role in ROLES if os.path.exists(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"))}
    unknown = sorted({(path, name) for path, role, name in _named_variables() if role in known and name not in known[role]})
    assert unknown == [], "variables named in the docs that the role does not take (roles/<role>/meta/argument_specs.yml): %s" % unknown


def test_role_defaults_are_all_documented_options():
    """Every variable a role defaults is one of its argument-spec options (and so can be documented and checked)."""
    missing = []
    for role in ROLES:
        defaults = os.path.join(REPO, "roles", role, "defaults", "main.yml")
        if not os.path.exists(defaults):
            continue
        with open(defaults, encoding="utf-8") as handle:
            names = set(yaml.safe_load(handle) or {})
        missing.extend((role, name) for name in sorted(names - _role_options(role)) if not name.startswith("_"))
    assert missing == [], missing


def test_playbook_variables_in_the_docs_are_read_somewhere():
    """kubepki_* names in the docs (inventory or extra variables, such as kubepki_become) are read by a playbook, a role or a
    rulebook."""
    sources = glob.glob(os.path.join(REPO, "playbooks", "*.yml")) + glob.glob(os.path.join(REPO, "roles", "**", "*.yml"), recursive=True)
    sources += glob.glob(os.path.join(REPO, "extensions", "eda", "rulebooks", "*.yml"))
    used = set()
    for path in sources:
        with open(path, encoding="utf-8") as handle:
            used.update(re.findall(r"\bkubepki_[a-z0-9_]*[a-z0-9]\b", handle.read()))
    unread = set()
    for path in _doc_files():
        with open(path, encoding="utf-8") as handle:
            unread.update((os.path.relpath(path, REPO), name) for name in re.findall(r"\bkubepki_[a-z0-9_]*[a-z0-9]\b", handle.read())
                          if name not in used)
    assert sorted(unread) == [], "variables named in the docs that no playbook or role reads: %s" % sorted(unread)


def test_readme_group_table_matches_runtime(runtime_groups):
    """The README's table of action groups lists the members meta/runtime.yml gives each group."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    rows = {}
    for match in re.finditer(r"^\| `kubepki\.certs\.([a-z0-9_]+)` \|[^|\n]*\|([^|\n]*)\|$", text, re.MULTILINE):
        if match.group(1) in GROUP_OPTIONS:
            rows[match.group(1)] = sorted(re.findall(r"`([a-z0-9_]+)`", match.group(2)))
    assert rows == {group: sorted(members) for group, members in runtime_groups.items()}


def _versions_added(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "version_added":
                yield where, str(value)
            else:
                yield from _versions_added(value, "%s.%s" % (where, key))
    elif isinstance(node, list):
        for item in node:
            yield from _versions_added(item, where)


def collection_version():
    """The version being built: galaxy.yml in a checkout, MANIFEST.json in an installed collection (ansible-galaxy
    installs that instead)."""
    galaxy = os.path.join(REPO, "galaxy.yml")
    if os.path.exists(galaxy):
        with open(galaxy, encoding="utf-8") as handle:
            return str(yaml.safe_load(handle)["version"])
    with open(os.path.join(REPO, "MANIFEST.json"), encoding="utf-8") as handle:
        return json.load(handle)["collection_info"]["version"]


def test_no_version_added_is_later_than_the_collection():
    """A module or option cannot have been added in a release after the one being built."""
    release = tuple(int(part) for part in collection_version().split("."))
    later = []
    for name in MODULES:
        module = importlib.import_module("ansible_collections.kubepki.certs.plugins.modules.%s" % name)
        for where, version in _versions_added(yaml.safe_load(module.DOCUMENTATION), name):
            if tuple(int(part) for part in version.split(".")) > release:
                later.append("%s: %s" % (where, version))
    assert later == []
