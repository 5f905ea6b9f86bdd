# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The csr_create step: validate users, ensure keys in the store and CSR objects in one cluster."""

from __future__ import annotations

import ipaddress

from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import options
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


def argument_spec():
    return options({
        "users": {
            "type": "list", "elements": "dict", "required": True,
            "options": {
                "name": {"type": "str", "required": True},
                "groups": {"type": "list", "elements": "str", "default": []},
                "expiration_seconds": {"type": "int"},
                "dns_names": {"type": "list", "elements": "str", "default": []},
                "ip_addresses": {"type": "list", "elements": "str", "default": []},
                "csr": {"type": "str"},
                "force_renew": {"type": "bool", "default": False},
            },
        },
        "cluster": {"type": "str", "required": True},
        "scope": {"type": "str", "default": "default"},
        "signer_name": {"type": "str", "default": _csr.SIGNER_CLIENT},
        "usages": {"type": "list", "elements": "str"},
        "key_type": {"type": "str", "choices": list(_crypto.KEY_TYPES), "default": _crypto.DEFAULT_KEY_TYPE},
        "key_scope": {"type": "str", "choices": ["shared", "per_cluster"], "default": "shared"},
        "expiration_seconds": {"type": "int"},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "renew_before": {"type": "str"},
        "rotate_key": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
    }, _kube.AUTH_ARG_SPEC, _store.STORE_ARG_SPEC, _etcd.ETCD_ARG_SPEC)


# ---------------------------------------------------------------- validation (before anything is touched)

def validate(params):
    """Check every input; returns the per-user plans. KubePkiError names the parameter at fault."""
    for option in ("cluster", "scope"):
        problem = _csr.name_problem(params[option])
        if problem:
            raise KubePkiError("%s %r %s" % (option, params[option], problem))
    signer = params["signer_name"]
    problem = _csr.signer_name_problem(signer)
    if problem:
        raise KubePkiError("signer_name %r is not valid: %s" % (signer, problem))
    if params["usages"] is not None:
        problem = _csr.usages_problem(signer, params["usages"])
        if problem:
            raise KubePkiError("usages: %s" % problem)
    _check_expiration(params["expiration_seconds"], "expiration_seconds")
    renew_before = _csr.parse_duration(params["renew_before"], "renew_before")
    if not params["users"] and params["state"] == "present":
        raise KubePkiError("users: at least one user is required")
    plans, seen = [], set()
    for index, user in enumerate(params["users"]):
        where = "users[%d]" % index
        problem = _csr.name_problem(user["name"])
        if problem:
            raise KubePkiError("%s.name %r %s" % (where, user["name"], problem))
        if user["name"] in seen:
            raise KubePkiError("%s.name %r is listed twice" % (where, user["name"]))
        seen.add(user["name"])
        where = "users[%d] (%s)" % (index, user["name"])
        for group in user["groups"]:
            problem = _csr.group_problem(group)
            if problem:
                raise KubePkiError("%s.groups: group %r %s" % (where, group, problem))
        if len(set(user["groups"])) != len(user["groups"]):
            raise KubePkiError("%s.groups lists a group twice: %s" % (where, user["groups"]))
        _check_expiration(user["expiration_seconds"], "%s.expiration_seconds" % where)
        for address in user["ip_addresses"]:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise KubePkiError("%s.ip_addresses: %r is not an IP address" % (where, address)) from None
        for dns in user["dns_names"]:
            if not dns or " " in dns or any(ord(ch) < 33 for ch in dns):
                raise KubePkiError("%s.dns_names: %r is not a DNS name" % (where, dns))
        plan = {"user": user["name"], "groups": list(user["groups"]), "dns_names": list(user["dns_names"]),
                "ip_addresses": list(user["ip_addresses"]), "csr": user["csr"], "force_renew": bool(user.get("force_renew")),
                "expiration_seconds": user["expiration_seconds"] if user["expiration_seconds"] is not None else params["expiration_seconds"]}
        if user["csr"] is not None:
            if "-----BEGIN CERTIFICATE REQUEST-----" not in user["csr"]:
                raise KubePkiError("%s.csr is not a PEM CERTIFICATE REQUEST" % where)
            facts = _crypto.csr_facts(user["csr"], what="%s.csr" % where)
            if facts["common_name"] != user["name"]:
                raise KubePkiError("%s.csr has common name %r, not the user name %r" % (where, facts["common_name"], user["name"]))
            if user["groups"] and not _csr.same_groups(facts["organizations"], user["groups"]):
                raise KubePkiError("%s.csr has organizations %s, not the given groups %s" % (where, facts["organizations"], user["groups"]))
            sans_differ = (sorted(facts["dns_names"]) != sorted(user["dns_names"])
                           or sorted(facts["ip_addresses"]) != sorted(user["ip_addresses"]))
            if (user["dns_names"] or user["ip_addresses"]) and sans_differ:
                raise KubePkiError("%s.csr has subjectAltNames DNS %s IP %s, not the given dns_names/ip_addresses" % (
                    where, facts["dns_names"], facts["ip_addresses"]))
            plan.update(groups=facts["organizations"], dns_names=facts["dns_names"], ip_addresses=facts["ip_addresses"], facts=facts)
            key_type = facts["key_type"]
        else:
            key_type = params["key_type"]
        plan["usages"] = list(params["usages"]) if params["usages"] is not None else _csr.default_usages(signer, key_type)
        if signer == _csr.SIGNER_CLIENT and "system:masters" in plan["groups"]:
            raise KubePkiError("%s.groups: system:masters is refused with signer %s (the apiserver's "
                               "CertificateSubjectRestriction admission answers 403)" % (where, signer))
        system = [g for g in plan["groups"] if g.startswith("system:") and g != "system:masters"]
        if system and signer not in (_csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING):
            plan["warning"] = ("%s asks for the system group%s %s; csr_approve refuses system:* groups unless its policy lists them "
                               "in allowed_system_groups" % (where, "s" if len(system) > 1 else "", ", ".join(system)))
        if signer in (_csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING):
            if not plan["user"].startswith("system:node:"):
                raise KubePkiError("%s.name must have the form system:node:<node name> for signer %s" % (where, signer))
            if plan["groups"] != ["system:nodes"]:
                raise KubePkiError("%s.groups must be exactly [system:nodes] for signer %s" % (where, signer))
        if signer == _csr.SIGNER_KUBELET_CLIENT and (plan["dns_names"] or plan["ip_addresses"]):
            raise KubePkiError("%s: signer %s allows no DNS or IP subjectAltNames" % (where, signer))
        if signer == _csr.SIGNER_KUBELET_SERVING and not (plan["dns_names"] or plan["ip_addresses"]):
            raise KubePkiError("%s: signer %s needs at least one of dns_names or ip_addresses" % (where, signer))
        plans.append(plan)
    return plans, renew_before


