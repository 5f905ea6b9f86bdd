# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""user_certificates: the steps of csr_create, csr_approve, csr_wait, cert_to_etcd and kubeconfig_render, run for
many clusters side by side, then one kubeconfig per user. Every input is checked before anything is written; keys
are ensured once, before the clusters fan out, so parallel clusters only read the store; the steps run in batch
mode (docs/internals.md, Batch mode)."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._csr import policy as _policy
from ansible_collections.kubepki.certs.plugins.module_utils._steps import approve, context, create, known, offboard, publish, render, wait
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, secrets_in
from ansible_collections.kubepki.certs.plugins.module_utils._etcd import ETCD_ARG_SPEC, endpoints_from_params
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record

USER_SPEC = {
    "name": {"type": "str", "required": True},
    # not given: the groups of the user's certificates on record (see resolve_groups); [] means no groups
    "groups": {"type": "list", "elements": "str"},
    "expiration_seconds": {"type": "int"},
    "force_renew": {"type": "bool", "default": False},
}

CLUSTER_SPEC = {
    "name": {"type": "str", "required": True},
    "server": {"type": "str"},
    "ca_cert": {"type": "path"},
    "ca_data": {"type": "str"},
    "namespace": {"type": "str"},
    "context": {"type": "str"},
    "auth": {"type": "dict", "default": {}, "options": copy.deepcopy(_kube.AUTH_ARG_SPEC)},
}


def argument_spec():
    return context.options({
        "users": {"type": "list", "elements": "dict", "options": USER_SPEC},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "clusters": {"type": "list", "elements": "dict", "required": True, "options": CLUSTER_SPEC,
                     "mutually_exclusive": [("ca_cert", "ca_data")]},
        "scope": {"type": "str", "default": "default"},
        "signer_name": {"type": "str", "default": _csr.SIGNER_CLIENT},
        "key_type": {"type": "str", "choices": list(_crypto.KEY_TYPES), "default": _crypto.DEFAULT_KEY_TYPE},
        "key_scope": {"type": "str", "choices": ["shared", "per_cluster"], "default": "shared"},
        "expiration_seconds": {"type": "int"},
        "renew_before": {"type": "str"},
        "rotate_key": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "policy": {"type": "dict", "default": {}, "options": approve.POLICY_OPTIONS},
        "reason": {"type": "str"},
        "condition_message": {"type": "str"},
        "timeout": {"type": "int", "default": 300},
        "dest_dir": {"type": "path"},
        "verify": {"type": "bool", "default": False},
        "parallel": {"type": "int", "default": 4},
        "result_detail": {"type": "str", "choices": ["full", "changes"], "default": "full"},
    }, _kube.AUTH_ARG_SPEC, _store.STORE_ARG_SPEC, ETCD_ARG_SPEC, render.FILE_ARG_SPEC)


def _common(params, names):
    return {name: params[name] for name in names}


STORE_KEYS = tuple(_store.STORE_ARG_SPEC)
ETCD_KEYS = tuple(ETCD_ARG_SPEC)


