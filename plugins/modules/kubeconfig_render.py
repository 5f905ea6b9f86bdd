#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kubeconfig_render
short_description: Render a client-certificate kubeconfig for one user and one or more clusters
version_added: 0.1.0
description:
  - Takes the user's private key from the credential store and the certificate of each cluster from the store as well.
  - When etcd is configured (O(etcd_endpoints) or E(KUBEPKI_ETCD_ENDPOINTS)) and the store has no certificate for a
    cluster, or an older one (etcd holds a different certificate that is valid now, matches the key and expires later),
    the certificate is loaded from etcd and saved into the store.
  - Refuses a certificate whose public key does not match the stored key, that is expired or not yet valid, whose CN is
    not O(user), or that was not issued by the cluster CA when one is given; each message names the user and the cluster.
  - The kubeconfig has one cluster, one user entry (C(<user>@<cluster>)) and one context per cluster, with
    C(certificate-authority-data), C(client-certificate-data) and C(client-key-data) inline. Before it is written or
    returned, the text is read back the way the collection's modules read a kubeconfig, and every context must give back
    exactly the server, CA, certificate and key that were rendered.
  - With O(dest) the file is written with mode C(0600) (or O(mode), O(owner) and O(group)) through a temporary file in the
    same directory and an atomic rename, only when its content or those attributes change. Without O(dest) the kubeconfig
    is returned as RV(kubeconfig); set C(no_log) on such a task, since the result contains the private key.
  - A user's kubeconfig holds every cluster of O(scope) where the user holds a valid certificate. When the file at O(dest)
    (or in O(dest_dir)) exists, its contexts for clusters this task does not render for the user (not in O(clusters), or
    not in O(users[].clusters)) are kept as long as the user still holds a certificate there that is valid now - the one
    the store or etcd hold for the scope, cluster and user (chosen, and loaded from etcd, as for the other clusters). When
    neither holds one, the user holds none there if etcd is configured (etcd records what was issued, and offboarding
    deletes it); without etcd the file's own certificate is judged. It must be neither expired nor not yet valid, have
    the user's CN, match the user's key and chain to the CA of the file's cluster; the context is then written with the
    store's key and that certificate, and with the server, CA, namespace and context name the file gives it (nothing
    else knows them). Otherwise the context is dropped, with a warning and the reason in RV(dropped). Only contexts of
    the kind this module writes can be kept.
  - Contexts the file has keep their places; new ones follow in the order of O(clusters).
  - With O(verify=true) the module logs in to each cluster with the rendered kubeconfig and returns the identity the cluster
    sees, so a wrong user name or group shows at once.
author:
  - kubepki.certs contributors (@kubepki)
