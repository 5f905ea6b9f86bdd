# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The csr_approve step: decide on CSRs under the approval policy, through the /approval subresource."""

from __future__ import annotations


from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import options
from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._csr import policy as _policy
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

POLICY_OPTIONS = _policy.OPTIONS


def argument_spec():
    return options({
        "action": {"type": "str", "choices": ["approve", "deny"], "default": "approve"},
        "names": {"type": "list", "elements": "str"},
        "csrs": {"type": "list", "elements": "dict"},
        "users": {"type": "list", "elements": "dict",
                  "options": {"name": {"type": "str", "required": True}, "groups": {"type": "list", "elements": "str"}}},
        "cluster": {"type": "str"},
        "scope": {"type": "str", "default": "default"},
        "key_scope": {"type": "str", "choices": ["shared", "per_cluster"], "default": "shared"},
        "reason": {"type": "str"},
        "condition_message": {"type": "str"},
        "deny_on_violation": {"type": "bool", "default": False},
        "policy": {"type": "dict", "default": {}, "options": POLICY_OPTIONS},
    }, _kube.AUTH_ARG_SPEC, _store.STORE_ARG_SPEC)


def select(client, params, seen=None):
    """[(name, object or None, expected dict, strict)] of the CSRs to decide on; strict = named explicitly.

    ``seen`` maps CSR names to objects an earlier step of the same run got from the API; they are not
    fetched again (an approval on an object that changed since is retried by _csr.decide on its 409)."""
    if params["names"] is None and params["csrs"] is None and params["users"] is None:
        raise KubePkiError("nothing to decide on: give names, csrs or users")
    # given but empty (a scheduled approver whose csr_info found nothing pending): nothing to do
    names, csrs, users = params["names"] or [], params["csrs"] or [], params["users"] or []
    chosen = {}
    for index, name in enumerate(names):
        if not name:
            raise KubePkiError("names[%d] is empty" % index)
        chosen.setdefault(name, {"expected": {}, "strict": True, "skip": None})
    for index, entry in enumerate(csrs):
        if not isinstance(entry, dict):
            raise KubePkiError("csrs[%d] is not a dict (pass the csrs list returned by csr_create)" % index)
        if not entry.get("csr_name"):
            continue
        skip = "known" if entry.get("action") == "known" else None
        chosen[entry["csr_name"]] = {"expected": {"common_name": entry.get("name")}, "strict": True, "skip": skip}
    for name in chosen.keys() & (seen or {}).keys():
        chosen[name]["obj"] = seen[name]
    for index, user in enumerate(users):
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
    wanted = {name for name, info in chosen.items() if "obj" not in info and info["skip"] is None}
    if len(wanted) > 1:
        # one list call for a batch instead of one GET per CSR; names not seen there are fetched one by one
        items, _version = _csr.list_objects(client, label_selector=_csr.selector())
        for item in items:
            name = (item.get("metadata") or {}).get("name")
            if name in wanted:
                chosen[name]["obj"] = item
    return chosen


def run(ctx, params):
    approve = params["action"] == "approve"
    policy = _policy.normalize(params["policy"]) if approve else None
    if approve and params["key_scope"] == "per_cluster" and policy["key_must_match_store"] and not params["cluster"]:
        raise KubePkiError("cluster is required with key_scope=per_cluster to find the stored keys")
    client = _kube.get_client(params, ctx.secrets)
    chosen = select(client, params, ctx.seen())
    store = None
    results, pending = [], []

    def consider(name, info, entry):
        nonlocal store
        if info["skip"] == "known":
            entry.update(state_before="issued", state="issued", decision="unchanged")
            return
        obj = info.get("obj") or _csr.get(client, name)
        if obj is None:
            if info["strict"]:
                raise KubePkiError("CertificateSigningRequest %s does not exist in %s" % (name, client.host), csr_name=name)
            return
        state = _csr.csr_state(obj)
        entry.update(state_before=state, state=state)
        if state in ("approved", "issued"):
            if not approve:
                raise KubePkiError("CertificateSigningRequest %s is already approved; it cannot be denied" % name, csr_name=name)
            entry["decision"] = "unchanged"
            return
        if state == "denied":
            if approve and info["strict"]:
                raise KubePkiError("CertificateSigningRequest %s was denied; a denial cannot be taken back" % name, csr_name=name)
            entry["decision"] = "unchanged" if not approve else "skipped"
            return
        if state == "failed":
            return
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
                    store = _store.open_store_from_params(params, create=not ctx.check_mode)
                key_cluster = params["cluster"] if params["key_scope"] == "per_cluster" else ""
                scope = ((obj.get("metadata") or {}).get("annotations") or {}).get(_csr.ANN_SCOPE) or params["scope"]
                key = store.get_key(scope, user, key_cluster)
                expected["public_key_sha256"] = key["public_key_sha256"] if key else None
            spec = obj.get("spec") or {}
            relaxations = []
            entry["violations"] = _policy.evaluate(obj, policy, expected, relaxations=relaxations,
                                                   own_identity=lambda: _kube.own_identity(client)["username"],
                                                   authorize=lambda subresource: _kube.may_requester(client, spec, subresource))
            entry["requester"] = spec.get("username")
            if relaxations:
                entry["relaxations"] = relaxations
        pending.append((entry, obj))

    try:
        for name, info in chosen.items():
            entry = {"name": name, "user": info["expected"].get("common_name"), "decision": "skipped", "state_before": None,
                     "state": None, "violations": []}
            results.append(entry)
            try:
                consider(name, info, entry)
            except KubePkiError as error:
                # batch mode: this CSR is reported, the others are decided on
                if not ctx.set_aside(entry["user"], error.msg, csr_name=name):
                    raise
                entry["decision"] = "failed"
    finally:
        if store is not None:
            store.close()

    refused = [(e, o) for e, o in pending if e["violations"]]
    if approve and refused and not params["deny_on_violation"]:
        if ctx.batch is None:
            lines = ["%s: %s" % (e["name"], "; ".join(v["reason"] for v in e["violations"])) for e, _o in refused]
            raise KubePkiError("the approval policy refuses %d CSR%s: %s" % (len(refused), "s" if len(refused) > 1 else "", " | ".join(lines)),
                               csrs=results)
        # batch mode: refused requests are left undecided and reported; the others are approved
        for entry, _obj in refused:
            entry["decision"] = "refused"
            ctx.set_aside(entry["user"], "the approval policy refuses CSR %s: %s" % (
                entry["name"], "; ".join(v["reason"] for v in entry["violations"])), csr_name=entry["name"])
        pending = [(e, o) for e, o in pending if not e["violations"]]

    def decide(item):
        entry, obj = item
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
        try:
            did, _updated = _csr.decide(client, entry["name"], decision, reason, message, obj=obj, dry_run=ctx.check_mode)
        except KubePkiError as error:
            if not ctx.set_aside(entry["user"], error.msg, csr_name=entry["name"]):
                raise
            entry["decision"] = "failed"
            return False
        entry["decision"] = decision.lower() if did else "unchanged"
        entry["state"] = decision.lower() if did else entry["state"]
        return did

    # each decision is its own request: a few are in flight at once
    changed = any(_kube.in_flight(decide, pending))
    output = {"changed": changed, "csrs": results}
    if ctx.diff:
        output["diff"] = {"before": {e["name"]: e["state_before"] for e in results}, "after": {e["name"]: e["state"] for e in results}}
    return output
