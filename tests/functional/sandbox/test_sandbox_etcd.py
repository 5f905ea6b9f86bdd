"""The real etcd started for tests (plain and TLS), exercised through etcd3gw (the client the collection uses)."""

from urllib.parse import urlsplit

import etcd3gw
import pytest
import requests

from kubeharness.etcd import EtcdServer


def _client(url, ca_cert=None, cert_cert=None, cert_key=None):
    """An etcd3gw client with its own session (trust_env off, so REQUESTS_CA_BUNDLE cannot override the CA)."""
    parts = urlsplit(url)
    session = requests.Session()
    session.trust_env = False
    if ca_cert:
        session.verify = ca_cert
    if cert_cert:
        session.cert = (cert_cert, cert_key)
    return etcd3gw.Etcd3Client(host=parts.hostname, port=parts.port, protocol=parts.scheme, timeout=10,
                               session=session)


def test_plain_etcd_round_trip(etcd_server, sandbox):
    for url in (etcd_server.url, sandbox.etcd_url):
        client = _client(url)
        key = "/kubepki-test/plain/%s" % url.rsplit(":", 1)[1]
        assert client.put(key, "value-1")
        assert client.get(key) == [b"value-1"]
        assert client.delete(key)
        assert client.get(key) == []


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory):
    server = EtcdServer(str(tmp_path_factory.mktemp("etcd-tls")), tls=True).start()
    yield server
    server.stop()


def test_tls_etcd_requires_client_certificate(tls_etcd):
    assert tls_etcd.url.startswith("https://127.0.0.1:")
    client = _client(tls_etcd.url, ca_cert=tls_etcd.ca_cert, cert_cert=tls_etcd.client_cert,
                     cert_key=tls_etcd.client_key)
    assert client.put("/kubepki-test/tls", "secret-value")
    assert client.get("/kubepki-test/tls") == [b"secret-value"]
    # compare-and-put: only when the current value is the expected one
    assert client.replace("/kubepki-test/tls", "secret-value", "next") is True
    assert client.replace("/kubepki-test/tls", "secret-value", "other") is False
    anonymous = _client(tls_etcd.url, ca_cert=tls_etcd.ca_cert)
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError,
                        etcd3gw.exceptions.ConnectionFailedError)):
        anonymous.get("/kubepki-test/tls")