def _check_expiration(value, what):
    if value is not None and value < 600:
        raise KubePkiError("%s %s is too short: the API refuses durations under 600 seconds (10 minutes)" % (what, value))
    if value is not None and value > 2 ** 31 - 1:
        raise KubePkiError("%s %s does not fit the API's int32" % (what, value))


# ---------------------------------------------------------------- the work

class Creator:
    def __init__(self, ctx, params, renew_before):
        self.ctx = ctx
        self.params = params
        self.check = ctx.check_mode
        self.renew_before = renew_before
        self.client = None
        self.store = None
        self.etcd = None
        self.key_cluster = self.params["cluster"] if self.params["key_scope"] == "per_cluster" else ""
        self.before = []
        self.after = []
        self.prefetched = None
        self.etcd_records = None

    def open(self, plans):
        self.client = _kube.get_client(self.params, self.ctx.secrets)
        if any(plan["csr"] is None for plan in plans) and self.params["state"] == "present":
            self.store = _store.open_store_from_params(self.params, create=not self.check)
        if self.params["state"] == "present":
            self.etcd = _etcd.transport_from_params(self.params)
        # user_certificates runs this step for a batch in parts: the lists of its first part serve the others
        listed = self.ctx.session.listed if self.ctx.session is not None else None
        if listed:
            self.prefetched, self.etcd_records = listed["csrs"], listed["etcd"]
        elif self.params["state"] == "present" and len(plans) > 1:
            # one list call for the whole batch instead of one GET per user
            items, _version = _csr.list_objects(self.client, label_selector=_csr.selector(scope=self.params["scope"], cluster=self.params["cluster"]))
            self.prefetched = {(item.get("metadata") or {}).get("name"): item for item in items}
            if self.etcd is not None:
                # and one etcd range read instead of one read per user
                self.etcd_records = {self.etcd.identity_of(key)[2]: record
                                     for key, record in self.etcd.list_records(self.params["scope"], self.params["cluster"])}
            if listed is not None:
                listed.update(csrs=self.prefetched, etcd=self.etcd_records)

    def lookup(self, name):
        """The existing CSR named ``name`` (from the batch's list when there was one), or None."""
        return self.prefetched.get(name) if self.prefetched is not None else _csr.get(self.client, name)

    def close(self):
        for thing in (self.store, self.etcd):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # pylint: disable=broad-exception-caught
                    pass

    # ------------------------------------------------------------ known certificates

    def known_certificate(self, plan):
        """The newest certificate record the store or etcd holds for this user and cluster, or None (record_matches
        then says whether it is for this key and request)."""
        params = self.params
        records = []
        if self.store is not None:
            records.append(self.store.get_cert(params["scope"], params["cluster"], plan["user"]))
        if self.etcd_records is not None:
            records.append(self.etcd_records.get(plan["user"]))
        elif self.etcd is not None:
            records.append(self.etcd.get_record(params["scope"], params["cluster"], plan["user"]))
        return _record.newest(records)

    def record_matches(self, record, plan, public_key_sha256):
        return (record.get("public_key_sha256") == public_key_sha256
                and record.get("common_name", record.get("user")) == plan["user"]
                and _csr.same_groups(record.get("organizations"), plan["groups"])
                and record.get("signer_name") == self.params["signer_name"])

    # ------------------------------------------------------------ one user

    def entry(self, user, **given):
        """One user's entry of the result; every entry has these keys, a failed one too."""
        return dict({"name": user, "csr_name": None, "uid": None, "state": "absent", "action": "none", "key_created": False,
                     "public_key_sha256": None, "renews_serial": "", "signer_name": self.params["signer_name"],
                     "cluster": self.params["cluster"], "scope": self.params["scope"], "deleted": []}, **given)

    def ensure(self, plan):
        """``(result, changed, request)``: the decisions about one user's CSR, made one user after the other
        (they read and write the store). ``request`` is None when nothing is left to send, else what send()
        needs to create the CSR."""
        params = self.params
        result = self.entry(plan["user"])
        changed = False
        key_record = None
        if plan["csr"] is not None:
            public_sha = plan["facts"]["public_key_sha256"]
        else:
            key_record = self.store.get_key(params["scope"], plan["user"], self.key_cluster)
            if key_record is None:
                # in check mode no key is made, but one would be
                key_record, created = (None, True) if self.check else self.store.ensure_key(
                    params["scope"], plan["user"], self.key_cluster, params["key_type"])
                result["key_created"] = changed = created
            public_sha = key_record["public_key_sha256"] if key_record else None
        result["public_key_sha256"] = public_sha

        known = self.known_certificate(plan) if public_sha else None
        renews = ""
        if known is not None:
            matches = self.record_matches(known, plan, public_sha)
            if matches and not _record.is_due(known, self.renew_before) and not plan.get("force_renew"):
                result.update(csr_name=known.get("csr_name"), uid=known.get("csr_uid"), state="issued", action="known")
                return result, changed, None
            renews = known.get("serial") or ""
            if matches and params["rotate_key"] and key_record is not None:
                # a renewal is due and a new key was asked for
                if self.check:
                    result.update(key_created=True, state="absent", action="created", renews_serial=renews)
                    return result, True, None
                try:
                    key_record = self.store.replace_key(params["scope"], plan["user"], self.key_cluster, params["key_type"],
                                                        expected_sha256=public_sha)
                except _store.KeyConflict as conflict:
                    # another run rotated this key first: take its key (and so its CSR) instead of rotating again
                    if conflict.current is None:
                        raise KubePkiError("the key of %s was deleted while it was being rotated" % plan["user"], user=plan["user"]) from None
                    key_record = conflict.current
                public_sha = key_record["public_key_sha256"]
                result.update(key_created=True, public_key_sha256=public_sha)
                changed = True
        result["renews_serial"] = renews

        if public_sha is None:
            # check mode, no key yet: the CSR name cannot be known
            result.update(action="created")
            return result, True, None

        name = _csr.csr_name(plan["user"], public_sha, plan["user"], plan["groups"], params["signer_name"], plan["usages"],
                             plan["expiration_seconds"], plan["dns_names"], plan["ip_addresses"], renews)
        result["csr_name"] = name
        request = {"plan": plan, "name": name, "existing": self.lookup(name), "public_sha": public_sha, "renews": renews,
                   "private_key": None, "request_pem": plan["csr"], "request_facts": plan.get("facts")}
        if plan["csr"] is None:
            request["private_key"] = _crypto.load_private_key(key_record["private_key_pem"], what="the stored key of %s" % plan["user"])
            request["request_facts"] = {"public_key_sha256": public_sha, "common_name": plan["user"], "organizations": plan["groups"],
                                        "dns_names": plan["dns_names"], "ip_addresses": plan["ip_addresses"]}
        return result, changed, request

    def send(self, job):
        """Adopt, replace or create one user's CSR through the API (safe to run for several users at once):
        ``(result, changed, diff views before, diff views after, warnings)``."""
        result, changed, request = job
        params = self.params
        plan, name, existing, public_sha, renews = (request[k] for k in ("plan", "name", "existing", "public_sha", "renews"))
        private_key, request_pem, request_facts = request["private_key"], request["request_pem"], request["request_facts"]
        before, after, warnings = [], [], []
        obj = None
        for attempt in range(2):
            if existing is not None:
                diffs = _csr.compare(existing, request_facts, params["signer_name"], plan["usages"], plan["expiration_seconds"])
                state = _csr.csr_state(existing)
                before.append(_diff_view(existing))
                requester = (existing.get("spec") or {}).get("username")
                own = _kube.own_identity(self.client)["username"]
                if requester != own and not params["force"]:
                    # the name is predictable: someone allowed to create CSRs may have taken it first
                    raise KubePkiError("CertificateSigningRequest %s already exists, requested by %s and not by the identity this task "
                                       "authenticates as (%s); it is not adopted. Delete it if nobody expects it, or set force=true to "
                                       "replace it" % (name, requester or "(nobody)", own), csr_name=name, user=plan["user"])
                if requester != own:
                    diffs.insert(0, "requested by %s, not by %s" % (requester or "(nobody)", own))
                if not diffs and not (state in ("denied", "failed") and params["force"]):
                    if state in ("denied", "failed"):
                        warnings.append("CertificateSigningRequest %s for %s is %s; set force=true to replace it" % (name, plan["user"], state))
                    result.update(uid=(existing.get("metadata") or {}).get("uid"), state=state, action="adopted")
                    after.append(_diff_view(existing))
                    self.ctx.remember(existing)
                    return result, changed, before, after, warnings
                if not params["force"]:
                    problem = "; ".join(diffs) if diffs else "it is %s" % state
                    raise KubePkiError("CertificateSigningRequest %s already exists with a different spec (specs are immutable): %s; "
                                       "set force=true to replace it" % (name, problem), csr_name=name, user=plan["user"])
                _csr.delete(self.client, name, dry_run=self.check)
                result["action"] = "replaced"
            else:
                result["action"] = "created"
            if obj is None:
                if request_pem is None:
                    request_pem = _crypto.build_csr_pem(private_key, plan["user"], plan["groups"], plan["dns_names"], plan["ip_addresses"])
                obj = _csr.build_object(
                    name, request_pem, params["signer_name"], plan["usages"], plan["expiration_seconds"],
                    labels=_csr.labels_for(plan["user"], params["scope"], params["cluster"]),
                    annotations=_csr.annotations_for(plan["user"], params["scope"], params["cluster"], public_sha,
                                                     plan["expiration_seconds"], renews))
            if self.check and result["action"] == "replaced":
                created = obj
                break
            try:
                created = _csr.create(self.client, obj, dry_run=self.check)
                break
            except KubePkiError as exc:
                if _kube.status_of(exc) != 409 or attempt:
                    raise
                # a concurrent run (or someone else) holds the name: look at it like any existing CSR
                existing = _csr.get(self.client, name)
                if existing is None:
                    raise
        result.update(uid=None if self.check else (created.get("metadata") or {}).get("uid"), state="pending")
        after.append(_diff_view(created))
        if not self.check:
            self.ctx.remember(created)
        return result, True, before, after, warnings

    def remove(self, plan):
        params = self.params
        result = self.entry(plan["user"])
        items, _version = _csr.list_objects(self.client, label_selector=_csr.selector(plan["user"], params["scope"], params["cluster"]))
        for item in items:
            annotations = (item.get("metadata") or {}).get("annotations") or {}
            if annotations.get(_csr.ANN_USER, plan["user"]) != plan["user"] or annotations.get(_csr.ANN_SCOPE, params["scope"]) != params["scope"]:
                continue
            name = item["metadata"]["name"]
            self.before.append(_diff_view(item))
            if _csr.delete(self.client, name, dry_run=self.check) or self.check:
                result["deleted"].append(name)
                issued = still_valid(item)
                if issued:
                    result.setdefault("certificates", []).append(issued)
        if result["deleted"]:
            result["action"] = "deleted"
        return result, bool(result["deleted"])


