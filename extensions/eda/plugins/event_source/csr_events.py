# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kubepki.certs.csr_events: the CertificateSigningRequests of one or many clusters as events, for ansible-rulebook.

Each cluster is listed, then watched from the list's resourceVersion (kubepki.certs' own list/watch code,
``_waiter.follow``): a dropped stream is resumed, a 410 Expired relists, an apiserver that goes away is waited
for. The Kubernetes I/O of each cluster runs in a thread of its own; the event loop only hands events on.

Arguments (all optional but one way to reach a cluster):

``clusters``
    list of ``{name, kubeconfig, context, host, api_key, validate_certs, ca_cert, client_cert, client_key, proxy}``:
    the auth options of kubepki.certs' modules, per cluster. Without it, one cluster named ``cluster`` (default
    ``default``) from the same options given at the top level, or from the K8S_AUTH_* variables.
``label_selector``
    only CSRs with these labels.
``watch_seconds``
    how long one watch request lasts before it is renewed (default 300).
``batch_signers``, ``batch_timeout``
    for these signers (default ``[kubernetes.io/kubelet-serving]``) pending CSRs are also handed out in batches,
    one ``pending`` event per cluster and signer at a time: the next batch follows once every CSR of the last one
    has left the pending state (approved or denied by the action it triggered) or ``batch_timeout`` seconds
    (default 30) have passed; after a timeout the CSRs still pending are handed out again.
``approve``
    ``{signers, policy, reason, condition_message, deny_on_violation}``: decide in the source itself, the moment a
    pending CSR of these signers (default ``[kubernetes.io/kubelet-serving]``) is seen, each CSR on its own, with the
    approval step csr_approve runs (same policy, same checks of the request as encoded, same conditions written), and
    put a ``decided`` event for each decision. No process is started per decision: for approvals where seconds matter
    (kubelets wait for their serving certificate). ``deny_on_violation`` defaults to true here; ``batch_signers``
    then defaults to none.
``renew_before``, ``due_interval``, ``scopes``, ``signer_name``, ``key_scope``, ``store_uri``, ``store_passphrase``, ``etcd_*``
    with ``renew_before`` (``720h``, ``30d`` or seconds), every ``due_interval`` seconds (default 3600) the store
    and, with ``etcd_endpoints``, the central etcd are read as user_certificates reads them to renew
    (``_steps/known.records``: per scope of ``scopes``, default every scope the store holds keys of, the certificates of ``signer_name``,
    default the client signer, the newer of store and etcd; users without a key in the store left out), and one
    ``due`` event is put for every certificate of these clusters that falls due: less than ``renew_before`` is left,
    or less than a third of its own lifetime when that is shorter (a certificate living shorter than
    ``renew_before`` would be due again right after each renewal; a warning names it once).
``event_types``
    put only the events of these types (default all): a rulebook that acts on ``decided`` events alone spares the
    engine a ``csr`` event for every change of every CSR.
``max_events``
    stop after this many events (for tests). The plugin then returns, which ends ansible-rulebook.

Events (``event.type``):

``csr``
    ``{type, cluster, change: ADDED|MODIFIED|DELETED, initial, csr: {...}}`` for every change of a CSR: name, uid,
    signer, requester (username, groups, uid), subject (common_name, common_names, organizations,
    other_attributes), sans (dns, ip, email, uri), usages, expiration_seconds, key (type, public_key_sha256),
    extensions, conditions, state, issued, managed (made by kubepki.certs) and kubepki (its user, scope and
    cluster annotations). ``parse_error`` says why the request could not be read (its fields are then empty).
``synced``
    ``{type, cluster, count}`` once per cluster after the first list: every CSR that existed was put before it.
``pending``
    ``{type, cluster, signer, names, batch}`` (see ``batch_signers``).
``decided``
    ``{type, cluster, name, signer, requester, decision: approved|denied|refused|unchanged|skipped|failed, violations,
    message}`` (see ``approve``; ``refused``: the policy refuses it and ``deny_on_violation`` is false, so it stays
    pending). Decided events wait until a burst of decisions has ended (a quarter of a second without one, five
    seconds at most) and come after, in order: the engine's work on each event would otherwise take the processor
    from the decisions still to make.
``due``
    ``{type, cluster, scope, user, groups, serial, not_after, standing, source, renew_before}``: ``renew_before``
    is the window it was judged with, in seconds (see above).
``relisted``
    ``{type, cluster}`` after a watch expired (410 Gone) and the cluster was listed again; the changes missed were
    put as ``csr`` events before it.
