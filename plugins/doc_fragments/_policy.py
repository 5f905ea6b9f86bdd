# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_csr/policy.py OPTIONS one to one.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  policy:
    description:
      - The approval policy. Every key is optional.
      - The policy judges the request as encoded, as the signer will copy it into the certificate. Whatever the options
        say, a request is refused when its subject holds more than one common name or any attribute besides CN and O
        (OU, serialNumber, the user UID attribute C(1.3.6.1.4.1.57683.2) that kube-apiserver 1.33 and later reads, and
        any other), asks to be a CA, carries an extension other than subjectAltName, keyUsage, extendedKeyUsage,
        subjectKeyIdentifier or a non-CA basicConstraints, or carries subjectAltNames other than DNS and IP. The
        client signers (C(kubernetes.io/kube-apiserver-client), C(kubernetes.io/kube-apiserver-client-kubelet)) take
        no subjectAltName at all.
      - The requester (C(spec.username) of the CSR) is part of the decision; labels and annotations prove nothing.
        By default only requests made by the identity this task authenticates as (learned with a SelfSubjectReview)
        are approved. C(kubernetes.io/kube-apiserver-client-kubelet) requests follow kube-controller-manager's rule;
        the requester may create C(certificatesigningrequests/selfnodeclient) (the node itself) or
        C(certificatesigningrequests/nodeclient), asked with a SubjectAccessReview. C(kubernetes.io/kubelet-serving)
        requests must come from the node itself (O(policy.requester_must_be_node)).
      - See C(docs/security.md) for the threat model these rules answer.
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
      allowed_system_users:
        description:
          - User names (common names) of Kubernetes system and component identities allowed, by exact name. Without an
            entry here, a name starting with C(system:) (V(system:kube-controller-manager), V(system:node:n1),
            V(system:serviceaccount:ns:sa), V(system:anonymous)) or C(kube-) (V(kube-proxy)) is never approved for a
            signer other than the kubelet signers.
          - Listing a name here is the explicit opt-in to issue a component certificate; the result names it in
            C(relaxations).
        type: list
        elements: str
        default: []
      allowed_requesters:
        description:
          - Requesters (C(spec.username), shell-style patterns) besides the identity this task authenticates as whose
            requests may be approved, for example the service account of a pipeline that creates CSRs.
        type: list
        elements: str
        default: []
      requester_may_be_subject:
        description:
          - A request made by the user it names (C(spec.username) equals the common name) may be approved, for people who
            bring their own CSR and create it while logged in as themselves.
        type: bool
        default: false
      allowed_key_types:
        description:
          - Key types a request may carry (RSA of 2048 bits and more, ECDSA P-256 and P-384). Other keys (RSA below
            2048 bits, other curves, Ed25519) are always refused.
        type: list
        elements: str
        choices: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
        default: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
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
          - For a signer other than the built-in ones, the suffixes (or exact names) the DNS subjectAltNames must lie under.
        type: list
        elements: str
        default: []
      allowed_ip_cidrs:
        description:
          - For C(kubernetes.io/kubelet-serving) and signers other than the built-in ones, networks the IP
            subjectAltNames must lie in.
        type: list
        elements: str
        default: []
      requester_must_be_node:
        description:
          - For C(kubernetes.io/kubelet-serving), the requester must be the node named in the common name.
        type: bool
        default: true
"""
