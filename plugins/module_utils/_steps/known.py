# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""What is known: the certificates the credential store and etcd hold for a scope and its clusters, the newest of
each (cluster, user); which of them are due (renewing without a user list); and the groups on record of a user
listed without ``groups``. Reads only, for user_certificates (pipeline.py) and any other step that needs it."""

from __future__ import annotations

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._steps import render


def holdings(params):
    """What the store and etcd hold for the scope of ``params``, read once: ``({(cluster, user): store record, None
    when damaged}, {(cluster, user): (etcd key, record)}, {(user, key cluster)} of the keys in the store)``."""
    damaged = []
    with _store.open_store_from_params(params, create=False) as store:
        stored = {(r.get("cluster"), r.get("user")): r for r in store.list_certs(params["scope"], damaged=damaged)}
        keys = {(row["user"], row["cluster"]) for row in store.list_keys(params["scope"])}
    for _scope, cluster, user in damaged:
        stored.setdefault((cluster, user), None)
    in_etcd = {}
    transport = _etcd.transport_from_params(params)
    if transport is not None:
        with transport:
            in_etcd = {transport.identity_of(key)[1:]: (key, record) for key, record in transport.list_records(params["scope"])}
    return stored, in_etcd, keys


def records(ctx, params):
    """``({(cluster, user): (the newest certificate record, "store" or "etcd")}, {(user, key cluster)})``: what the
    store and etcd hold for the scope, the clusters and the signer of ``params``, and the users with a key in the store."""
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

    stored, in_etcd, keys = holdings(params)
    for (cluster, user), record in stored.items():
        if record is None and cluster in names:
            ctx.warn("the credential store's certificate record of user %s in cluster %s is damaged; left out" % (user, cluster))
        offer(record, "store")  # first: the store's record is kept on a tie, as the store itself keeps it
    for _key, record in in_etcd.values():
        offer(record, "etcd")
    return newest, keys


def resolve_groups(ctx, params, users):
    """Users listed without ``groups`` (``{name: bob, force_renew: true}``) keep the groups of their certificates on
    record, so a renewal never silently drops them; ``groups: []`` alone means no groups. A user with no record has
    none; records that disagree are refused, naming the option. ``users`` are completed in place."""
    newest, _keys = records(ctx, params)
    for index, user in enumerate(users):
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


def not_renewable(params, keys, cluster, user):
    """Why the certificate of ``user`` in ``cluster`` is not renewed from the records (``keys`` as records() gives
    them), or None: a user without a key in the store brings their own and renews with users listed."""
    if (user, cluster if params["key_scope"] == "per_cluster" else "") not in keys:
        return "no key in the store for it (a user who brings their own key renews with users listed)"
    problem = _csr.name_problem(user)
    return "the user name %s" % problem if problem else None


def due(ctx, params):
    """Renewing without a user list: ``(users, {cluster: users due there}, known)``. The users are those of the
    certificate records the store and etcd hold for the scope and the clusters (the newer of the two when both hold
    one), and in each cluster only those whose certificate is due within renew_before; ``known`` lists every record
    considered and what becomes of it (``renew``, ``not_due``, ``skipped`` with the reason)."""
    if params["renew_before"] is None:
        raise KubePkiError("users: required unless renew_before is set (without users, every certificate the store "
                           "and etcd hold for scope and clusters that expires within renew_before is renewed)")
    renew_before = _csr.parse_duration(params["renew_before"], "renew_before")
    newest, keys = records(ctx, params)
    known, cluster_users, users = [], {}, {}
    for (cluster, user), (record, where) in sorted(newest.items()):
        entry = {"user": user, "cluster": cluster, "serial": record.get("serial"), "not_after": record.get("not_after"), "source": where}
        skip = not_renewable(params, keys, cluster, user)
        if skip:
            entry.update(action="skipped", reason=skip)
        elif not _record.is_due(record, renew_before):
            entry["action"] = "not_due"
        else:
            entry["action"] = "renew"
            groups = sorted(set(record.get("organizations") or []))
            cluster_users.setdefault(cluster, []).append({"name": user, "groups": groups, "expiration_seconds": None, "force_renew": False})
            if user not in users or _record.sort_key(record) > users[user][1]:
                users[user] = (groups, _record.sort_key(record))
        known.append(entry)
    listed = [{"name": name, "groups": users[name][0], "expiration_seconds": None, "force_renew": False} for name in sorted(users)]
    return listed, cluster_users, known
