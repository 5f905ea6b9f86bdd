#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: user_certificates
short_description: Users' client certificates in many clusters, end to end, in one task
version_added: 0.2.0
description:
  - Runs the whole job for O(users) in every cluster of O(clusters) - key in the credential store, CertificateSigningRequest,
    approval under O(policy), waiting for the signer, the certificate into etcd - and then, with O(dest_dir), one kubeconfig
    per user with a context per cluster.
  - Each step is the code of its own module (M(kubepki.certs.csr_create), M(kubepki.certs.csr_approve),
    M(kubepki.certs.csr_wait), M(kubepki.certs.cert_to_etcd), M(kubepki.certs.kubeconfig_render)) with the same checks,
    idempotency and errors; what this module saves is one Ansible task and one Python process per step and cluster.
    Use the single modules when the steps must be split, for example to approve in another play.
  - Keys are created first, once per user (or per user and cluster with O(key_scope=per_cluster)); then up to O(parallel)
    clusters are worked on side by side, each with one list and one watch for the whole batch.
  - Every input is checked before anything is written, for every user and cluster - names (no C(/), C(.) or C(..), since they
    become etcd key segments and file names), groups the approval policy would refuse, CA and kubeconfig files, server URLs,
    etcd endpoints, O(dest_dir), durations. Bad input fails naming the option and leaves the store, the clusters and etcd
    as they were.
  - A user or cluster that fails at run time does not stop the others. A user whose CSR cannot be created, approved or
    issued in a cluster, or a cluster that cannot be reached, is set aside with the reason; every other user is finished and
    rendered (with a context for each cluster where the user has a valid certificate), then the task fails naming each
    (cluster, user) left over in RV(failures), and returns what was done in RV(clusters).
  - Groups are a set. The signer writes all of them into one relative distinguished name, a DER SET, which sorts them, so
    the certificate never keeps the order given; V([ops, dev]) and V([dev, ops]) are the same request.
  - The cluster auth options at the top level (O(kubeconfig), O(context), O(host), ...) are defaults for every
    O(clusters[].auth); with them the module takes C(module_defaults) for the C(group/kubepki.certs.k8s) action group.
  - Without etcd (no O(etcd_endpoints) and no E(KUBEPKI_ETCD_ENDPOINTS)) the issued certificates are written straight into the
    credential store.
  - A re-run while the certificates are valid and outside O(renew_before) of expiry changes nothing and creates no CSR, even
    after the controller-manager's cleaner removed the issued CSRs.
author:
  - kubepki.certs contributors (@kubepki)
