# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The approval policy: ``evaluate(csr_object, policy, expected) -> list of violations``.

A violation is ``{"rule": <policy key or check>, "reason": <text>}``. An empty list means "may be approved".
"""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
import re

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

KUBELET_SIGNERS = (_csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING)

# The policy's options: the one place of their types and defaults (modules take them as the ``policy`` dict;
# plugins/doc_fragments/_policy.py documents them one to one).
OPTIONS = {
    "allowed_signers": {"type": "list", "elements": "str", "default": [_csr.SIGNER_CLIENT, _csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING]},
    "allowed_usages": {"type": "dict", "default": {}},
    "allowed_groups": {"type": "list", "elements": "str"},
    "allowed_system_groups": {"type": "list", "elements": "str", "default": []},
    "allowed_system_users": {"type": "list", "elements": "str", "default": []},
    "allowed_requesters": {"type": "list", "elements": "str", "default": []},
    "requester_may_be_subject": {"type": "bool", "default": False},
    "allowed_key_types": {"type": "list", "elements": "str", "choices": list(_crypto.KEY_TYPES), "default": list(_crypto.KEY_TYPES)},
    "max_expiration_seconds": {"type": "int"},
    "common_name_pattern": {"type": "str"},
    "key_must_match_store": {"type": "bool", "default": True},
    "allowed_dns_suffixes": {"type": "list", "elements": "str", "default": []},
    "allowed_ip_cidrs": {"type": "list", "elements": "str", "default": []},
    "requester_must_be_node": {"type": "bool", "default": True},
}

DEFAULTS = {key: option.get("default") for key, option in OPTIONS.items()}

_TYPES = {"list": list, "dict": dict, "int": int, "str": str, "bool": bool}

# Extensions a request may carry that no built-in signer copies into the certificate (they copy the subject and
# the subjectAltNames only): keyUsage, extendedKeyUsage, subjectKeyIdentifier, and basicConstraints when it does
# not assert a CA (openssl's default request section adds CA:FALSE). Any other extension is refused.
INERT_EXTENSIONS = ("2.5.29.15", "2.5.29.37", "2.5.29.14", "2.5.29.19")
SAN_EXTENSION = "2.5.29.17"


def normalize(policy):
    """The policy with defaults filled in; KubePkiError naming ``policy.<key>`` for anything malformed."""
    policy = dict(policy or {})
    unknown = sorted(set(policy) - set(DEFAULTS))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise KubePkiError("policy: unknown key%s %s; known keys: %s" % (plural, ", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    result = {}
    for key, default in DEFAULTS.items():
        value = policy[key] if key in policy else copy.deepcopy(default)
        kind = _TYPES[OPTIONS[key]["type"]]
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            if kind is int and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            elif kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                value = value.lower() in ("true", "yes")
            else:
                raise KubePkiError("policy.%s must be a %s, got %r" % (key, kind.__name__, value))
        result[key] = value
    for cidr in result["allowed_ip_cidrs"]:
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise KubePkiError("policy.allowed_ip_cidrs: %r is not a CIDR" % (cidr,)) from None
    if result["common_name_pattern"] is not None:
        try:
            re.compile(result["common_name_pattern"])
        except re.error as exc:
            raise KubePkiError("policy.common_name_pattern: %r is not a regular expression: %s" % (result["common_name_pattern"], exc)) from None
    unknown = sorted(set(result["allowed_key_types"]) - set(_crypto.KEY_TYPES))
    if unknown:
        raise KubePkiError("policy.allowed_key_types: %s not among the key types %s" % (", ".join(unknown), ", ".join(_crypto.KEY_TYPES)))
    for signer, usages in result["allowed_usages"].items():
        if not isinstance(usages, list) or any(u not in _csr.USAGES for u in usages):
            raise KubePkiError("policy.allowed_usages[%r] must be a list of the usage names %s" % (signer, ", ".join(_csr.USAGES)))
    return result


# Groups that are cluster-admin on common clusters: system:masters everywhere (and past every authorizer),
# kubeadm:cluster-admins on kubeadm clusters since 1.29 (bound to cluster-admin by kubeadm).
PRIVILEGED_GROUPS = ("system:masters", "kubeadm:cluster-admins")


def group_refusal(group, policy, signer=None):
    """Why ``policy`` (normalized) refuses a request carrying ``group``, or None. Used before anything is
    written as well as on the CSR itself."""
    if group.startswith("system:") or group in PRIVILEGED_GROUPS:
        if group in policy["allowed_system_groups"]:
            return None
        if group == "system:nodes" and signer in KUBELET_SIGNERS:
            return None
        if group in PRIVILEGED_GROUPS:
            return "group %s is cluster-admin and never approved unless listed in policy.allowed_system_groups" % group
        return "system group %s is not allowed (list it in policy.allowed_system_groups to allow it)" % group
    allowed = policy["allowed_groups"]
    if allowed is not None and not any(fnmatch.fnmatchcase(group, pattern) for pattern in allowed):
        return "group %s is not in policy.allowed_groups" % group
    return None


# User names that are Kubernetes' own identities: the control plane's components (system:kube-controller-manager can
# read every Secret), nodes, service accounts, system:anonymous, and the kube-* names some installers give
# components (kube-proxy, kube-apiserver-kubelet-client). The policy refuses them as a user's name unless listed.
RESERVED_USER_PREFIXES = ("system:", "kube-")


def user_refusal(name, policy, signer=None):
    """Why ``policy`` (normalized) refuses a certificate for user (common name) ``name``, or None. A node's own
    name under the kubelet signers is judged by the node rules instead."""
    if signer in KUBELET_SIGNERS:
        return None
    lowered = (name or "").lower()
    if not lowered.startswith(RESERVED_USER_PREFIXES):
        return None
    if name in policy["allowed_system_users"]:
        return None
    return ("user name %s is a Kubernetes system or component identity (system:*, kube-*); it is approved only when "
            "listed by exact name in policy.allowed_system_users" % name)


def relaxations_for(facts, policy, signer):
    """The opt-ins of ``policy`` an approval of a request with ``facts`` relies on, named for the result."""
    used = []
    cn = facts.get("common_name") or ""
    if signer not in KUBELET_SIGNERS and cn in policy["allowed_system_users"] and cn.lower().startswith(RESERVED_USER_PREFIXES):
        used.append("policy.allowed_system_users: %s" % cn)
    for group in facts.get("organizations") or []:
        if group in policy["allowed_system_groups"] and not (group == "system:nodes" and signer in KUBELET_SIGNERS):
            used.append("policy.allowed_system_groups: %s" % group)
    return used


def requester_verdict(spec, common_name, policy, own_identity):
    """``(refusal, relaxation)`` for the requester of a CSR (``spec.username``) under ``policy``: why it may not have
    the request approved (or None), and the opt-in that lets it when that is not the default (or None).

    By default only the identity the approver itself authenticates as (``own_identity()`` gives its user name:
    the collection made the request) qualifies; labels and annotations prove nothing, anyone allowed to create
    CSRs can set them. The policy may name more requesters (shell patterns) or let users ask for themselves."""
    username = spec.get("username") or ""
    if not username:
        return "the request names no requester (spec.username)", None
    own = own_identity() if own_identity is not None else None
    if own and username == own:
        return None, None
    if policy["requester_may_be_subject"] and username == common_name:
        return None, "policy.requester_may_be_subject: %s" % username
    pattern = next((p for p in policy["allowed_requesters"] if fnmatch.fnmatchcase(username, p)), None)
    if pattern is not None:
        return None, "policy.allowed_requesters: %s (%s)" % (username, pattern)
    return ("requester %s is not the identity this task authenticates as (%s), nor named in policy.allowed_requesters%s" % (
        username, own or "unknown", "" if policy["requester_may_be_subject"] else
        ", and policy.requester_may_be_subject (a user asking for their own certificate) is false")), None


def _node_client_requester(spec, facts, authorize, add):
    """kube-controller-manager's rule for kube-apiserver-client-kubelet requests: the requester is the node
    itself and may create certificatesigningrequests/selfnodeclient, or may create .../nodeclient (bootstrap
    tokens), each asked with a SubjectAccessReview for the requester."""
    if authorize is None:
        add("requester", "the requester of a %s request can only be checked with a SubjectAccessReview, which was not made" % _csr.SIGNER_KUBELET_CLIENT)
        return
    tried = []
    subresources = (["selfnodeclient"] if spec.get("username") == facts.get("common_name") else []) + ["nodeclient"]
    for subresource in subresources:
        allowed, reason = authorize(subresource)
        if allowed:
            return
        tried.append("certificatesigningrequests/%s%s" % (subresource, " (%s)" % reason if reason else ""))
    add("requester", "requester %s may not create %s (SubjectAccessReview)" % (spec.get("username") or "(none)", " or ".join(tried)))


def _kubelet_checks(facts, spec, policy, signer, add):
    cn = facts.get("common_name") or ""
    if not cn.startswith("system:node:") or cn == "system:node:":
        add("common_name", "common name %r does not have the form system:node:<node name>" % cn)
        return
    node = cn[len("system:node:"):]
    if facts.get("organizations") != ["system:nodes"]:
        add("organizations", "organizations %s are not exactly [system:nodes]" % facts.get("organizations"))
    if signer == _csr.SIGNER_KUBELET_CLIENT:
        return
    # kubelet-serving, in the style of kubelet-csr-approver
    if policy["requester_must_be_node"] and spec.get("username") != cn:
        add("requester", "requester %r is not the node %r itself" % (spec.get("username"), cn))
    if not facts.get("dns_names") and not facts.get("ip_addresses"):
        add("sans", "a DNS or IP subjectAltName is required for %s" % signer)
    short = node.split(".")[0]
    for name in facts.get("dns_names") or []:
        lowered = name.lower()
        if lowered == node.lower():
            continue
        suffix_ok = any(lowered.endswith("." + s.lower().lstrip(".")) for s in policy["allowed_dns_suffixes"])
        if not (suffix_ok and lowered.split(".")[0] == short.lower()):
            add("allowed_dns_suffixes", "DNS name %s is neither the node name %s nor %s.<one of policy.allowed_dns_suffixes %s>" % (
                name, node, short, policy["allowed_dns_suffixes"]))
    _ip_checks(facts, policy, add)


def _ip_checks(facts, policy, add):
    networks = [ipaddress.ip_network(str(c), strict=False) for c in policy["allowed_ip_cidrs"]]
    for address in facts.get("ip_addresses") or []:
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified or ip.is_multicast:
            add("allowed_ip_cidrs", "IP address %s is not usable for serving" % address)
        elif not any(ip in net for net in networks if net.version == ip.version):
            add("allowed_ip_cidrs", "IP address %s is not in policy.allowed_ip_cidrs %s" % (address, policy["allowed_ip_cidrs"]))


def request_refusals(facts, policy, signer):
    """``[(rule, reason)]``: what ``policy`` refuses in a request with ``facts`` (as _crypto.csr_facts gives them) for
    ``signer``, judged on the request as encoded; the signer copies its subject and subjectAltNames into the
    certificate. The checks that need no CSR object, so they run on a user's plan before anything is written too."""
    found = []

    def add(rule, reason):
        found.append((rule, reason))

    names = facts.get("common_names", [facts.get("common_name")] if facts.get("common_name") else [])
    if not names:
        add("common_name", "the request has no common name")
    elif len(names) > 1:
        # the signers keep the last CN of the request, a check of the first one would be fooled
        add("subject", "the subject holds %d common names %s; exactly one is allowed" % (len(names), names))
    others = facts.get("other_subject_attributes") or []
    if others:
        add("subject", "the subject may hold only CN and O, not %s (the signer copies every one into the certificate)" % ", ".join(others))
    cn = facts.get("common_name") or ""
    why = user_refusal(cn, policy, signer)
    if why:
        add("allowed_system_users", why)
    if policy["common_name_pattern"] and not re.fullmatch(policy["common_name_pattern"], cn):
        add("common_name_pattern", "common name %r does not match policy.common_name_pattern %r" % (cn, policy["common_name_pattern"]))
    for group in facts.get("organizations") or []:
        why = group_refusal(group, policy, signer)
        if why:
            add("allowed_groups", why)
    if facts.get("key_type") not in policy["allowed_key_types"]:
        add("allowed_key_types", "key type %s is not in policy.allowed_key_types %s" % (facts.get("key_type"), policy["allowed_key_types"]))
    for extension in facts.get("extensions") or []:
        if extension["oid"] == "2.5.29.19" and extension.get("ca"):
            add("extensions", "the request asks to be a CA (basicConstraints CA:TRUE)")
        elif extension["oid"] not in INERT_EXTENSIONS + (SAN_EXTENSION,):
            add("extensions", "extension %s (%s) is not one the policy accepts" % (extension["name"], extension["oid"]))
    if facts.get("other_sans"):
        add("sans", "subjectAltNames of kind %s are not allowed" % ", ".join(sorted(set(facts["other_sans"]))))
    if facts.get("emails") or facts.get("uris"):
        add("sans", "email and URI subjectAltNames are not allowed: %s" % ", ".join((facts.get("emails") or []) + (facts.get("uris") or [])))
    if signer in (_csr.SIGNER_CLIENT, _csr.SIGNER_KUBELET_CLIENT):
        if facts.get("dns_names") or facts.get("ip_addresses"):
            add("sans", "signer %s issues client certificates: no DNS or IP subjectAltName is allowed (found %s)" % (
                signer, ", ".join((facts.get("dns_names") or []) + (facts.get("ip_addresses") or []))))
    elif signer != _csr.SIGNER_KUBELET_SERVING:
        # another signer: names only under the policy's suffixes and networks
        for name in facts.get("dns_names") or []:
            lowered = name.lower()
            if not any(lowered == s.lower().lstrip(".") or lowered.endswith("." + s.lower().lstrip(".")) for s in policy["allowed_dns_suffixes"]):
                add("allowed_dns_suffixes", "DNS name %s is not under one of policy.allowed_dns_suffixes %s" % (name, policy["allowed_dns_suffixes"]))
        _ip_checks(facts, policy, add)
    return found


