"""EtcdTransport's options, the endpoints and key checks and the key layout: what needs no etcd. Everything that reads
or writes etcd runs against a real one (etcd is never mocked): tests/functional/inprocess/test_etcd_transport.py."""

import re

import pki_support
import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


@pytest.mark.parametrize("kwargs, message", [
    ({"endpoints": []}, "etcd_endpoints: give at least one etcd URL"),
    ({"endpoints": ["127.0.0.1:2379"]}, "etcd_endpoints: '127.0.0.1:2379' is not an http:// or https:// URL"),
    ({"endpoints": ["http://127.0.0.1:2379/v3"]}, "must be scheme://host:port only"),
    ({"endpoints": ["http://127.0.0.1:notaport"]}, "has an invalid port"),
    ({"prefix": "kubepki"}, "etcd_prefix must start with '/'"),
    ({"ca_cert": "/nonexistent/ca.crt"}, "etcd_ca_cert: /nonexistent/ca.crt is not a readable file"),
    ({"client_cert": __file__}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"username": "root"}, "etcd_username and etcd_password must be given together"),
    ({"timeout": 0}, "etcd_timeout must be positive"),
])
def test_bad_options(kwargs, message):
    options = dict(kwargs)
    endpoints = options.pop("endpoints", ["http://127.0.0.1:2379"])
    with pytest.raises(KubePkiError, match=message):
        _etcd.EtcdTransport(endpoints, **options)


def test_endpoints_from_environment(monkeypatch):
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", "http://a:1, http://b:2,")
    assert _etcd.endpoints_from_params({"etcd_endpoints": None}) == ["http://a:1", "http://b:2"]
    assert _etcd.endpoints_from_params({"etcd_endpoints": ["http://c:3"]}) == ["http://c:3"]
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS")
    assert _etcd.transport_from_params({"etcd_endpoints": None}) is None


# ---------------------------------------------------------------- concurrent identical runs, older over newer


