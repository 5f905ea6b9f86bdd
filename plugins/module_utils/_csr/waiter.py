# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Watch-first waiting for a batch of CSRs, in one watch.

List (by name or label selector), then watch from the list's resourceVersion. A dropped stream is resumed
from the last resourceVersion seen; a 410 Expired (as an ERROR event or an HTTP answer) relists. By default
waiting ends at once when every CSR is issued or when any is Denied or Failed (or deleted before being
issued); with ``stop_on_failure=False`` it goes on until every CSR is in a final state. It is bounded by a
``time.monotonic()`` deadline.

Watches that keep failing (429/5xx answers, 5xx ERROR events, a connection that cannot be opened) do not end
the wait: after MAX_WATCH_FAILURES in a row the waiter lists at once, then every ``poll_interval`` seconds,
and tries one watch again after every REWATCH_AFTER lists. Lists that fail the same transient ways are tried
again until the deadline; any other list answer (401, 403, 404, ...) ends the wait at once. A server that
refuses to watch (400/405/501) is polled until the end.
"""

from __future__ import annotations

import json
import time

from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, WaitTimeout
from ansible_collections.kubepki.certs.plugins.module_utils._kube.client import backoff, path_for, status_of

try:
    import urllib3
    _STREAM_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)
except ImportError:  # pragma: no cover - reported by _deps.require()
    _STREAM_ERRORS = (OSError, ValueError)

DELETED = "deleted"
FAILURE_STATES = ("denied", "failed", DELETED)
FINAL_STATES = ("issued",) + FAILURE_STATES
# answers worth asking again (None: no HTTP answer at all, the connection failed)
TRANSIENT_STATUSES = (None, 429, 500, 502, 503, 504)
# consecutive failed watches before listing takes over
MAX_WATCH_FAILURES = 3
# while listing because watches failed: one watch is tried again after this many lists
REWATCH_AFTER = 5


def state_of(entry):
    """The state of a tracked entry: None (never seen), 'deleted' (gone before issue) or a csr_state()."""
    if entry is None:
        return None
    if entry.get("_deleted") and _csr.csr_state(entry) != "issued":
        return DELETED
    return _csr.csr_state(entry)


def finished(objects, names, stop_on_failure=True):
    """The one 'done' predicate.

    ``stop_on_failure``: every CSR issued, or one of them denied, failed or deleted. Without it: every CSR in a
    final state (issued, denied, failed or deleted).
    """
    states = [state_of(objects.get(name)) for name in names]
    if not stop_on_failure:
        return all(s in FINAL_STATES for s in states)
    if any(s in FAILURE_STATES for s in states):
        return True
    return all(s == "issued" for s in states)


def watch_error(obj):
    """The KubePkiError of a watch's ERROR event (its object a Status)."""
    return KubePkiError("watching CertificateSigningRequests failed: %s (code %s, %s)" % (obj.get("message"), obj.get("code"), obj.get("reason")),
                        status=obj.get("code"))


def open_watch(client, query, seconds, connect_timeout=10):
    """The streaming response of one watch of ``query`` that the server ends after ``seconds``; no retries in the
    client: a failed watch is answered by the caller."""
    query = dict(query, watch="true", allowWatchBookmarks="true", timeoutSeconds=str(max(int(seconds), 1)))
    return client.request("GET", path_for(), query=query, stream=True, timeout=(connect_timeout, seconds + 5), deadline=seconds,
                          what="watch CertificateSigningRequests", retry=False)