``error``
    ``{type, cluster, message}`` when talking to a cluster fails (it is tried again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
    from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
    from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
    from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
    from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter
except ImportError:  # loaded as a single file from a collections path that is not on sys.path
    _ROOT = os.path.abspath(__file__)
    for _level in range(8):
        _ROOT = os.path.dirname(_ROOT)
    sys.path.insert(0, _ROOT)
    from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
    from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
    from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
    from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
    from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._steps import approve as _approve, context as _context, known as _known

LOG = logging.getLogger("kubepki.certs.csr_events")

AUTH_KEYS = tuple(_kube.AUTH_ARG_SPEC)
DEFAULT_BATCH_SIGNERS = (_csr.SIGNER_KUBELET_SERVING,)
DECIDING = 4  # decisions in flight per cluster (approve)
HOLD = 5.0  # seconds a decided event may wait for the decisions of a burst to end (see main)
QUIET = 0.25  # seconds without a decision that end a burst
ETCD_KEYS = ("etcd_endpoints", "etcd_prefix", "etcd_ca_cert", "etcd_client_cert", "etcd_client_key", "etcd_username",
             "etcd_password", "etcd_timeout")


# ---------------------------------------------------------------- the events (pure)

def csr_summary(obj):
    """What an approver or a carrier needs to know of CSR ``obj``, read from the request as encoded."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    state = _csr.csr_state(obj)
    summary = {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resource_version": meta.get("resourceVersion"),
        "created": meta.get("creationTimestamp"),
        "signer": spec.get("signerName"),
        "usages": list(spec.get("usages") or []),
        "expiration_seconds": spec.get("expirationSeconds"),
        "requester": {"username": spec.get("username"), "groups": list(spec.get("groups") or []), "uid": spec.get("uid")},
        "conditions": [{key: c.get(key) for key in ("type", "status", "reason", "message")}
                       for c in (obj.get("status") or {}).get("conditions") or []],
        "state": state,
        "issued": state == "issued",
        "managed": labels.get(_csr.MANAGED_BY) == _csr.MANAGED_BY_VALUE,
        "kubepki": {"user": annotations.get(_csr.ANN_USER), "scope": annotations.get(_csr.ANN_SCOPE),
                    "cluster": annotations.get(_csr.ANN_CLUSTER)},
        "subject": {"common_name": None, "common_names": [], "organizations": [], "other_attributes": []},
        "sans": {"dns": [], "ip": [], "email": [], "uri": []},
        "key": {"type": None, "public_key_sha256": None},
        "extensions": [],
        "parse_error": None,
    }
    if not spec.get("request"):
        summary["parse_error"] = "no spec.request" if not obj.get("_vanished") else None
        return summary
    try:
        facts = _crypto.csr_facts(_csr.request_pem(obj), what="spec.request of CSR %s" % meta.get("name"))
    except KubePkiError as exc:
        summary["parse_error"] = exc.msg
        return summary
    summary["subject"] = {"common_name": facts.get("common_name"), "common_names": list(facts.get("common_names") or []),
                          "organizations": list(facts.get("organizations") or []),
                          "other_attributes": list(facts.get("other_subject_attributes") or [])}
    summary["sans"] = {"dns": list(facts.get("dns_names") or []), "ip": list(facts.get("ip_addresses") or []),
                       "email": list(facts.get("emails") or []), "uri": list(facts.get("uris") or [])}
    summary["key"] = {"type": facts.get("key_type"), "public_key_sha256": facts.get("public_key_sha256")}
    summary["extensions"] = [e.get("name") or e.get("oid") for e in facts.get("extensions") or []]
    return summary


def csr_event(cluster, change, obj, initial=False):
    return {"type": "csr", "cluster": cluster, "change": change, "initial": initial, "csr": csr_summary(obj)}


def synced_event(cluster, count):
    return {"type": "synced", "cluster": cluster, "count": count}


def due_event(record, renew_before, source):
    return {"type": "due", "cluster": record.get("cluster"), "scope": record.get("scope"), "user": record.get("user"),
            "groups": list(record.get("organizations") or []), "serial": record.get("serial"),
            "not_after": record.get("not_after"), "standing": _record.standing(record, renew_before), "source": source,
            "renew_before": renew_before}


class Batches:
    """Pending CSRs of the batch signers of one cluster, handed out one batch per signer at a time (pure: the
    caller gives the time)."""

    def __init__(self, cluster, signers, timeout):
        self.cluster = cluster
        self.signers = set(signers)
        self.timeout = float(timeout)
        self.pending = {signer: {} for signer in self.signers}  # signer -> {name: creation order}
        self.outstanding = {signer: (set(), 0.0) for signer in self.signers}
        self.handed = {signer: set() for signer in self.signers}
        self.count = 0
        self.ready = False
        self._order = 0

    def observe(self, change, obj):
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name")
        signer = spec.get("signerName")
        for known in self.pending.values():
            if name in known and (change == "DELETED" or signer not in self.signers or _csr.csr_state(obj) != "pending"):
                known.pop(name, None)
        if signer in self.signers and change != "DELETED" and _csr.csr_state(obj) == "pending":
            self._order += 1
            self.pending[signer].setdefault(name, self._order)
        if change == "DELETED" or _csr.csr_state(obj) != "pending":
            for signer_handed in self.handed.values():
                signer_handed.discard(name)

    def due(self, now):
        """The ``pending`` events to put now."""
        if not self.ready:
            return []
        events = []
        for signer in sorted(self.signers):
            waiting = self.pending[signer]
            names, sent = self.outstanding[signer]
            open_names = names & set(waiting)
            timed_out = bool(open_names) and now - sent >= self.timeout
            if open_names and not timed_out:
                continue
            fresh = [n for n in sorted(waiting, key=waiting.get) if timed_out or n not in self.handed[signer]]
            if not fresh:
                self.outstanding[signer] = (set(), 0.0)
                continue
            self.count += 1
            self.outstanding[signer] = (set(fresh), now)
            self.handed[signer].update(fresh)
            events.append({"type": "pending", "cluster": self.cluster, "signer": signer, "names": fresh, "batch": self.count})
        return events


# ---------------------------------------------------------------- arguments

def cluster_specs(args):
    """[(name, auth params)] from the plugin's arguments."""
    given = args.get("clusters")
    if given is None:
        given = [dict({key: args[key] for key in AUTH_KEYS if args.get(key) is not None}, name=args.get("cluster") or "default")]
    if not isinstance(given, list) or not given:
        raise KubePkiError("csr_events: clusters must be a non-empty list of {name, kubeconfig, context, host, ...}")
    specs, seen = [], set()
    for index, entry in enumerate(given):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise KubePkiError("csr_events: clusters[%d] needs a name" % index)
        unknown = sorted(set(entry) - set(AUTH_KEYS) - {"name"})
        if unknown:
            raise KubePkiError("csr_events: clusters[%d] (%s): unknown option%s %s; known: name, %s" % (
                index, entry["name"], "s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(AUTH_KEYS)))
        if entry["name"] in seen:
            raise KubePkiError("csr_events: cluster %s is named twice" % entry["name"])
        seen.add(entry["name"])
        params = {key: entry.get(key) for key in AUTH_KEYS}
        specs.append((entry["name"], params))
    return specs


class Approver:
    """The approval step (what csr_approve runs) for one cluster, called in its follower's thread."""

    def __init__(self, cluster, params, options):
        options = dict(options or {})
        self.signers = set(options.pop("signers", None) or DEFAULT_BATCH_SIGNERS)
        options.setdefault("deny_on_violation", True)
        given = dict({key: value for key, value in params.items() if value is not None}, cluster=cluster, names=[], action="approve",
                     **options)
        self.params, _secrets = _context.validated(_approve.argument_spec(), given, "approve")
        self.cluster = cluster

    def wants(self, change, obj):
        return (change != "DELETED" and (obj.get("spec") or {}).get("signerName") in self.signers
                and _csr.csr_state(obj) == "pending")

    def decide(self, obj):
        """The ``decided`` event of one pending CSR, decided now on the object as seen (a 409 is read again)."""
        name = (obj.get("metadata") or {}).get("name")
        session = _context.ClusterSession()
        session.csrs[name] = obj
        ctx = _context.StepContext(warn=lambda message: LOG.warning("cluster %s: %s", self.cluster, message), session=session)
        event = {"type": "decided", "cluster": self.cluster, "name": name, "signer": (obj.get("spec") or {}).get("signerName"),
                 "requester": (obj.get("spec") or {}).get("username"), "decision": "failed", "violations": [], "message": None}
        try:
            # on the object in the session, the one just seen (a 409 reads it again)
            result = _approve.run(ctx, dict(self.params, names=[name]))
        except KubePkiError as exc:
            event["message"] = exc.msg
            # deny_on_violation false: the policy refuses this request, which stays pending (a person may still decide)
            for entry in exc.details.get("csrs") or []:
                if entry.get("name") == name and entry.get("violations"):
                    event.update(decision="refused", violations=[v["reason"] for v in entry["violations"]])
            return event
        for entry in result["csrs"]:
            event.update(decision=entry["decision"], violations=[v["reason"] for v in entry.get("violations") or []])
        return event


# ---------------------------------------------------------------- the plugin

class _Follower(threading.Thread):
    """One cluster's list and watch, in a thread; events go to ``emit`` (thread-safe)."""

    def __init__(self, name, params, args, emit, stopping, csr_events=True, tracked=True):
        super().__init__(name="csr_events:%s" % name, daemon=True)
        self.cluster = name
        self.params = params
        self.args = args
        self.emit = emit
        self.stopping = stopping
        self.csr_events = csr_events  # whether csr events are put at all (event_types)
        self.tracked = tracked  # whether the batches need every change (batch_signers)
        self.approver = Approver(name, params, args["approve"]) if args.get("approve") else None
        self.deciding = set()  # names of the CSRs being decided now
        self.lock = threading.Lock()

    def _decide(self, obj):
        name = (obj.get("metadata") or {}).get("name")
        try:
            event = self.approver.decide(obj)
        finally:
            with self.lock:
                self.deciding.discard(name)
        self.emit(event)

    def busy(self):
        """Whether a decision of this cluster is in flight or waiting for a thread."""
        return bool(self.deciding)

    def run(self):
        secrets = set()
        while not self.stopping.is_set():
            try:
                client = _kube.get_client(self.params, secrets)
                break
            except KubePkiError as exc:
                self.emit({"type": "error", "cluster": self.cluster, "message": exc.msg})
                self.stopping.wait(5)
        else:
            return
        initial, count = True, 0
        self.pool = ThreadPoolExecutor(max_workers=DECIDING, thread_name_prefix="csr_events:%s:decide" % self.cluster)

        def on_error(exc):
            LOG.warning("cluster %s: %s", self.cluster, getattr(exc, "msg", exc))
            self.emit({"type": "error", "cluster": self.cluster, "message": getattr(exc, "msg", str(exc))})

        for kind, obj in _waiter.follow(client, self.stopping.is_set, label_selector=self.args.get("label_selector"),
                                        watch_seconds=int(self.args.get("watch_seconds") or 300),
                                        sleep=self.stopping.wait, on_error=on_error):
            if kind == "SYNCED":
                initial = False
                self.emit(synced_event(self.cluster, count), raw=("SYNCED", None, self.cluster))
                continue
            if kind == "RELISTED":
                # the watch expired (410): listed again, and the differences were put as csr events
                self.emit({"type": "relisted", "cluster": self.cluster})
                continue
            count += 1 if initial else 0
            # decided the moment the watch shows it, before the csr event is even made
            if self.approver is not None and self.approver.wants(kind, obj):
                name = (obj.get("metadata") or {}).get("name")
                with self.lock:
                    fresh = name not in self.deciding
                    self.deciding.add(name)
                if fresh:  # a few decisions at a time, each CSR once while it is being decided
                    self.pool.submit(self._decide, obj)
            if self.csr_events:
                self.emit(csr_event(self.cluster, kind, obj, initial=initial), raw=(kind, obj, self.cluster))
            elif self.tracked:
                self.emit(None, raw=(kind, obj, self.cluster))  # for the batches only


def _due_records(args, clusters, warned=None):
    """``due`` events for the newest certificate of every (scope, cluster, user) of ``clusters`` that falls due: the
    records are those the renewal of user_certificates reads (``_steps/known.records``: per scope, the store and
    etcd, the newer of the two, only ``signer_name``'s), and like it the source leaves out users whose key is not in
    the store (they bring their own key). Due means: less than ``_record.watched_window`` left. Records whose window is shorter
    than ``renew_before`` are logged once per serial in ``warned``."""
    renew_before = _csr.parse_duration(args["renew_before"], what="renew_before")
    warned = set() if warned is None else warned
    key_scope = args.get("key_scope") or "shared"
    base = dict({key: args.get(key) for key in ETCD_KEYS + ("store_uri", "store_passphrase")},
                clusters=[{"name": name} for name in sorted(clusters)], signer_name=args.get("signer_name") or _csr.SIGNER_CLIENT,
                key_scope=key_scope, renew_before=renew_before)
    ctx = _context.StepContext(warn=lambda message: LOG.warning("%s", message))
    events = []
    scopes = args.get("scopes")
    if not scopes:
        # every scope the store holds keys of: a certificate is renewed from the records only with its key there
        with _store.open_store_from_params(base, create=False) as store:
            scopes = sorted({row["scope"] for row in store.list_keys()})
    for scope in scopes:
        newest, keys = _known.records(ctx, dict(base, scope=scope))
        for (cluster, user), (record, where) in sorted(newest.items()):
            if _known.not_renewable(base, keys, cluster, user):
                continue  # as known.due: renewed with users listed, not from the records
            window = _record.watched_window(record, renew_before)
            if window < renew_before and (scope, cluster, user, record.get("serial")) not in warned:
                warned.add((scope, cluster, user, record.get("serial")))
                LOG.warning("the certificate of user %s in cluster %s (scope %s, serial %s) lives shorter than three times renew_before "
                            "(%ss): it is due once a third of its lifetime is left (%ss before it expires), not renew_before",
                            user, cluster, scope, record.get("serial"), renew_before, window)
            if _record.is_due(record, window):
                events.append(due_event(dict(record, scope=scope), window, where))
    return events


async def main(queue: asyncio.Queue, args: dict):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    """Put the events of every cluster in ``args`` on ``queue`` until cancelled (or ``max_events`` are put)."""
    specs = cluster_specs(args)
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue()
    stopping = threading.Event()
    signers = args.get("batch_signers")
    signers = ([] if args.get("approve") else list(DEFAULT_BATCH_SIGNERS)) if signers is None else list(signers)
    batches = {name: Batches(name, signers, args.get("batch_timeout") or 30) for name, _params in specs}
    limit = args.get("max_events")
    put = 0

    def emit(event, raw=None):  # called from the threads
        loop.call_soon_threadsafe(inbox.put_nowait, (event, raw))

    types = set(args["event_types"]) if args.get("event_types") else None
    followers = [_Follower(name, params, args, emit, stopping, csr_events=types is None or "csr" in types, tracked=bool(signers))
                 for name, params in specs]
    for follower in followers:
        follower.start()
    due_every = float(args.get("due_interval") or 3600)
    next_due = time.monotonic() if args.get("renew_before") else None
    # without batches or due events nothing happens between two events: wait for the next one without a timer
    tick = 0.5 if signers or next_due is not None else None

    # decided events wait until the burst of decisions has ended (none in flight, none made for QUIET seconds), up to
    # HOLD seconds: the engine's work on each event (rules, actions, printing) runs in this process, and during a
    # burst it would take the processor from the decisions still to make; the events come after, all and in order
    held = []
    held_since = last_decided = None
    warned = set()  # certificates whose lifetime is short for renew_before, logged once

    async def deliver(event):
        nonlocal put
        if types is not None and event["type"] not in types:
            return False
        await queue.put(event)
        put += 1
        return limit is not None and put >= int(limit)

    try:
        while True:
            timeout = tick
            if held:  # wake up when the burst may have ended, or the oldest held event has waited HOLD seconds
                left = max(min(held_since + HOLD, last_decided + QUIET) - time.monotonic(), 0.05)
                timeout = left if tick is None else min(tick, left)
            if timeout is None:
                event, raw = await inbox.get()
            else:
                try:
                    event, raw = await asyncio.wait_for(inbox.get(), timeout=timeout)
                except asyncio.TimeoutError:
                    event, raw = None, None
            if raw is not None and signers:
                tracker = batches[raw[2]]
                if raw[0] == "SYNCED":
                    tracker.ready = True
                else:
                    tracker.observe(raw[0], raw[1])
            now = time.monotonic()
            if event is not None and event["type"] == "decided" and (types is None or "decided" in types):
                held.append(event)
                held_since = held_since or now
                last_decided = now
                event = None
            if event is not None and await deliver(event):
                return
            if held and (now - held_since >= HOLD or (now - last_decided >= QUIET and not any(f.busy() for f in followers))):
                overdue = now - held_since >= HOLD
                while held:
                    if not overdue and any(f.busy() for f in followers):
                        break  # the next burst began: the rest waits for its end too
                    if await deliver(held.pop(0)):
                        return
                held_since = held_since if held else None
            for tracker in batches.values():
                for pending in tracker.due(now):
                    if await deliver(pending):
                        return
            if next_due is not None and now >= next_due:
                next_due = now + due_every
                try:
                    due = await asyncio.to_thread(_due_records, args, set(batches), warned)
                except Exception as exc:  # pylint: disable=broad-exception-caught  # a source that ends stops the engine
                    due = [{"type": "error", "cluster": None, "message": "reading the certificates that fall due: %s" % (
                        getattr(exc, "msg", None) or exc)}]
                for item in due:
                    if await deliver(item):
                        return
    finally:
        stopping.set()


if __name__ == "__main__":
    # python csr_events.py KUBECONFIG: print the events of one cluster (for a quick look)

    class _Printer:
        async def put(self, event):
            print(event)  # noqa: T201

    asyncio.run(main(_Printer(), {"kubeconfig": sys.argv[1] if len(sys.argv) > 1 else None}))
