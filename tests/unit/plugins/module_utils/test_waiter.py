"""Unit tests for plugins/module_utils/_csr/waiter.py with a scripted API (list + watch streams).

The API is a fake (FakeAPI) and time a fake clock: these tests pin exact request sequences and pacing (a
connection that never opens, a list answered 401, five lists then a watch again) that no real server can be
made to play in order. tests/functional/modules/test_wait_faults.py runs the same waiting against the sandbox.
"""

import json

import pytest
import urllib3

from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter
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
    """Answers list calls from ``lists`` and watch calls from ``watches`` (in order); once a script is used up,
    its ``*_after`` answer (if given) is repeated."""

    def __init__(self, lists, watches, clock=None, lists_after=None, watches_after=None):
        self.lists = list(lists)
        self.watches = list(watches)
        self.lists_after = lists_after
        self.watches_after = watches_after
        self.calls = []
        self.clock = clock

    def request(self, method, path, query=None, stream=False, **kw):
        self.calls.append(("watch" if stream else "list", dict(query or {})))
        self.kwargs = kw
        script, after = (self.watches, self.watches_after) if stream else (self.lists, self.lists_after)
        if script:
            answer = script.pop(0)
        elif after is not None:
            answer = after
        else:
            raise AssertionError("unexpected %s call" % ("watch" if stream else "list"))
        if callable(answer):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def kinds(self):
        return [call[0] for call in self.calls]


def api_error(status, text="boom"):
    """A KubePkiError as _kube.KubeClient.request raises it (status None: no HTTP answer)."""
    error = KubePkiError("%s (HTTP %s)" % (text, status) if status else "cannot reach the Kubernetes API: %s" % text)
    if status is not None:
        error.status = status
    return error


def listing(items, rv="10"):
    return {"items": items, "metadata": {"resourceVersion": rv}}


def make(api, names, clock=None, **kwargs):
    clock = clock or Clock()
    return _waiter.Waiter(api, names, clock=clock, sleep=clock.sleep, **kwargs)


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


def test_transient_error_event_counts_as_a_watch_failure():
    api = FakeAPI([listing([csr("a")], rv="10")], [
        Stream([{"type": "ERROR", "object": {"code": 500, "message": "boom", "reason": "InternalError"}}]),
        Stream([{"type": "MODIFIED", "object": csr("a", "issued", "12")}]),
    ])
    waiter = make(api, ["a"])
    waiter.run(10)
    assert waiter.stats["watch_failures"] == 1 and waiter.stats["fallback_lists"] == 0
    assert api.calls[2][1]["resourceVersion"] == "10"


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


# ---------------------------------------------------------------- watches failing: listing takes over


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, None])
def test_failing_watches_fall_back_to_an_immediate_list(status):
    clock = Clock()
    api = FakeAPI([listing([csr("a"), csr("b")]), listing([csr("a", "issued"), csr("b", "issued")])], [],
                  watches_after=api_error(status))
    waiter = make(api, ["a", "b"], clock)
    objects = waiter.run(300)
    assert all(_waiter.state_of(o) == "issued" for o in objects.values())
    assert api.kinds() == ["list"] + ["watch"] * _waiter.MAX_WATCH_FAILURES + ["list"]
    # only the short pauses between the failed watches: no poll interval, far from the timeout
    assert clock.now < 1.0
    assert waiter.stats["watch_failures"] == _waiter.MAX_WATCH_FAILURES
    assert waiter.stats["fallback_lists"] == 1 and waiter.stats["polls"] == 0
    # the client must not retry a watch on its own until the deadline: the waiter answers failures by listing
    assert api.kwargs.get("retry") is False


def test_listing_every_poll_interval_until_the_batch_is_done():
    clock = Clock()
    pending = listing([csr("a"), csr("b")])
    half = listing([csr("a", "issued"), csr("b", "approved")])
    done = listing([csr("a", "issued"), csr("b", "issued")])
    api = FakeAPI([pending, pending, half, done], [], watches_after=api_error(503))
    waiter = make(api, ["a", "b"], clock, poll_interval=2.0)
    waiter.run(300)
    assert api.kinds() == ["list", "watch", "watch", "watch", "list", "list", "list"]
    assert waiter.stats["fallback_lists"] == 3
    # 0.1 + 0.2 between the watches, then two poll intervals
    assert clock.now == pytest.approx(0.3 + 2 * 2.0)


