# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The whole job in one process: the steps of csr_create, csr_approve, csr_wait, cert_to_etcd and
kubeconfig_render, run for many clusters side by side, then one kubeconfig per user.

Each step is the same code its own module runs, ``step.run(ctx, params)``, its parameters validated against
that step's own argument spec as its module would validate them (see context). Every input is
checked first, for every user and cluster, before anything is written. Keys are then ensured once, before the
clusters fan out, so parallel clusters only read the store. The steps run in batch mode: a user whose CSR
cannot be created, approved or issued is set aside with the reason and the others go on; a cluster that cannot
be reached is set aside likewise. Every user that can be finished is finished and rendered, then the task fails
naming each (cluster, user) left over.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kubepki.certs.plugins.module_utils import _csr, _crypto, _etcd, _files, _kube, _policy, _record, _store
from ansible_collections.kubepki.certs.plugins.module_utils._steps import approve, context, create, publish, render, wait
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, secrets_in
from ansible_collections.kubepki.certs.plugins.module_utils._etcd import ETCD_ARG_SPEC, endpoints_from_params

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
    spec = {
        "users": {"type": "list", "elements": "dict", "options": copy.deepcopy(USER_SPEC)},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "clusters": {"type": "list", "elements": "dict", "required": True, "options": copy.deepcopy(CLUSTER_SPEC),
                     "mutually_exclusive": [("ca_cert", "ca_data")]},
        "scope": {"type": "str", "default": "default"},
        "signer_name": {"type": "str", "default": _csr.SIGNER_CLIENT},
        "key_type": {"type": "str", "choices": list(_crypto.KEY_TYPES), "default": _crypto.DEFAULT_KEY_TYPE},
        "key_scope": {"type": "str", "choices": ["shared", "per_cluster"], "default": "shared"},
        "expiration_seconds": {"type": "int"},
        "renew_before": {"type": "str"},
        "rotate_key": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "policy": {"type": "dict", "default": {}, "options": copy.deepcopy(approve.POLICY_OPTIONS)},
        "reason": {"type": "str"},
        "condition_message": {"type": "str"},
        "timeout": {"type": "int", "default": 300},
        "dest_dir": {"type": "path"},
        "verify": {"type": "bool", "default": False},
        "parallel": {"type": "int", "default": 4},
        "result_detail": {"type": "str", "choices": ["full", "changes"], "default": "full"},
    }
    spec.update(copy.deepcopy(_kube.AUTH_ARG_SPEC))
    spec.update(copy.deepcopy(_store.STORE_ARG_SPEC))
    spec.update(copy.deepcopy(ETCD_ARG_SPEC))
    spec.update(copy.deepcopy(render.FILE_ARG_SPEC))
    return spec


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
            create.validate(self.step_params(create, self.create_params(cluster)))
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
        # the API clients: a kubeconfig that cannot be read, a missing context or a bad host is bad input
        for cluster in params["clusters"]:
            try:
                _kube.get_client(self.cluster_auth(cluster), self.secrets)
            except KubePkiError as error:
                raise KubePkiError("clusters[%s].auth: %s" % (cluster["name"], error.msg), **error.details) from None

    def cluster_auth(self, cluster):
        """The cluster's auth options, each defaulting to the task's own (``module_defaults`` for the k8s group)."""
        auth = {}
        for name in _kube.AUTH_ARG_SPEC:
            value = cluster["auth"].get(name)
            auth[name] = self.params[name] if value is None else value
        return auth

    # ------------------------------------------------------------ the parameters of each step

    def users_of(self, cluster):
        """The users to work on in ``cluster``: all of them, or (renewing what is known) those due there."""
        if self.cluster_users is None:
            return self.users
        return self.cluster_users.get(cluster["name"], [])

    def active_clusters(self):
        """The clusters with any user to work on."""
        return [cluster for cluster in self.params["clusters"] if self.users_of(cluster)]

    def create_params(self, cluster, state="present", users=None):
        params = self.params
        given = _common(params, ("scope", "signer_name", "key_type", "key_scope", "expiration_seconds",
                                 "renew_before", "rotate_key", "force") + STORE_KEYS + ETCD_KEYS)
        given.update(self.cluster_auth(cluster), cluster=cluster["name"], state=state,
                     users=self.users_of(cluster) if users is None else users)
        return given

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
        params = self.params
        given = _common(params, ("scope", "timeout") + STORE_KEYS + ETCD_KEYS)
        given.update(self.cluster_auth(cluster), cluster=cluster["name"], csrs=csrs, cluster_ca=self.ca_pems[cluster["name"]])
        return given

    def publish_params(self, cluster, certificates):
        given = _common(self.params, ("scope",) + ETCD_KEYS)
        given.update(cluster=cluster["name"], certificates=certificates, state="present")
        return given

    def render_params(self):
        params = self.params
        given = _common(params, ("scope", "key_scope", "dest_dir", "verify") + tuple(render.FILE_ARG_SPEC) + STORE_KEYS + ETCD_KEYS)
        clusters = [{k: cluster[k] for k in ("name", "server", "ca_cert", "ca_data", "namespace", "context")}
                    for cluster in params["clusters"]]
        users = []
        for user in self.users:
            entry = {"name": user["name"], "groups": user["groups"]}
            if self.cluster_users is not None:
                entry["clusters"] = [c["name"] for c in params["clusters"] if any(u["name"] == user["name"] for u in self.users_of(c))]
            users.append(entry)
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
        store = _store.open_store_from_params(params)
        try:
            store.ensure_keys(sorted(wanted))
        finally:
            store.close()

    def prime(self):
        """The lazy imports, made before the clusters' threads start: a thread that imports a package while
        another one is importing it can find it half initialised. (The API clients were made by validate().)"""
        if endpoints_from_params(self.params):
            _etcd.import_etcd3gw()
        if (_store.store_params(self.params)[0] or "").startswith("mongodb"):
            _store.import_pymongo()

    def cluster(self, cluster):
        """The create, approve, wait and publish steps for one cluster: ``(result, warnings, failures)``.

        ``failures`` lists what could not be finished: ``{"cluster", "user", "csr_name", "step", "msg"}``, with
        user None when the whole cluster stopped at that step."""
        warnings, failures = [], []
        result = {"name": cluster["name"], "changed": False, "csrs": [], "approvals": [], "certificates": [], "etcd_records": []}
        ctx = self.context(warnings, batch=failures, session=context.ClusterSession())
        step_name = "create"

        def run(step, given):
            """``step`` in batch mode; what it set aside is tagged with the step and the cluster."""
            since = len(failures)
            output = step.run(ctx, self.step_params(step, given))
            for failure in failures[since:]:
                failure.setdefault("step", step_name)
                failure.setdefault("cluster", cluster["name"])
            return output, since

        try:
            fresh = []
            for chunk in lead_and_rest(self.users_of(cluster)):
                step_name = "create"
                created, _since = run(create, self.create_params(cluster, users=chunk))
                result["csrs"].extend(created["csrs"])
                result["changed"] = result["changed"] or created["changed"]
                made = [c for c in created["csrs"] if c["action"] not in ("known", "failed") and c["csr_name"]]
                if self.ctx.check_mode:
                    # nothing was created: only requests that already exist can be decided on and looked at
                    made = [c for c in made if c["action"] == "adopted"]
                undecided = [c for c in made if c["state"] not in ("approved", "issued")]
                if undecided:
                    step_name = "approve"
                    approved, since = run(approve, self.approve_params(cluster, undecided))
                    result["approvals"].extend(approved["csrs"])
                    result["changed"] = result["changed"] or approved["changed"]
                    refused = {f["csr_name"] for f in failures[since:]}
                    made = [c for c in made if c["csr_name"] not in refused]
                fresh.extend(made)
            if fresh:
                step_name = "wait"
                waited, _since = run(wait, self.wait_params(cluster, fresh))
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
        store = _store.open_store_from_params(self.params)
        try:
            return store.put_certs([{field: record[field] for field in _store.CERT_FIELDS} for record in certificates]) > 0
        finally:
            store.close()

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
            return Offboarding(self).run()
        if self.users is None:
            self.find_known()
        elif any(user["groups"] is None for user in self.users):
            self.resolve_groups()
        self.validate()
        clusters = self.active_clusters()
        if not clusters:
            # renewing what is known, and nothing is due
            output = {"changed": False, "clusters": [], "known": self.known}
            if params["result_detail"] == "changes":
                only_changes(output)
            return output
        check_etcd(params)
        if not self.ctx.check_mode:
            self.ensure_keys()
        self.prime()
        with ThreadPoolExecutor(max_workers=max(1, min(params["parallel"], len(clusters)))) as pool:
            futures = [pool.submit(self.cluster, cluster) for cluster in clusters]
            outcomes = [future.result() for future in futures]
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
            raise KubePkiError(failure_message(failures, len(self.users), len(clusters)), **output)
        return output

    # ------------------------------------------------------------ renewing what is known

    def records(self):
        """``({(cluster, user): (the newest certificate record, "store" or "etcd")}, {(user, key cluster)})``: what the
        store and etcd hold for the scope and the task's clusters and signer, and the users with a key in the store."""
        params = self.params
        render.check_clusters(params["clusters"])
        problem = _csr.name_problem(params["scope"])
        if problem:
            raise KubePkiError("scope %r %s" % (params["scope"], problem))
        problem = _etcd.endpoints_problem(params)
        if problem:
            raise KubePkiError(problem)
        names = {cluster["name"] for cluster in params["clusters"]}
        newest = {}

        def offer(record, where):
            if not isinstance(record, dict) or record.get("cluster") not in names or not record.get("user"):
                return
            if record.get("signer_name") not in (None, "", params["signer_name"]):
                return  # another signer's certificate (a kubelet's, say): not this task's business
            ident = (record["cluster"], record["user"])
            if ident not in newest or _record.sort_key(record) > _record.sort_key(newest[ident][0]):
                newest[ident] = (record, where)

        store = _store.open_store_from_params(params, create=False)
        try:
            damaged = []
            for record in store.list_certs(params["scope"], damaged=damaged):
                offer(record, "store")
            keys = {(row["user"], row["cluster"]) for row in store.list_keys(params["scope"])}
        finally:
            store.close()
        for _scope, cluster, user in damaged:
            if cluster in names:
                self.ctx.warn("the credential store's certificate record of user %s in cluster %s is damaged; left out" % (user, cluster))
        transport = _etcd.transport_from_params(params)
        if transport is not None:
            try:
                for cluster in sorted(names):
                    for _key, record in transport.list_records(params["scope"], cluster):
                        offer(record, "etcd")
            finally:
                transport.close()
        return newest, keys

    def resolve_groups(self):
        """Users listed without ``groups`` (``{name: bob, force_renew: true}``) keep the groups of their certificates on
        record, so a renewal never silently drops them; ``groups: []`` alone means no groups. A user with no record has
        none; records that disagree are refused, naming the option."""
        newest, _keys = self.records()
        for index, user in enumerate(self.users):
            if user["groups"] is not None:
                continue
            found = {}
            for (cluster, name), (record, _where) in newest.items():
                if name == user["name"]:
                    found.setdefault(tuple(sorted(set(record.get("organizations") or []))), []).append(cluster)
            if len(found) > 1:
                listed = "; ".join("%s in %s" % (list(groups), ", ".join(sorted(clusters))) for groups, clusters in sorted(found.items()))
                raise KubePkiError("users[%d] (%s).groups is not given, and the user's certificates on record name different groups: %s; "
                                   "give groups" % (index, user["name"], listed))
            user["groups"] = list(next(iter(found))) if found else []

    def find_known(self):
        """users omitted: the users are those of the certificate records the store and etcd hold for the scope and
        the given clusters (the newer of the two when both hold one), and in each cluster only those whose
        certificate is due within renew_before. ``self.known`` lists every record considered and what became of it."""
        params = self.params
        if params["renew_before"] is None:
            raise KubePkiError("users: required unless renew_before is set (without users, every certificate the store "
                               "and etcd hold for scope and clusters that expires within renew_before is renewed)")
        renew_before = _csr.parse_duration(params["renew_before"], "renew_before")
        newest, keys = self.records()
        self.known, self.cluster_users, users = [], {}, {}
        for (cluster, user), (record, where) in sorted(newest.items()):
            entry = {"user": user, "cluster": cluster, "serial": record.get("serial"), "not_after": record.get("not_after"), "source": where}
            key_cluster = cluster if params["key_scope"] == "per_cluster" else ""
            if (user, key_cluster) not in keys:
                entry.update(action="skipped", reason="no key in the store for it (a user who brings their own key renews with users listed)")
            elif _csr.name_problem(user):
                entry.update(action="skipped", reason="the user name %s" % _csr.name_problem(user))
            elif not _record.is_due(record, renew_before):
                entry["action"] = "not_due"
            else:
                entry["action"] = "renew"
                groups = sorted(set(record.get("organizations") or []))
                self.cluster_users.setdefault(cluster, []).append({"name": user, "groups": groups, "expiration_seconds": None,
                                                                   "force_renew": False})
                if user not in users or _record.sort_key(record) > users[user][1]:
                    users[user] = (groups, _record.sort_key(record))
            self.known.append(entry)
        self.users = [{"name": name, "groups": users[name][0], "expiration_seconds": None, "force_renew": False} for name in sorted(users)]

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
        output["users"] = rendered["users"]
        output["store"] = rendered["store"]
        output["changed"] = output["changed"] or rendered["changed"]
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


