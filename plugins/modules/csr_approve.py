#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_approve
short_description: Approve or deny CertificateSigningRequests under a policy
version_added: 0.1.0
description:
  - Approves (or denies) CSRs through the C(/approval) subresource, appending an C(Approved) (or C(Denied)) condition
    with O(reason) and O(condition_message). A conflicting update (HTTP 409) is retried on the refetched object.
  - Before approving, each pending CSR is checked against O(policy) - expected common name and groups, groups allowed
    (never C(system:masters), C(kubeadm:cluster-admins) nor any C(system:*) group unless listed in O(policy.allowed_system_groups)), signers and
    usages allowed per signer, maximum C(expirationSeconds), the public key must be the key the store holds for the user,
    and for C(kubernetes.io/kubelet-serving) the node identity and subjectAltName checks of kubelet-csr-approver.
  - When a CSR violates the policy, nothing is approved and the task fails listing every reason; with
    O(deny_on_violation=true) the violating CSRs are denied instead, with the reasons as message.
  - A CSR already approved is C(changed=false). CSRs are selected by O(names), by O(csrs) (the result of
    M(kubepki.certs.csr_create)), or by O(users) (the CSRs this collection labelled for them).
author:
  - kubepki.certs contributors (@kubepki)
options:
  action:
    description:
      - Whether to approve or deny the selected CSRs. Denial does not consult the policy.
    type: str
    choices: [approve, deny]
    default: approve
  names:
    description:
      - CSR names. The expected user is the request's common name.
      - An empty list (or empty O(csrs), O(users)) is nothing to do, not an error, so a scheduled approver fed by
        M(kubepki.certs.csr_info) succeeds when nothing is pending. Giving none of the three options is an error.
    type: list
    elements: str
  csrs:
    description:
      - The RV(kubepki.certs.csr_create#module:csrs) list returned by M(kubepki.certs.csr_create). Entries whose certificate
        is already known (action C(known)) or that have no C(csr_name) (check mode) are skipped.
    type: list
    elements: dict
  users:
    description:
      - Select the pending CSRs this collection made for these users (labels of O(scope) and, when set, O(cluster)).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The user (expected common name).
        type: str
        required: true
      groups:
        description:
          - When given, the request's organizations must be exactly these.
        type: list
        elements: str
  cluster:
    description:
      - Name of the cluster. Narrows O(users) selection to CSRs labelled for it; needed for the key lookup with
        O(key_scope=per_cluster).
    type: str
  scope:
    description:
      - Scope of the users, for selection and for the stored key lookup.
    type: str
    default: default
  key_scope:
    description:
      - How keys are kept in the store, as given to M(kubepki.certs.csr_create).
    type: str
    choices: [shared, per_cluster]
    default: shared
  reason:
    description:
      - The condition reason. Defaults to V(KubepkiApproved) or V(KubepkiDenied).
    type: str
  condition_message:
    description:
      - The condition message (the option cannot be called C(message), a name Ansible reserves).
      - Defaults to a sentence naming this collection (and the violations, when denying for them).
    type: str
  deny_on_violation:
    description:
      - Deny CSRs that violate the policy (with the reasons as message) instead of failing.
    type: bool
    default: false
extends_documentation_fragment:
  - kubepki.certs._policy
  - kubepki.certs._kube_auth
  - kubepki.certs._store
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_K8S_STORE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The policy is evaluated for every CSR before any decision is sent. The decisions then go out one after the other
    while the API server answers quickly (under 10 ms a request); when the first ones take longer, the rest go out four
    at a time.
"""

EXAMPLES = r"""
- name: Approve what csr_create made, under a strict policy
  kubepki.certs.csr_approve:
    cluster: prod-1
    csrs: "{{ created.csrs }}"
    policy:
      allowed_groups: [developers, auditors]
      max_expiration_seconds: 86400

- name: Approve kubelet serving certificates of nodes
  kubepki.certs.csr_approve:
    names: "{{ serving_csrs }}"
    policy:
      key_must_match_store: false
      allowed_dns_suffixes: [nodes.example.com]
      allowed_ip_cidrs: [10.0.0.0/16]

- name: Deny a request
  kubepki.certs.csr_approve:
    action: deny
    names: [kubepki-mallory-0123456789abcdef0123]
    reason: NotOnboarded
    condition_message: mallory is not in the onboarding list
"""

RETURN = r"""
csrs:
  description: One entry per selected CSR.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The CSR name.
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    user:
      description: The expected user (or the request's common name).
      type: str
      sample: alice
    decision:
      description: approved, denied, unchanged (already decided that way), skipped (denied or failed earlier, or gone).
      type: str
      sample: approved
    state_before:
      description: State before this task.
      type: str
      sample: pending
    state:
      description: State after this task (as far as known; the signer may issue later).
      type: str
      sample: approved
    violations:
      description: Policy violations found, each with C(rule) and C(reason).
      type: list
      elements: dict
      sample: [{"rule": "allowed_groups", "reason": "group system:masters is cluster-admin and never approved unless listed in policy.allowed_system_groups"}]
    requester:
      description: Who created the CSR (its C(spec.username)), as the policy judged it.
      type: str
      returned: when the CSR was judged under the policy
      sample: kubernetes-admin
    relaxations:
      description: The opt-ins of the policy this approval relies on (a system user name or group it lists, a requester it names).
      type: list
      elements: str
      returned: when an approval relies on one
      sample: ["policy.allowed_system_users: system:kube-scheduler"]
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import approve
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main


def main():
    module_main(approve.argument_spec(), approve.run, ("kubernetes", "cryptography"))


if __name__ == "__main__":
    main()