options:
  user:
    description:
      - The user, that is the CN of the client certificates.
      - Exactly one of O(user) and O(users) is required.
    type: str
    version_added: 0.1.0
  users:
    description:
      - Render one kubeconfig for each of these users in one task (one store connection, one etcd client).
      - Each kubeconfig goes to C(<dest_dir>/<name>.kubeconfig); without O(dest_dir) nothing is written and only the
        checks run.
      - With O(verify=true), each user's O(users[].groups), when given, must be the groups the clusters report.
      - The per-user results are in RV(users).
    type: list
    elements: dict
    version_added: 0.1.0
    suboptions:
      name:
        description:
          - The user, that is the CN of the client certificates.
        type: str
        required: true
      groups:
        description:
          - The groups the user must have in every cluster (checked with O(verify=true)), compared as a set.
        type: list
        elements: str
      clusters:
        description:
          - Names from O(clusters) to give this user a context for; every cluster when not set.
        type: list
        elements: str
      client_key_path:
        description:
          - For a user who holds their own private key (a CSR brought to M(kubepki.certs.csr_create) as
            O(kubepki.certs.csr_create#module:users[].csr)) - the absolute path of that key on the user's machine. The
            kubeconfig then refers to it as C(client-key) instead of embedding key data; the key is never read, and the
            store needs no key for this user. The certificate is still taken from the store or etcd and checked, except
            against a stored key.
          - Not with O(verify=true), which needs the key.
        type: str
  dest_dir:
    description:
      - With O(users), the directory the C(<name>.kubeconfig) files are written to (mode C(0600), or O(mode)); it is
        created with mode C(0700) (and its parents) when it does not exist.
      - Each file keeps the contexts of other clusters where its user still holds a valid certificate, as with O(dest).
    type: path
    version_added: 0.1.0
  clusters:
    description:
      - The clusters to put into the kubeconfig, in order.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
    suboptions:
      name:
        description:
          - Cluster name, as used by M(kubepki.certs.csr_create) and M(kubepki.certs.cert_to_etcd) (the inventory host in the roles).
        type: str
        required: true
      server:
        description:
          - API server URL, for example V(https://10.0.0.1:6443).
        type: str
        required: true
      ca_cert:
        description:
          - Path of the cluster CA bundle (PEM). Mutually exclusive with O(clusters[].ca_data).
          - When a CA is given it goes into C(certificate-authority-data) and the client certificate must be issued by it.
        type: path
      ca_data:
        description:
          - The cluster CA bundle as PEM text. Mutually exclusive with O(clusters[].ca_cert).
        type: str
      namespace:
        description:
          - Default namespace of the context.
        type: str
      context:
        description:
          - Name of the context; default C(<user>@<name>).
        type: str
  scope:
    description:
      - Scope (logical cloud) of the key and certificates.
    type: str
    default: default
    version_added: 0.1.0
  key_scope:
    description:
      - V(shared) uses the one key of the user in the scope for every cluster; V(per_cluster) uses a key per cluster.
      - Must match what M(kubepki.certs.csr_create) used.
    type: str
    choices: [shared, per_cluster]
    default: shared
    version_added: 0.1.0
  current_context:
    description:
      - The C(current-context) of the kubeconfig, one of its contexts (a context kept from the existing O(dest) too).
        Default the current context of the existing O(dest) when the kubeconfig still has that context, else the first
        context.
    type: str
    version_added: 0.1.0
  dest:
    description:
      - File to write the kubeconfig to (mode C(0600), or O(mode)). Its directory must exist.
      - An existing file keeps its contexts for clusters not in O(clusters) where the user still holds a valid
        certificate; see the description.
      - It is written through a temporary file beside it (C(.<name>.*.tmp)), removed when writing fails. One that a
        killed run left behind (it may hold the private key) is removed, with a warning, the next time this kubeconfig
        is rendered; the same holds for O(dest_dir). Only regular files owned by the user running the module are removed,
        never one another run is still writing.
      - When not set, the kubeconfig is returned as RV(kubeconfig).
    type: path
    version_added: 0.1.0
  owner:
    description:
      - Owner of the kubeconfig files written (O(dest), or each file in O(dest_dir)), a user name or a numeric id, as the
        O(ansible.builtin.file#module:owner) of Ansible's file modules. Not set, a file written is owned by the user
        running the module.
      - Set on the temporary file before it is renamed into place. A kubeconfig whose content is current but whose owner
        differs is written again (C(changed), and in the diff).
    type: str
    version_added: 0.1.0
  group:
    description:
      - Group of the kubeconfig files written, a group name or a numeric id; as O(owner).
    type: str
    version_added: 0.1.0
  mode:
    description:
      - Permissions of the kubeconfig files written, as the O(ansible.builtin.file#module:mode) of Ansible's file modules -
        octal digits in a string (V('0640')) or a symbolic mode (V(u=rw,g=r)), which applies to C(0600). Quote octal
        modes; YAML reads an unquoted V(0640) as a number, which is taken as the mode's value.
      - Not set, C(0600). A mode that gives others (neither the owner nor the group) any permission is refused - the
        files hold private keys.
      - Set on the temporary file before it is renamed into place; a kubeconfig whose content is current but whose mode
        differs is written again (C(changed), and in the diff).
    type: raw
    version_added: 0.1.0
  verify:
    description:
      - Log in to each cluster with the rendered kubeconfig and return the identity it sees as RV(identities).
      - Only the contexts of O(clusters) are logged in with, not those kept from an existing file.
      - Uses SelfSubjectReview (C(authentication.k8s.io/v1), then C(v1beta1)); a cluster without it gets an authenticated
        C(GET /api) and only the success of the login is reported.
    type: bool
    default: false
    version_added: 0.1.0
  expected_groups:
    description:
      - With O(verify=true), the groups the clusters must report for the user (C(system:authenticated) is ignored).
      - The task fails when a cluster reports other groups. Clusters without SelfSubjectReview are checked against the
        certificate's O values instead, with a warning.
    type: list
    elements: str
    version_added: 0.1.0
extends_documentation_fragment:
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_ETCD_STORE
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written, neither O(dest) (content, owner, group, mode) nor the store; C(changed) tells whether either
        would change.
      - O(verify) still logs in, which changes nothing.
  diff_mode:
    support: full
    details:
      - The diff shows the kubeconfig structure with the key replaced by a marker and certificates by fingerprints, and
        the owner, group and mode of an existing file when they change.
notes:
  - The private key leaves the store only here. Set C(no_log) on the task when O(dest) is not used.
"""

EXAMPLES = r"""
- name: Write alice's kubeconfig for two clusters and check what the clusters see
  kubepki.certs.kubeconfig_render:
    user: alice
    clusters:
      - name: prod-1
        server: https://10.0.0.1:6443
        ca_cert: /etc/kubepki/prod-1-ca.crt
      - name: prod-2
        server: https://10.0.0.2:6443
        ca_cert: /etc/kubepki/prod-2-ca.crt
        namespace: team-a
    dest: /home/alice/.kube/config
    verify: true
    expected_groups: [team-a]
    etcd_endpoints: [https://etcd.example.com:2379]
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt

- name: Return the kubeconfig instead of writing it
  kubepki.certs.kubeconfig_render:
    user: alice
    clusters:
      - name: prod-1
        server: https://10.0.0.1:6443
  register: rendered
  no_log: true

- name: Write the kubeconfigs of many users in one task and check their groups in every cluster
  kubepki.certs.kubeconfig_render:
    users:
      - {name: alice, groups: [dev, ops]}
      - {name: bob, groups: [dev]}
    clusters:
      - name: prod-1
        server: https://10.0.0.1:6443
        ca_cert: /etc/kubepki/prod-1-ca.crt
    dest_dir: /srv/kubeconfigs
    verify: true
"""

RETURN = r"""
dest:
  description: The file written, when O(dest) was given. With O(users), each entry of RV(users) has its own.
  returned: when O(dest) is set
  type: str
  sample: /home/alice/.kube/config
kubeconfig:
  description: The kubeconfig (YAML text). It contains the private key.
  returned: when O(user) is set and O(dest) is not
  type: str
  sample: "apiVersion: v1\nkind: Config\n..."
current_context:
  description: The current context of the kubeconfig.
  returned: when O(user) is set
  type: str
  sample: alice@prod-1
clusters:
  description: What was used for each cluster.
  returned: when O(user) is set
  type: list
  elements: dict
  sample:
    - name: prod-1
      context: alice@prod-1
      server: https://10.0.0.1:6443
      serial: 4f2a9c0e1d
      not_after: "2026-01-02T03:04:05Z"
      organizations: [team-a]
      source: etcd
      loaded_from_etcd: true
  contains:
    name:
      description: Cluster name.
      type: str
      returned: always
      sample: prod-1
    context:
      description: Context name in the kubeconfig.
      type: str
      returned: always
      sample: alice@prod-1
    server:
      description: API server URL.
      type: str
      returned: always
      sample: https://10.0.0.1:6443
    serial:
      description: Serial (hex) of the client certificate used.
      type: str
      returned: always
      sample: 4f2a9c0e1d
    not_after:
      description: End of validity of the client certificate (RFC 3339).
      type: str
      returned: always
      sample: "2026-01-02T03:04:05Z"
    organizations:
      description: The O values (groups) of the client certificate.
      type: list
      elements: str
      returned: always
      sample: [team-a]
    source:
      description: Where the certificate came from, V(store) or V(etcd).
      type: str
      returned: always
      sample: store
    loaded_from_etcd:
      description: Whether the certificate was (or, in check mode, would be) copied from etcd into the store.
      type: bool
      returned: always
      sample: false
identities:
  description: The identity each cluster sees, with O(verify=true).
  returned: when O(verify=true)
  type: list
  elements: dict
  sample:
    - context: alice@prod-1
      server: https://10.0.0.1:6443
      authenticated: true
      method: SelfSubjectReview/v1
      username: alice
      groups: [team-a, system:authenticated]
  contains:
    context:
      description: Context used.
      type: str
      returned: always
      sample: alice@prod-1
    server:
      description: API server URL.
      type: str
      returned: always
      sample: https://10.0.0.1:6443
    authenticated:
      description: Whether the login succeeded (always true; a failed login fails the task).
      type: bool
      returned: always
      sample: true
    method:
      description: How the identity was obtained, V(SelfSubjectReview/v1), V(SelfSubjectReview/v1beta1) or V(GET /api).
      type: str
      returned: always
      sample: SelfSubjectReview/v1
    username:
      description: User name the cluster sees; null with V(GET /api).
      type: str
      returned: always
      sample: alice
    groups:
      description: Groups the cluster sees; null with V(GET /api).
      type: list
      elements: str
      returned: always
      sample: [team-a, system:authenticated]
kept:
  description:
    - The contexts of the existing O(dest) kept for clusters not rendered in this task, each with the certificate it now
      holds. With O(users), in each entry of RV(users).
  returned: when O(dest) is set
  type: list
  elements: dict
  sample:
    - name: prod-3
      context: alice@prod-3
      server: https://10.0.0.3:6443
      serial: 5e1b0d7f2a
      not_after: "2026-01-02T03:04:05Z"
      organizations: [team-a]
      source: store
      loaded_from_etcd: false
  contains:
    name:
      description: Cluster name.
      type: str
      returned: always
      sample: prod-3
    context:
      description: Context name in the kubeconfig.
      type: str
      returned: always
      sample: alice@prod-3
    server:
      description: API server URL, from the existing file.
      type: str
      returned: always
      sample: https://10.0.0.3:6443
    serial:
      description: Serial (hex) of the client certificate kept.
      type: str
      returned: always
      sample: 5e1b0d7f2a
    not_after:
      description: End of validity of that certificate (RFC 3339).
      type: str
      returned: always
      sample: "2026-01-02T03:04:05Z"
    organizations:
      description: The O values (groups) of that certificate.
      type: list
      elements: str
      returned: always
      sample: [team-a]
    source:
      description:
        - Where the certificate came from - V(store), V(etcd), or V(kubeconfig) (the file's own, when neither the store
          nor etcd holds one).
      type: str
      returned: always
      sample: store
    loaded_from_etcd:
      description: Whether the certificate was (or, in check mode, would be) copied from etcd into the store.
      type: bool
      returned: always
      sample: false
dropped:
  description:
    - The contexts of the existing O(dest) left out, because the user holds no certificate valid now for their cluster
      (or they are not of the kind this module writes). With O(users), in each entry of RV(users).
  returned: when O(dest) is set
  type: list
  elements: dict
  sample:
    - name: prod-3
      context: alice@prod-3
      reason: "the certificate of user 'alice' for cluster 'prod-3' (serial 5e1b0d7f2a) expired at 2026-01-02T03:04:05Z"
  contains:
    name:
      description: Cluster name.
      type: str
      returned: always
      sample: prod-3
    context:
      description: Context name in the file.
      type: str
      returned: always
      sample: alice@prod-3
    reason:
      description: Why it was left out.
      type: str
      returned: always
      sample: "the certificate of user 'alice' for cluster 'prod-3' (serial 5e1b0d7f2a) expired at 2026-01-02T03:04:05Z"
users:
  description:
    - With O(users), one entry per user, in order, with the keys above (RV(dest), RV(clusters), RV(kept), RV(dropped),
      RV(identities), RV(current_context)) plus C(user) and C(changed).
  returned: when O(users) is set
  type: list
  elements: dict
  sample:
    - user: alice
      changed: true
      dest: /srv/kubeconfigs/alice.kubeconfig
      current_context: alice@prod-1
      clusters: []
store:
  description: The credential store used, without credentials.
  returned: always
  type: str
  sample: sqlite:///home/ops/.kubepki/store.db
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import render  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main  # noqa: E402  pylint: disable=wrong-import-position


def main():
    module_main(render.argument_spec(), render.run, ("cryptography", "kubernetes"), required_one_of=[("user", "users")],
                mutually_exclusive=[("user", "users"), ("dest", "dest_dir"), ("user", "dest_dir"), ("users", "dest"), ("users", "current_context")])


if __name__ == "__main__":
    main()