def check_etcd(params):
    """An etcd that is configured but down (or refuses the credentials) is found before any key, CSR or record is
    written: the job fails naming etcd_endpoints instead of leaving a new key or deleted CSRs behind."""
    transport = _etcd.transport_from_params(params)
    if transport is not None:
        try:
            transport.check()
        finally:
            transport.close()


def lead_and_rest(users):
    """``users`` as the lead and the rest (a small batch in one piece)."""
    if len(users) <= 2 * LEAD:
        return [users]
    return [users[:LEAD], users[LEAD:]]


def only_changes(output):
    """``output`` with the entries of users nothing was done for left out and counted (result_detail=changes)."""
    for cluster in output["clusters"]:
        kept = [entry for entry in cluster["csrs"] if entry["action"] != "known"]
        cluster["unchanged"] = len(cluster["csrs"]) - len(kept)
        cluster["csrs"] = kept
    if "users" in output:
        kept = [entry for entry in output["users"] if entry["changed"]]
        output["unchanged_users"] = len(output["users"]) - len(kept)
        output["users"] = kept
    if output.get("known") is not None:
        kept = [entry for entry in output["known"] if entry["action"] != "not_due"]
        output["known_not_due"] = len(output["known"]) - len(kept)
        output["known"] = kept


def failure_message(failures, users, clusters):
    """One line naming every (cluster, user) that could not be finished, and the step and reason."""
    lines = []
    for failure in failures:
        who = "cluster %s" % failure["cluster"] if failure.get("cluster") else "all clusters"
        if failure.get("user"):
            who += ", user %s" % failure["user"]
        lines.append("%s (%s): %s" % (who, failure.get("step", "?"), failure["msg"]))
    stopped = sorted({f["cluster"] for f in failures if f.get("user") is None and f.get("cluster")})
    left = sorted({(f.get("cluster"), f["user"]) for f in failures if f.get("user")})
    head = "%d of %d clusters stopped, %d (cluster, user) pairs of %d users x %d clusters not finished; the rest were finished: " % (
        len(stopped), clusters, len(left), users, clusters)
    return head + " | ".join(lines)


