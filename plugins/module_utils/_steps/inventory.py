# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The certificate inventory: every key and certificate record of the store and of etcd, one row per
(scope, user, cluster), with its state, and three ways to print it (JSON, a table, Prometheus text).

Nothing here decrypts a private key: the store is read through its listings (``list_keys``, whose rows hold
``key_type``, ``public_key_sha256``, ``created`` and ``encrypted`` but never ``private_key_pem``, and
``list_certs``), so no passphrase is needed.
"""

from __future__ import annotations

import calendar
import datetime
import json
import math
import os

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file

STATES = ("valid", "expiring", "expired", "not_yet_valid", "missing_certificate", "missing_key", "key_mismatch", "invalid")
FORMATS = ("json", "table", "prometheus")
DEFAULT_WARN_WITHIN = "720h"

# stands for a record that is not a JSON object (the store and etcd hand out its identity, not its text)
DAMAGED = object()


# ---------------------------------------------------------------------- reading the store

def store_certs(store, scope=None):
    """``{(scope, cluster, user): record}`` of every certificate record in ``store`` (of ``scope``); a record the
    store cannot read as JSON maps to DAMAGED, so that it is reported ``invalid`` instead of failing the report."""
    damaged = []
    found = {(r.get("scope"), r.get("cluster"), r.get("user")): r for r in store.list_certs(scope, damaged=damaged)}
    found.update(dict.fromkeys(damaged, DAMAGED))
    return found


def etcd_certs(transport, scope=None):
    """``{(scope, cluster, user): (etcd key, record or DAMAGED)}`` of the certificate records in etcd (of ``scope``)."""
    damaged = []
    found = {transport.identity_of(key): (key, record) for key, record in transport.list_records(scope, damaged=damaged)}
    found.update({transport.identity_of(key): (key, DAMAGED) for key in damaged})
    return found


# ---------------------------------------------------------------------- rows

def _read_record(record, where):
    """``(facts, problem)`` of one record (a dict, or DAMAGED): the facts read from the certificate itself."""
    if not isinstance(record, dict):
        return None, "%s is not a JSON certificate record" % where
    try:
        return _crypto.certificate_facts(record.get("certificate"), what="the certificate of %s" % where), None
    except KubePkiError as error:
        return None, error.msg


def _epoch(text):
    return calendar.timegm(_crypto.parse_rfc3339(text).utctimetuple())


def _side(facts, problem, key):
    """What one source holds, for the row's ``store`` / ``etcd`` entry."""
    if facts is None:
        return {"serial": None, "not_before": None, "not_after": None, "key_matches": None, "problem": problem}
    return {"serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
            "key_matches": None if key is None else facts["public_key_sha256"] == key["public_key_sha256"], "problem": None}


def _pick(store_facts, etcd_facts):
    """``(facts, newer_in)``: the certificate the row reports and, when the store and etcd hold two different
    readable certificates, which one holds the newer (_record.order); the store wins a tie."""
    if store_facts is None or etcd_facts is None:
        return store_facts or etcd_facts, None
    if store_facts["serial"] == etcd_facts["serial"] and store_facts["public_key_sha256"] == etcd_facts["public_key_sha256"]:
        return store_facts, None
    return (etcd_facts, "etcd") if _record.order(etcd_facts, store_facts) == 1 else (store_facts, "store")


