# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The etcd transport: certificate records under ``<prefix>/certs/<scope>/<cluster>/<user>``.

Talks to etcd's grpc-gateway JSON API (``/v3``) through etcd3gw with a ``requests.Session`` we build
ourselves: ``trust_env`` is off, so ``REQUESTS_CA_BUNDLE`` and proxy variables cannot silently replace
``etcd_ca_cert``. Writes are transactions that compare the key's current mod revision (or its absence)
before they put, so an unchanged value is ``changed: false`` and a concurrent writer is detected
instead of overwritten. A transaction that loses that race re-reads the key: a value byte-equal to ours
means the record is simply unchanged, a record carrying a newer certificate is kept, anything else is
decided again (MAX_ATTEMPTS in all).
"""

from __future__ import annotations

import base64
import json
import random
import time

from ansible_collections.kubepki.certs.plugins.module_utils import _deps
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._etcd.options import (
    DEFAULT_PREFIX, key_segment_problem, options_problem, parse_endpoint, split_endpoints,
)
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record

# etcd3gw (and requests under it) is imported only when a transport is made: modules that talk to no etcd
# in a run do not pay its start-up cost.
etcd3gw = _deps.Lazy(requests="requests", errors="etcd3gw.exceptions", client="etcd3gw.client")


def import_etcd3gw():
    """Whether etcd3gw can be imported (it is, from then on)."""
    return etcd3gw.ready()


# puts per transaction: below etcd's default --max-txn-ops (128)
TXN_CHUNK = 64

# decisions on one key, reported per record as ``action``
CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
UNCHANGED = "unchanged"
KEPT_NEWER = "kept_newer"  # the stored record carries a newer certificate than ours
KEPT_EQUAL = "kept_equal"  # the stored record carries another certificate exactly as new as ours
CONFLICT = "conflict"  # a concurrent writer left a value that cannot be ordered against ours
WRITES = (CREATED, UPDATED, DELETED)

# guarded transactions per key before giving up when other writers keep changing it
MAX_ATTEMPTS = 5


def _b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text or "")


def _prefix_end(prefix):
    """The etcd ``range_end`` covering every key that starts with ``prefix``."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _as_record(value):
    try:
        record = json.loads(value.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def decide_delete(before, _data, lost):
    """Delete: nothing to do when absent (also when a concurrent run deleted it first); a key changed by another
    writer after we read it is a conflict, not deleted blindly."""
    if before is None:
        return UNCHANGED
    return CONFLICT if lost else DELETED


def decide_plain(before, data, lost):
    """Put of a plain value: write unless byte-equal; after a lost race a different value is a conflict."""
    if before is None:
        return CREATED
    if before == data:
        return UNCHANGED
    return CONFLICT if lost else UPDATED


def decide_record(before, data, lost):
    """Put of a certificate record, as _record.settle() says: byte-equal -> unchanged, a newer stored certificate ->
    kept_newer, another one as new -> kept_equal, else ours is written; a stored value that is not a dated record is
    overwritten, except after a lost race (conflict)."""
    if before is None:
        return CREATED
    if before == data:
        return UNCHANGED
    stored, wanted = _as_record(before), _as_record(data)
    verdict = _record.settle(stored, wanted, lost) if stored is not None and wanted is not None else None
    if verdict is None:
        return CONFLICT if lost else UPDATED
    return {"newer": KEPT_NEWER, "equal": KEPT_EQUAL}.get(verdict, UPDATED)


class EtcdTransport:
    """One etcd client for a whole batch: get / compare-before-put / delete / list of certificate records."""

    def __init__(self, endpoints, prefix=DEFAULT_PREFIX, ca_cert=None, client_cert=None, client_key=None,
                 username=None, password=None, timeout=5.0):
        if not import_etcd3gw():
            raise KubePkiError("the etcd3gw library is not installed on the host that runs this module")
        if isinstance(endpoints, str):
            endpoints = split_endpoints(endpoints)
        if not endpoints:
            raise KubePkiError("etcd_endpoints: give at least one etcd URL (or set KUBEPKI_ETCD_ENDPOINTS)")
        self.endpoints = [url.strip().rstrip("/") if isinstance(url, str) else url for url in endpoints]
        problem = options_problem(self.endpoints, prefix=prefix, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key,
                                  username=username, password=password, timeout=timeout)
        if problem:
            raise KubePkiError(problem)
        self._parsed = [parse_endpoint(url) for url in self.endpoints]
        self.prefix = prefix.rstrip("/")
        self.timeout = float(timeout)
        # guarded transactions that found the key changed by someone else (each one was re-read and decided again)
        self.lost_transactions = 0
        self._ca_cert, self._client_pair = ca_cert, (client_cert, client_key)
        self._username, self._password = username, password
        self._session = self._client = self.endpoint = None

    # ------------------------------------------------------------------ connection

    def _new_session(self):
        session = etcd3gw.requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE / proxies must not override our TLS settings
        session.verify = self._ca_cert if self._ca_cert else True
        if self._client_pair[0]:
            session.cert = self._client_pair
        return session

    def _connect(self):
        if self._client is not None:
            return self._client
        errors = []
        for url, (protocol, host, port) in zip(self.endpoints, self._parsed):
            session = self._new_session()
            client = etcd3gw.client.Etcd3Client(host=host, port=port, protocol=protocol, timeout=self.timeout, session=session, api_path=None)
            try:
                client.api_path  # pylint: disable=pointless-statement  # GET /version: reachability and API path
                if self._username:
                    self._authenticate(client, session, url)
            except KubePkiError:
                session.close()
                raise
            except Exception as exc:  # pylint: disable=broad-except
                session.close()
                errors.append("%s: %s" % (url, _short(exc)))
                continue
            self._session, self._client, self.endpoint = session, client, url
            return client
        raise KubePkiError("etcd_endpoints: no etcd endpoint answered (tried %s)" % "; ".join(errors),
                           etcd_endpoints=self.endpoints)

    def check(self):
        """Reach etcd now (an endpoint answers, the credentials are accepted): a job finds an etcd that is down or
        refuses it before it writes anything elsewhere. KubePkiError naming etcd_endpoints or etcd_username."""
        self._connect()

    def _authenticate(self, client, session, url):
        try:
            reply = client.post(client.get_url("/auth/authenticate"), json={"name": self._username, "password": self._password})
        except etcd3gw.errors.Etcd3Exception as exc:
            if isinstance(exc, (etcd3gw.errors.ConnectionFailedError, etcd3gw.errors.ConnectionTimeoutError)):
                raise
            raise KubePkiError("etcd_username: etcd at %s refused the credentials of %r: %s" % (url, self._username, _short(exc))) from None
        token = reply.get("token")
        if not token:
            raise KubePkiError("etcd_username: etcd at %s returned no token for %r" % (url, self._username))
        session.headers["Authorization"] = token

    def _post(self, path, payload):
        client = self._connect()
        try:
            return client.post(client.get_url(path), json=payload)
        except Exception as exc:  # pylint: disable=broad-except
            raise KubePkiError("etcd_endpoints: etcd at %s failed on %s: %s" % (self.endpoint, path, _short(exc)),
                               etcd_endpoint=self.endpoint) from None

    def close(self):
        if self._session is not None:
            self._session.close()
        self._session = self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ keys

    def key_for(self, scope, cluster, user):
        """``<prefix>/certs/<scope>/<cluster>/<user>``; each part must pass key_segment_problem."""
        for name, value in (("scope", scope), ("cluster", cluster), ("user", user)):
            problem = key_segment_problem(value, name)
            if problem:
                raise KubePkiError(problem)
        return self.records_prefix(scope, cluster) + user

    def records_prefix(self, scope=None, cluster=None):
        """``<prefix>/certs/``, then ``<scope>/`` and ``<cluster>/`` when given (a cluster only within a scope): the
        one place that knows the key layout."""
        parts = [scope, cluster] if scope and cluster else [scope] if scope else []
        return "%s/certs/%s" % (self.prefix, "".join(part + "/" for part in parts))

    def identity_of(self, key):
        """``(scope, cluster, user)`` of a certificate record's key (the inverse of key_for), or None for a key under
        ``<prefix>/certs/`` that is not one."""
        base = self.records_prefix()
        parts = key[len(base):].split("/") if key.startswith(base) else []
        return tuple(parts) if len(parts) == 3 and all(parts) else None

    def get(self, key):
        """``(value bytes or None, mod_revision int or 0)`` of one key."""
        reply = self._post("/kv/range", {"key": _b64(key)})
        for item in reply.get("kvs") or []:
            return _unb64(item.get("value")), int(item.get("mod_revision", 0))
        return None, 0

    def put_if_changed(self, key, value, check_mode=False):
        """Put ``value`` unless it is already there, byte for byte. Returns ``changed``.

        The put is a transaction guarded by the mod revision read just before (or by the key's absence). When
        another writer got in between and left exactly our value, nothing more is done (``False``); any other
        value makes KubePkiError say so, with nothing written.
        """
        return self.settle([(key, value)], decide_plain, check_mode=check_mode)[0] in WRITES

    def settle(self, items, decide, check_mode=False):
        """Bring each ``(key, value)`` of ``items`` (value None: delete the key) to what ``decide`` says; ``[action]``.

        ``decide(before, data, lost)`` gets the stored bytes (None when absent), ours (None for a delete) and whether
        a transaction of ours on this key already lost a race; it returns one of CREATED, UPDATED, DELETED (write),
        UNCHANGED, KEPT_NEWER, KEPT_EQUAL (leave it) or CONFLICT (KubePkiError). One range read per key prefix (the
        part before the last '/'), then one transaction per TXN_CHUNK writes, each guarded by the revisions that read
        saw. A transaction that loses writes nothing and returns the keys' current values; those keys are decided
        again, at most MAX_ATTEMPTS times. Transactions are all or nothing, a batch of more than TXN_CHUNK writes is
        not: when a later one fails the earlier ones stay written (each record is complete on its own, and a
        re-run finishes the rest).
        """
        wanted = [(key, value.encode("utf-8") if isinstance(value, str) else value) for key, value in items]
        keys = [key for key, _data in wanted]
        if len(set(keys)) != len(keys):
            raise KubePkiError("the same etcd key is given twice in one batch: %s" % sorted({k for k in keys if keys.count(k) > 1})[0])
        current = self._read(keys)
        actions = [None] * len(wanted)
        pending, lost, written = list(range(len(wanted))), set(), []
        for attempt in range(MAX_ATTEMPTS):
            writes = []
            for index in pending:
                key, data = wanted[index]
                before, revision = current.get(key, (None, 0))
                action = decide(before, data, index in lost)
                if action == CONFLICT:
                    raise KubePkiError(
                        "etcd key %s was changed by another writer while this run wrote it; %s, run again" % (key, _written_note(written)),
                        written_keys=written)
                if action in WRITES:
                    writes.append((index, action, revision if before is not None else None))
                else:
                    actions[index] = action
            if check_mode:
                for index, action, _revision in writes:
                    actions[index] = action
                return actions
            pending = []
            for start in range(0, len(writes), TXN_CHUNK):
                chunk = writes[start:start + TXN_CHUNK]
                try:
                    succeeded, seen = self._guarded_txn([(wanted[index][0], wanted[index][1], revision) for index, _a, revision in chunk])
                except KubePkiError as error:
                    raise KubePkiError("%s; %s" % (error.msg, _written_note(written)), written_keys=written, **error.details) from None
                if succeeded:
                    for index, action, _revision in chunk:
                        actions[index] = action
                        written.append(wanted[index][0])
                else:
                    self.lost_transactions += 1
                    current.update(seen)
                    for index, _action, revision in chunk:
                        # only keys another writer really touched count as lost; the others were held back with them
                        now_value, now_revision = seen[wanted[index][0]]
                        if (now_value is not None) if revision is None else (now_revision != revision):
                            lost.add(index)
                        pending.append(index)
            if not pending:
                return actions
            # another writer is busy with these keys: give it a moment before reading what it left
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        first = wanted[pending[0]][0]
        raise KubePkiError("etcd keys %s (%d keys) kept being changed by other writers; %d guarded transactions lost in a row, %s, run again" % (
            first, len(pending), MAX_ATTEMPTS, _written_note(written)), written_keys=written)

    def _guarded_txn(self, writes):
        """One transaction of ``[(key, data or None, mod revision or None for absent)]``: ``(succeeded, {key: (value,
        revision)})``, the dict holding the keys' current values (read in the same transaction) when it failed."""
        compares, success, failure = [], [], []
        for key, data, revision in writes:
            if revision is None:
                compares.append({"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
            else:
                compares.append({"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)})
            if data is None:
                success.append({"request_delete_range": {"key": _b64(key)}})
            else:
                success.append({"request_put": {"key": _b64(key), "value": _b64(data)}})
            failure.append({"request_range": {"key": _b64(key)}})
        reply = self._post("/kv/txn", {"compare": compares, "success": success, "failure": failure})
        if reply.get("succeeded"):
            return True, {}
        seen = {key: (None, 0) for key, _data, _revision in writes}
        for (key, _data, _revision), response in zip(writes, reply.get("responses") or []):
            kvs = (response.get("response_range") or {}).get("kvs") or []
            if kvs:
                seen[key] = (_unb64(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0)))
        return False, seen

    def _read(self, keys):
        """``{key: (value, revision)}`` of ``keys``: one read per key prefix (the part before the last '/'), a range
        read when the batch has several keys there."""
        groups = {}
        for key in keys:
            groups.setdefault(key.rsplit("/", 1)[0] + "/", []).append(key)
        current = {}
        for prefix in sorted(groups):
            if len(groups[prefix]) == 1:
                current[groups[prefix][0]] = self.get(groups[prefix][0])
            else:
                current.update(self.range_with_revisions(prefix))
        return current

    def range_with_revisions(self, prefix):
        """``{key: (value bytes, mod_revision)}`` of every key starting with ``prefix``."""
        reply = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return {_unb64(item.get("key")).decode("utf-8"): (_unb64(item.get("value")), int(item.get("mod_revision", 0)))
                for item in reply.get("kvs") or []}

    def delete_if_present(self, key, check_mode=False):
        """Delete ``key`` when it exists (guarded by its mod revision). Returns ``changed``; a key another run deleted
        first is ``False``, one another writer changed meanwhile is KubePkiError (nothing deleted)."""
        return self.settle([(key, None)], decide_delete, check_mode=check_mode)[0] in WRITES

    def list_prefix(self, prefix):
        """``[(key str, value bytes)]`` of every key starting with ``prefix``, sorted by key."""
        reply = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "sort_order": "ASCEND", "sort_target": "KEY"})
        return [(_unb64(item.get("key")).decode("utf-8"), _unb64(item.get("value"))) for item in reply.get("kvs") or []]

    # ------------------------------------------------------------------ certificate records

    def get_record(self, scope, cluster, user):
        """The certificate record stored for (scope, cluster, user), or None."""
        key = self.key_for(scope, cluster, user)
        value, _revision = self.get(key)
        if value is None:
            return None
        try:
            record = json.loads(value.decode("utf-8"))
        except ValueError:
            raise KubePkiError("etcd key %s does not hold a JSON certificate record" % key) from None
        if not isinstance(record, dict):
            raise KubePkiError("etcd key %s does not hold a JSON object" % key)
        return record

    def put_record(self, record, check_mode=False):
        """``(changed, key)`` after putting ``record`` under its key (see put_records)."""
        (changed, key, _action), = self.put_records([record], check_mode=check_mode)
        return changed, key

    def put_records(self, records, check_mode=False):
        """``[(changed, key, action)]`` after putting every record (settle with decide_record: one read per prefix,
        few transactions, a lost race re-read and decided again, never an older certificate over a newer one)."""
        items = [(self.key_for(r.get("scope"), r.get("cluster"), r.get("user")), _record.dumps(r)) for r in records]
        actions = self.settle(items, decide_record, check_mode=check_mode)
        return [(action in WRITES, key, action) for (key, _value), action in zip(items, actions)]

    def delete_record(self, scope, cluster, user, check_mode=False):
        """``(changed, key)`` after removing the record of (scope, cluster, user)."""
        key = self.key_for(scope, cluster, user)
        return self.delete_if_present(key, check_mode=check_mode), key

    def delete_records(self, names, check_mode=False):
        """``[(changed, key, action)]`` after removing the record of each ``(scope, cluster, user)`` of ``names``,
        in transactions of TXN_CHUNK keys (action ``deleted`` or ``unchanged``)."""
        keys = [self.key_for(scope, cluster, user) for scope, cluster, user in names]
        actions = self.settle([(key, None) for key in keys], decide_delete, check_mode=check_mode)
        return [(action in WRITES, key, action) for key, action in zip(keys, actions)]

    def list_records(self, scope=None, cluster=None, damaged=None):
        """``[(key, record)]`` under ``<prefix>/certs/[<scope>/[<cluster>/]]``; keys that are not a record's (identity_of)
        are skipped, and so are values that are not JSON objects: their keys go to ``damaged`` when it is given."""
        found = [(key, _as_record(value)) for key, value in self.list_prefix(self.records_prefix(scope, cluster)) if self.identity_of(key) is not None]
        if damaged is not None:
            damaged.extend(key for key, record in found if record is None)
        return [(key, record) for key, record in found if record is not None]


def _written_note(written):
    if not written:
        return "nothing was written"
    return "%d other key(s) of this batch were written before (%s%s)" % (
        len(written), ", ".join(written[:3]), ", ..." if len(written) > 3 else "")


def _short(exc):
    """A one-line description of a connection or API error."""
    text = " ".join(str(exc).split())
    if etcd3gw.loaded and isinstance(exc, etcd3gw.errors.Etcd3Exception):
        text = " ".join(str(getattr(exc, "detail_text", "") or exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
