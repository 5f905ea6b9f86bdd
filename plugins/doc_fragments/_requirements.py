# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# The versions are the minimums `make test-deps` tests; keep them in step with plugins/module_utils/_deps.py and
# meta/ee-requirements.txt (which says why each one is what it is): tests/unit/test_dependency_minimums.py checks.

from __future__ import annotations


class ModuleDocFragment:

    # Everything a module of this collection may need.
    DOCUMENTATION = r"""
options: {}
requirements:
  - python >= 3.9
  - kubernetes >= 25.3.0
  - cryptography >= 42.0.0
  - urllib3 >= 2.0.2
  - PyYAML >= 6.0
  - pymongo >= 4.3.2 (only with a MongoDB C(store_uri))
  - etcd3gw >= 2.6.0 (only when etcd is used; it needs python >= 3.10)
"""

    # Store and etcd, for modules that do not talk to the Kubernetes API.
    STORE_ETCD = r"""
options: {}
requirements:
  - python >= 3.9
  - cryptography >= 42.0.0
  - pymongo >= 4.3.2 (only with a MongoDB C(store_uri))
  - etcd3gw >= 2.6.0 (only when etcd is read; it needs python >= 3.10)
"""

    # The credential store only.
    STORE = r"""
options: {}
requirements:
  - python >= 3.9
  - cryptography >= 42.0.0
  - pymongo >= 4.3.2 (only with a MongoDB C(store_uri))
"""

    # etcd only.
    ETCD = r"""
options: {}
requirements:
  - python >= 3.10 (etcd3gw 2.6.0 needs it)
  - cryptography >= 42.0.0
  - etcd3gw >= 2.6.0
"""
