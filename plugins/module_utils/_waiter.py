# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Watch-first waiting for a batch of CSRs, in one watch.

List (by name or label selector), then watch from the list's resourceVersion. A dropped stream is resumed
from the last resourceVersion seen; a 410 Expired (as an ERROR event or an HTTP answer) relists. Waiting ends
at once when every CSR is issued or when any is Denied or Failed (or deleted before being issued), and is
bounded by a ``time.monotonic()`` deadline. Polling is only the last resort, for a server that will not watch.
"""

from __future__ import annotations

import json
import time

from ansible_collections.kubepki.certs.plugins.module_utils import _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, WaitTimeout
from ansible_collections.kubepki.certs.plugins.module_utils._kube import path_for, status_of

try:
    import urllib3
    _STREAM_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)
except ImportError:  # pragma: no cover - reported by _deps.require()
    _STREAM_ERRORS = (OSError, ValueError)

DELETED = "deleted"
MAX_WATCH_FAILURES = 6


def state_of(entry):
    """The state of a tracked entry: None (never seen), 'deleted' (gone before issue) or a csr_state()."""
    if entry is None:
        return None
    if entry.get("_deleted") and _csr.csr_state(entry) != "issued":
        return DELETED
    return _csr.csr_state(entry)


def finished(objects, names):
    """The one 'done' predicate: every CSR issued, or one of them denied, failed or deleted."""
    states = [state_of(objects.get(name)) for name in names]
    if any(s in ("denied", "failed", DELETED) for s in states):
        return True
    return all(s == "issued" for s in states)


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
    """Wait for ``names`` on ``client``; ``run(timeout)`` returns {name: last object}."""

    def __init__(self, client, names, label_selector=None, clock=time.monotonic, sleep=time.sleep, poll_interval=2.0):
        self.client = client
        self.names = list(dict.fromkeys(names))
        self.wanted = set(self.names)
        self.label_selector = label_selector
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.objects = {}
        self.version = None
        self.stats = {"lists": 0, "watches": 0, "resumes": 0, "relists": 0, "events": 0, "polls": 0}

    def _selectors(self):
        query = {}
        if len(self.names) == 1:
            query["fieldSelector"] = "metadata.name=%s" % self.names[0]
        elif self.label_selector:
            query["labelSelector"] = self.label_selector
        return query

    def _list(self, remaining):
        self.stats["lists"] += 1
        query = self._selectors()
        items, version = [], None
        cont = None
        while True:
            page = dict(query, limit=500)
            if cont:
                page["continue"] = cont
            answer = self.client.request("GET", path_for(), query=page, what="list CertificateSigningRequests", deadline=remaining)
            items.extend(answer.get("items") or [])
            meta = answer.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            cont = meta.get("continue")
            if not cont:
                break
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

    def _apply(self, event):
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                return "relist"
            if code in (429, 500, 503, 504):
                return "resume"
            raise KubePkiError("watching CertificateSigningRequests failed: %s (code %s, %s)" % (
                obj.get("message"), code, obj.get("reason")), status=code)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.version = version
        if kind == "BOOKMARK":
            return None
        self.stats["events"] += 1
        name = (obj.get("metadata") or {}).get("name")
        if name in self.wanted:
            if kind == "DELETED":
                self.objects[name] = dict(obj, _deleted=True)
            else:
                self.objects[name] = obj
        return None

    def _watch_once(self, end):
        """One watch request: 'relist', 'done', 'resume' (an open stream ended or dropped), 'retry' (no stream could
        be opened) or 'unsupported'."""
        remaining = end - self.clock()
        query = dict(self._selectors(), watch="true", allowWatchBookmarks="true", timeoutSeconds=str(max(int(remaining), 1)))
        if self.version:
            query["resourceVersion"] = self.version
        self.stats["watches"] += 1
        try:
            response = self.client.request("GET", path_for(), query=query, stream=True, timeout=(10, remaining + 5),
                                           deadline=remaining, what="watch CertificateSigningRequests")
        except KubePkiError as exc:
            status = status_of(exc)
            if status == 410:
                return "relist"
            if status in (400, 405, 501):
                return "unsupported"
            if status is None:
                return "retry"
            raise
        try:
            for event in iter_events(response):
                outcome = self._apply(event)
                if outcome in ("relist", "resume"):
                    return outcome
                if finished(self.objects, self.names):
                    return "done"
                if self.clock() >= end:
                    return "resume"
        except _STREAM_ERRORS:
            return "resume"
        finally:
            _close(response)
        return "resume"

    def prime(self, deadline=30):
        """The first list, done ahead of ``run(listed=True)`` so a caller can look at what exists."""
        self._list(deadline)
        return dict(self.objects)

    def drop(self, name):
        """Stop waiting for ``name`` (resolved some other way)."""
        self.names = [n for n in self.names if n != name]
        self.wanted.discard(name)
        self.objects.pop(name, None)

    def run(self, timeout, listed=False):
        end = self.clock() + max(float(timeout), 0.0)
        if not listed:
            self._list(end - self.clock())
        failures = empty = 0
        while not finished(self.objects, self.names):
            if self.clock() >= end:
                self._timeout(timeout)
            seen = self.stats["events"]
            outcome = self._watch_once(end)
            if outcome == "done":
                break
            if outcome == "relist":
                self.stats["relists"] += 1
                failures = 0
                self._list(max(end - self.clock(), 1))
            elif outcome == "unsupported":
                self._poll(end, timeout)
                break
            elif outcome == "resume":
                # the server or the network ended an open stream: carry on from the last version seen
                self.stats["resumes"] += 1
                failures = 0
                empty = empty + 1 if self.stats["events"] == seen else 0
                if empty:
                    # a stream that ends without a single event: do not spin
                    pause = min(0.05 * (2 ** empty), 1.0)
                    if self.clock() + pause < end:
                        self.sleep(pause)
            else:
                self.stats["resumes"] += 1
                failures += 1
                if failures >= MAX_WATCH_FAILURES:
                    self._poll(end, timeout)
                    break
                pause = min(0.05 * (2 ** failures), 1.0)
                if self.clock() + pause < end:
                    self.sleep(pause)
        return self.objects

    def _poll(self, end, timeout):
        """The final fallback: list every ``poll_interval`` seconds until done or out of time."""
        while not finished(self.objects, self.names):
            if self.clock() >= end:
                self._timeout(timeout)
            self.stats["polls"] += 1
            self.sleep(min(self.poll_interval, max(end - self.clock(), 0)))
            self._list(max(end - self.clock(), 1))

    def _timeout(self, timeout):
        last = {name: state_of(self.objects.get(name)) or "not found" for name in self.names}
        waiting = sorted(name for name, state in last.items() if state != "issued")
        raise WaitTimeout("timed out after %ss waiting for CertificateSigningRequest%s %s; last state seen: %s" % (
            timeout, "s" if len(waiting) > 1 else "", ", ".join(waiting), ", ".join("%s=%s" % (n, last[n]) for n in waiting)),
            last_state=last)


def _close(response):
    for method in ("close", "release_conn"):
        try:
            getattr(response, method)()
        except Exception:  # pylint: disable=broad-exception-caught
            pass


def wait_for(client, names, timeout, label_selector=None, **kwargs):
    """{name: last object} once every CSR in ``names`` is issued or one ended (Denied/Failed/deleted)."""
    return Waiter(client, names, label_selector=label_selector, **kwargs).run(timeout)
