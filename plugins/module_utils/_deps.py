# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Guarded imports of the third-party libraries the modules use.

Keep in step with plugins/doc_fragments/_requirements.py and meta/ee-requirements.txt.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import threading

from ansible.module_utils.basic import missing_required_lib

# Library (its distribution name) -> (import name, minimum version). The minimums are the versions `make test-deps`
# tests (tools/dep_sets.sh minimum); meta/ee-requirements.txt says why each one is what it is, and
# tests/unit/test_dependency_minimums.py keeps the three lists in step. Checking never imports a library: a module pays
# the import cost only for what it really uses in a run.
MINIMUM = {
    "kubernetes": ("kubernetes", "25.3.0"),
    "cryptography": ("cryptography", "42.0.0"),
    "pymongo": ("pymongo", "4.3.2"),
    "etcd3gw": ("etcd3gw", "2.6.0"),
    "PyYAML": ("yaml", "6.0"),
    "urllib3": ("urllib3", "2.0.2"),
}

# Libraries checked whenever another one is: the Kubernetes API requests go through urllib3 directly
# (_kube_transport), and urllib3 1.26 fails there only at the first request to a server given by IP address.
CHECKED_WITH = {
    "kubernetes": ("urllib3",),
}


def probe(name):
    """(present, version or a note, minimum) for library ``name``, found without importing it."""
    import_name, minimum = MINIMUM[name]
    try:
        found = importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return False, "%s cannot be imported by %s" % (import_name, sys.executable), minimum
    for distribution in (name, import_name):  # PyYAML is imported as yaml
        try:
            return True, importlib.metadata.version(distribution), minimum
        except importlib.metadata.PackageNotFoundError:
            pass
    return True, None, minimum


class Lazy:
    """Libraries a module_utils file imports at their first use, not when it is imported itself: a run that never
    needs one does not pay its start-up cost. ``Lazy(name="import.name", ...)``; ``ready()`` imports them all (False
    when one cannot be imported), after which each is the attribute of its name and ``loaded`` is True."""

    def __init__(self, **modules):
        self._modules = modules
        self._lock = threading.Lock()
        self.loaded = False

    def ready(self):
        """Import them now (once, whichever thread asks first); False when one cannot be imported."""
        if not self.loaded:
            with self._lock:
                if not self.loaded:
                    try:
                        found = [importlib.import_module(name) for name in self._modules.values()]  # in their order
                    except ImportError:
                        return False
                    self.__dict__.update(zip(self._modules, found))
                    self.loaded = True
        return True


def _version_tuple(text):
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require(module, *names):
    """Fail the module with a clear message unless every library in ``names`` (and those ``CHECKED_WITH`` them) is
    importable and new enough."""
    wanted = dict.fromkeys(one for name in names for one in (name,) + CHECKED_WITH.get(name, ()))  # in order, once each
    for name in wanted:
        present, info, minimum = probe(name)
        if not present:
            module.fail_json(msg=missing_required_lib("%s >= %s" % (name, minimum)), exception=info)
        if info and _version_tuple(info) < _version_tuple(minimum):
            module.fail_json(msg="%s >= %s is required on the host that runs this module, found %s" % (name, minimum, info))