options:
  users:
    description:
      - The users, each with a certificate CN (C(name)) and O values (C(groups)).
    type: list
    elements: dict
    required: true
    version_added: 0.2.0
    suboptions:
      name:
        description:
          - User name, the certificate's common name.
        type: str
        required: true
      groups:
        description:
          - Groups, the certificate's organizations.
        type: list
        elements: str
        default: []
      expiration_seconds:
        description:
          - Requested lifetime for this user; overrides O(expiration_seconds).
        type: int
  clusters:
    description:
      - The clusters, each with a name (the key of its records in etcd and the store), how to reach its API, and what the
        users' kubeconfigs say about it.
    type: list
    elements: dict
    required: true
    version_added: 0.2.0
    suboptions:
      name:
        description:
          - Cluster name.
        type: str
        required: true
      server:
        description:
          - API server URL written into the kubeconfigs; required with O(dest_dir).
        type: str
      ca_cert:
        description:
          - Path of the cluster CA. Issued certificates must chain to it, and it is written into the kubeconfigs.
          - Mutually exclusive with O(clusters[].ca_data).
        type: path
      ca_data:
        description:
          - The cluster CA as PEM text, instead of O(clusters[].ca_cert).
        type: str
      namespace:
        description:
          - Namespace of the users' context for this cluster.
        type: str
      context:
        description:
          - Name of the users' context for this cluster; default C(<user>@<cluster>).
        type: str
      auth:
        description:
          - How this module reaches the cluster's API, with the options (and E(K8S_AUTH_*) environment variables and
            precedence) of M(kubepki.certs.csr_create). The identity needs to create, approve and watch CSRs.
        type: dict
        default: {}
        suboptions:
          kubeconfig:
            description:
              - Path to a kubeconfig file, or its content as a dict (whose secret values are hidden from logs).
            type: raw
          context:
            description:
              - Context of O(clusters[].auth.kubeconfig).
            type: str
          host:
            description:
              - URL of the API server.
            type: str
          api_key:
            description:
              - Bearer token.
            type: str
          validate_certs:
            description:
              - Whether to verify the API server's TLS certificate.
            type: bool
            aliases: [verify_ssl]
          ca_cert:
            description:
              - CA bundle to verify the API server with.
            type: path
            aliases: [ssl_ca_cert]
          client_cert:
            description:
              - Client certificate to authenticate with.
            type: path
            aliases: [cert_file]
          client_key:
            description:
              - Private key of O(clusters[].auth.client_cert).
            type: path
            aliases: [key_file]
          proxy:
            description:
              - HTTP(S) proxy URL.
            type: str
  scope:
    description:
      - Scope (logical cloud) of keys and certificates.
    type: str
    default: default
    version_added: 0.2.0
  signer_name:
    description:
      - Signer of the requests.
    type: str
    default: kubernetes.io/kube-apiserver-client
    version_added: 0.2.0
  key_type:
    description:
      - Type of newly generated keys.
    type: str
    choices: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
    default: ec-p256
    version_added: 0.2.0
  key_scope:
    description:
      - V(shared) - one key per user for all clusters of O(scope); V(per_cluster) - one key per user and cluster.
    type: str
    choices: [shared, per_cluster]
    default: shared
    version_added: 0.2.0
  expiration_seconds:
    description:
      - Requested certificate lifetime (C(spec.expirationSeconds), at least 600); the signer's default when not set.
    type: int
    version_added: 0.2.0
  renew_before:
    description:
      - Request a new certificate when the known one expires within this duration (V(720h), V(30d), V(3600)).
    type: str
    version_added: 0.2.0
  rotate_key:
    description:
      - On renewal, generate a new key instead of reusing the stored one.
      - With O(key_scope=shared) only one cluster per task may rotate (the key is shared by all of them).
    type: bool
    default: false
    version_added: 0.2.0
  force:
    description:
      - Replace an existing CSR of the same name whose spec differs, or that was denied or failed.
    type: bool
    default: false
    version_added: 0.2.0
  reason:
    description:
      - Reason of the C(Approved) condition.
    type: str
    version_added: 0.2.0
  condition_message:
    description:
      - Message of the C(Approved) condition.
    type: str
    version_added: 0.2.0
  timeout:
    description:
      - Seconds to wait for the signer in each cluster.
    type: int
    default: 300
    version_added: 0.2.0
  dest_dir:
    description:
      - Directory for the kubeconfigs, C(<user>.kubeconfig) each (0600; the directory is created 0700). No kubeconfig is
        rendered when not set.
    type: path
    version_added: 0.2.0
  verify:
    description:
      - Log in to every cluster with each rendered kubeconfig and check that it sees the user and the groups.
    type: bool
    default: false
    version_added: 0.2.0
  parallel:
    description:
      - How many clusters are worked on at the same time.
    type: int
    default: 4
    version_added: 0.2.0
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._policy
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_K8S_ETCD_STORE
attributes:
  check_mode:
    support: full
    details:
      - Reports the keys and CSRs that would be created and the approvals, etcd records and kubeconfigs that would change;
        nothing is written and nothing is waited for. When a user has no key yet no kubeconfig can be predicted.
  diff_mode:
    support: partial
    details:
      - Only the kubeconfigs' diffs are returned (keys and certificate data redacted); see the single modules for CSR and
        etcd diffs.
notes:
  - The O(policy) defaults to allowing only the groups listed in O(users) (O(policy.allowed_groups) not set), and never
    C(system:masters), C(kubeadm:cluster-admins) or other C(system:*) groups unless O(policy.allowed_system_groups) lists
    them.
  - Kubeconfigs carry private keys; they are written 0600 and never returned by this module.
  - Within a cluster, CSRs are created and approved one after the other while the API server answers quickly (under
    10 ms a request, as on a local cluster); when the first requests take longer, the rest go out four at a time.
seealso:
  - module: kubepki.certs.csr_create
  - module: kubepki.certs.kubeconfig_render
