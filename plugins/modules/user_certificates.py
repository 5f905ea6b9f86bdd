#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: user_certificates
short_description: Users' client certificates in many clusters, end to end, in one task
version_added: 0.1.0
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
  - Renewing everything known - with O(users) omitted and O(renew_before) set, the users are taken from the certificate records
    the store and etcd hold for O(scope) and the given O(clusters) (the newer record when both hold one; name and groups from
    the record; records of another O(signer_name) are left alone). Each certificate expiring within O(renew_before) is renewed
    through the normal flow, in its own cluster only; the others are left as they are. A record whose user has no key in the
    store (a user who brings their own key) is skipped. RV(known) says what became of each record.
  - Offboarding - with O(state=absent), for every user and cluster the user's CSRs, the certificate records in etcd and in the
    store, and (with O(key_scope=per_cluster)) the key of that cluster are deleted; then the user's kubeconfig in O(dest_dir)
    and, with O(key_scope=shared), the user's key. Keys go last and only when every cluster of the user was finished - a
    cluster that fails keeps the key, is named in RV(failures), and a re-run finishes the job. A user who still has
    certificate records in clusters of O(scope) not listed in O(clusters) keeps the shared key and the kubeconfig (a warning
    says so).
  - B(Kubernetes cannot revoke client certificates.) A certificate issued to an offboarded user stays valid until its
    notAfter; deleting the CSR, the records and the key does not end it. RV(offboarded[].still_valid) and a warning name
    each one by cluster, serial and notAfter. Remove the RBAC bindings of the user (and of groups only that user needed) to
    cut access sooner, and keep lifetimes short with O(expiration_seconds) (for example V(86400), one day, renewed daily
    with O(renew_before)) so that an offboarded user's access ends soon on its own.
author:
  - kubepki.certs contributors (@kubepki)