def test_a_watch_is_tried_again_after_some_lists():
    clock = Clock()
    lists = [listing([csr("a")], rv="10")] + [listing([csr("a", "approved")], rv=str(20 + i)) for i in range(_waiter.REWATCH_AFTER)]
    watches = [api_error(503)] * _waiter.MAX_WATCH_FAILURES + [Stream([{"type": "MODIFIED", "object": csr("a", "issued", "40")}])]
    api = FakeAPI(lists, watches)
    waiter = make(api, ["a"], clock)
    objects = waiter.run(300)
    assert _waiter.state_of(objects["a"]) == "issued"
    assert waiter.stats["fallback_lists"] == _waiter.REWATCH_AFTER
    last_watch = api.calls[-1]
    assert last_watch[0] == "watch" and last_watch[1]["resourceVersion"] == str(20 + _waiter.REWATCH_AFTER - 1)


def test_a_watch_failing_again_goes_back_to_listing_at_once():
    clock = Clock()
    lists = [listing([csr("a")])] + [listing([csr("a", "approved")])] * _waiter.REWATCH_AFTER + [listing([csr("a", "issued")])]
    api = FakeAPI(lists, [], watches_after=api_error(502))
    waiter = make(api, ["a"], clock)
    waiter.run(300)
    kinds = api.kinds()
    # the list right after the one watch tried again
    assert kinds[-2:] == ["watch", "list"]
    assert waiter.stats["watch_failures"] == _waiter.MAX_WATCH_FAILURES + 1
    assert waiter.stats["fallback_lists"] == _waiter.REWATCH_AFTER + 1


def test_transient_error_events_repeated_fall_back_to_listing():
    error_event = {"type": "ERROR", "object": {"code": 503, "message": "unavailable", "reason": "ServiceUnavailable"}}
    api = FakeAPI([listing([csr("a")]), listing([csr("a", "issued")])], [], watches_after=lambda: Stream([error_event]))
    waiter = make(api, ["a"])
    waiter.run(60)
    assert waiter.stats["watch_failures"] == _waiter.MAX_WATCH_FAILURES and waiter.stats["fallback_lists"] == 1


def test_failing_lists_are_tried_again_until_one_answers():
    clock = Clock()
    lists = [listing([csr("a")]), api_error(503), api_error(502), api_error(None), api_error(500), listing([csr("a", "issued")])]
    api = FakeAPI(lists, [], watches_after=api_error(504))
    waiter = make(api, ["a"], clock)
    objects = waiter.run(300)
    assert _waiter.state_of(objects["a"]) == "issued"
    assert waiter.stats["list_failures"] == 4 and waiter.stats["fallback_lists"] == 5
    assert clock.now < 300


def test_watches_and_lists_failing_until_the_deadline_time_out_with_the_last_states():
    clock = Clock()
    api = FakeAPI([listing([csr("a"), csr("b", "issued")])], [], lists_after=api_error(503, "service unavailable"),
                  watches_after=api_error(503, "service unavailable"))
    waiter = make(api, ["a", "b"], clock)
    with pytest.raises(WaitTimeout) as info:
        waiter.run(20)
    assert clock.now == pytest.approx(20)
    error = info.value
    assert error.last_state == {"a": "pending", "b": "issued"} == error.details["last_state"]
    assert "a=pending" in error.msg and "service unavailable (HTTP 503)" in error.msg
    assert _waiter.state_of(error.objects["b"]) == "issued"
    assert error.stats["list_failures"] >= 5


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_list_refused_for_good_fails_at_once(status):
    clock = Clock()
    api = FakeAPI([listing([csr("a")]), api_error(status, "list CertificateSigningRequests failed: no")], [],
                  watches_after=api_error(503))
    with pytest.raises(KubePkiError) as info:
        make(api, ["a"], clock).run(300)
    assert not isinstance(info.value, WaitTimeout)
    assert "list CertificateSigningRequests failed" in info.value.msg and "HTTP %d" % status in info.value.msg
    assert clock.now < 1.0


def test_the_first_list_is_tried_again_on_transient_failures():
    api = FakeAPI([api_error(503), api_error(None), listing([csr("a", "issued")])], [])
    waiter = make(api, ["a"])
    objects = waiter.run(60)
    assert _waiter.state_of(objects["a"]) == "issued" and waiter.stats["list_failures"] == 2


def test_prime_failing_until_its_deadline_says_so():
    clock = Clock()
    api = FakeAPI([], [], lists_after=api_error(503, "list CertificateSigningRequests failed: unavailable"))
    with pytest.raises(KubePkiError) as info:
        make(api, ["a"], clock).prime(deadline=5)
    assert "HTTP 503" in info.value.msg and "until the deadline" in info.value.msg
    assert getattr(info.value, "status", None) == 503
    assert clock.now <= 5


