# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Guarded imports of the third-party libraries the modules use.

Keep in step with plugins/doc_fragments/_requirements.py and meta/ee-requirements.txt.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import traceback

from ansible.module_utils.basic import missing_required_lib

# Library -> (import name, minimum version). Nothing is imported until a module asks for it, so a module
# pays only for the libraries it uses.
MINIMUM = {
    "kubernetes": ("kubernetes", "24.2.0"),
    "cryptography": ("cryptography", "41.0.0"),
    "pymongo": ("pymongo", "4.0"),
    "etcd3gw": ("etcd3gw", "2.4.0"),
}


def probe(name):
    """(present, version or traceback, minimum) for library ``name``; imports it."""
    import_name, minimum = MINIMUM[name]
    try:
        importlib.import_module(import_name)
    except ImportError:
        return False, traceback.format_exc(), minimum
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