def _row(scope, user, cluster, candidates, store_record, etcd_entry, now, warn_seconds, etcd_used):
    """One inventory row. ``candidates``: the keys that may apply, the preferred first (per-cluster, shared)."""
    notes = []
    row = {"scope": scope, "user": user, "cluster": cluster}
    store_facts = etcd_facts = store_problem = etcd_problem = None
    if store_record is not None:
        store_facts, store_problem = _read_record(store_record, "the store record of user %r, cluster %r (scope %r)" % (user, cluster, scope))
    if etcd_entry is not None:
        etcd_facts, etcd_problem = _read_record(etcd_entry[1], "etcd key %s" % etcd_entry[0])
    facts, newer_in = _pick(store_facts, etcd_facts)
    # the key that applies: the first candidate that is the certificate's key, else the preferred one
    key = next((k for k in candidates if facts is not None and k["public_key_sha256"] == facts["public_key_sha256"]),
               candidates[0] if candidates else None)
    row["store"] = None if store_record is None else _side(store_facts, store_problem, key)
    row["etcd"] = None if etcd_entry is None else dict(_side(etcd_facts, etcd_problem, key), key=etcd_entry[0])
    notes.extend(problem for problem in (store_problem, etcd_problem) if problem)
    row["found_in"] = {(True, True): "both", (True, False): "store", (False, True): "etcd", (False, False): "none"}[
        (store_record is not None, etcd_entry is not None)]
    row["sources_differ"] = row["found_in"] == "both" and (store_facts is None or etcd_facts is None or newer_in is not None)
    row["newer_in"] = newer_in
    if newer_in:
        sides = {"etcd": (etcd_facts, "etcd"), "store": (store_facts, "the store")}
        (newer, newer_name), (older, older_name) = sides[newer_in], sides["store" if newer_in == "etcd" else "etcd"]
        notes.append("%s holds a newer certificate (serial %s, not after %s) than %s (serial %s, not after %s)" % (
            newer_name, newer["serial"], newer["not_after"], older_name, older["serial"], older["not_after"]))
    elif etcd_used and row["found_in"] == "store" and cluster:
        notes.append("etcd holds no record of this certificate")

    row.update({
        "key_scope": None if key is None else ("shared" if key["cluster"] == "" else "per_cluster"),
        "key_fingerprint": None if key is None else key["public_key_sha256"],
        "key_type": None if key is None else key["key_type"],
        "key_created": None if key is None else key.get("created"),
        "key_encrypted": None if key is None else key["encrypted"],
        "certificate_fingerprint": None, "serial": None, "not_before": None, "not_after": None,
        "expiry_timestamp": None, "days_left": None, "common_name": None, "organizations": [],
    })
    if facts is not None:
        expiry = _epoch(facts["not_after"])
        row.update({
            "certificate_fingerprint": facts["public_key_sha256"], "serial": facts["serial"],
            "not_before": facts["not_before"], "not_after": facts["not_after"], "expiry_timestamp": expiry,
            "days_left": round((expiry - now) / 86400.0, 2), "common_name": facts["common_name"],
            "organizations": facts["organizations"],
        })
        if key is None:
            row["key_type"] = facts["key_type"]
    row["state"] = _state(row, key, facts, now, warn_seconds, notes)
    row["notes"] = notes
    return row


def _state(row, key, facts, now, warn_seconds, notes):
    if row["found_in"] == "none":
        return "missing_certificate"
    if facts is None:
        return "invalid"
    if key is None:
        notes.append("the store holds no key for this certificate")
        return "missing_key"
    if facts["public_key_sha256"] != key["public_key_sha256"]:
        notes.append("the certificate's public key (SHA-256 %s) is not the stored key's (%s)" % (
            facts["public_key_sha256"], key["public_key_sha256"]))
        return "key_mismatch"
    standing = _record.standing(facts, warn_seconds, at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
    return "expiring" if standing == "due" else standing


def build(keys, stored, in_etcd, now, warn_seconds, users=(), clusters=(), etcd_used=False):
    """The inventory rows, sorted by (scope, user, cluster).

    ``keys``: key rows (store.list_keys); ``stored``: store_certs (records or DAMAGED); ``in_etcd``: etcd_certs; ``now``: epoch seconds.
    Every certificate record gets a row, with the key that applies: the per-cluster key of its cluster,
    else the user's shared key. A key that no certificate uses gets a ``missing_certificate`` row (a shared
    key under cluster ``''``); with ``clusters``, every listed cluster in which a user with a key has no
    certificate gets one.
    """
    users, clusters = set(users or ()), list(clusters or ())
    by_identity = {(k["scope"], k["user"], k["cluster"]): k for k in keys if not users or k["user"] in users}
    rows = {}
    for scope, cluster, user in set(stored) | set(in_etcd):
        if (users and user not in users) or (clusters and cluster not in clusters):
            continue
        candidates = [k for k in (by_identity.get((scope, user, cluster)), by_identity.get((scope, user, ""))) if k is not None]
        rows[(scope, user, cluster)] = _row(scope, user, cluster, candidates, stored.get((scope, cluster, user)),
                                            in_etcd.get((scope, cluster, user)), now, warn_seconds, etcd_used)
    used = {(r["scope"], r["user"], r["cluster"] if r["key_scope"] == "per_cluster" else "") for r in rows.values() if r["key_scope"]}
    for (scope, user, cluster), key in by_identity.items():
        if clusters:
            targets = [cluster] if cluster else [c for c in clusters if (scope, user, c) not in by_identity]
            targets = [c for c in targets if c in clusters]
        else:
            targets = [] if (scope, user, cluster) in used else [cluster]
        for target in targets:
            if (scope, user, target) not in rows:
                rows[(scope, user, target)] = _row(scope, user, target, [key], None, None, now, warn_seconds, etcd_used)
    return [rows[identity] for identity in sorted(rows)]


def summary(rows):
    """``{state: count}`` over every state (zeros included) plus ``total``."""
    counts = {state: 0 for state in STATES}
    for row in rows:
        counts[row["state"]] += 1
    counts["total"] = len(rows)
    return counts


# ---------------------------------------------------------------------- reports

# A report holds timestamps, never durations from now: a file written by a scheduled job changes when the
# certificates do, not with the clock; its reader computes the time left (Prometheus: expiry - time()).
CLOCK_FIELDS = ("days_left",)


def render_json(rows):
    return json.dumps([{k: v for k, v in row.items() if k not in CLOCK_FIELDS} for row in rows], indent=2, sort_keys=True) + "\n"


_COLUMNS = ("SCOPE", "USER", "CLUSTER", "STATE", "NOT AFTER", "SERIAL", "KEY TYPE", "KEY SHA-256", "FOUND IN")


def _table_cells(row):
    found = row["found_in"]
    if row["newer_in"]:
        found += " (%s newer)" % row["newer_in"]
    elif row["sources_differ"]:
        found += " (differ)"
    return (row["scope"], row["user"], row["cluster"] or "-", row["state"], row["not_after"] or "-", row["serial"] or "-",
            row["key_type"] or "-", (row["key_fingerprint"] or "-")[:16], found)


def render_table(rows):
    """A plain-text table: one line per row under a header, columns padded, then a count by state."""
    cells = [_COLUMNS] + [_table_cells(row) for row in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(_COLUMNS))]
    lines = []
    for line in cells:
        parts = [str(v).ljust(widths[i]) for i, v in enumerate(line)]
        lines.append("  ".join(parts).rstrip())
    counts = summary(rows)
    lines.append("")
    lines.append("%d entries: %s" % (counts["total"], ", ".join(
        "%d %s" % (counts[state], state.replace("_", " ")) for state in STATES if counts[state]) or "none"))
    return "\n".join(lines) + "\n"


