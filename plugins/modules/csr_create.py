#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_create
short_description: Ensure users' private keys exist in the store and their CertificateSigningRequests exist in a cluster
version_added: 0.1.0
description:
  - For each user of O(users), makes sure a private key exists in the credential store (generated once, atomically)
    and that a C(certificates.k8s.io/v1) CertificateSigningRequest for it exists in the cluster.
  - CSR names are derived from the public key and the request, so a re-run finds its own CSR. An existing CSR with the
    same name but a different spec is reported (CSR specs are immutable) and only replaced with O(force=true).
  - A re-run is C(changed=false) also after the controller-manager's cleaner deleted the CSR, when the store or etcd
    already hold a valid certificate for the same key and request.
  - With O(renew_before) a new CSR, under a new name, is created when the known certificate expires within that time.
  - A user may bring a PEM CSR (O(users[].csr)) whose private key never reaches this module.
  - One client and one batch for all users of the task.
author:
  - kubepki.certs contributors (@kubepki)
options:
  users:
    description:
      - The users to request certificates for.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The user name, used as certificate common name (CN).
        type: str
        required: true
      groups:
        description:
          - The groups, used as certificate organizations (O), in this order.
          - With O(users[].csr) they must equal the organizations of that CSR when given.
        type: list
        elements: str
        default: []
      expiration_seconds:
        description:
          - Requested certificate lifetime for this user, overriding O(expiration_seconds). At least V(600).
        type: int
      dns_names:
        description:
          - DNS subjectAltNames (for serving signers).
        type: list
        elements: str
        default: []
      ip_addresses:
        description:
          - IP subjectAltNames (for serving signers).
        type: list
        elements: str
        default: []
      csr:
        description:
          - A PEM C(CERTIFICATE REQUEST) the user brings. No key is created or read for this user; the request is
            sent as given after checking that its CN is O(users[].name).
        type: str
      force_renew:
        description:
          - Request a new certificate for this user now, even when the known one is valid and not within O(renew_before)
            of expiry. Every run with it set renews again.
        type: bool
        default: false
  cluster:
    description:
      - Name of the cluster, for labels, annotations and certificate records.
    type: str
    required: true
  scope:
    description:
      - The logical cloud the users belong to.
    type: str
    default: default
  signer_name:
    description:
      - The signer to request the certificates from.
      - Must have the form C(example.com/signer-name); V(kubernetes.io/legacy-unknown) is refused by the v1 API.
    type: str
    default: kubernetes.io/kube-apiserver-client
  usages:
    description:
      - Key usages to request. Checked against the 23 values the API accepts and the sets the built-in signers allow.
      - Default per signer - V(digital signature) and V(client auth) (plus V(key encipherment) for RSA keys) for
        V(kubernetes.io/kube-apiserver-client) and other signers; V(digital signature), V(key encipherment) and
        V(client auth) for V(kubernetes.io/kube-apiserver-client-kubelet); V(digital signature), V(key encipherment)
        and V(server auth) for V(kubernetes.io/kubelet-serving) (these sets are accepted by every release since v1.19).
    type: list
    elements: str
  key_type:
    description:
      - Type of newly generated private keys. An existing key is kept (see O(rotate_key)).
    type: str
    choices: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
    default: ec-p256
  key_scope:
    description:
      - V(shared) keeps one key per user and scope for all clusters; V(per_cluster) one key per cluster.
    type: str
    choices: [shared, per_cluster]
    default: shared
  expiration_seconds:
    description:
      - Requested certificate lifetime (C(spec.expirationSeconds)), at least V(600). Sent only when set; servers
        before v1.22 ignore it and signers clamp it to their maximum.
    type: int
  state:
    description:
      - V(present) ensures key and CSR; V(absent) deletes the users' CSRs made by this collection in the cluster
        (keys and certificates are kept).
    type: str
    choices: [present, absent]
    default: present
  renew_before:
    description:
      - Create a new CSR (under a new name) when the known certificate expires within this time.
      - Seconds, or a duration such as V(720h), V(30d) or V(1d12h).
      - When not set, a new CSR is only created once the known certificate has expired.
    type: str
  rotate_key:
    description:
      - When a renewal is due, generate a new private key for it instead of reusing the current one.
    type: bool
    default: false
  force:
    description:
      - Replace an existing CSR of the same name whose spec differs or that was denied or failed.
    type: bool
    default: false
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_K8S_ETCD_STORE
attributes:
  check_mode:
    support: full
    details:
      - No key is generated in check mode; CSR creation is sent with C(dryRun=All).
  diff_mode:
    support: full
