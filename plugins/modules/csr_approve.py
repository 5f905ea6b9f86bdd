#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_approve
short_description: Approve or deny CertificateSigningRequests under a policy
version_added: 0.1.0
description:
  - Approves (or denies) CSRs through the C(/approval) subresource, appending an C(Approved) (or C(Denied)) condition
    with O(reason) and O(condition_message). A conflicting update (HTTP 409) is retried on the refetched object.
  - Before approving, each pending CSR is checked against O(policy) - expected common name and groups, groups allowed
    (never C(system:masters) nor any C(system:*) group unless listed in O(policy.allowed_system_groups)), signers and
    usages allowed per signer, maximum C(expirationSeconds), the public key must be the key the store holds for the user,
    and for C(kubernetes.io/kubelet-serving) the node identity and subjectAltName checks of kubelet-csr-approver.
  - When a CSR violates the policy, nothing is approved and the task fails listing every reason; with
    O(deny_on_violation=true) the violating CSRs are denied instead, with the reasons as message.
  - A CSR already approved is C(changed=false). CSRs are selected by O(names), by O(csrs) (the result of
    M(kubepki.certs.csr_create)), or by O(users) (the CSRs this collection labelled for them).
author:
  - kubepki.certs contributors (@kubepki)
options:
  action:
    description:
      - Whether to approve or deny the selected CSRs. Denial does not consult the policy.
    type: str
    choices: [approve, deny]
    default: approve
  names:
    description:
      - CSR names. The expected user is the request's common name.
    type: list
    elements: str
    default: []
  csrs:
    description:
      - The RV(kubepki.certs.csr_create#module:csrs) list returned by M(kubepki.certs.csr_create). Entries whose certificate
        is already known (action C(known)) or that have no C(csr_name) (check mode) are skipped.
    type: list
    elements: dict
    default: []
  users:
    description:
      - Select the pending CSRs this collection made for these users (labels of O(scope) and, when set, O(cluster)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - The user (expected common name).
        type: str
        required: true
      groups:
        description:
          - When given, the request's organizations must be exactly these.
        type: list
        elements: str
  cluster:
    description:
      - Name of the cluster. Narrows O(users) selection to CSRs labelled for it; needed for the key lookup with
        O(key_scope=per_cluster).
    type: str
  scope:
    description:
      - Scope of the users, for selection and for the stored key lookup.
    type: str
    default: default
  key_scope:
    description:
      - How keys are kept in the store, as given to M(kubepki.certs.csr_create).
    type: str
    choices: [shared, per_cluster]
    default: shared
  reason:
    description:
      - The condition reason. Defaults to V(KubepkiApproved) or V(KubepkiDenied).
    type: str
  condition_message:
    description:
      - The condition message (the option cannot be called C(message), a name Ansible reserves).
      - Defaults to a sentence naming this collection (and the violations, when denying for them).
    type: str
  deny_on_violation:
    description:
      - Deny CSRs that violate the policy (with the reasons as message) instead of failing.
    type: bool
    default: false
  policy:
    description:
      - The approval policy. Every key is optional.
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
          - C(system:*) groups allowed, by exact name; C(system:masters) only if listed here. C(system:nodes) is implied for
            the kubelet signers.
        type: list
        elements: str
        default: []
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
        type: list
        elements: str
        default: []
      allowed_ip_cidrs:
        description:
          - For C(kubernetes.io/kubelet-serving), networks the IP subjectAltNames must lie in.
        type: list
        elements: str
        default: []
      requester_must_be_node:
        description:
          - For C(kubernetes.io/kubelet-serving), the requester must be the node named in the common name.
        type: bool
        default: true
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._store
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_K8S
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Approve what csr_create made, under a strict policy
  kubepki.certs.csr_approve:
    cluster: prod-1
    csrs: "{{ created.csrs }}"
    policy:
      allowed_groups: [developers, auditors]
      max_expiration_seconds: 86400

- name: Approve kubelet serving certificates of nodes
  kubepki.certs.csr_approve:
    names: "{{ serving_csrs }}"
    policy:
      key_must_match_store: false
      allowed_dns_suffixes: [nodes.example.com]
      allowed_ip_cidrs: [10.0.0.0/16]

- name: Deny a request
  kubepki.certs.csr_approve:
    action: deny
    names: [kubepki-mallory-0123456789abcdef0123]
    reason: NotOnboarded
    condition_message: mallory is not in the onboarding list
"""

RETURN = r"""
csrs:
  description: One entry per selected CSR.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The CSR name.
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    user:
      description: The expected user (or the request's common name).
      type: str
      sample: alice
    decision:
      description: approved, denied, unchanged (already decided that way), skipped (denied or failed earlier, or gone).
      type: str
      sample: approved
    state_before:
      description: State before this task.
      type: str
      sample: pending
    state:
      description: State after this task (as far as known; the signer may issue later).
      type: str
      sample: approved
    violations:
      description: Policy violations found, each with C(rule) and C(reason).
      type: list
      elements: dict
      sample: [{"rule": "allowed_groups", "reason": "group system:masters is never approved unless listed in policy.allowed_system_groups"}]
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _csr, _deps, _kube, _policy, _store
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, fail_from

POLICY_OPTIONS = {
    "allowed_signers": {"type": "list", "elements": "str", "default": list(_policy.DEFAULTS["allowed_signers"])},
    "allowed_usages": {"type": "dict", "default": {}},
    "allowed_groups": {"type": "list", "elements": "str"},
    "allowed_system_groups": {"type": "list", "elements": "str", "default": []},
    "max_expiration_seconds": {"type": "int"},
    "common_name_pattern": {"type": "str"},
    "key_must_match_store": {"type": "bool", "default": True},
    "allowed_dns_suffixes": {"type": "list", "elements": "str", "default": []},
    "allowed_ip_cidrs": {"type": "list", "elements": "str", "default": []},
    "requester_must_be_node": {"type": "bool", "default": True},
}


def argument_spec():
    spec = {
        "action": {"type": "str", "choices": ["approve", "deny"], "default": "approve"},
        "names": {"type": "list", "elements": "str", "default": []},
        "csrs": {"type": "list", "elements": "dict", "default": []},
        "users": {"type": "list", "elements": "dict", "default": [],
                  "options": {"name": {"type": "str", "required": True}, "groups": {"type": "list", "elements": "str"}}},
        "cluster": {"type": "str"},
        "scope": {"type": "str", "default": "default"},
        "key_scope": {"type": "str", "choices": ["shared", "per_cluster"], "default": "shared"},
        "reason": {"type": "str"},
        "condition_message": {"type": "str"},
        "deny_on_violation": {"type": "bool", "default": False},
        "policy": {"type": "dict", "default": {}, "options": copy.deepcopy(POLICY_OPTIONS)},
    }
    spec.update(copy.deepcopy(_kube.AUTH_ARG_SPEC))
    spec.update(copy.deepcopy(_store.STORE_ARG_SPEC))
    return spec


def select(client, params):
    """[(name, object or None, expected dict, strict)] of the CSRs to decide on; strict = named explicitly."""
    chosen = {}
    for index, name in enumerate(params["names"]):
        if not name:
            raise KubePkiError("names[%d] is empty" % index)
        chosen.setdefault(name, {"expected": {}, "strict": True, "skip": None})
    for index, entry in enumerate(params["csrs"]):
        if not isinstance(entry, dict):
            raise KubePkiError("csrs[%d] is not a dict (pass the csrs list returned by csr_create)" % index)
        if not entry.get("csr_name"):
            continue
        skip = "known" if entry.get("action") == "known" else None
        chosen[entry["csr_name"]] = {"expected": {"common_name": entry.get("name")}, "strict": True, "skip": skip}
    for index, user in enumerate(params["users"]):
        problem = _csr.name_problem(user["name"])
        if problem:
            raise KubePkiError("users[%d].name %r %s" % (index, user["name"], problem))
        items, _version = _csr.list_objects(client, label_selector=_csr.selector(user["name"], params["scope"], params["cluster"]))
        for item in items:
            annotations = (item.get("metadata") or {}).get("annotations") or {}
            if annotations.get(_csr.ANN_USER, user["name"]) != user["name"]:
                continue
            expected = {"common_name": user["name"]}
            if user["groups"] is not None:
                expected["groups"] = list(user["groups"])
            chosen.setdefault(item["metadata"]["name"], {"expected": expected, "strict": False, "skip": None, "obj": item})
    if not (params["names"] or params["csrs"] or params["users"]):
        raise KubePkiError("nothing to decide on: give names, csrs or users")
    wanted = [name for name, info in chosen.items() if "obj" not in info and info["skip"] is None]
    if len(wanted) > 1:
        # one list call for a batch instead of one GET per CSR; names not seen there are fetched one by one
        items, _version = _csr.list_objects(client, label_selector=_csr.selector())
        for item in items:
            name = (item.get("metadata") or {}).get("name")
            if name in chosen and name in wanted:
                chosen[name]["obj"] = item
    return chosen


def run(module):
    params = module.params
    approve = params["action"] == "approve"
    policy = _policy.normalize(params["policy"]) if approve else None
    if approve and params["key_scope"] == "per_cluster" and policy["key_must_match_store"] and not params["cluster"]:
        raise KubePkiError("cluster is required with key_scope=per_cluster to find the stored keys")
    client = _kube.get_client(module)
    chosen = select(client, params)
    store = None
    results, pending = [], []
    try:
        for name, info in chosen.items():
            entry = {"name": name, "user": info["expected"].get("common_name"), "decision": "skipped", "state_before": None,
                     "state": None, "violations": []}
            results.append(entry)
            if info["skip"] == "known":
                entry.update(state_before="issued", state="issued", decision="unchanged")
                continue
            obj = info.get("obj") or _csr.get(client, name)
            if obj is None:
                if info["strict"]:
                    raise KubePkiError("CertificateSigningRequest %s does not exist in %s" % (name, client.host), csr_name=name)
                continue
            state = _csr.csr_state(obj)
            entry.update(state_before=state, state=state)
            if state in ("approved", "issued"):
                if not approve:
                    raise KubePkiError("CertificateSigningRequest %s is already approved; it cannot be denied" % name, csr_name=name)
                entry["decision"] = "unchanged"
                continue
            if state == "denied":
                if approve and info["strict"]:
                    raise KubePkiError("CertificateSigningRequest %s was denied; a denial cannot be taken back" % name, csr_name=name)
                entry["decision"] = "unchanged" if not approve else "skipped"
                continue
            if state == "failed":
                continue
            if approve:
                expected = dict(info["expected"])
                facts = None
                try:
                    facts = _crypto.csr_facts(_csr.request_pem(obj), what="spec.request of CSR %s" % name)
                except KubePkiError:
                    pass
                user = expected.get("common_name") or (facts or {}).get("common_name")
                entry["user"] = user
                if policy["key_must_match_store"] and user:
                    if store is None:
                        store = _store.open_store_from_params(params)
                    key_cluster = params["cluster"] if params["key_scope"] == "per_cluster" else ""
                    scope = ((obj.get("metadata") or {}).get("annotations") or {}).get(_csr.ANN_SCOPE) or params["scope"]
                    key = store.get_key(scope, user, key_cluster)
                    expected["public_key_sha256"] = key["public_key_sha256"] if key else None
                entry["violations"] = _policy.evaluate(obj, policy, expected)
            pending.append((entry, obj))
    finally:
        if store is not None:
            store.close()

    refused = [(e, o) for e, o in pending if e["violations"]]
    if approve and refused and not params["deny_on_violation"]:
        lines = ["%s: %s" % (e["name"], "; ".join(v["reason"] for v in e["violations"])) for e, _o in refused]
        raise KubePkiError("the approval policy refuses %d CSR%s: %s" % (len(refused), "s" if len(refused) > 1 else "", " | ".join(lines)),
                           csrs=results)
    changed = False
    for entry, obj in pending:
        if approve and not entry["violations"]:
            decision = "Approved"
            reason = params["reason"] or "KubepkiApproved"
            message = params["condition_message"] or "Approved by kubepki.certs under its approval policy"
        else:
            decision = "Denied"
            reason = params["reason"] or ("KubepkiPolicyViolation" if entry["violations"] else "KubepkiDenied")
            message = params["condition_message"]
            if not message:
                reasons = "; ".join(v["reason"] for v in entry["violations"])
                message = "Denied by kubepki.certs: %s" % reasons if reasons else "Denied by kubepki.certs"
        did, _updated = _csr.decide(client, entry["name"], decision, reason, message, obj=obj, dry_run=module.check_mode)
        entry["decision"] = decision.lower() if did else "unchanged"
        entry["state"] = decision.lower() if did else entry["state"]
        changed = changed or did
    output = {"changed": changed, "csrs": results}
    if module._diff:
        output["diff"] = {"before": {e["name"]: e["state_before"] for e in results}, "after": {e["name"]: e["state"] for e in results}}
    return output


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _deps.require(module, "kubernetes", "cryptography")
    try:
        result = run(module)
    except KubePkiError as error:
        fail_from(module, error)
        return
    module.exit_json(**result)


if __name__ == "__main__":
    main()