options:
  users:
    description:
      - The users, each with a certificate CN (C(name)) and O values (C(groups)).
      - Omitted, with O(state=present) and O(renew_before) set, every certificate the store and etcd know for O(scope) and
        O(clusters) is renewed when due (see the description). Required with O(state=absent).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - User name, the certificate's common name.
        type: str
        required: true
      groups:
        description:
          - Groups, the certificate's organizations. V([]) means no groups.
          - When not given, the groups of the user's certificates on record in the store and etcd (for O(scope) and
            these clusters) are kept, so that an entry with only C(name) and C(force_renew) renews that user's certificate
            with the groups they hold. A user with no certificate on record gets no groups; records that name different
            groups in different clusters fail the task, asking for O(users[].groups).
        type: list
        elements: str
      expiration_seconds:
        description:
          - Requested lifetime for this user; overrides O(expiration_seconds).
        type: int
      force_renew:
        description:
          - Renew this user's certificates now, even when they are valid and not within O(renew_before) of expiry. Every run
            with it set renews again, so set it for one run.
        type: bool
        default: false
  state:
    description:
      - V(present) - issue (or renew) the users' certificates; V(absent) - offboard the users (see the description).
    type: str
    choices: [present, absent]
    default: present
  clusters:
    description:
      - The clusters, each with a name (the key of its records in etcd and the store), how to reach its API, and what the
        users' kubeconfigs say about it.
    type: list
    elements: dict
    required: true
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
  signer_name:
    description:
      - Signer of the requests.
    type: str
    default: kubernetes.io/kube-apiserver-client
  key_type:
    description:
      - Type of newly generated keys.
    type: str
    choices: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
    default: ec-p256
  key_scope:
    description:
      - V(shared) - one key per user for all clusters of O(scope); V(per_cluster) - one key per user and cluster.
    type: str
    choices: [shared, per_cluster]
    default: shared
  expiration_seconds:
    description:
      - Requested certificate lifetime (C(spec.expirationSeconds), at least 600); the signer's default when not set.
      - Since Kubernetes cannot revoke client certificates, short lifetimes (hours to a day, renewed with O(renew_before))
        limit how long an offboarded user keeps access.
    type: int
  renew_before:
    description:
      - Request a new certificate when the known one expires within this duration (V(720h), V(30d), V(3600)).
    type: str
  rotate_key:
    description:
      - On renewal, generate a new key instead of reusing the stored one.
      - With O(key_scope=shared) only one cluster per task may rotate (the key is shared by all of them).
    type: bool
    default: false
  force:
    description:
      - Replace an existing CSR of the same name whose spec differs, or that was denied or failed.
    type: bool
    default: false
  reason:
    description:
      - Reason of the C(Approved) condition.
    type: str
  condition_message:
    description:
      - Message of the C(Approved) condition.
    type: str
  timeout:
    description:
      - Seconds to wait for the signer in each cluster.
    type: int
    default: 300
  dest_dir:
    description:
      - Directory for the kubeconfigs, C(<user>.kubeconfig) each (mode C(0600), or O(mode), O(owner) and O(group); the
        directory and its missing parents are created 0700). No kubeconfig is rendered when not set.
      - A user's kubeconfig holds every cluster of O(scope) where the user holds a valid certificate - a context for each
        cluster of O(clusters), and the contexts of the existing file for other clusters as long as the user still holds
        a certificate there that is valid now (the one the store or etcd hold; without etcd, when the store holds none,
        the file's own; matching the user's key), with the server and CA the file gives them. So a run for some of the clusters leaves the user's others in
        place. A context that no longer qualifies is dropped, with a warning and the reason in the user's entry of
        RV(users) (RV(kubepki.certs.kubeconfig_render#module:dropped)); see O(kubepki.certs.kubeconfig_render#module:dest).
      - With O(state=absent), the contexts of O(clusters) are removed from the offboarded users' C(<user>.kubeconfig)
        files, and the other contexts kept; a file is deleted when no context is left, or when the user holds no
        certificate in another cluster of O(scope).
      - Temporary files that a run killed while writing a user's kubeconfig left beside it (C(.<user>.kubeconfig.*.tmp),
        which may hold the private key) are removed, with a warning, when that user's kubeconfig is rendered again and
        when that user is offboarded. Only regular files of that name pattern owned by the user running the module are
        removed, never one another run is still writing.
    type: path
  owner:
    description:
      - Owner of the kubeconfig files written to O(dest_dir), a user name or a numeric id, as the O(ansible.builtin.file#module:owner)
        of Ansible's file modules. Not set, a file written is owned by the user running the module.
      - Set on the temporary file before it is renamed into place. A kubeconfig whose content is current but whose owner
        differs is written again (C(changed), and in the diff).
    type: str
  group:
    description:
      - Group of the kubeconfig files written to O(dest_dir), a group name or a numeric id; as O(owner).
    type: str
  mode:
    description:
      - Permissions of the kubeconfig files written to O(dest_dir), as the O(ansible.builtin.file#module:mode) of Ansible's
        file modules - octal digits in a string (V('0640')) or a symbolic mode (V(u=rw,g=r)), which applies to C(0600).
        Quote octal modes; YAML reads an unquoted V(0640) as a number, which is taken as the mode's value.
      - Not set, C(0600). A mode that gives others (neither the owner nor the group) any permission is refused - the
        files hold private keys.
      - Set on the temporary file before it is renamed into place; a kubeconfig whose content is current but whose mode
        differs is written again (C(changed), and in the diff).
    type: raw
  verify:
    description:
      - Log in to every cluster with each rendered kubeconfig and check that it sees the user and the groups.
    type: bool
    default: false
  parallel:
    description:
      - How many clusters are worked on at the same time.
    type: int
    default: 4
  result_detail:
    description:
      - V(full) - an entry for every user in RV(clusters[].csrs), RV(users) and RV(known).
      - V(changes) - only the entries of users something was done for or failed for - CSRs created, adopted, replaced
        or failed, kubeconfigs written, records renewed or skipped. The entries left out are counted in
        RV(clusters[].unchanged), RV(unchanged_users) and RV(known_not_due). With thousands of users and nothing to do,
        the result stays a few hundred bytes instead of megabytes, which Ansible would otherwise carry, register and
        print. The C(kubepki.certs.user_access) role uses it.
    type: str
    choices: [full, changes]
    default: full
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
      - With O(state=absent), reports what would be deleted and deletes nothing.
  diff_mode:
    support: partial
    details:
      - Only the kubeconfigs' diffs are returned (keys and certificate data redacted); see the single modules for CSR and
        etcd diffs.
      - With O(state=absent), the diff lists what is (or would be) deleted - CSR names, etcd keys, store records, keys and
        kubeconfig paths, never their content.
notes:
  - The O(policy) defaults to allowing only the groups listed in O(users) (O(policy.allowed_groups) not set), and never
    C(system:masters), C(kubeadm:cluster-admins) or other C(system:*) groups unless O(policy.allowed_system_groups) lists
    them.
  - Kubeconfigs carry private keys; they are written 0600 (or O(mode)) and never returned by this module.
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

- name: Short-lived certificates (one day), renewed when less than eight hours are left
  kubepki.certs.user_certificates:
    users:
      - {name: alice, groups: [dev]}
    clusters:
      - name: prod-eu
        server: https://prod-eu.example.com:6443
        ca_cert: /etc/kubepki/prod-eu-ca.crt
        auth: {kubeconfig: /etc/kubepki/prod-eu-admin.kubeconfig}
    expiration_seconds: 86400
    renew_before: 8h
    dest_dir: /srv/kubeconfigs

- name: Renew every known certificate of both clusters that expires within 30 days (no user list)
  kubepki.certs.user_certificates:
    clusters:
      - {name: prod-eu, server: "https://prod-eu.example.com:6443", ca_cert: /etc/kubepki/prod-eu-ca.crt,
         auth: {kubeconfig: /etc/kubepki/prod-eu-admin.kubeconfig}}
      - {name: prod-us, server: "https://prod-us.example.com:6443", ca_cert: /etc/kubepki/prod-us-ca.crt,
         auth: {kubeconfig: /etc/kubepki/prod-us-admin.kubeconfig}}
    renew_before: 30d
    etcd_endpoints: [https://etcd.example.com:2379]
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt
    dest_dir: /srv/kubeconfigs

- name: Renew bob now, whatever his certificates' expiry
  kubepki.certs.user_certificates:
    users:
      - {name: bob, groups: [dev], force_renew: true}
    clusters:
      - {name: prod-eu, server: "https://prod-eu.example.com:6443", ca_cert: /etc/kubepki/prod-eu-ca.crt,
         auth: {kubeconfig: /etc/kubepki/prod-eu-admin.kubeconfig}}
    dest_dir: /srv/kubeconfigs

- name: Offboard alice from both clusters
  kubepki.certs.user_certificates:
    state: absent
    users:
      - name: alice
    clusters:
      - {name: prod-eu, auth: {kubeconfig: /etc/kubepki/prod-eu-admin.kubeconfig}}
      - {name: prod-us, auth: {kubeconfig: /etc/kubepki/prod-us-admin.kubeconfig}}
    etcd_endpoints: [https://etcd.example.com:2379]
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt
    dest_dir: /srv/kubeconfigs
  register: gone

- name: Show what stays valid until its notAfter
  ansible.builtin.debug:
    msg: "{{ gone.offboarded | map(attribute='still_valid') | list }}"
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
    store_records:
      description: With O(state=absent), the users' certificate records of this cluster in the store, each deleted or not.
      returned: with O(state=absent)
      type: list
      elements: dict
      sample: [{"user": "alice", "action": "deleted"}]
    keys:
      description: With O(state=absent) and O(key_scope=per_cluster), the users' keys of this cluster deleted.
      returned: with O(state=absent)
      type: list
      elements: dict
      sample: [{"user": "alice", "cluster": "prod-eu", "action": "deleted"}]
    unchanged:
      description: With O(result_detail=changes), how many users of this cluster had a valid certificate already and were left out of RV(clusters[].csrs).
      returned: with O(result_detail=changes)
      type: int
      sample: 998
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
      description:
        - Where it stopped - V(create), V(approve), V(wait), V(publish) or V(render); with O(state=absent) V(create)
          (deleting the CSRs), V(publish) (etcd), V(store) or V(key).
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
unchanged_users:
  description: With O(result_detail=changes), how many kubeconfigs were already as rendered and were left out of RV(users).
  returned: with O(result_detail=changes) and O(dest_dir)
  type: int
  sample: 998
known_not_due:
  description: With O(result_detail=changes) and O(users) omitted, how many records were not due and were left out of RV(known).
  returned: with O(result_detail=changes) and O(users) omitted
  type: int
  sample: 3990
known:
  description:
    - With O(users) omitted, every certificate record found for O(scope) and O(clusters), and what became of it -
      C(action) V(renew) (due, renewed in this run), V(not_due) or V(skipped) (with C(reason)).
  returned: when O(users) is omitted
  type: list
  elements: dict
  sample: [{"user": "alice", "cluster": "prod-eu", "serial": "5d1e0c", "not_after": "2026-12-03T10:00:00Z", "source": "etcd",
            "action": "renew"}]
offboarded:
  description: With O(state=absent), one entry per user.
  returned: with O(state=absent)
  type: list
  elements: dict
  contains:
    user:
      description: The user.
      type: str
      sample: alice
    finished:
      description: Whether every cluster of the user was finished (else the key is kept and RV(failures) says why).
      type: bool
      sample: true
    key_deleted:
      description: Whether the user's key (or, with O(key_scope=per_cluster), a key of the user) was (or would be) deleted.
      type: bool
      sample: true
    kubeconfig:
      description: The kubeconfig path looked at in O(dest_dir), or V(null).
      type: str
      sample: /srv/kubeconfigs/alice.kubeconfig
    kubeconfig_deleted:
      description: Whether that file was (or would be) deleted.
      type: bool
      sample: true
    kept_for:
      description: Clusters of O(scope), not listed in O(clusters), where the user still has certificates; the shared key and
        the kubeconfig are kept for them.
      type: list
      elements: str
      sample: []
    still_valid:
      description:
        - The user's certificates found (in the deleted CSRs, etcd and the store) that have not expired. Kubernetes cannot
          revoke them; each stays valid until C(not_after).
      type: list
      elements: dict
      sample: [{"cluster": "prod-eu", "serial": "5d1e0c", "not_before": "2026-12-01T10:00:00Z", "not_after": "2026-12-02T10:00:00Z",
                "csr_name": "kubepki-alice-3f9c2a61d0b4", "sources": ["csr", "etcd", "store"]}]
  sample: [{"user": "alice", "finished": true, "key_deleted": true, "still_valid": []}]
store:
  description: Where the credential store is (credentials removed).
  returned: when kubeconfigs were rendered
  type: str
  sample: sqlite:///home/ops/.kubepki/store.db
"""

from ansible_collections.kubepki.certs.plugins.module_utils._steps import pipeline  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main  # noqa: E402  pylint: disable=wrong-import-position


def main():
    module_main(pipeline.argument_spec(), pipeline.run, ("kubernetes", "cryptography"))


if __name__ == "__main__":
    main()
