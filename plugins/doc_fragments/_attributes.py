# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""

    # The action_group attribute of a module: one fragment per combination of groups, since fragments do not merge
    # membership lists. A module takes the fragment naming every group of meta/runtime.yml it is in:
    #   k8s   - every cluster access option (kubeconfig, context, host, api_key, ...)
    #   etcd  - every etcd option (etcd_endpoints, etcd_prefix, etcd_ca_cert, ...)
    #   store - every credential store option (store_uri, store_passphrase)
    # tests/unit/test_collection_interfaces.py checks the documented membership against meta/runtime.yml.

    ACTIONGROUP_K8S = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.k8s) in C(module_defaults) to set the cluster access options of this module.
    support: full
    membership:
      - kubepki.certs.k8s
"""

    ACTIONGROUP_ETCD = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.etcd) in C(module_defaults) to set the etcd options of this module.
    support: full
    membership:
      - kubepki.certs.etcd
"""

    ACTIONGROUP_STORE = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.store) in C(module_defaults) to set the credential store options of this module.
    support: full
    membership:
      - kubepki.certs.store
"""

    ACTIONGROUP_K8S_STORE = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.k8s) in C(module_defaults) to set the cluster access options of this module.
      - Use C(group/kubepki.certs.store) in C(module_defaults) to set the credential store options of this module.
    support: full
    membership:
      - kubepki.certs.k8s
      - kubepki.certs.store
"""

    ACTIONGROUP_ETCD_STORE = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.etcd) in C(module_defaults) to set the etcd options of this module.
      - Use C(group/kubepki.certs.store) in C(module_defaults) to set the credential store options of this module.
    support: full
    membership:
      - kubepki.certs.etcd
      - kubepki.certs.store
"""

    ACTIONGROUP_K8S_ETCD_STORE = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/kubepki.certs.k8s) in C(module_defaults) to set the cluster access options of this module.
      - Use C(group/kubepki.certs.etcd) in C(module_defaults) to set the etcd options of this module.
      - Use C(group/kubepki.certs.store) in C(module_defaults) to set the credential store options of this module.
    support: full
    membership:
      - kubepki.certs.k8s
      - kubepki.certs.etcd
      - kubepki.certs.store
"""
