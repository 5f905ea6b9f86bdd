"""Unit tests for plugins/module_utils/_kube/client.py: option resolution, precedence, retries, errors."""

import datetime
import json
import os
import threading
import time

import pytest
import urllib3

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._kube import transport as _kube_transport
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


def params(**values):
    base = {name: None for name in _kube.AUTH_ARG_SPEC}
    base.update(values)
    return base


def test_argspec_names_and_aliases_match_kubernetes_core():
    spec = _kube.AUTH_ARG_SPEC
    assert set(spec) == {"kubeconfig", "context", "host", "api_key", "validate_certs", "ca_cert", "client_cert", "client_key", "proxy"}
    assert spec["validate_certs"]["aliases"] == ["verify_ssl"]
    assert spec["ca_cert"]["aliases"] == ["ssl_ca_cert"]
    assert spec["client_cert"]["aliases"] == ["cert_file"]
    assert spec["client_key"]["aliases"] == ["key_file"]
    assert spec["api_key"]["no_log"] is True
    assert spec["kubeconfig"]["type"] == "raw"


def test_env_applies_late_and_explicit_wins():
    env = {"K8S_AUTH_HOST": "https://env:6443", "K8S_AUTH_API_KEY": "envtoken", "K8S_AUTH_CONTEXT": "envctx"}
    auth = _kube.resolve_auth(params(host="https://explicit:6443/"), env)
    assert auth["host"] == "https://explicit:6443"
    assert auth["api_key"] == "envtoken"
    assert auth["context"] == "envctx"


@pytest.mark.parametrize("text,expected", [("0", False), ("false", False), ("No", False), ("FALSE", False),
                                           ("1", True), ("true", True), ("yes", True), ("anything", True)])
def test_env_booleans_are_false_only_for_0_false_no(text, expected):
    assert _kube.resolve_auth(params(), {"K8S_AUTH_VALIDATE_CERTS": text})["validate_certs"] is expected


def test_kubernetes_client_env_names_are_accepted():
    env = {"K8S_AUTH_VERIFY_SSL": "no", "K8S_AUTH_SSL_CA_CERT": "/ca.pem", "K8S_AUTH_CERT_FILE": "/c.pem", "K8S_AUTH_KEY_FILE": "/k.pem"}
    auth = _kube.resolve_auth(params(), env)
    assert auth["validate_certs"] is False
    assert auth["ca_cert"] == "/ca.pem"
    assert auth["client_cert"] == "/c.pem"
    assert auth["client_key"] == "/k.pem"


def test_our_env_name_beats_the_client_name():
    auth = _kube.resolve_auth(params(), {"K8S_AUTH_CA_CERT": "/a", "K8S_AUTH_SSL_CA_CERT": "/b"})
    assert auth["ca_cert"] == "/a"


def test_explicit_false_beats_env_true():
    assert _kube.resolve_auth(params(validate_certs=False), {"K8S_AUTH_VALIDATE_CERTS": "true"})["validate_certs"] is False


@pytest.mark.parametrize("auth,source", [
    ({"host": "https://h", "api_key": "t", "kubeconfig": "/k"}, "explicit"),
    ({"host": "https://h", "client_cert": "/c", "client_key": "/k", "context": "x"}, "explicit"),
    ({"host": "https://h", "kubeconfig": "/k"}, "kubeconfig"),
    ({"context": "x"}, "kubeconfig"),
    ({"host": "https://h"}, "default"),
    ({}, "default"),
])
def test_precedence(auth, source):
    assert _kube.config_source(auth) == source


def test_kubeconfig_secrets_found():
    config = {"users": [{"name": "u", "user": {"client-key-data": "S1", "token": "S2", "client-certificate-data": "S3"}}],
              "clusters": [{"name": "c", "cluster": {"server": "https://x"}}]}
    assert _kube.kubeconfig_secrets(config) == {"S1", "S2", "S3"}