# ---------------------------------------------------------------- static checks


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("etcd-pem")
    ca = pki_support.new_ca("etcd-static-ca")
    (folder / "ca.crt").write_bytes(pki_support.cert_pem(ca.cert))
    (folder / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n")
    (folder / "notpem.txt").write_text("hello")
    return folder


def test_endpoints_problem_accepts_good_options(pem_files, monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    assert _etcd.endpoints_problem({"etcd_endpoints": None}) is None
    assert _etcd.endpoints_problem({"etcd_endpoints": ["http://127.0.0.1:2379", "http://[::1]", "http://etcd/"]}) is None
    assert _etcd.endpoints_problem({
        "etcd_endpoints": ["https://etcd.example:2379"], "etcd_prefix": "/a/b/", "etcd_ca_cert": str(pem_files / "ca.crt"),
        "etcd_client_cert": str(pem_files / "ca.crt"), "etcd_client_key": str(pem_files / "key.pem"), "etcd_timeout": 2}) is None
    assert _etcd.endpoints_problem({"etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_prefix": "/"}) is None


@pytest.mark.parametrize("params, message", [
    ({"etcd_endpoints": ["127.0.0.1:2379"]}, "etcd_endpoints: '127.0.0.1:2379' is not an http:// or https:// URL"),
    ({"etcd_endpoints": ["ftp://h:1"]}, "etcd_endpoints: 'ftp://h:1' is not an http"),
    ({"etcd_endpoints": ["http://:2379"]}, "etcd_endpoints: 'http://:2379' is not an http:// or https:// URL with a host"),
    ({"etcd_endpoints": ["http://h:99999"]}, "etcd_endpoints: 'http://h:99999' has an invalid port"),
    ({"etcd_endpoints": ["http://h:0"]}, "etcd_endpoints: 'http://h:0' has an invalid port"),
    ({"etcd_endpoints": ["http://h:x"]}, "etcd_endpoints: 'http://h:x' has an invalid port"),
    ({"etcd_endpoints": ["http://u:p@h:1"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": ["http://h:1/v3"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": ["http://h:1#x"]}, "must be scheme://host:port only"),
    ({"etcd_endpoints": [""]}, "etcd_endpoints: '' is not a URL"),
    ({"etcd_prefix": "kubepki"}, "etcd_prefix must start with '/'"),
    ({"etcd_prefix": "/a//b"}, "etcd_prefix '/a//b' has an empty segment"),
    ({"etcd_prefix": "/a/../b"}, "etcd_prefix '/a/../b' must not contain a '..' segment"),
    ({"etcd_prefix": "/a/."}, "etcd_prefix '/a/.' must not contain a '.' segment"),
    ({"etcd_prefix": " /a"}, "etcd_prefix must start with '/'"),
    ({"etcd_client_cert": "CA"}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"etcd_client_key": "KEY"}, "etcd_client_cert and etcd_client_key must be given together"),
    ({"etcd_username": "root"}, "etcd_username and etcd_password must be given together"),
    ({"etcd_ca_cert": "/nonexistent/ca.crt"}, "etcd_ca_cert: /nonexistent/ca.crt is not a readable file"),
    ({"etcd_ca_cert": "DIR"}, "etcd_ca_cert: .* is not a readable file"),
    ({"etcd_ca_cert": "NOTPEM"}, "etcd_ca_cert: .*notpem.txt holds no PEM certificate"),
    ({"etcd_client_cert": "CA", "etcd_client_key": "CA"}, "etcd_client_key: .*ca.crt holds no PEM private key"),
    ({"etcd_client_cert": "KEY", "etcd_client_key": "KEY"}, "etcd_client_cert: .*key.pem holds no PEM certificate"),
    ({"etcd_endpoints": ["https://h:1", "http://h:2"], "etcd_ca_cert": "CA"},
     r"etcd_endpoints: 'http://h:2' is plain http but etcd_ca_cert is given"),
    ({"etcd_client_cert": "CA", "etcd_client_key": "KEY"}, "is plain http but etcd_client_cert is given"),
    ({"etcd_timeout": 0}, "etcd_timeout must be positive"),
    ({"etcd_timeout": -1.5}, "etcd_timeout must be positive"),
    ({"etcd_timeout": "soon"}, "etcd_timeout must be a number of seconds"),
    ({"etcd_endpoints": {"a": 1}}, "etcd_endpoints must be a list of URLs"),
])
def test_endpoints_problem_names_the_option(pem_files, params, message):
    files = {"CA": str(pem_files / "ca.crt"), "KEY": str(pem_files / "key.pem"), "NOTPEM": str(pem_files / "notpem.txt"),
             "DIR": str(pem_files)}
    given = {"etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_prefix": "/kubepki", "etcd_timeout": 5.0}
    given.update({key: files.get(value, value) if isinstance(value, str) else value for key, value in params.items()})
    problem = _etcd.endpoints_problem(given)
    assert problem is not None and re.search(message, problem), problem
    # the transport refuses the same options with the same message
    if isinstance(given["etcd_endpoints"], list):
        with pytest.raises(KubePkiError) as caught:
            _etcd.EtcdTransport(given["etcd_endpoints"], prefix=given["etcd_prefix"], ca_cert=given.get("etcd_ca_cert"),
                                client_cert=given.get("etcd_client_cert"), client_key=given.get("etcd_client_key"),
                                username=given.get("etcd_username"), password=given.get("etcd_password"),
                                timeout=given["etcd_timeout"])
        assert caught.value.msg == problem


def test_endpoints_problem_missing_and_from_environment(monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    assert _etcd.endpoints_problem({}, required=True).startswith("etcd_endpoints: no etcd endpoint given")
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", "http://ok:1,nonsense")
    assert _etcd.endpoints_problem({"etcd_endpoints": None}) == (
        "etcd_endpoints (from KUBEPKI_ETCD_ENDPOINTS): 'nonsense' is not an http:// or https:// URL with a host")


@pytest.mark.parametrize("value, message", [
    ("a/b", "cluster 'a/b' must not contain '/'"),
    (".", "cluster '.' is not a usable name"),
    ("..", "cluster '..' is not a usable name"),
    ("", "cluster must be a non-empty string"),
    (None, "cluster must be a non-empty string"),
    ("a\nb", "cluster 'a\\nb' must not contain control characters"),
])
def test_key_segment_problem(value, message):
    problem = _etcd.key_segment_problem(value, "cluster")
    assert problem is not None and message in problem, problem


def test_key_segment_problem_accepts_ordinary_names():
    for value in ("alice", "system:node:n1", "Jane Doe", "a.b", "...", "prod-1", "ünïcode"):
        assert _etcd.key_segment_problem(value, "user") is None


def test_the_key_layout_is_built_and_read_in_one_place():
    """key_for builds <prefix>/certs/<scope>/<cluster>/<user>; identity_of reads it back, and nothing else."""
    transport = _etcd.EtcdTransport(["http://127.0.0.1:1"], prefix="/kp")
    key = transport.key_for("default", "c1", "alice")
    assert key == "/kp/certs/default/c1/alice" and transport.identity_of(key) == ("default", "c1", "alice")
    for other in ("/kp/certs/default/c1", "/kp/certs/default/c1/alice/extra", "/kp/certs//c1/alice", "/other/certs/default/c1/alice"):
        assert transport.identity_of(other) is None, other
