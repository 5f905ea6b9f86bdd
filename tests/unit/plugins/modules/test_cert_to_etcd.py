"""cert_to_etcd run in-process where no etcd answers: no endpoint, a dead one, one that is no etcd. Everything that
reaches etcd runs against a real one (never mocked): tests/functional/inprocess/test_cert_to_etcd_on_etcd.py."""

import http.server
import threading

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.modules import cert_to_etcd

import pki_support


@pytest.fixture(scope="module")
def ca():
    return pki_support.new_ca("cert-to-etcd-ca")


def issued(ca, user="alice", orgs=("team-a",), cluster="c1", days=365, **extra):
    key = _crypto.generate_private_key()
    pem = pki_support.cert_pem(pki_support.client_cert(ca, user, list(orgs), key=key, days=days).cert).decode()
    facts = _crypto.certificate_facts(pem)
    record = {"user": user, "cluster": cluster, "certificate": pem, "csr_name": "kubepki-%s-0" % user, "csr_uid": "uid",
              "signer_name": "kubernetes.io/kube-apiserver-client", "serial": facts["serial"], "not_after": facts["not_after"],
              "not_before": facts["not_before"], "public_key_sha256": facts["public_key_sha256"], "common_name": user,
              "organizations": list(orgs), "lifetime_seconds": 1}
    record.update(extra)
    return record


def test_unreachable_etcd(run_module, ca):
    failed, result = run_module(cert_to_etcd, {"etcd_endpoints": ["http://127.0.0.1:9"], "etcd_timeout": 1,
                                               "certificates": [issued(ca)]})
    assert failed and "etcd_endpoints: no etcd endpoint answered (tried http://127.0.0.1:9" in result["msg"]


def test_no_endpoint(run_module, ca, monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    failed, result = run_module(cert_to_etcd, {"certificates": [issued(ca)]})
    assert failed and result["msg"].startswith("etcd_endpoints: no etcd endpoint given")


def test_unusable_endpoint_is_named(run_module, ca):
    """An endpoint that answers HTTP but is no etcd (a local web server), then one that does not speak TLS."""
    class NotEtcd(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # pylint: disable=invalid-name
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>nothing here</html>")

        def log_message(self, *args):  # pylint: disable=arguments-differ
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotEtcd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        for endpoint in (url, url.replace("http://", "https://")):
            failed, result = run_module(cert_to_etcd, {"etcd_endpoints": [endpoint], "etcd_timeout": 2, "cluster": "c1",
                                                       "certificates": [issued(ca)]})
            assert failed
            assert result["msg"].startswith("etcd_endpoints: no etcd endpoint answered (tried %s: " % endpoint), result["msg"]
            assert "Traceback" not in result["msg"] and "exception" not in result
    finally:
        server.shutdown()
        server.server_close()