def test_inline_kubeconfig_builds_client_and_is_cached(tmp_path):
    _kube._CLIENTS.clear()
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
              "users": [{"name": "u", "user": {"token": "secret-token"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    auth = _kube.resolve_auth(params(kubeconfig=config), {})
    first = _kube.client_for(auth)
    assert _kube.client_for(dict(auth)) is first
    assert first.host == "https://127.0.0.1:1"
    assert first._headers(None)["authorization"] == "Bearer secret-token"


def test_explicit_host_and_token_override_kubeconfig():
    _kube._CLIENTS.clear()
    auth = _kube.resolve_auth(params(host="https://127.0.0.1:2", api_key="tok", validate_certs=False), {})
    client = _kube.client_for(auth)
    assert client.host == "https://127.0.0.1:2"
    assert client._headers({})["authorization"] == "Bearer tok"
    assert client.configuration.verify_ssl is False


def test_missing_kubeconfig_file_is_named():
    with pytest.raises(KubePkiError, match="kubeconfig"):
        _kube.client_for(_kube.resolve_auth(params(kubeconfig="/nonexistent/kubeconfig"), {}))


def test_missing_ca_file_is_named():
    with pytest.raises(KubePkiError, match="ca_cert"):
        _kube.client_for(_kube.resolve_auth(params(host="https://h:1", api_key="t", ca_cert="/nonexistent/ca.pem"), {}))


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def scripted_client(answers, deadline=30):
    clock = FakeClock()
    client = _kube.KubeClient(None, deadline=deadline, sleep=clock.sleep, clock=clock)
    client.host = "https://127.0.0.1:9"
    calls = []

    def send(method, path, query, body, timeout, stream):
        calls.append((method, path))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client._send = send
    return client, clock, calls


def status(code, message, reason="", headers=None):
    return code, headers or {}, json.dumps({"kind": "Status", "code": code, "message": message, "reason": reason}).encode()


def test_retries_429_honouring_retry_after_then_503_then_succeeds():
    client, clock, calls = scripted_client([
        status(429, "slow down", "TooManyRequests", {"Retry-After": "3"}),
        status(503, "unavailable"),
        status(500, "oops"),
        (200, {}, b'{"ok": true}'),
    ])
    assert client.request("GET", "/x") == {"ok": True}
    assert clock.slept[0] == 3.0
    assert len(calls) == 4
    assert client.retries == 3


def test_connection_errors_are_retried():
    client, _clock, calls = scripted_client([urllib3.exceptions.ProtocolError("reset"), (200, {}, b"{}")])
    assert client.request("GET", "/x") == {}
    assert len(calls) == 2


def test_unreachable_names_the_host_after_the_deadline():
    errors = [urllib3.exceptions.NewConnectionError(None, "Connection refused") for _attempt in range(100)]
    client, clock, _calls = scripted_client(errors, deadline=5)
    with pytest.raises(KubePkiError, match=r"cannot reach the Kubernetes API at https://127\.0\.0\.1:9"):
        client.request("GET", "/x", what="list CSRs")
    assert clock.now <= 5


def test_retry_after_beyond_deadline_gives_up_at_once():
    client, clock, _calls = scripted_client([status(429, "later", "TooManyRequests", {"Retry-After": "100"})], deadline=10)
    with pytest.raises(KubePkiError, match="later") as info:
        client.request("GET", "/x")
    assert info.value.status == 429
    assert clock.slept == []


def test_an_api_server_unavailable_for_an_hour_is_reported_not_a_crash():
    """A long deadline (a wait of hours) and a server answering 503 throughout: thousands of attempts, each pause at
    most two seconds, then the API's answer; the doubling of the pause never overflows."""
    client, clock, calls = scripted_client([status(503, "unavailable")] * 5000, deadline=3600)
    with pytest.raises(KubePkiError, match="unavailable") as info:
        client.request("GET", "/x")
    assert info.value.status == 503
    assert len(calls) > 1024 and max(clock.slept) == 2.0 and clock.now <= 3600


def test_api_error_carries_message_code_and_object():
    client, _clock, _calls = scripted_client([status(403, 'certificatesigningrequests "x" is forbidden: nope', "Forbidden")])
    with pytest.raises(KubePkiError) as info:
        client.request("POST", "/y", what="create CertificateSigningRequest x")
    assert "create CertificateSigningRequest x failed" in info.value.msg
    assert "is forbidden: nope" in info.value.msg
    assert "HTTP 403" in info.value.msg
    assert info.value.details["reason"] == "Forbidden"
    assert _kube.status_of(info.value) == 403


def test_404_is_not_retried():
    client, _clock, calls = scripted_client([status(404, "not found", "NotFound")])
    with pytest.raises(KubePkiError):
        client.request("GET", "/z")
    assert len(calls) == 1


def test_path_for_quotes_names():
    assert _kube.path_for("a b/c", "approval").endswith("/certificatesigningrequests/a%20b%2Fc/approval")


def _ca_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


CA_PEM = _ca_pem()


def _in_cluster_files(tmp_path, monkeypatch):
    """A fake service-account directory, as the kubelet mounts it in a pod."""
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text("pod-token\n")
    (sa_dir / "ca.crt").write_text(CA_PEM)
    monkeypatch.setattr(_kube_transport, "SERVICE_ACCOUNT_DIR", str(sa_dir))


def test_in_cluster_beats_the_default_kubeconfig(tmp_path, monkeypatch):
    _kube._CLIENTS.clear()
    _in_cluster_files(tmp_path, monkeypatch)
    (tmp_path / "config").write_text("not read")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBECONFIG": str(tmp_path / "config")}
    monkeypatch.setattr(os, "environ", env)
    client = _kube.client_for(_kube.resolve_auth(params(), {}))
    assert client.host == "https://10.96.0.1:443"
    assert client._headers(None)["authorization"] == "Bearer pod-token"


def test_default_kubeconfig_when_not_in_a_cluster(tmp_path, monkeypatch):
    _kube._CLIENTS.clear()
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": "https://from-default:6443", "insecure-skip-tls-verify": True}}],
              "users": [{"name": "u", "user": {"token": "t"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    (tmp_path / "config").write_text(json.dumps(config))
    monkeypatch.setattr(os, "environ", {"KUBECONFIG": str(tmp_path / "config")})
    assert _kube.client_for(_kube.resolve_auth(params(), {})).host == "https://from-default:6443"


def test_inline_kubeconfig_secrets_reach_no_log_values():
    _kube._CLIENTS.clear()
    secrets = set()
    _kube.get_client(params(kubeconfig={"apiVersion": "v1", "kind": "Config", "current-context": "c",
                                        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:3"}}],
                                        "users": [{"name": "u", "user": {"token": "very-secret"}}],
                                        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}), secrets)
    assert "very-secret" in secrets


def test_kubeconfig_of_the_wrong_type_is_named():
    with pytest.raises(KubePkiError, match="kubeconfig must be a path or a dict"):
        _kube.get_client(params(kubeconfig=["a", "b"]), set())


def test_connection_errors_are_retried_only_within_the_connect_budget():
    errors = [urllib3.exceptions.NewConnectionError(None, "Connection refused") for _attempt in range(1000)]
    client, clock, _calls = scripted_client(errors, deadline=120)
    with pytest.raises(KubePkiError, match="cannot reach"):
        client.request("GET", "/x")
    assert clock.now <= _kube.CONNECT_BUDGET


def _recording(delay):
    """A work function that takes ``delay`` seconds and records which thread ran each item."""
    seen = []

    def work(item):
        seen.append((item, threading.current_thread().name))
        time.sleep(delay)
        if item == "boom":
            raise KubePkiError("item boom failed")
        return item * 2
    return work, seen


def test_in_flight_keeps_quick_items_in_order_in_this_thread():
    work, seen = _recording(0)
    assert _kube.in_flight(work, range(20)) == [i * 2 for i in range(20)]
    assert {name for _item, name in seen} == {threading.current_thread().name}


def test_in_flight_overlaps_slow_items_and_keeps_their_order():
    work, seen = _recording(0.05)
    started = time.monotonic()
    assert _kube.in_flight(work, range(23)) == [i * 2 for i in range(23)]
    # 3 probes one after the other (0.15 s), then 20 items 4 at a time (0.25 s) instead of 1.15 s
    assert time.monotonic() - started < 0.8
    assert len({name for _item, name in seen[_kube.PROBE:]}) > 1


def test_in_flight_raises_the_first_failure_after_the_others_finished():
    work, seen = _recording(0.05)
    items = [1, 2, 3, 4, "boom", 6, 7]
    with pytest.raises(KubePkiError, match="item boom failed"):
        _kube.in_flight(work, items)
    assert sorted(str(item) for item, _name in seen) == sorted(str(item) for item in items)
    quick, seen_quick = _recording(0)
    with pytest.raises(KubePkiError, match="item boom failed"):
        _kube.in_flight(quick, [1, "boom", 3])
    assert [item for item, _name in seen_quick] == [1, "boom"]  # one after the other: the rest never starts
