#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_wait
short_description: Wait until CertificateSigningRequests are issued and return their certificates
version_added: 0.1.0
description:
  - Waits, with one watch for the whole batch, until every CSR of O(names) / O(csrs) has a certificate.
  - Lists the CSRs, then watches from that resourceVersion; a dropped stream is resumed from the last version seen,
    a 410 Expired relists. Polling is only a last resort, for a server that does not watch.
  - Fails at once when a CSR is Denied or Failed (naming the CSR and the condition's reason and message), or is deleted
    before it was issued; fails after O(timeout) seconds with the last state seen of each CSR.
  - Checks each certificate - its public key is the request's, CN and O are as requested, it is valid now and, when
    O(cluster_ca) is given, it is signed by that CA.
  - Returns, for each CSR, a certificate record with the fields C(cert_to_etcd) stores, plus lifetime facts.
  - A CSR that no longer exists (the controller-manager deletes issued CSRs after about an hour) is answered from the
    credential store or etcd when an entry of O(csrs) names its user and a record with that CSR name is known.
    Any other CSR that does not exist when the wait starts fails the task at once, naming it.
author:
  - kubepki.certs contributors (@kubepki)
options:
  names:
    description:
      - CSR names to wait for.
    type: list
    elements: str
    default: []
  csrs:
    description:
      - The RV(kubepki.certs.csr_create#module:csrs) list returned by M(kubepki.certs.csr_create); each entry needs
        C(csr_name) and C(name) (the user).
      - Entries without C(csr_name) (check mode) are skipped.
    type: list
    elements: dict
    default: []
  cluster:
    description:
      - Name of the cluster, copied into the certificate records.
    type: str
    required: true
  scope:
    description:
      - Scope copied into the certificate records when a CSR does not carry the C(kubepki.io/scope) annotation.
    type: str
    default: default
  timeout:
    description:
      - How long to wait, in seconds, for the whole batch.
    type: int
    default: 300
  cluster_ca:
    description:
      - The cluster signing CA, as a path or PEM text; each certificate must be signed by it.
    type: str
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.INFO_MODULE
  - kubepki.certs._attributes.ACTIONGROUP_K8S_ETCD_STORE
notes:
  - In check mode nothing is waited for; CSRs that are already issued are returned.
"""

EXAMPLES = r"""
- name: Create, approve and wait
  kubepki.certs.csr_create:
    cluster: prod-1
    users: [{name: alice, groups: [developers]}]
  register: created

- name: Approve under the default policy
  kubepki.certs.csr_approve:
    cluster: prod-1
    csrs: "{{ created.csrs }}"

- name: Wait for the certificates
  kubepki.certs.csr_wait:
    cluster: prod-1
    csrs: "{{ created.csrs }}"
    cluster_ca: /etc/kubernetes/pki/ca.crt
    timeout: 120
  register: issued

- name: Show the expiry of each certificate
  ansible.builtin.debug:
    msg: "{{ issued.certificates | map(attribute='not_after') }}"
"""

RETURN = r"""
certificates:
  description:
    - One record per issued CSR, in the order asked for.
    - The fields of the certificate record (see docs/internals.md) plus the lifetime facts.
  returned: always
  type: list
  elements: dict
  contains:
    scope:
      description: Scope of the user.
      type: str
      sample: default
    cluster:
      description: The cluster name.
      type: str
      sample: prod-1
    user:
      description: The user.
      type: str
      sample: alice
    common_name:
      description: CN of the certificate.
      type: str
      sample: alice
    organizations:
      description: O values of the certificate.
      type: list
      elements: str
      sample: [developers]
    certificate:
      description: The certificate, PEM (leaf first).
      type: str
      sample: "-----BEGIN CERTIFICATE-----\n..."
    csr_name:
      description: The CSR name.
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    csr_uid:
      description: The CSR uid.
      type: str
      sample: 3b1f2c9a-8d6e-4c1b-9f0a-1e2d3c4b5a69
    signer_name:
      description: The signer.
      type: str
      sample: kubernetes.io/kube-apiserver-client
    serial:
      description: Serial number, lowercase hex.
      type: str
      sample: 5f3a
    not_before:
      description: Start of validity, RFC 3339.
      type: str
      sample: "2026-01-02T03:04:05Z"
    not_after:
      description: End of validity, RFC 3339.
      type: str
      sample: "2027-01-02T03:04:05Z"
    public_key_sha256:
      description: SHA-256 of the public key.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    requested_expiration_seconds:
      description: The lifetime asked for (C(spec.expirationSeconds) or the creator's annotation); null when none.
      type: int
      sample: 3600
    granted_lifetime_seconds:
      description: Lifetime of the certificate (not_after - not_before).
      type: int
      sample: 3900
    lifetime_clamped:
      description: Whether the signer ignored or clamped the requested lifetime.
      type: bool
      sample: false
    source:
      description: Where the record came from - V(cluster), or V(store) / V(etcd) when the CSR is gone.
      type: str
      sample: cluster
csrs:
  description: The last state seen of each CSR.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "kubepki-alice-5d0c3b0e5c7f1a2b3c4d", "state": "issued"}]
wait_stats:
  description:
    - How the wait went - list calls, watches, resumes, relists, events, seconds; C(polls), lists made because the server
      refuses to watch; C(watch_failures), watches that failed with 429/5xx or could not connect; C(fallback_lists), lists
      made because watches kept failing; C(list_failures), lists that failed the same transient ways and were tried again.
  returned: always
  type: dict
  sample: {"lists": 1, "watches": 1, "resumes": 0, "relists": 0, "events": 3, "polls": 0, "watch_failures": 0,
           "fallback_lists": 0, "list_failures": 0, "seconds": 0.4}
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import wait
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main


def main():
    module_main(wait.argument_spec(), wait.run, ("kubernetes", "cryptography"))


if __name__ == "__main__":
    main()
