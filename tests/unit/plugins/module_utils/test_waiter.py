"""Unit tests for plugins/module_utils/_waiter.py with a scripted API (list + watch streams)."""

import json

import pytest
import urllib3

from ansible_collections.kubepki.certs.plugins.module_utils import _waiter
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, WaitTimeout


def csr(name, state="pending", rv="1"):
    conditions = []
    status = {}
    if state in ("approved", "issued"):
        conditions.append({"type": "Approved", "status": "True"})
    if state == "denied":
        conditions.append({"type": "Denied", "status": "True", "reason": "No", "message": "not you"})
    if state == "failed":
        conditions += [{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True", "reason": "SignerValidationFailure"}]
    if state == "issued":
        status["certificate"] = "Y2VydA=="
    status["conditions"] = conditions
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": status}


class Stream:
    def __init__(self, events, drop=False):
        self.lines = [json.dumps(e).encode() + b"\n" for e in events]
        self.drop = drop
        self.closed = False

    def stream(self, _amt, decode_content=True):
        for line in self.lines:
            # split lines across chunks to exercise the buffering
            yield line[:5]
            yield line[5:]
        if self.drop:
            raise urllib3.exceptions.ProtocolError("connection reset")

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeAPI:
    """Answers list calls from ``lists`` and watch calls from ``watches`` (in order)."""

    def __init__(self, lists, watches, clock=None):
        self.lists = list(lists)
        self.watches = list(watches)
        self.calls = []
        self.clock = clock

    def request(self, method, path, query=None, stream=False, **_kw):
        self.calls.append(("watch" if stream else "list", dict(query or {})))
        if stream:
            answer = self.watches.pop(0)
        else:
            answer = self.lists.pop(0)
        if callable(answer):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return answer


def listing(items, rv="10"):
    return {"items": items, "metadata": {"resourceVersion": rv}}


def make(api, names, clock=None):
    clock = clock or Clock()
    return _waiter.Waiter(api, names, clock=clock, sleep=clock.sleep)


def test_already_issued_needs_no_watch():
    api = FakeAPI([listing([csr("a", "issued")])], [])
    objects = make(api, ["a"]).run(10)
    assert _waiter.state_of(objects["a"]) == "issued"
    assert [c[0] for c in api.calls] == ["list"]
    assert api.calls[0][1]["fieldSelector"] == "metadata.name=a"


def test_one_watch_for_a_batch_from_the_list_version():
    events = [{"type": "MODIFIED", "object": csr("a", "issued", "11")},
              {"type": "MODIFIED", "object": csr("other", "issued", "12")},
              {"type": "MODIFIED", "object": csr("b", "issued", "13")}]
    api = FakeAPI([listing([csr("a"), csr("b")], rv="10")], [Stream(events)])
    waiter = make(api, ["a", "b"])
    objects = waiter.run(10)
    assert all(_waiter.state_of(o) == "issued" for o in objects.values())
    kinds = [c[0] for c in api.calls]
    assert kinds == ["list", "watch"]
    assert api.calls[1][1]["resourceVersion"] == "10"
    assert "other" not in objects


def test_resume_after_drop_from_last_seen_version():
    api = FakeAPI([listing([csr("a"), csr("b")], rv="10")], [
        Stream([{"type": "MODIFIED", "object": csr("a", "issued", "15")}], drop=True),
        Stream([{"type": "MODIFIED", "object": csr("b", "issued", "16")}]),
    ])
    waiter = make(api, ["a", "b"])
    waiter.run(10)
    assert api.calls[2][0] == "watch" and api.calls[2][1]["resourceVersion"] == "15"
    assert waiter.stats["resumes"] == 1


def test_bookmarks_move_the_version():
    api = FakeAPI([listing([csr("a")], rv="10")], [
        Stream([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}]),
        Stream([{"type": "MODIFIED", "object": csr("a", "issued", "21")}]),
    ])
    make(api, ["a"]).run(10)
    assert api.calls[2][1]["resourceVersion"] == "20"


def test_410_error_event_relists():
    api = FakeAPI([listing([csr("a")], rv="10"), listing([csr("a", "approved", "30")], rv="30")], [
        Stream([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}]),
        Stream([{"type": "MODIFIED", "object": csr("a", "issued", "31")}]),
    ])
    waiter = make(api, ["a"])
    waiter.run(10)
    assert [c[0] for c in api.calls] == ["list", "watch", "list", "watch"]
    assert api.calls[3][1]["resourceVersion"] == "30"
    assert waiter.stats["relists"] == 1