class Access:
    """One run of the job: ``ctx`` is the module's StepContext, ``params`` validated against argument_spec() above.

    The steps get their own StepContext, one per cluster (with the cluster's ClusterSession and batch), and their
    parameters validated against their own argument spec (step_params). The secrets the steps handle go into
    ``self.secrets``, not into the module's: Ansible would search every string of the result for each of them
    (hundreds of keys against thousands of strings, seconds of work). run() checks the finished result for them
    once instead, and hands to Ansible only those that occur in it."""

    def __init__(self, ctx, params):
        self.ctx = ctx
        self.params = params
        self.secrets = set()
        self.ca_pems = {}
        # the users of the task; with users omitted (renew every known certificate) found in the store and etcd,
        # and then per cluster (cluster_users) only those with a certificate there that is due
        self.users = params["users"]
        self.cluster_users = None
        self.known = None
        self.checked = {}

    def validate(self):
        """Every check that needs no cluster, before anything is written: users, groups under the policy,
        clusters, their CA and auth settings, etcd options, dest_dir. KubePkiError names the parameter."""
        params = self.params
        render.check_clusters(params["clusters"])
        render.file_options(params)
        if params["dest_dir"]:
            missing = [cluster["name"] for cluster in params["clusters"] if not cluster["server"]]
            if missing:
                raise KubePkiError("clusters: %s need server to be written into the kubeconfigs (dest_dir is set)" % ", ".join(missing))
            render.check_dest_dir(params["dest_dir"])
        for cluster in params["clusters"]:
            if cluster["server"]:
                render.check_server(cluster)
            self.ca_pems[cluster["name"]] = render.read_ca(cluster)
        if params["rotate_key"] and params["key_scope"] == "shared" and len(params["clusters"]) > 1:
            raise KubePkiError("rotate_key with key_scope=shared and %d clusters would replace the shared key once per cluster; "
                               "rotate with one cluster per task, or use key_scope=per_cluster" % len(params["clusters"]))
        if params["parallel"] < 1:
            raise KubePkiError("parallel must be at least 1, got %s" % params["parallel"])
        # every user and cluster option through the create step's own checks, before anything is touched
        for cluster in self.active_clusters():
            create.validate(self.create_checked(cluster))
        # what the approval step would refuse anyway (a system user name, a group, a key type) is refused now, not
        # after keys and CSRs exist
        policy = _policy.normalize(self.approve_params(params["clusters"][0], [])["policy"])
        for index, user in enumerate(self.users):
            planned = {"common_name": user["name"], "organizations": user["groups"], "key_type": params["key_type"]}
            for rule, why in _policy.request_refusals(planned, policy, params["signer_name"]):
                where = "users[%d] (%s)" % (index, user["name"]) if self.known is None else "known user %s" % user["name"]
                field = ".groups" if rule == "allowed_groups" else ".name"
                raise KubePkiError("%s%s: the approval policy would refuse it: %s" % (where, field, why))
        problem = _etcd.endpoints_problem(params)
        if problem:
            raise KubePkiError(problem)
        wait.check_timeout(params["timeout"])
        self.check_clients()

    def check_clients(self):
        """The API client of every cluster: a kubeconfig that cannot be read, a missing context or a bad host is bad input."""
        for cluster in self.params["clusters"]:
            try:
                _kube.get_client(self.cluster_auth(cluster), self.secrets)
            except KubePkiError as error:
                raise KubePkiError("clusters[%s].auth: %s" % (cluster["name"], error.msg), **error.details) from None

    def cluster_auth(self, cluster):
        """The cluster's auth options, each defaulting to the task's own (``module_defaults`` for the k8s group)."""
        given = cluster["auth"]
        return {name: self.params[name] if given.get(name) is None else given[name] for name in _kube.AUTH_ARG_SPEC}

    # ------------------------------------------------------------ the parameters of each step

    def users_of(self, cluster):
        """The users to work on in ``cluster``: all of them, or (renewing what is known) those due there."""
        return self.users if self.cluster_users is None else self.cluster_users.get(cluster["name"], [])

    def active_clusters(self):
        """The clusters with any user to work on."""
        return [cluster for cluster in self.params["clusters"] if self.users_of(cluster)]

    def create_params(self, cluster, state="present"):
        params = self.params
        given = _common(params, ("scope", "signer_name", "key_type", "key_scope", "expiration_seconds",
                                 "renew_before", "rotate_key", "force") + STORE_KEYS + ETCD_KEYS)
        given.update(self.cluster_auth(cluster), cluster=cluster["name"], state=state, users=self.users_of(cluster))
        return given

    def create_checked(self, cluster, state="present"):
        """The create step's parameters for ``cluster``, validated once per run: validate() checks them before
        anything is written, and the step then runs on them chunk by chunk."""
        key = (cluster["name"], state)
        if key not in self.checked:
            self.checked[key] = self.step_params(create, self.create_params(cluster, state=state))
        return self.checked[key]

    def approve_params(self, cluster, csrs):
        params = self.params
        given = _common(params, ("scope", "key_scope", "reason", "condition_message", "policy") + STORE_KEYS)
        policy = dict(params["policy"])
        if policy.get("allowed_groups") is None:
            # by default a request may carry the groups listed for the users of this task, and no others
            listed = list(self.users) + [user for users in (self.cluster_users or {}).values() for user in users]
            policy["allowed_groups"] = sorted({group for user in listed for group in user["groups"]})
        given.update(self.cluster_auth(cluster), cluster=cluster["name"], csrs=csrs, action="approve", policy=policy)
        return given

    def wait_params(self, cluster, csrs):
        given = _common(self.params, ("scope", "timeout") + STORE_KEYS + ETCD_KEYS)
        given.update(self.cluster_auth(cluster), cluster=cluster["name"], csrs=csrs, cluster_ca=self.ca_pems[cluster["name"]])
        return given

    def publish_params(self, cluster, certificates, state="present"):
        given = _common(self.params, ("scope",) + ETCD_KEYS)
        given.update(cluster=cluster["name"], certificates=certificates, state=state)
        return given

    def render_params(self):
        params = self.params
        given = _common(params, ("scope", "key_scope", "dest_dir", "verify") + tuple(render.FILE_ARG_SPEC) + STORE_KEYS + ETCD_KEYS)
        clusters = [{k: cluster[k] for k in ("name", "server", "ca_cert", "ca_data", "namespace", "context")}
                    for cluster in params["clusters"]]
        users = [{"name": user["name"], "groups": user["groups"]} for user in self.users]
        if self.cluster_users is not None:
            due = {c["name"]: {u["name"] for u in self.users_of(c)} for c in params["clusters"]}
            for entry in users:
                entry["clusters"] = [c["name"] for c in params["clusters"] if entry["name"] in due[c["name"]]]
        given.update(users=users, clusters=clusters)
        return given

    def step_params(self, step, given):
        """``given`` validated against ``step``'s own argument spec, as the step's module would validate it."""
        params, no_log = context.validated(step.argument_spec(), given, step.__name__.rsplit(".", 1)[-1])
        self.secrets.update(no_log)
        return params

    def context(self, warnings, batch=None, session=None):
        """A step's StepContext: this run's modes, warnings into ``warnings``, secrets into self.secrets."""
        return context.StepContext(self.ctx.check_mode, self.ctx.diff, warnings.append, self.secrets, batch, session)

    # ------------------------------------------------------------ the work

    def ensure_keys(self):
        """Every user's key, once per key scope, before the clusters run side by side."""
        params = self.params
        wanted = set()
        for cluster in self.active_clusters():
            key_cluster = cluster["name"] if params["key_scope"] == "per_cluster" else ""
            wanted.update((params["scope"], user["name"], key_cluster, params["key_type"]) for user in self.users_of(cluster))
        with _store.open_store_from_params(params) as store:
            store.ensure_keys(sorted(wanted))

    def prime(self):
        """The lazy imports, made before the clusters' threads start: a thread that imports a package while
        another one is importing it can find it half initialised. (The API clients were made by validate().)"""
        if endpoints_from_params(self.params):
            _etcd.import_etcd3gw()
        if _store.is_mongodb(_store.store_params(self.params)[0]):
            _store.import_pymongo()

    def cluster(self, cluster):
        """The create, approve, wait and publish steps for one cluster: ``(result, warnings, failures)``.

        ``failures`` lists what could not be finished: ``{"cluster", "user", "csr_name", "step", "msg"}``, with
        user None when the whole cluster stopped at that step."""
        warnings, failures = [], []
        result = {"name": cluster["name"], "changed": False, "csrs": [], "approvals": [], "certificates": [], "etcd_records": []}
        ctx = self.context(warnings, batch=failures, session=context.ClusterSession())
        step_name = "create"

        def run(step, params):
            """``step`` in batch mode; what it set aside is tagged with the step and the cluster."""
            since = len(failures)
            output = step.run(ctx, params)
            for failure in failures[since:]:
                failure.setdefault("step", step_name)
                failure.setdefault("cluster", cluster["name"])
            return output, since

        try:
            fresh = []
            checked = self.create_checked(cluster)
            for chunk in lead_and_rest(checked["users"]):
                step_name = "create"
                created, _since = run(create, dict(checked, users=chunk))
                result["csrs"].extend(created["csrs"])
                result["changed"] = result["changed"] or created["changed"]
                made = [c for c in created["csrs"] if c["action"] not in ("known", "failed") and c["csr_name"]]
                if self.ctx.check_mode:
                    # nothing was created: only requests that already exist can be decided on and looked at
                    made = [c for c in made if c["action"] == "adopted"]
                undecided = [c for c in made if c["state"] not in ("approved", "issued")]
                if undecided:
                    step_name = "approve"
                    approved, since = run(approve, self.step_params(approve, self.approve_params(cluster, undecided)))
                    result["approvals"].extend(approved["csrs"])
                    result["changed"] = result["changed"] or approved["changed"]
                    refused = {f["csr_name"] for f in failures[since:]}
                    made = [c for c in made if c["csr_name"] not in refused]
                fresh.extend(made)
            if fresh:
                step_name = "wait"
                waited, _since = run(wait, self.step_params(wait, self.wait_params(cluster, fresh)))
                result["wait_stats"] = waited["wait_stats"]
                if waited["certificates"]:
                    step_name = "publish"
                    result["changed"] = self.carry(ctx, cluster, waited["certificates"], result) or result["changed"]
                # the PEM stays in etcd and the store; the result says what was issued
                result["certificates"] = [{k: v for k, v in c.items() if k != "certificate"} for c in waited["certificates"]]
        except KubePkiError as error:
            failures.append({"cluster": cluster["name"], "user": error.details.get("user"), "csr_name": error.details.get("csr_name"),
                             "step": step_name, "msg": error.msg})
        return result, warnings, failures

    def carry(self, ctx, cluster, certificates, result):
        """Issued certificates to etcd, or straight into the store when no etcd is configured."""
        if endpoints_from_params(self.params):
            published = publish.run(ctx, self.step_params(publish, self.publish_params(cluster, certificates)))
            result["etcd_records"] = published["records"]
            return published["changed"]
        if self.ctx.check_mode:
            return True
        with _store.open_store_from_params(self.params) as store:
            return store.put_certs([{field: record[field] for field in _record.FIELDS} for record in certificates]) > 0

    def run(self):
        """The job's result; KubePkiError when a cluster or the rendering failed."""
        try:
            output = self._run()
        except KubePkiError as error:
            self.guard(dict(error.details, msg=error.msg))
            raise
        self.guard(output)
        return output

    def _run(self):
        params = self.params
        if params["state"] == "absent":
            return offboard.Offboarding(self).run()
        if self.users is None:
            self.users, self.cluster_users, self.known = known.due(self.ctx, params)
        elif any(user["groups"] is None for user in self.users):
            known.resolve_groups(self.ctx, params, self.users)
        self.validate()
        clusters = self.active_clusters()
        if not clusters:
            # renewing what is known, and nothing is due
            output = {"changed": False, "clusters": [], "known": self.known}
            if params["result_detail"] == "changes":
                only_changes(output)
            return output
        _etcd.check_reachable(params)
        if not self.ctx.check_mode:
            self.ensure_keys()
        self.prime()
        with ThreadPoolExecutor(max_workers=max(1, min(params["parallel"], len(clusters)))) as pool:
            outcomes = list(pool.map(self.cluster, clusters))
        results, failures = [], []
        for result, warnings, failed in outcomes:
            for message in warnings:
                self.ctx.warn("cluster %s: %s" % (result["name"], message))
            results.append(result)
            failures.extend(failed)
        output = {"changed": any(r["changed"] for r in results), "clusters": results}
        if self.known is not None:
            output["known"] = self.known
        keys_pending = any(c["key_created"] for r in results for c in r["csrs"])
        if params["dest_dir"] and not (self.ctx.check_mode and keys_pending):
            self.render(output, failures)
        if params["result_detail"] == "changes":
            only_changes(output)
        if failures:
            output["failures"] = failures
            raise KubePkiError(context.failure_message(failures, len(self.users), len(clusters)), **output)
        return output

    def render(self, output, failures):
        """One kubeconfig per user, with a context for every cluster where that user has a usable certificate;
        a (user, cluster) without one is added to ``failures`` unless it is there already."""
        warnings, rendering = [], []
        rendered = render.run(self.context(warnings, batch=rendering), self.step_params(render, self.render_params()))
        for message in warnings:
            self.ctx.warn(message)
        stopped = {f["cluster"] for f in failures if f["user"] is None}
        known = {(f["cluster"], f["user"]) for f in failures}
        for failure in rendering:
            if failure.get("cluster") not in stopped and (failure.get("cluster"), failure.get("user")) not in known:
                failures.append(dict(failure, step="render"))
        output.update(users=rendered["users"], store=rendered["store"], changed=output["changed"] or rendered["changed"])
        if "diff" in rendered:
            output["diff"] = rendered["diff"]

    def guard(self, output):
        """Give Ansible the secrets that occur in ``output`` or in the parameters it echoes back (an inline
        kubeconfig's credentials), so that they are masked there."""
        self.ctx.secrets.update(secrets_in([output, self.params], self.secrets))


