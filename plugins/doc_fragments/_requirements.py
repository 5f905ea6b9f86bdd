# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Keep the versions in step with plugins/module_utils/_deps.py and meta/ee-requirements.txt.

from __future__ import annotations


class ModuleDocFragment:

    # Everything a module of this collection may need.
    DOCUMENTATION = r"""
options: {}
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
  - cryptography >= 41.0.0
  - pymongo >= 4.0 (only with a MongoDB C(store_uri))
  - etcd3gw >= 2.4.0 (only when etcd is used)
"""

    # Store and etcd, for modules that do not talk to the Kubernetes API.
    STORE_ETCD = r"""
options: {}
requirements:
  - python >= 3.9
  - cryptography >= 41.0.0
  - pymongo >= 4.0 (only with a MongoDB C(store_uri))
  - etcd3gw >= 2.4.0
"""

    # etcd only.
    ETCD = r"""
options: {}
requirements:
  - python >= 3.9
  - cryptography >= 41.0.0
  - etcd3gw >= 2.4.0
"""