def test_410_http_answer_relists():
    gone = KubePkiError("expired")
    gone.status = 410
    api = FakeAPI([listing([csr("a")], rv="10"), listing([csr("a", "issued", "40")], rv="40")], [gone])
    make(api, ["a"]).run(10)
    assert [c[0] for c in api.calls] == ["list", "watch", "list"]


@pytest.mark.parametrize("state", ["denied", "failed"])
def test_ends_at_once_on_denied_or_failed(state):
    api = FakeAPI([listing([csr("a"), csr("b")])], [Stream([{"type": "MODIFIED", "object": csr("a", state, "11")}])])
    objects = make(api, ["a", "b"]).run(10)
    assert _waiter.state_of(objects["a"]) == state
    assert _waiter.state_of(objects["b"]) == "pending"


def test_deleted_before_issue_ends_the_wait():
    api = FakeAPI([listing([csr("a")])], [Stream([{"type": "DELETED", "object": csr("a", "pending", "11")}])])
    objects = make(api, ["a"]).run(10)
    assert _waiter.state_of(objects["a"]) == _waiter.DELETED


def test_timeout_reports_last_state():
    clock = Clock()

    def slow_stream():
        clock.now += 6
        return Stream([{"type": "MODIFIED", "object": csr("a", "approved", "11")}])

    api = FakeAPI([listing([csr("a"), csr("b", "issued")])], [slow_stream, slow_stream])
    with pytest.raises(WaitTimeout) as info:
        make(api, ["a", "b"], clock).run(10)
    assert info.value.details["last_state"] == {"a": "approved", "b": "issued"}
    assert "a=approved" in info.value.msg


def test_polling_fallback_when_watch_is_refused():
    refused = KubePkiError("no watch")
    refused.status = 405
    api = FakeAPI([listing([csr("a")]), listing([csr("a", "approved")]), listing([csr("a", "issued")])], [refused])
    waiter = make(api, ["a"])
    waiter.run(30)
    assert waiter.stats["polls"] == 2


def test_transient_error_event_resumes():
    api = FakeAPI([listing([csr("a")], rv="10")], [
        Stream([{"type": "ERROR", "object": {"code": 500, "message": "boom", "reason": "InternalError"}}]),
        Stream([{"type": "MODIFIED", "object": csr("a", "issued", "12")}]),
    ])
    waiter = make(api, ["a"])
    waiter.run(10)
    assert waiter.stats["resumes"] == 1


def test_other_watch_errors_propagate():
    api = FakeAPI([listing([csr("a")])], [Stream([{"type": "ERROR", "object": {"code": 403, "message": "forbidden", "reason": "Forbidden"}}])])
    with pytest.raises(KubePkiError, match="forbidden"):
        make(api, ["a"]).run(10)


def test_many_dropped_streams_never_fall_back_to_polling():
    drops = [Stream([], drop=True) for _drop in range(10)]
    api = FakeAPI([listing([csr("a")], rv="10")], drops + [Stream([{"type": "MODIFIED", "object": csr("a", "issued", "11")}])])
    waiter = make(api, ["a"])
    waiter.run(60)
    assert waiter.stats["polls"] == 0 and waiter.stats["resumes"] == 10


def test_unreachable_watch_falls_back_to_polling():
    down = KubePkiError("cannot reach")
    api = FakeAPI([listing([csr("a")]), listing([csr("a", "issued")])], [down] * _waiter.MAX_WATCH_FAILURES)
    waiter = make(api, ["a"])
    waiter.run(60)
    assert waiter.stats["polls"] == 1