# Users whose requests are created and approved first, before the others are created. The controller-manager
# signs at its own pace (its API client allows 20 requests a second by default), so the sooner its first
# approvals arrive, the sooner the batch is done; after the lead the module keeps ahead of it.
LEAD = 10


def lead_and_rest(users):
    """``users`` as the lead and the rest (a small batch in one piece)."""
    if len(users) <= 2 * LEAD:
        return [users]
    return [users[:LEAD], users[LEAD:]]


def only_changes(output):
    """``output`` with the entries of users nothing was done for left out and counted (result_detail=changes)."""
    for cluster in output["clusters"]:
        _keep(cluster, "csrs", "unchanged", lambda entry: entry["action"] != "known")
    if "users" in output:
        _keep(output, "users", "unchanged_users", lambda entry: entry["changed"])
    if output.get("known") is not None:
        _keep(output, "known", "known_not_due", lambda entry: entry["action"] != "not_due")


def _keep(holder, field, counted, wanted):
    """Only the ``wanted`` entries of ``holder[field]`` kept, how many were left out in ``holder[counted]``."""
    kept = [entry for entry in holder[field] if wanted(entry)]
    holder[counted] = len(holder[field]) - len(kept)
    holder[field] = kept


def run(ctx, params):
    """user_certificates' work: its result dict."""
    return Access(ctx, params).run()
