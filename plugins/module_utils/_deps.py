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

from ansible.module_utils.basic import missing_required_lib

# Library -> (import name, minimum version). Checking never imports a library: a module pays the import
# cost only for what it really uses in a run.
MINIMUM = {
    "kubernetes": ("kubernetes", "24.2.0"),
    "cryptography": ("cryptography", "41.0.0"),
    "pymongo": ("pymongo", "4.0"),
    "etcd3gw": ("etcd3gw", "2.4.0"),
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
    try:
        version = importlib.metadata.version(import_name)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return True, version, minimum


def _version_tuple(text):
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require(module, *names):
    """Fail the module with a clear message unless every library in ``names`` is importable and new enough."""
    for name in names:
        present, info, minimum = probe(name)
        if not present:
            module.fail_json(msg=missing_required_lib("%s >= %s" % (name, minimum)), exception=info)
        if info and _version_tuple(info) < _version_tuple(minimum):
            module.fail_json(msg="%s >= %s is required on the host that runs this module, found %s" % (name, minimum, info))