"""

EXAMPLES = r"""
- name: Give alice and bob access to both clusters
  kubepki.certs.user_certificates:
    users:
      - {name: alice, groups: [dev, ops]}
      - {name: bob, groups: [dev]}
    clusters:
      - name: prod-eu
        server: https://prod-eu.example.com:6443
        ca_cert: /etc/kubepki/prod-eu-ca.crt
        auth: {kubeconfig: /etc/kubepki/prod-eu-admin.kubeconfig}
      - name: prod-us
        server: https://prod-us.example.com:6443
        ca_cert: /etc/kubepki/prod-us-ca.crt
        auth: {kubeconfig: /etc/kubepki/prod-us-admin.kubeconfig}
    etcd_endpoints: [https://etcd.example.com:2379]
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt
    renew_before: 720h
    dest_dir: /srv/kubeconfigs
  register: access
"""

RETURN = r"""
clusters:
  description: What was done in each cluster, in the order of O(clusters).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The cluster.
      type: str
      sample: prod-eu
    changed:
      description: Whether anything changed for this cluster (keys, CSRs, approvals, etcd records or store records).
      type: bool
      sample: true
    csrs:
      description: The RV(kubepki.certs.csr_create#module:csrs) entries of the users.
      type: list
      elements: dict
      sample: [{"name": "alice", "csr_name": "kubepki-alice-3f9c2a61d0b4", "state": "pending", "action": "created"}]
    approvals:
      description: The RV(kubepki.certs.csr_approve#module:csrs) entries of the requests decided on; empty when none was needed.
      type: list
      elements: dict
      sample: [{"name": "kubepki-alice-3f9c2a61d0b4", "decision": "approved", "state": "approved"}]
    certificates:
      description: The RV(kubepki.certs.csr_wait#module:certificates) records issued by this run (public data).
      type: list
      elements: dict
      sample: [{"user": "alice", "serial": "5d1e0c...", "not_after": "2027-12-01T10:00:00Z"}]
    etcd_records:
      description: The RV(kubepki.certs.cert_to_etcd#module:records) entries written or found equal.
      type: list
      elements: dict
      sample: [{"key": "/kubepki/certs/default/prod-eu/alice", "changed": true}]
    wait_stats:
      description: How the wait went (RV(kubepki.certs.csr_wait#module:wait_stats)).
      returned: when the run waited in this cluster
      type: dict
      sample: {"seconds": 0.21, "lists": 1, "watches": 1}
failures:
  description:
    - What could not be finished, one entry per (cluster, user); RV(failures[].user) is V(null) when the whole cluster
      stopped at that step. The task fails when this list is not empty, after finishing everything else.
  returned: on failure at run time
  type: list
  elements: dict
  contains:
    cluster:
      description: The cluster at fault.
      type: str
      sample: prod-eu
    user:
      description: The user, or V(null) for the whole cluster.
      type: str
      sample: alice
    csr_name:
      description: The CSR concerned, when there is one.
      type: str
      sample: kubepki-alice-3f9c2a61d0b4
    step:
      description: Where it stopped - V(create), V(approve), V(wait), V(publish) or V(render).
      type: str
      sample: approve
    msg:
      description: Why.
      type: str
      sample: "the approval policy refuses CSR kubepki-alice-3f9c2a61d0b4: group qa is not in policy.allowed_groups"
  sample: [{"cluster": "prod-eu", "user": "alice", "step": "approve", "msg": "..."}]
users:
  description: The RV(kubepki.certs.kubeconfig_render#module:users) entries, one per rendered user (no key material).
  returned: when O(dest_dir) is set and the kubeconfigs could be rendered
  type: list
  elements: dict
  sample: [{"user": "alice", "dest": "/srv/kubeconfigs/alice.kubeconfig", "changed": true}]
store:
  description: Where the credential store is (credentials removed).
  returned: when kubeconfigs were rendered
  type: str
  sample: sqlite:///home/ops/.kubepki/store.db
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _access, _deps  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._errors import run_module  # noqa: E402  pylint: disable=wrong-import-position


def main():
    module = AnsibleModule(argument_spec=_access.argument_spec(), supports_check_mode=True)
    _deps.require(module, "kubernetes", "cryptography")
    run_module(module, _access.run)


if __name__ == "__main__":
    main()