def test_prime_refused_fails_at_once():
    api = FakeAPI([api_error(403, "list CertificateSigningRequests failed: forbidden")], [])
    with pytest.raises(KubePkiError, match="HTTP 403"):
        make(api, ["a"]).prime()
    assert api.kinds() == ["list"]


# ---------------------------------------------------------------- waiting for the whole batch


def test_stop_on_failure_false_waits_past_a_denied_csr():
    events = [{"type": "MODIFIED", "object": csr("b", "denied", "11")},
              {"type": "MODIFIED", "object": csr("a", "issued", "12")},
              {"type": "MODIFIED", "object": csr("c", "failed", "13")}]
    api = FakeAPI([listing([csr("a"), csr("b"), csr("c")])], [Stream(events[:1]), Stream(events[1:])])
    objects = make(api, ["a", "b", "c"], stop_on_failure=False).run(60)
    assert {n: _waiter.state_of(o) for n, o in objects.items()} == {"a": "issued", "b": "denied", "c": "failed"}


def test_stop_on_failure_false_counts_a_deleted_csr_as_ended():
    events = [{"type": "DELETED", "object": csr("b", "pending", "11")}, {"type": "MODIFIED", "object": csr("a", "issued", "12")}]
    api = FakeAPI([listing([csr("a"), csr("b")])], [Stream(events)])
    objects = make(api, ["a", "b"], stop_on_failure=False).run(60)
    assert _waiter.state_of(objects["b"]) == _waiter.DELETED and _waiter.state_of(objects["a"]) == "issued"


def test_stop_on_failure_false_while_listing():
    lists = [listing([csr("a"), csr("b")]), listing([csr("a"), csr("b", "denied")]), listing([csr("a", "issued"), csr("b", "denied")])]
    api = FakeAPI(lists, [], watches_after=api_error(503))
    waiter = make(api, ["a", "b"], stop_on_failure=False)
    objects = waiter.run(60)
    assert _waiter.state_of(objects["a"]) == "issued" and waiter.stats["fallback_lists"] == 2


def test_stop_on_failure_false_timeout_carries_every_object_seen():
    clock = Clock()

    def slow_stream():
        clock.now += 6
        return Stream([])

    api = FakeAPI([listing([csr("a", "issued"), csr("b", "denied"), csr("c", "approved")])], [], watches_after=slow_stream)
    with pytest.raises(WaitTimeout) as info:
        make(api, ["a", "b", "c", "d"], clock, stop_on_failure=False).run(10)
    error = info.value
    assert error.last_state == {"a": "issued", "b": "denied", "c": "approved", "d": "not found"}
    assert sorted(error.objects) == ["a", "b", "c"]
    assert _waiter.state_of(error.objects["a"]) == "issued"
    assert "waiting for CertificateSigningRequests c, d" in error.msg
    assert "c=approved, d=not found" in error.msg and "ended before: a=issued, b=denied" in error.msg


@pytest.mark.parametrize("states, stop, done", [
    (["issued", "pending"], True, False),
    (["denied", "pending"], True, True),
    (["denied", "pending"], False, False),
    (["denied", "issued", "failed"], False, True),
    (["issued", None], False, False),
    (["issued", "approved"], False, False),
])
def test_finished(states, stop, done):
    objects = {"n%d" % i: csr("n%d" % i, state) for i, state in enumerate(states) if state}
    assert _waiter.finished(objects, ["n%d" % i for i in range(len(states))], stop_on_failure=stop) is done


def test_watches_that_end_at_once_until_the_deadline_time_out_without_spinning():
    """A server that ends every watch at once, without an event: the waiter pauses between watches, also in the
    last moments before the deadline (where it used to try again at once, without end), and times out."""
    api = FakeAPI([listing([csr("a")])], [], watches_after=Stream([]))
    with pytest.raises(WaitTimeout):
        make(api, ["a"]).run(10)
    assert api.kinds().count("watch") < 30


def test_lists_failing_for_hours_are_tried_until_the_deadline_and_reported():
    """A long wait whose first list fails (503) throughout: thousands of attempts, each pause at most poll_interval,
    then the failure; the doubling of the pause never overflows."""
    api = FakeAPI([], [], lists_after=api_error(503))
    with pytest.raises(KubePkiError, match="tried .* times until the deadline"):
        make(api, ["a"], poll_interval=2.0).run(4000)
    assert api.kinds().count("list") > 1024