_METRICS = (
    ("kubepki_certificate_expiry_timestamp_seconds", "End of validity (notAfter) of the certificate, Unix time.",
     ("scope", "user", "cluster", "serial"), lambda r: r["expiry_timestamp"]),
    ("kubepki_certificate_not_before_timestamp_seconds", "Start of validity (notBefore) of the certificate, Unix time.",
     ("scope", "user", "cluster", "serial"), lambda r: None if r["not_before"] is None else _epoch(r["not_before"])),
    ("kubepki_certificate_state", "1 for the state of each (scope, user, cluster): " + ", ".join(STATES) + ".",
     ("scope", "user", "cluster", "state"), lambda r: 1),
    ("kubepki_certificate_sources_differ", "1 when the store and etcd hold different certificates, 0 when the same (only where both hold one).",
     ("scope", "user", "cluster"), lambda r: (1 if r["sources_differ"] else 0) if r["found_in"] == "both" else None),
)


def _label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_value(value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def render_prometheus(rows):
    """The Prometheus text exposition format (version 0.0.4), for node_exporter's textfile collector."""
    lines = []
    for name, help_text, labels, value_of in _METRICS:
        lines.append("# HELP %s %s" % (name, help_text.replace("\\", "\\\\").replace("\n", "\\n")))
        lines.append("# TYPE %s gauge" % name)
        for row in rows:
            value = value_of(row)
            if value is None:
                continue
            pairs = ",".join('%s="%s"' % (label, _label_value(row[label])) for label in labels)
            lines.append("%s{%s} %s" % (name, pairs, _sample_value(value)))
    return "\n".join(lines) + "\n"


RENDERERS = {"json": render_json, "table": render_table, "prometheus": render_prometheus}


# ---------------------------------------------------------------------- dest

def read_text(path):
    """The current text of ``path``; None when it does not exist. KubePkiError naming ``dest`` otherwise."""
    if os.path.isdir(path):
        raise KubePkiError("dest: %s is a directory" % path)
    try:
        return read_regular_file(path, "dest").decode("utf-8", "replace")  # a FIFO or device is refused, not read
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KubePkiError("dest: cannot read %s: %s" % (path, exc.strerror or exc)) from None


def check_dest(path):
    """KubePkiError naming ``dest`` unless ``path`` could be written (its directory exists)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise KubePkiError("dest: the directory %s does not exist" % parent)
    read_text(path)
