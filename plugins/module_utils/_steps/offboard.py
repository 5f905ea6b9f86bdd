# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Offboarding (user_certificates with ``state: absent``): what the collection made for a user goes, cluster by
cluster, then the user's kubeconfig and key; what cannot be taken back (issued certificates) is named."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _files, _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._steps import context, create, known, publish, render


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
            create.validate(access.create_checked(cluster, state="absent"))
        problem = _etcd.endpoints_problem(params)
        if problem:
            raise KubePkiError(problem)
        access.check_clients()
        _etcd.check_reachable(params)

    def cluster(self, cluster, stored, in_etcd, keys):
        """One cluster: ``(result, warnings, failures, still valid certificates [(user, entry)], diff before)``;
        ``stored``, ``in_etcd`` and ``keys`` as known.holdings() gives them, read once for every cluster."""
        access, params = self.access, self.params
        warnings, failures, valid, before = [], [], [], []
        names = [user["name"] for user in access.users]
        result = {"name": cluster["name"], "changed": False, "csrs": [], "etcd_records": [], "store_records": [], "keys": []}
        step_name = "create"
        try:
            ctx = access.context(warnings)
            removed = create.run(ctx, access.create_checked(cluster, state="absent"))
            result["csrs"] = removed["csrs"]
            result["changed"] = removed["changed"]
            for entry in removed["csrs"]:
                before.extend({"cluster": cluster["name"], "user": entry["name"], "csr": name} for name in entry["deleted"])
                for cert in entry.get("certificates", []):
                    valid.append((entry["name"], dict(cert, cluster=cluster["name"], source="csr")))
            step_name = "publish"
            if in_etcd:
                held = {user: entry for (where, user), entry in in_etcd.items() if where == cluster["name"]}
                present = [name for name in names if name in held]
                for name in present:
                    valid.append((name, _facts(held[name][1], cluster["name"], "etcd")))
                    before.append({"cluster": cluster["name"], "user": name, "etcd_record": held[name][0]})
                if present:
                    published = publish.run(ctx, access.step_params(publish, access.publish_params(
                        cluster, [{"user": name} for name in present], state="absent")))
                    result["etcd_records"] = published["records"]
                    result["changed"] = result["changed"] or published["changed"]
            step_name = "store"
            store = _store.open_store_from_params(params, create=not self.check)
            try:
                held = {user: record for (where, user), record in stored.items() if where == cluster["name"]}
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
                    for name in names:
                        if (name, cluster["name"]) in keys:
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

    def elsewhere(self, stored, in_etcd):
        """``{user: [cluster, ...]}``: the clusters outside this task where the store or etcd still hold a certificate
        of each user (their shared key and kubeconfig are still needed there)."""
        listed = {cluster["name"] for cluster in self.params["clusters"]}
        names = {user["name"] for user in self.access.users}
        found = {}
        held = [identity for identity, record in stored.items() if record is not None] + list(in_etcd)
        for cluster, user in held:
            if user in names and cluster not in listed:
                found.setdefault(user, set()).add(cluster)
        return {user: sorted(clusters) for user, clusters in found.items()}

    def run(self):
        access, params = self.access, self.params
        self.validate()
        access.prime()
        clusters = params["clusters"]
        stored, in_etcd, keys = known.holdings(params)
        with ThreadPoolExecutor(max_workers=max(1, min(params["parallel"], len(clusters)))) as pool:
            outcomes = [future.result() for future in [pool.submit(self.cluster, cluster, stored, in_etcd, keys) for cluster in clusters]]
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
        elsewhere = self.elsewhere(stored, in_etcd)
        temps = _files.temp_names(params["dest_dir"]) if params["dest_dir"] else None
        store = None
        try:
            for user in access.users:
                name = user["name"]
                entry = {"user": name, "finished": True, "key_deleted": False, "kubeconfig": None, "kubeconfig_deleted": False,
                         "kept_for": elsewhere.get(name, []), "still_valid": _still_valid(valid, name)}
                failed = sorted(blocked | {f["cluster"] for f in failures if f.get("user") == name})
                entry["finished"] = not failed
                if params["dest_dir"]:
                    path = entry["kubeconfig"] = os.path.join(params["dest_dir"], "%s.kubeconfig" % name)
                    # what a run killed while writing this user's kubeconfig left beside it (the key in it): never wanted
                    stale = _files.remove_stale_temps(path, check=self.check, listed=temps)
                    if stale:
                        before.append({"user": name, "temporary_files": stale})
                        output["changed"] = True
                        self.ctx.warn("user %s: %s %d temporary file%s left by an interrupted run beside the kubeconfig: %s" % (
                            name, "would remove" if self.check else "removed", len(stale), "" if len(stale) == 1 else "s", ", ".join(stale)))
                    if entry["kept_for"]:  # still onboarded elsewhere: only the contexts of these clusters go
                        removed, entry["kubeconfig_deleted"] = render.drop_clusters(
                            path, [c["name"] for c in clusters], render.file_options(params), check=self.check)
                        if removed:
                            before.append({"user": name, "kubeconfig": path, "contexts": removed})
                            output["changed"] = True
                    elif os.path.lexists(path):
                        before.append({"user": name, "kubeconfig": path})
                        if not self.check:
                            os.unlink(path)
                        entry["kubeconfig_deleted"] = output["changed"] = True
                if params["key_scope"] == "shared" and not failed and not entry["kept_for"]:
                    if store is None:
                        store = _store.open_store_from_params(params, create=not self.check)
                    if (name, "") in keys:
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
            raise KubePkiError(context.failure_message(failures, len(access.users), len(clusters)), **output)
        return output


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
