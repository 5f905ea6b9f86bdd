# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The approval policy: ``evaluate(csr_object, policy, expected) -> list of violations``.

A violation is ``{"rule": <policy key or check>, "reason": <text>}``. An empty list means "may be approved".
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto
from ansible_collections.kubepki.certs.plugins.module_utils import _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

KUBELET_SIGNERS = (_csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING)

DEFAULTS = {
    "allowed_signers": [_csr.SIGNER_CLIENT, _csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING],
    "allowed_usages": {},
    "allowed_groups": None,
    "allowed_system_groups": [],
    "max_expiration_seconds": None,
    "common_name_pattern": None,
    "key_must_match_store": True,
    "allowed_dns_suffixes": [],
    "allowed_ip_cidrs": [],
    "requester_must_be_node": True,
}

_TYPES = {
    "allowed_signers": list,
    "allowed_usages": dict,
    "allowed_groups": list,
    "allowed_system_groups": list,
    "max_expiration_seconds": int,
    "common_name_pattern": str,
    "key_must_match_store": bool,
    "allowed_dns_suffixes": list,
    "allowed_ip_cidrs": list,
    "requester_must_be_node": bool,
}


def normalize(policy):
    """The policy with defaults filled in; KubePkiError naming ``policy.<key>`` for anything malformed."""
    policy = dict(policy or {})
    unknown = sorted(set(policy) - set(DEFAULTS))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise KubePkiError("policy: unknown key%s %s; known keys: %s" % (plural, ", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    result = {}
    for key, default in DEFAULTS.items():
        value = policy.get(key, default)
        kind = _TYPES[key]
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            if _TYPES[key] is int and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            elif _TYPES[key] is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                value = value.lower() in ("true", "yes")
            else:
                raise KubePkiError("policy.%s must be a %s, got %r" % (key, _TYPES[key].__name__, value))
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


def _kubelet_checks(facts, spec, policy, signer, add):
    cn = facts.get("common_name") or ""
    if not cn.startswith("system:node:") or cn == "system:node:":
        add("common_name", "common name %r does not have the form system:node:<node name>" % cn)
        return
    node = cn[len("system:node:"):]
    if facts.get("organizations") != ["system:nodes"]:
        add("organizations", "organizations %s are not exactly [system:nodes]" % facts.get("organizations"))
    if facts.get("emails"):
        add("sans", "email subjectAltNames are not allowed: %s" % ", ".join(facts["emails"]))
    if facts.get("uris"):
        add("sans", "URI subjectAltNames are not allowed: %s" % ", ".join(facts["uris"]))
    if signer == _csr.SIGNER_KUBELET_CLIENT:
        if facts.get("dns_names") or facts.get("ip_addresses"):
            add("sans", "DNS and IP subjectAltNames are not allowed for %s" % signer)
        return
    # kubelet-serving, in the style of kubelet-csr-approver
    if policy["requester_must_be_node"] and spec.get("username") and spec.get("username") != cn:
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
    networks = [ipaddress.ip_network(str(c), strict=False) for c in policy["allowed_ip_cidrs"]]
    for address in facts.get("ip_addresses") or []:
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified or ip.is_multicast:
            add("allowed_ip_cidrs", "IP address %s is not usable for serving" % address)
        elif not any(ip in net for net in networks if net.version == ip.version):
            add("allowed_ip_cidrs", "IP address %s is not in policy.allowed_ip_cidrs %s" % (address, policy["allowed_ip_cidrs"]))


def evaluate(obj, policy, expected=None):
    """The violations of CSR ``obj`` against ``policy`` (normalized or raw) and ``expected``.

    ``expected`` may hold ``common_name``, ``groups`` (the O values, compared as a set) and ``public_key_sha256`` (the stored key's
    fingerprint; None means "no stored key", a violation while ``key_must_match_store`` holds).
    """
    policy = normalize(policy) if set(policy or {}) != set(DEFAULTS) else policy
    expected = expected or {}
    violations = []

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
    if not cn:
        add("common_name", "the request has no common name")
    if expected.get("common_name") is not None and cn != expected["common_name"]:
        add("common_name", "common name %r is not the expected %r" % (cn, expected["common_name"]))
    if policy["common_name_pattern"] and not re.fullmatch(policy["common_name_pattern"], cn):
        add("common_name_pattern", "common name %r does not match policy.common_name_pattern %r" % (cn, policy["common_name_pattern"]))

    groups = facts.get("organizations") or []
    for group in groups:
        why = group_refusal(group, policy, signer)
        if why:
            add("allowed_groups", why)
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
    elif facts.get("emails") or facts.get("uris"):
        add("sans", "email and URI subjectAltNames are not allowed")
    return violations