def iter_events(response):
    """Watch events (dicts) from an open streaming HTTP response, one JSON object per line."""
    buffer = b""
    for chunk in response.stream(8192, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


class Waiter:
    """Wait for ``names`` on ``client``; ``run(timeout)`` returns {name: last object}.

    ``stop_on_failure`` (default True) ends the wait as soon as one CSR is denied, failed or deleted; False
    waits until every CSR is in a final state. On timeout, WaitTimeout carries ``objects`` ({name: last object
    seen}, names never seen left out), ``last_state`` ({name: state or 'not found'}) and ``stats``.
    """

    def __init__(self, client, names, label_selector=None, clock=time.monotonic, sleep=time.sleep, poll_interval=2.0,
                 stop_on_failure=True):
        self.client = client
        self.names = list(dict.fromkeys(names))
        self.wanted = set(self.names)
        self.label_selector = label_selector
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.stop_on_failure = stop_on_failure
        self.objects = {}
        self.version = None
        self.last_error = None
        self.stats = {"lists": 0, "watches": 0, "resumes": 0, "relists": 0, "events": 0, "polls": 0,
                      "watch_failures": 0, "fallback_lists": 0, "list_failures": 0}

    def done(self):
        return finished(self.objects, self.names, self.stop_on_failure)

    def _selectors(self):
        query = {}
        if len(self.names) == 1:
            query["fieldSelector"] = "metadata.name=%s" % self.names[0]
        elif self.label_selector:
            query["labelSelector"] = self.label_selector
        return query

    # -------------------------------------------------------------- listing

    def _list(self, remaining):
        """One list (all its pages), without retries: a failure raises KubePkiError."""
        self.stats["lists"] += 1
        query = self._selectors()
        items, version = _csr.list_objects(self.client, query.get("labelSelector"), query.get("fieldSelector"), deadline=remaining, retry=False)
        present = set()
        for item in items:
            name = (item.get("metadata") or {}).get("name")
            if name in self.wanted:
                self.objects[name] = item
                present.add(name)
        for name in self.wanted - present:
            if name in self.objects:
                # vanished while we were not watching
                self.objects[name] = dict(self.objects[name], _deleted=True)
        self.version = version

    def _try_list(self, end):
        """One list: True when it answered, False after a transient failure (counted); other errors raise."""
        try:
            self._list(max(end - self.clock(), 1))
        except KubePkiError as exc:
            if status_of(exc) not in TRANSIENT_STATUSES:
                raise
            self.stats["list_failures"] += 1
            self.last_error = exc
            return False
        return True

    def _list_until(self, end):
        """The first list: transient failures are tried again (backing off up to ``poll_interval``) until ``end``."""
        attempt = 0
        while not self._try_list(end):
            attempt += 1
            pause = backoff(attempt - 1, 0.1, self.poll_interval)
            if self.clock() + pause >= end:
                exc = self.last_error
                error = KubePkiError("%s; tried %d times until the deadline" % (exc.msg, attempt), **exc.details)
                error.status = status_of(exc)
                raise error from exc
            self.sleep(pause)

    def prime(self, deadline=30):
        """The first list, done ahead of ``run(listed=True)`` so a caller can look at what exists."""
        self._list_until(self.clock() + max(float(deadline), 1.0))
        return dict(self.objects)

    def drop(self, name):
        """Stop waiting for ``name`` (resolved some other way)."""
        self.names = [n for n in self.names if n != name]
        self.wanted.discard(name)
        self.objects.pop(name, None)

    # -------------------------------------------------------------- watching

    def _apply(self, event):
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                return "relist"
            if obj.get("code") is None or obj.get("code") not in TRANSIENT_STATUSES:
                raise watch_error(obj)
            self.last_error = watch_error(obj)
            return "failed"
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.version = version
        if kind == "BOOKMARK":
            return None
        self.stats["events"] += 1
        name = (obj.get("metadata") or {}).get("name")
        if name in self.wanted:
            self.objects[name] = dict(obj, _deleted=True) if kind == "DELETED" else obj
        return None

    def _watch_once(self, end, connect_timeout=10):
        """One watch request: 'relist', 'done', 'resume' (an open stream ended or dropped), 'failed' (no stream
        could be opened, or the server sent a transient ERROR event) or 'unsupported'."""
        query = self._selectors()
        if self.version:
            query["resourceVersion"] = self.version
        self.stats["watches"] += 1
        try:
            response = open_watch(self.client, query, end - self.clock(), connect_timeout)
        except KubePkiError as exc:
            status = status_of(exc)
            if status == 410:
                return "relist"
            if status in (400, 405, 501):
                return "unsupported"
            if status in TRANSIENT_STATUSES:
                self.last_error = exc
                return "failed"
            raise
        try:
            for event in iter_events(response):
                outcome = self._apply(event)
                if outcome in ("relist", "failed"):
                    return outcome
                if self.done():
                    return "done"
                if self.clock() >= end:
                    return "resume"
        except _STREAM_ERRORS:
            return "resume"
        finally:
            _close(response)
        return "resume"

    # -------------------------------------------------------------- the wait

    def run(self, timeout, listed=False):
        end = self.clock() + max(float(timeout), 0.0)
        if not listed:
            self._list_until(end)
        failures = empty = 0
        rewatching = False
        while not self.done():
            if self.clock() >= end:
                self._timeout(timeout)
            seen = self.stats["events"]
            # a watch tried again while listing must not hold up the next list for long
            outcome = self._watch_once(end, connect_timeout=min(max(self.poll_interval, 1), 10) if rewatching else 10)
            if outcome == "done":
                break
            if outcome == "failed":
                self.stats["watch_failures"] += 1
                failures += 1
                if failures >= MAX_WATCH_FAILURES:
                    if self._listing(end, timeout, "fallback_lists", rewatch=True):
                        break
                    # REWATCH_AFTER lists done: one watch more; if it fails too, back to listing at once
                    failures, rewatching = MAX_WATCH_FAILURES - 1, True
                    continue
                pause = backoff(failures - 1, 0.1, 1.0)
                if self.clock() + pause < end:
                    self.sleep(pause)
                continue
            failures, rewatching = 0, False
            if outcome == "relist":
                self.stats["relists"] += 1
                if not self._try_list(end) and self._listing(end, timeout, "fallback_lists", rewatch=True):
                    # the list failed too: keep listing for a while before the next watch
                    break
            elif outcome == "unsupported":
                self._listing(end, timeout, "polls")
                break
            else:
                # the server or the network ended an open stream: carry on from the last version seen
                self.stats["resumes"] += 1
                empty = empty + 1 if self.stats["events"] == seen else 0
                if empty:
                    # a stream that ends without a single event: do not spin, not even in the last moments
                    self.sleep(min(backoff(empty, 0.05, 1.0), max(end - self.clock(), 0)))
        return self.objects

    def _listing(self, end, timeout, counter, rewatch=False):
        """List at once, then every ``poll_interval`` seconds: True when done; False (only with ``rewatch``) after
        REWATCH_AFTER lists, for the caller to try a watch again. Raises WaitTimeout at ``end``."""
        lists = 0
        while True:
            if self.clock() >= end:
                self._timeout(timeout)
            self.stats[counter] += 1
            lists += 1
            if self._try_list(end) and self.done():
                return True
            if rewatch and lists >= REWATCH_AFTER:
                return False
            pause = min(self.poll_interval, max(end - self.clock(), 0))
            if pause <= 0:
                self._timeout(timeout)
            self.sleep(pause)

    def _timeout(self, timeout):
        last = {name: state_of(self.objects.get(name)) or "not found" for name in self.names}
        if self.stop_on_failure:
            waiting = [name for name in self.names if last[name] != "issued"]
            ended = []
        else:
            waiting = [name for name in self.names if last[name] not in FINAL_STATES]
            ended = [name for name in self.names if last[name] in FINAL_STATES]
        text = "timed out after %ss waiting for CertificateSigningRequest%s %s; last state seen: %s" % (
            timeout, "s" if len(waiting) > 1 else "", ", ".join(sorted(waiting)), ", ".join("%s=%s" % (n, last[n]) for n in sorted(waiting)))
        if ended:
            text += "; ended before: %s" % ", ".join("%s=%s" % (n, last[n]) for n in sorted(ended))
        if self.last_error is not None and (self.stats["watch_failures"] or self.stats["list_failures"]):
            text += " (%d watch and %d list attempts failed, the last: %s)" % (
                self.stats["watch_failures"], self.stats["list_failures"], self.last_error.msg)
        error = WaitTimeout(text, last_state=last)
        error.last_state = last
        error.objects = {name: obj for name, obj in self.objects.items() if name in self.wanted}
        error.stats = dict(self.stats)
        raise error


def _close(response):
    for method in ("close", "release_conn"):
        try:
            getattr(response, method)()
        except Exception:  # pylint: disable=broad-exception-caught
            pass


# -------------------------------------------------------------- following every CSR, without end

def follow(client, stop, label_selector=None, watch_seconds=300, sleep=time.sleep, on_error=lambda error: None):
    """Every change of the CertificateSigningRequests of ``client`` (optionally under ``label_selector``), until
    ``stop()`` is true: a generator of ``(kind, object)``.

    It lists, yields ``("ADDED", obj)`` for each CSR found then ``("SYNCED", None)`` once after the first list, and
    watches from the list's resourceVersion (``ADDED``, ``MODIFIED``, ``DELETED``). A stream that ends or drops
    is resumed from the last resourceVersion seen (bookmarks included); a 410 Expired relists and yields only the
    differences from what it had (``MODIFIED`` for a changed resourceVersion, ``DELETED`` for a CSR gone), then
    ``("RELISTED", None)``. Every failure, transient or not (an apiserver that restarts refuses connections for a
    while, then may answer 503 or 401 until its caches are warm), is reported to ``on_error(error)`` and tried again
    after a pause (backoff(): 0.2 s, doubled at each failure in a row, at most 5 s); it never ends on its own.
    """
    known = {}  # name -> resourceVersion of the last object yielded
    version = None
    synced = False
    failures = 0

    def pause():
        nonlocal failures
        failures += 1
        sleep(backoff(failures - 1, 0.2, 5.0))

    while not stop():
        if version is None:
            try:
                items, version = _csr.list_objects(client, label_selector=label_selector)
            except KubePkiError as exc:
                on_error(exc)
                pause()
                continue
            present = {}
            for item in items:
                meta = item.get("metadata") or {}
                present[meta.get("name")] = meta.get("resourceVersion")
                if known.get(meta.get("name")) != meta.get("resourceVersion"):
                    yield ("MODIFIED" if meta.get("name") in known else "ADDED"), item
            for name in sorted(set(known) - set(present)):
                yield "DELETED", {"metadata": {"name": name, "resourceVersion": known[name]}, "_vanished": True}
            known = present
            yield ("RELISTED" if synced else "SYNCED"), None
            synced = True
        query = {"resourceVersion": version, "labelSelector": label_selector} if label_selector else {"resourceVersion": version}
        try:
            response = open_watch(client, query, watch_seconds)
        except KubePkiError as exc:
            if status_of(exc) == 410:
                version = None
                continue
            on_error(exc)
            pause()
            continue
        relist = got = False
        try:
            for event in iter_events(response):
                got = True
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        relist = True
                    else:
                        on_error(watch_error(obj))
                    break
                meta = obj.get("metadata") or {}
                if meta.get("resourceVersion"):
                    version = meta["resourceVersion"]
                failures = 0
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    known.pop(meta.get("name"), None)
                else:
                    known[meta.get("name")] = meta.get("resourceVersion")
                yield kind, obj
                if stop():
                    return
        except _STREAM_ERRORS as exc:
            on_error(KubePkiError("the watch of CertificateSigningRequests dropped: %s" % exc))
            pause()
        finally:
            _close(response)
        if relist:
            version = None
        elif not got:
            # a stream that ended without a single event (a server going down closes them at once): do not spin
            sleep(0.2)