notes:
  - The apiserver refuses V(system:masters) in a V(kubernetes.io/kube-apiserver-client) request; this module refuses it
    before sending.
  - The private key never appears in results or logs.
  - The CSRs of O(users) are created one after the other while the API server answers quickly (under 10 ms a request);
    when the first ones take longer, the rest go out four at a time. Results keep the order of O(users).
"""

EXAMPLES = r"""
- name: Request client certificates for two users in one cluster
  kubepki.certs.csr_create:
    kubeconfig: /etc/kubernetes/admin.conf
    cluster: prod-1
    scope: team-a
    users:
      - name: alice
        groups: [developers]
      - name: bob
        groups: [developers, auditors]
    expiration_seconds: 86400
    renew_before: 2h
  register: created

- name: A user brings a CSR; the key stays with them
  kubepki.certs.csr_create:
    cluster: prod-1
    users:
      - name: carol
        groups: [ops]
        csr: "{{ lookup('ansible.builtin.file', 'carol.csr') }}"

- name: Remove the CSRs of a user
  kubepki.certs.csr_create:
    cluster: prod-1
    users:
      - name: alice
    state: absent
"""

RETURN = r"""
csrs:
  description: One entry per user, in the order of O(users).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The user name (CN).
      type: str
      sample: alice
    csr_name:
      description: The CSR name; null when it cannot be known yet (check mode before the key exists).
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    uid:
      description: The CSR's uid, or the CSR uid recorded with the known certificate.
      type: str
      sample: 3b1f2c9a-8d6e-4c1b-9f0a-1e2d3c4b5a69
    state:
      description: State of the request - pending, approved, issued, denied, failed, or absent.
      type: str
      sample: pending
    action:
      description: What was done - created, adopted, replaced, known (a valid certificate is already known), deleted or none.
      type: str
      sample: created
    key_created:
      description: Whether a new private key was (or in check mode would be) created.
      type: bool
      sample: true
    public_key_sha256:
      description: SHA-256 of the public key (DER SubjectPublicKeyInfo); never the key itself.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    renews_serial:
      description: Serial of the certificate this request renews, when it is a renewal.
      type: str
      sample: 1f2e3d
    signer_name:
      description: The signer of the request.
      type: str
      sample: kubernetes.io/kube-apiserver-client
    cluster:
      description: The cluster name.
      type: str
      sample: prod-1
    scope:
      description: The scope.
      type: str
      sample: default
    deleted:
      description: With O(state=absent), the CSR names deleted.
      type: list
      elements: str
      sample: []
    certificates:
      description:
        - With O(state=absent), the certificates the deleted CSRs carried that are still valid (serial, validity and CSR
          name). Deleting a CSR does not revoke its certificate; Kubernetes cannot revoke client certificates, so each
          stays valid until its C(not_after).
      returned: with O(state=absent), when a deleted CSR carried a certificate that is still valid
      type: list
      elements: dict
      sample: [{"csr_name": "kubepki-alice-3f9c2a61d0b4", "serial": "5d1e0c", "not_before": "2026-12-01T10:00:00Z",
                "not_after": "2026-12-02T10:00:00Z"}]
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import create
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main


def main():
    module_main(create.argument_spec(), create.run, ("kubernetes", "cryptography"))


if __name__ == "__main__":
    main()
