"""Watch semantics: resourceVersion handling, 410 ERROR events, bookmarks, selectors, dropped streams."""

import json
import threading
import time

import pytest
import urllib3
from kubernetes import client, watch

from sandbox_helpers import CSR_BASE, csr_body, csr_pem, unique


def stream_events(admin, query, stop_after=None, timeout=10):
    """Raw watch events (parsed lines) of a CSR watch."""
    url = admin.configuration.host + CSR_BASE + "?" + "&".join("%s=%s" % kv for kv in query.items())
    resp = admin.rest_client.pool_manager.request("GET", url, preload_content=False, timeout=timeout,
                                                  headers={"Accept": "application/json"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    events = []
    buf = b""
    try:
        for chunk in resp.stream(1024):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                events.append(json.loads(line))
                if stop_after and len(events) >= stop_after:
                    return events
    finally:
        resp.release_conn()
    return events


def test_watch_from_now_and_from_version(raw, admin, certs):
    label = unique("w")
    first = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(first, csr_pem("a"), labels={"w": label}))
    rv = obj["metadata"]["resourceVersion"]
    second = unique()
    raw.call("POST", CSR_BASE, csr_body(second, csr_pem("a"), labels={"w": label}))
    events = stream_events(admin, {"watch": "1", "labelSelector": "w=" + label, "timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == sorted(
        [("ADDED", first), ("ADDED", second)], key=lambda e: e[1])
    events = stream_events(admin, {"watch": "1", "labelSelector": "w=" + label, "timeoutSeconds": "1",
                                   "resourceVersion": rv})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", second)]
    certs.delete_certificate_signing_request(second)
    events = stream_events(admin, {"watch": "1", "labelSelector": "w=" + label, "timeoutSeconds": "1",
                                   "resourceVersion": rv})
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(events[0]["object"]["metadata"][
        "resourceVersion"])


def test_watch_selector_transitions(raw, admin):
    label = unique("t")
    name = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), labels={"t": label}))
    rv = obj["metadata"]["resourceVersion"]

    def later():
        time.sleep(0.3)
        raw.call("PATCH", CSR_BASE + "/" + name, {"metadata": {"labels": {"t": "gone"}}},
                 content_type="application/merge-patch+json")
    threading.Thread(target=later).start()
    events = stream_events(admin, {"watch": "true", "labelSelector": "t=" + label, "resourceVersion": rv,
                                   "timeoutSeconds": "3"}, stop_after=1)
    assert events[0]["type"] == "DELETED"
    assert events[0]["object"]["metadata"]["labels"] == {"t": "gone"}


def test_too_old_resource_version_gives_410_event(sandbox, c1, raw, admin):
    sandbox.set_options(c1.name, watch_history=5)
    try:
        _s, obj = raw.call("POST", CSR_BASE, csr_body(unique(), csr_pem("a")))
        old = int(obj["metadata"]["resourceVersion"])
        for _i in range(8):
            raw.call("POST", CSR_BASE, csr_body(unique(), csr_pem("a")))
        events = stream_events(admin, {"watch": "1", "resourceVersion": str(old), "timeoutSeconds": "5"})
    finally:
        sandbox.set_options(c1.name, watch_history=2000)
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure", "Expired",
                                                                                    410)
    assert status["message"].startswith("too old resource version: %d (" % old)


def test_python_watch_410_handling(sandbox, c1, certs):
    # with timeout_seconds the client does not retry: the first 410 ERROR event raises
    sandbox.expire_next_watch(c1.name, count=1)
    with pytest.raises(client.ApiException) as info:
        for _event in watch.Watch().stream(certs.list_certificate_signing_request, resource_version="1",
                                           timeout_seconds=5):
            pass
    assert info.value.status == 410
    assert info.value.reason.startswith("Expired: too old resource version")
    # without it the client retries once from the same version, then raises
    sandbox.expire_next_watch(c1.name, count=2)
    with pytest.raises(client.ApiException) as info:
        for _event in watch.Watch().stream(certs.list_certificate_signing_request, resource_version="1"):
            pass
    assert info.value.status == 410
    # both expirations were consumed: the next watch works
    rv = certs.list_certificate_signing_request().metadata.resource_version
    assert list(watch.Watch().stream(certs.list_certificate_signing_request, resource_version=rv,
                                     timeout_seconds=1)) == []


def test_python_watch_sees_issuance(raw, certs):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("w")))
    seen = []
    stream = watch.Watch()
    for event in stream.stream(certs.list_certificate_signing_request, field_selector="metadata.name=" + name,
                               timeout_seconds=10):
        obj = event["object"]
        seen.append(event["type"])
        if event["type"] == "ADDED":
            obj.status.conditions = [client.V1CertificateSigningRequestCondition(
                type="Approved", status="True", reason="R", message="m")]
            certs.replace_certificate_signing_request_approval(name, obj)
        if obj.status.certificate:
            stream.stop()
    assert seen[0] == "ADDED" and seen[-1] == "MODIFIED"


def test_bookmarks(admin):
    events = stream_events(admin, {"watch": "1", "allowWatchBookmarks": "true", "sendInitialEvents": "true",
                                   "resourceVersionMatch": "NotOlderThan", "fieldSelector": "metadata.name=none",
                                   "timeoutSeconds": "1"})
    assert events[0]["type"] == "BOOKMARK"
    obj = events[0]["object"]
    assert obj["kind"] == "CertificateSigningRequest"
    assert obj["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert obj["metadata"]["resourceVersion"].isdigit()


def test_drop_watches_closes_streams(sandbox, c1, admin):
    url = admin.configuration.host + CSR_BASE + "?watch=1&timeoutSeconds=30&fieldSelector=metadata.name=none"
    resp = admin.rest_client.pool_manager.request("GET", url, preload_content=False, timeout=10)
    assert resp.status == 200
    time.sleep(0.2)
    start = time.monotonic()
    assert sandbox.drop_watches(c1.name) >= 1
    with pytest.raises((urllib3.exceptions.ProtocolError, urllib3.exceptions.HTTPError)):
        for _chunk in resp.stream(1024):
            pass
    assert time.monotonic() - start < 5