def evaluate(obj, policy, expected=None, own_identity=None, authorize=None, relaxations=None):
    """The violations of CSR ``obj`` against ``policy`` (normalized or raw) and ``expected``.

    ``expected`` may hold ``common_name``, ``groups`` (the O values, compared as a set) and ``public_key_sha256`` (the stored key's
    fingerprint; None means "no stored key", a violation while ``key_must_match_store`` holds). ``own_identity()`` gives
    the user name the approver authenticates as (asked only when needed); ``authorize(subresource) -> (allowed, reason)`` puts a SubjectAccessReview
    for the CSR's requester (kube-apiserver-client-kubelet requests need it). The opt-ins an approval relies on are
    appended to ``relaxations`` when given.
    """
    policy = normalize(policy) if set(policy or {}) != set(DEFAULTS) else policy
    expected = expected or {}
    violations = []
    relaxed = None

    def add(rule, reason):
        violations.append({"rule": rule, "reason": reason})

    spec = obj.get("spec") or {}
    name = (obj.get("metadata") or {}).get("name")
    signer = spec.get("signerName")
    usages = spec.get("usages") or []
    try:
        facts = _crypto.csr_facts(_csr.request_pem(obj), what="spec.request of CSR %s" % name)
    except KubePkiError as exc:
        add("request", exc.msg)
        return violations

    if signer not in policy["allowed_signers"]:
        add("allowed_signers", "signer %s is not in policy.allowed_signers %s" % (signer, policy["allowed_signers"]))
    if signer in policy["allowed_usages"]:
        extra = sorted(set(usages) - set(policy["allowed_usages"][signer]))
        if extra:
            add("allowed_usages", "usages %s are not in policy.allowed_usages for %s" % (extra, signer))
    problem = _csr.usages_problem(signer, usages)
    if problem:
        add("usages", problem)

    cn = facts.get("common_name") or ""
    if expected.get("common_name") is not None and cn != expected["common_name"]:
        add("common_name", "common name %r is not the expected %r" % (cn, expected["common_name"]))
    for rule, reason in request_refusals(facts, policy, signer):
        add(rule, reason)
    groups = facts.get("organizations") or []
    if expected.get("groups") is not None and not _csr.same_groups(groups, expected["groups"]):
        add("groups", "organizations %s are not the expected %s" % (groups, list(expected["groups"])))

    limit = policy["max_expiration_seconds"]
    if limit is not None:
        requested = spec.get("expirationSeconds")
        if requested is None:
            add("max_expiration_seconds", "no expirationSeconds requested (the signer default applies); policy.max_expiration_seconds is %s" % limit)
        elif int(requested) > limit:
            add("max_expiration_seconds", "expirationSeconds %s exceeds policy.max_expiration_seconds %s" % (requested, limit))

    if policy["key_must_match_store"] and "public_key_sha256" in expected:
        stored = expected["public_key_sha256"]
        if stored is None:
            add("key_must_match_store", "the store holds no key for %r to compare the request's public key with" % cn)
        elif stored != facts["public_key_sha256"]:
            add("key_must_match_store", "the request's public key (sha256 %s) is not the stored key (sha256 %s)" % (
                facts["public_key_sha256"][:16], stored[:16]))

    if signer in KUBELET_SIGNERS:
        _kubelet_checks(facts, spec, policy, signer, add)
    if signer == _csr.SIGNER_KUBELET_CLIENT:
        if not any(v["rule"] in ("common_name", "organizations", "sans", "usages") for v in violations):
            _node_client_requester(spec, facts, authorize, add)
    elif not (signer == _csr.SIGNER_KUBELET_SERVING and policy["requester_must_be_node"]):
        why, relaxed = requester_verdict(spec, cn, policy, own_identity)
        if why:
            add("requester", why)
    if relaxations is not None and not violations:
        relaxations.extend(relaxations_for(facts, policy, signer) + ([relaxed] if relaxed else []))
    return violations
