#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_trust_bundle
short_description: Publish CA certificates as a Kubernetes ClusterTrustBundle
version_added: 0.1.0
description:
  - Ensures a cluster-scoped C(ClusterTrustBundle) (API group C(certificates.k8s.io)) holds exactly the given CA
    certificates, or that it is absent. Pods can then mount the bundle through a C(clusterTrustBundle) projected volume,
    for example to trust the CA that signs the collection's client certificates.
  - The API version is found by discovery; with O(api_version=auto) the newest of C(v1) (Kubernetes 1.37 and later),
    C(v1beta1) (1.33 to 1.36) and C(v1alpha1) (1.27 to 1.32) that the server serves for ClusterTrustBundles.
  - Before 1.37 the API is off by default and the server must be started with it on. On Kubernetes 1.27 to 1.32 (alpha)
    that is C(--feature-gates ClusterTrustBundle=true --runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true)
    on kube-apiserver; on 1.33 to 1.36 (beta) the same with C(v1beta1). Before 1.27 there is no ClusterTrustBundle API.
    A server that serves none fails the task with its own version (from C(/version)) and the flags for that version,
    unless O(if_served=true).
  - Tested against real kube-apiservers 1.30 (C(v1alpha1), gate and API on; and off) and 1.36 (C(v1beta1), on and off).
  - The certificates are compared as a set (order, PEM line breaks, headers, text between blocks and duplicates do not
    count), so a re-run with the same CA is C(changed=false). The bundle written is the certificates re-encoded as plain
    PEM, in the order given, each once.
  - Everything given is checked before any request is sent, with the rules the API server applies - only PEM
    C(CERTIFICATE) blocks of CA certificates, at least one, no private key, at most 1 MiB, and the naming rule for a
    signer's bundle.
author:
  - kubepki.certs contributors (@kubepki)
options:
  name:
    description:
      - The object name.
      - With O(signer_name), it must be the signer name with C(/) written as C(:), then C(:) and a suffix that is a DNS
        subdomain, for example V(example.com:my-signer:v1) for signer V(example.com/my-signer).
      - Without O(signer_name), it must be a DNS subdomain and have no C(:).
    type: str
    required: true
  signer_name:
    description:
      - The signer the bundle belongs to (C(spec.signerName)), for example V(example.com/my-signer). Pods can then select all
        bundles of a signer. Cannot be changed on an existing bundle.
      - Writing a bundle with a signer name needs the permission C(attest) on resource C(signers), resource name the signer
        name, in API group C(certificates.k8s.io) (members of C(system:masters) have it).
    type: str
  ca_file:
    description:
      - Path of a PEM file on the managed host holding the CA certificate(s) to publish, concatenated.
      - Named C(ca_file) because O(ca_cert) is the CA the API server's own certificate is checked with.
      - One of O(ca_file) and O(ca_data) is required with O(state=present).
    type: path
  ca_data:
    description:
      - The CA certificate(s) to publish as PEM text, concatenated.
    type: str
  state:
    description:
      - V(present) creates or updates the bundle; V(absent) deletes it.
      - With V(absent), a server that serves no ClusterTrustBundle API is a warning, not a failure (there is nothing to delete).
    type: str
    choices: [present, absent]
    default: present
  api_version:
    description:
      - The version of C(certificates.k8s.io) to use. V(auto) picks the newest the server serves ClusterTrustBundles in.
      - A version given explicitly is still checked by discovery, so that a server not serving it is a clear failure;
        when the server serves ClusterTrustBundles in another version, or its Kubernetes version has no such API version
        (V(v1beta1) on 1.32 and earlier), the failure names the version to use.
    type: str
    choices: [auto, v1, v1beta1, v1alpha1]
    default: auto
  if_served:
    description:
      - With V(true), a server that serves no ClusterTrustBundle API (Kubernetes before 1.37 without the feature gate) is
        left alone, RV(served) says so and the task is unchanged; with V(false) that is a failure naming the flags to set.
      - For playbooks that run against clusters of several versions and publish wherever they can.
    type: bool
    default: false
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_K8S
attributes:
  check_mode:
    support: full
    details:
      - Creates, updates and deletes are sent as server-side dry runs, so the server's validation and the attest check of
        O(signer_name) still answer; nothing is stored.
  diff_mode:
    support: full
    details:
      - The diff shows the name, signer name and trust bundle PEM before and after (all public data).
notes:
  - A ClusterTrustBundle can be read by every authenticated user of the cluster; only publish CA certificates.
  - A new bundle gets the label C(app.kubernetes.io/managed-by=kubepki.certs); the labels of an existing bundle are kept.
seealso:
  - name: ClusterTrustBundles
    description: The Kubernetes documentation of ClusterTrustBundles and their projection into pods.
    link: https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/#cluster-trust-bundles
"""

EXAMPLES = r"""
- name: Publish the CA the controller-manager signs client certificates with
  kubepki.certs.cluster_trust_bundle:
    name: example.com:kubepki:signing-ca
    signer_name: example.com/kubepki
    ca_file: /etc/kubernetes/pki/ca.crt

- name: Publish an old and a new CA side by side during a rotation
  kubepki.certs.cluster_trust_bundle:
    name: kubepki-client-ca
    ca_data: "{{ old_ca_pem ~ new_ca_pem }}"

- name: Remove the bundle
  kubepki.certs.cluster_trust_bundle:
    name: kubepki-client-ca
    state: absent
"""

RETURN = r"""
served:
  description: Whether the server serves a ClusterTrustBundle API.
  returned: always
  type: bool
  sample: true
name:
  description: The object name.
  returned: always
  type: str
  sample: example.com:kubepki:signing-ca
signer_name:
  description: The signer name of the bundle, null without one.
  returned: always
  type: str
  sample: example.com/kubepki
api_version:
  description: The C(apiVersion) used; null when the server serves no ClusterTrustBundle API (with O(state=absent) or O(if_served)).
  returned: always
  type: str
  sample: certificates.k8s.io/v1beta1
certificates:
  description: The certificates of the bundle as published (empty with O(state=absent)).
  returned: always
  type: list
  elements: dict
  contains:
    subject:
      description: The subject, RFC 4514.
      type: str
      sample: CN=kubernetes
    serial:
      description: The serial number, hex.
      type: str
      sample: 5f3a
    sha256_fingerprint:
      description: SHA-256 of the DER certificate, hex.
      type: str
      sample: 9c1e0f6b2d4a8e7f...
    not_after:
      description: The end of the validity, RFC 3339.
      type: str
      sample: "2036-01-02T03:04:05Z"
bundle:
  description: The object as the server returned it (the dry-run answer in check mode); null with O(state=absent).
  returned: always
  type: dict
  sample: {"apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle", "metadata": {"name": "kubepki-client-ca"},
           "spec": {"trustBundle": "-----BEGIN CERTIFICATE-----..."}}
"""


from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._steps import trust_bundle
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main, options


def argument_spec():
    return options({
        "name": {"type": "str", "required": True},
        "signer_name": {"type": "str"},
        "ca_file": {"type": "path"},
        "ca_data": {"type": "str"},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "api_version": {"type": "str", "choices": ["auto"] + list(trust_bundle.VERSIONS), "default": "auto"},
        "if_served": {"type": "bool", "default": False},
    }, _kube.AUTH_ARG_SPEC)


def main():
    module_main(argument_spec(), trust_bundle.run, ("kubernetes", "cryptography"), mutually_exclusive=[("ca_file", "ca_data")])


if __name__ == "__main__":
    main()