def still_valid(obj):
    """``{"csr_name", "serial", "not_before", "not_after"}`` of the certificate a CSR object carries while it is
    still valid, else None. Deleting the CSR does not end that certificate: Kubernetes cannot revoke it."""
    try:
        pem = _csr.certificate_pem(obj)
        if not pem:
            return None
        facts = _crypto.certificate_facts(pem, what="the certificate of CSR %s" % (obj.get("metadata") or {}).get("name"))
        if not _record.not_expired(facts):
            return None
    except KubePkiError:
        return None
    return {"csr_name": (obj.get("metadata") or {}).get("name"), "serial": facts["serial"], "not_before": facts["not_before"],
            "not_after": facts["not_after"]}


def _diff_view(obj):
    """What the diff shows of a CSR: no request bytes, no certificate."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {"name": meta.get("name"), "signerName": spec.get("signerName"), "usages": spec.get("usages"),
            "expirationSeconds": spec.get("expirationSeconds"), "labels": meta.get("labels"), "state": _csr.csr_state(obj)}


def _set_aside(creator, work, user_of, rest):
    """``work`` for one user, where a KubePkiError is set aside in the batch and becomes ``(result, *rest)``, the
    result with action ``failed``, instead of stopping it. ``work`` returns ``(the user's result, *rest)``."""
    def guarded(item):
        try:
            return work(item)
        except KubePkiError as error:
            user = user_of(item)
            creator.ctx.set_aside(user, error.msg, csr_name=error.details.get("csr_name"))
            return (creator.entry(user, csr_name=error.details.get("csr_name"), action="failed", error=error.msg),) + rest
    return guarded


def run(ctx, params):
    """csr_create's work: its result dict."""
    plans, renew_before = validate(params)
    for plan in plans:
        if plan.get("warning"):
            ctx.warn(plan["warning"])
    creator = Creator(ctx, params, renew_before)
    try:
        creator.open(plans)
        results, changed = [], False
        if params["state"] == "present":
            ensure, send = creator.ensure, creator.send
            if ctx.batch is not None:
                # batch mode: a user that fails is reported with the reason, the others go on
                ensure = _set_aside(creator, creator.ensure, lambda plan: plan["user"], (False, None))
                send = _set_aside(creator, creator.send, lambda job: job[0]["name"], (False, [], [], []))
            decided = [ensure(plan) for plan in plans]
            # the API requests of different users do not depend on each other: a few are in flight at once
            sent = iter(_kube.in_flight(send, [job for job in decided if job[2] is not None]))
            for job in decided:
                one, one_changed = job[:2]
                if job[2] is not None:
                    one, one_changed, before, after, warnings = next(sent)
                    creator.before.extend(before)
                    creator.after.extend(after)
                    for message in warnings:
                        ctx.warn(message)
                results.append(one)
                changed = changed or one_changed
        else:
            for plan in plans:
                one, one_changed = creator.remove(plan)
                results.append(one)
                changed = changed or one_changed
    finally:
        creator.close()
    output = {"changed": changed, "csrs": results}
    if ctx.diff:
        output["diff"] = {"before": {"csrs": creator.before}, "after": {"csrs": creator.after}}
    return output
