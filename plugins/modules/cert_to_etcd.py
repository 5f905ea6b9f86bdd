#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cert_to_etcd
short_description: Put issued client certificates into etcd, or remove them
version_added: 0.1.0
description:
  - Writes one certificate record per entry of O(certificates) under C(<etcd_prefix>/certs/<scope>/<cluster>/<user>) in etcd,
    where M(kubepki.certs.kubeconfig_render) loads it from into the credential store.
  - The value is canonical JSON (sorted keys, no spaces), so a record that carries the same certificate is byte-equal to
    what etcd holds and the task reports C(changed=false).
  - Each write is an etcd transaction that compares the key's current revision first, so a concurrent writer is never
    overwritten blindly. When another run changed the key in between, the key is read again and decided again (up to
    five times); a value equal to ours leaves the record unchanged, so two identical runs at the same time both succeed.
  - An older certificate never replaces a newer one. When etcd already holds, for the same key, a certificate that is
    newer (later C(not_before), then later C(not_after)) the record is left as it is and reported with
    C(action=kept_newer); another certificate exactly as new is left too (C(action=kept_equal)).
  - The etcd options, O(scope), O(cluster) and every entry are checked before etcd is contacted. Scope, cluster and
    user names must not contain C(/) nor be C(.) or C(..).
  - The facts of each record (C(common_name), C(organizations), C(serial), C(not_before), C(not_after),
    C(public_key_sha256)) are computed from the PEM certificate. Values the caller passes for C(serial), C(not_after)
    or C(public_key_sha256) must agree with the PEM, otherwise the task fails before anything is written.
  - All records of a task use one etcd connection. Nothing is written when any entry is invalid.
  - Records are written in transactions of 64 keys. Each transaction is all or nothing; when a later one fails, the
    records of the earlier ones stay written (each record is complete on its own) and the failure lists them in
    C(written_keys). Running the task again finishes the rest.
author:
  - kubepki.certs contributors (@kubepki)
options:
  certificates:
    description:
      - The certificate records, as the C(certificates) list returned by M(kubepki.certs.csr_wait).
      - Each entry needs C(certificate) (PEM) with O(state=present). C(user) defaults to the certificate CN,
        C(scope) to O(scope) and C(cluster) to O(cluster).
      - With O(state=absent) an entry only needs C(user) (or C(certificate)), and C(cluster)/C(scope) when the defaults do not apply.
      - C(csr_name), C(csr_uid) and C(signer_name) are stored as given; other extra keys are ignored.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
  scope:
    description:
      - Scope (logical cloud) of entries without their own C(scope).
    type: str
    default: default
    version_added: 0.1.0
  cluster:
    description:
      - Cluster name of entries without their own C(cluster).
    type: str
    version_added: 0.1.0
  state:
    description:
      - V(present) puts the records, V(absent) deletes them.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
extends_documentation_fragment:
  - kubepki.certs._etcd
  - kubepki.certs._requirements.ETCD
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_ETCD
attributes:
  check_mode:
    support: full
    details:
      - etcd is read to predict C(changed); nothing is written.
  diff_mode:
    support: full
    details:
      - The diff shows serial, validity and groups of each record before and after, never the PEM.
notes:
  - Certificates are public data; no private key ever passes through this module.
"""

EXAMPLES = r"""
- name: Wait for the certificates
  kubepki.certs.csr_wait:
    names: "{{ created.csr_names }}"
  register: issued

- name: Publish them to the central etcd
  kubepki.certs.cert_to_etcd:
    certificates: "{{ issued.certificates }}"
    cluster: "{{ inventory_hostname }}"
    etcd_endpoints:
      - https://etcd.example.com:2379
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt
    etcd_client_cert: /etc/kubepki/etcd-client.crt
    etcd_client_key: /etc/kubepki/etcd-client.key

- name: Remove the record of a user who left
  kubepki.certs.cert_to_etcd:
    state: absent
    certificates:
      - user: bob
        cluster: prod-1
"""

RETURN = r"""
records:
  description: One entry per input record, in input order.
  returned: always
  type: list
  elements: dict
  sample:
    - key: /kubepki/certs/default/prod-1/alice
      scope: default
      cluster: prod-1
      user: alice
      changed: true
      action: created
      serial: 4f2a9c0e1d
      not_after: "2026-01-02T03:04:05Z"
  contains:
    key:
      description: The etcd key of the record.
      type: str
      returned: always
      sample: /kubepki/certs/default/prod-1/alice
    scope:
      description: Scope of the record.
      type: str
      returned: always
      sample: default
    cluster:
      description: Cluster of the record.
      type: str
      returned: always
      sample: prod-1
    user:
      description: User (certificate CN) of the record.
      type: str
      returned: always
      sample: alice
    changed:
      description: Whether this record was (or, in check mode, would be) written or deleted.
      type: bool
      returned: always
      sample: true
    action:
      description:
        - What was (or, in check mode, would be) done with the record.
        - V(created), V(updated) or V(deleted) when C(changed=true).
        - V(unchanged) when etcd already held exactly this record (or, with O(state=absent), no record).
        - V(kept_newer) when etcd holds a newer certificate for the key and it was left in place.
        - V(kept_equal) when etcd holds another certificate exactly as new as this one and it was left in place.
      type: str
      returned: always
      sample: created
    serial:
      description: Serial number (hex) computed from the certificate.
      type: str
      returned: when O(state=present)
      sample: 4f2a9c0e1d
    not_after:
      description: End of validity computed from the certificate (RFC 3339).
      type: str
      returned: when O(state=present)
      sample: "2026-01-02T03:04:05Z"
etcd_endpoint:
  description: The etcd endpoint that served the task.
  returned: always
  type: str
  sample: https://127.0.0.1:2379
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import publish  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main  # noqa: E402  pylint: disable=wrong-import-position


def main():
    module_main(publish.argument_spec(), publish.run, ("cryptography", "etcd3gw"))


if __name__ == "__main__":
    main()
