# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_step_approve.py POLICY_OPTIONS one to one.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  policy:
    description:
      - The approval policy. Every key is optional.
    type: dict
    default: {}
    suboptions:
      allowed_signers:
        description:
          - Signers whose CSRs may be approved.
        type: list
        elements: str
        default: [kubernetes.io/kube-apiserver-client, kubernetes.io/kube-apiserver-client-kubelet, kubernetes.io/kubelet-serving]
      allowed_usages:
        description:
          - Per signer, the usages a CSR may ask for (a mapping of signer name to a list). The built-in signers' own
            rules always apply as well.
        type: dict
        default: {}
      allowed_groups:
        description:
          - Patterns (shell style) of the non-system groups allowed. When not set any non-system group is allowed.
        type: list
        elements: str
      allowed_system_groups:
        description:
          - C(system:*) and cluster-admin groups allowed, by exact name. Without an entry here C(system:masters) and
            C(kubeadm:cluster-admins) (bound to C(cluster-admin) by kubeadm 1.29 and later) are never approved, nor any
            other C(system:*) group. C(system:nodes) is implied for the kubelet signers.
          - Listing a group here is the explicit opt-in to hand out that group's rights.
        type: list
        elements: str
        default: []
      max_expiration_seconds:
        description:
          - Largest C(expirationSeconds) allowed; a CSR that asks for none (the signer default) then violates the policy.
        type: int
      common_name_pattern:
        description:
          - Regular expression the whole common name must match.
        type: str
      key_must_match_store:
        description:
          - The request's public key must be the key the store holds for the user (common name) in O(scope).
        type: bool
        default: true
      allowed_dns_suffixes:
        description:
          - For C(kubernetes.io/kubelet-serving), DNS suffixes under which C(<node>.<suffix>) names are allowed; the bare
            node name is always allowed.
        type: list
        elements: str
        default: []
      allowed_ip_cidrs:
        description:
          - For C(kubernetes.io/kubelet-serving), networks the IP subjectAltNames must lie in.
        type: list
        elements: str
        default: []
      requester_must_be_node:
        description:
          - For C(kubernetes.io/kubelet-serving), the requester must be the node named in the common name.
        type: bool
        default: true
"""