def run(ctx, params):
    """user_certificates' work: its result dict."""
    return Access(ctx, params).run()


class Offboarding:
    """``state=absent`` for the users of ``access`` (an Access): in every cluster, side by side, the users' CSRs,
    then their certificate records in etcd and in the store, and with key_scope=per_cluster their key of that
    cluster; then each user's kubeconfig in dest_dir and, with key_scope=shared, the user's key. A key is deleted
    last and only when every cluster of its user was finished, so that a re-run can finish what a failed cluster
    left. The certificates issued stay valid until their notAfter (Kubernetes cannot revoke client certificates):
    the result and a warning name each one."""

    def __init__(self, access):
        self.access = access
        self.ctx = access.ctx
        self.params = access.params
        self.check = access.ctx.check_mode

    def validate(self):
        access, params = self.access, self.params
        if not access.users:
            raise KubePkiError("users: state=absent needs the users to offboard (at least one)")
        render.check_clusters(params["clusters"])
        render.file_options(params)
        if params["dest_dir"] and os.path.exists(params["dest_dir"]) and not os.path.isdir(params["dest_dir"]):
            raise KubePkiError("dest_dir %s is not a directory" % params["dest_dir"])
        for cluster in params["clusters"]:
            create.validate(access.step_params(create, access.create_params(cluster, state="absent")))
        problem = _etcd.endpoints_problem(params)
        if problem:
            raise KubePkiError(problem)
        for cluster in params["clusters"]:
            try:
                _kube.get_client(access.cluster_auth(cluster), access.secrets)
            except KubePkiError as error:
                raise KubePkiError("clusters[%s].auth: %s" % (cluster["name"], error.msg), **error.details) from None
        check_etcd(params)

    def key_cluster(self, cluster_name):
        return cluster_name if self.params["key_scope"] == "per_cluster" else ""

    def cluster(self, cluster):
        """One cluster: ``(result, warnings, failures, still valid certificates [(user, entry)], diff before)``."""
        access, params = self.access, self.params
        warnings, failures, valid, before = [], [], [], []
        names = [user["name"] for user in access.users]
        result = {"name": cluster["name"], "changed": False, "csrs": [], "etcd_records": [], "store_records": [], "keys": []}
        step_name = "create"
        try:
            ctx = access.context(warnings)
            removed = create.run(ctx, access.step_params(create, access.create_params(cluster, state="absent")))
            result["csrs"] = removed["csrs"]
            result["changed"] = removed["changed"]
            for entry in removed["csrs"]:
                before.extend({"cluster": cluster["name"], "user": entry["name"], "csr": name} for name in entry["deleted"])
                for cert in entry.get("certificates", []):
                    valid.append((entry["name"], dict(cert, cluster=cluster["name"], source="csr")))
            step_name = "publish"
            transport = _etcd.transport_from_params(params)
            if transport is not None:
                try:
                    held = {transport.identity_of(key)[2]: (key, record) for key, record in transport.list_records(params["scope"], cluster["name"])}
                finally:
                    transport.close()
                present = [name for name in names if name in held]
                for name in present:
                    valid.append((name, _facts(held[name][1], cluster["name"], "etcd")))
                    before.append({"cluster": cluster["name"], "user": name, "etcd_record": held[name][0]})
                if present:
                    published = publish.run(ctx, access.step_params(publish, dict(
                        _common(params, ("scope",) + ETCD_KEYS), cluster=cluster["name"], state="absent",
                        certificates=[{"user": name} for name in present])))
                    result["etcd_records"] = published["records"]
                    result["changed"] = result["changed"] or published["changed"]
            step_name = "store"
            store = _store.open_store_from_params(params, create=not self.check)
            try:
                damaged = []
                held = {r["user"]: r for r in store.list_certs(params["scope"], damaged=damaged) if r.get("cluster") == cluster["name"]}
                held.update({user: None for _scope, where, user in damaged if where == cluster["name"] and user not in held})
                for name in names:
                    if name not in held:
                        continue
                    if held[name] is not None:
                        valid.append((name, _facts(held[name], cluster["name"], "store")))
                    before.append({"cluster": cluster["name"], "user": name, "store_record": True})
                    deleted = True if self.check else store.delete_cert(params["scope"], cluster["name"], name)
                    result["store_records"].append({"user": name, "action": "deleted" if deleted else "unchanged"})
                    result["changed"] = result["changed"] or deleted
                if params["key_scope"] == "per_cluster":
                    step_name = "key"
                    keys = {row["user"] for row in store.list_keys(params["scope"]) if row["cluster"] == cluster["name"]}
                    for name in names:
                        if name in keys:
                            before.append({"cluster": cluster["name"], "user": name, "key": True})
                            deleted = True if self.check else store.delete_key(params["scope"], name, cluster["name"])
                            result["keys"].append({"user": name, "cluster": cluster["name"], "action": "deleted" if deleted else "unchanged"})
                            result["changed"] = result["changed"] or deleted
            finally:
                store.close()
        except KubePkiError as error:
            failures.append({"cluster": cluster["name"], "user": error.details.get("user"), "csr_name": error.details.get("csr_name"),
                             "step": step_name, "msg": error.msg})
        return result, warnings, failures, valid, before

    def elsewhere(self):
        """``{user: [cluster, ...]}``: the clusters outside this task where the store or etcd still hold a certificate
        of each user (their shared key and kubeconfig are still needed there)."""
        params = self.params
        listed = {cluster["name"] for cluster in params["clusters"]}
        names = {user["name"] for user in self.access.users}
        found = {}
        store = _store.open_store_from_params(params, create=False)
        try:
            for record in store.list_certs(params["scope"], damaged=[]):
                if record.get("user") in names and record.get("cluster") not in listed:
                    found.setdefault(record["user"], set()).add(record["cluster"])
        finally:
            store.close()
        transport = _etcd.transport_from_params(params)
        if transport is not None:
            try:
                for key, _record in transport.list_records(params["scope"]):
                    _scope, cluster, user = transport.identity_of(key)
                    if user in names and cluster not in listed:
                        found.setdefault(user, set()).add(cluster)
            finally:
                transport.close()
        return {user: sorted(clusters) for user, clusters in found.items()}

    def run(self):
        access, params = self.access, self.params
        self.validate()
        access.prime()
        clusters = params["clusters"]
        with ThreadPoolExecutor(max_workers=max(1, min(params["parallel"], len(clusters)))) as pool:
            outcomes = [future.result() for future in [pool.submit(self.cluster, cluster) for cluster in clusters]]
        results, failures, valid, before = [], [], [], []
        for result, warnings, failed, still, seen in outcomes:
            for message in warnings:
                self.ctx.warn("cluster %s: %s" % (result["name"], message))
            results.append(result)
            failures.extend(failed)
            valid.extend(still)
            before.extend(seen)
        output = {"changed": any(r["changed"] for r in results), "clusters": results, "offboarded": []}
        blocked = {f["cluster"] for f in failures if f.get("user") is None}
        elsewhere = self.elsewhere()
        store = None
        try:
            for user in access.users:
                name = user["name"]
                entry = {"user": name, "finished": True, "key_deleted": False, "kubeconfig": None, "kubeconfig_deleted": False,
                         "kept_for": elsewhere.get(name, []), "still_valid": _still_valid(valid, name)}
                failed = sorted(blocked | {f["cluster"] for f in failures if f.get("user") == name})
                entry["finished"] = not failed
                if params["dest_dir"]:
                    # what a run killed while writing this user's kubeconfig left beside it (the key in it): never wanted
                    stale = _files.remove_stale_temps(os.path.join(params["dest_dir"], "%s.kubeconfig" % name), check=self.check)
                    if stale:
                        before.append({"user": name, "temporary_files": stale})
                        output["changed"] = True
                        self.ctx.warn("user %s: %s %d temporary file%s left by an interrupted run beside the kubeconfig: %s" % (
                            name, "would remove" if self.check else "removed", len(stale), "" if len(stale) == 1 else "s", ", ".join(stale)))
                if params["dest_dir"] and entry["kept_for"]:
                    # still onboarded elsewhere: only the contexts of these clusters go
                    path = os.path.join(params["dest_dir"], "%s.kubeconfig" % name)
                    entry["kubeconfig"] = path
                    removed, entry["kubeconfig_deleted"] = render.drop_clusters(
                        path, [c["name"] for c in clusters], render.file_options(params), check=self.check)
                    if removed:
                        before.append({"user": name, "kubeconfig": path, "contexts": removed})
                        output["changed"] = True
                elif params["dest_dir"]:
                    path = os.path.join(params["dest_dir"], "%s.kubeconfig" % name)
                    entry["kubeconfig"] = path
                    if os.path.lexists(path):
                        before.append({"user": name, "kubeconfig": path})
                        if not self.check:
                            os.unlink(path)
                        entry["kubeconfig_deleted"] = True
                        output["changed"] = True
                if params["key_scope"] == "shared" and not failed and not entry["kept_for"]:
                    if store is None:
                        store = _store.open_store_from_params(params, create=not self.check)
                    if _has_key(store, params["scope"], name):
                        before.append({"user": name, "key": True})
                        if not self.check:
                            store.delete_key(params["scope"], name, "")
                        entry["key_deleted"] = True
                        output["changed"] = True
                elif params["key_scope"] == "per_cluster":
                    entry["key_deleted"] = any(k["user"] == name and k["action"] == "deleted" for r in results for k in r["keys"])
                if entry["kept_for"]:
                    kept = "shared key and the kubeconfig's contexts of those clusters are" if params["key_scope"] == "shared" else (
                        "kubeconfig's contexts of those clusters are")
                    self.ctx.warn("user %s still has certificates in clusters %s of scope %s: the %s kept; offboard those "
                                     "clusters too to remove them" % (name, ", ".join(entry["kept_for"]), params["scope"], kept))
                if failed:
                    self.ctx.warn("user %s: the key%s kept because clusters %s could not be finished; run again to finish" % (
                        name, " is" if params["key_scope"] == "shared" else "s of those clusters are", ", ".join(failed)))
                if entry["still_valid"]:
                    self.ctx.warn(
                        "user %s: Kubernetes cannot revoke client certificates; %s stay%s valid until notAfter: %s. Remove the "
                        "RBAC bindings of the user and of groups only this user needed to cut access sooner, and keep "
                        "certificate lifetimes short (expiration_seconds) for that reason" % (
                            name, "this certificate" if len(entry["still_valid"]) == 1 else "these certificates",
                            "s" if len(entry["still_valid"]) == 1 else "",
                            "; ".join("serial %s (cluster %s) until %s" % (c["serial"], c["cluster"], c["not_after"]) for c in entry["still_valid"])))
                output["offboarded"].append(entry)
        finally:
            if store is not None:
                store.close()
        if self.ctx.diff:
            output["diff"] = {"before": {"offboarding": before}, "after": {"offboarding": []}}
        if failures:
            output["failures"] = failures
            raise KubePkiError(failure_message(failures, len(access.users), len(clusters)), **output)
        return output


def _has_key(store, scope, user):
    return any(row["user"] == user and row["cluster"] == "" for row in store.list_keys(scope))


def _facts(record, cluster, source):
    return {"cluster": cluster, "serial": record.get("serial"), "not_before": record.get("not_before"),
            "not_after": record.get("not_after"), "csr_name": record.get("csr_name"), "source": source}


def _still_valid(found, user):
    """The distinct certificates of ``user`` (by cluster and serial) that have not expired, oldest expiry first."""
    seen = {}
    for name, cert in found:
        if name != user or not cert.get("serial") or not _record.not_expired(cert):
            continue
        ident = (cert["cluster"], cert["serial"].lower())
        if ident in seen:
            seen[ident]["sources"] = sorted(set(seen[ident]["sources"]) | {cert["source"]})
            continue
        seen[ident] = {"cluster": cert["cluster"], "serial": cert["serial"], "not_before": cert.get("not_before"),
                       "not_after": cert["not_after"], "csr_name": cert.get("csr_name"), "sources": [cert["source"]]}
    return sorted(seen.values(), key=lambda c: (c["not_after"], c["cluster"], c["serial"]))
