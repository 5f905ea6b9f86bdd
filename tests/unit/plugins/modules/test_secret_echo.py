"""A private key pasted where a CSR, a certificate, a CA or a CSR name belongs, an inline kubeconfig's client key and an
etcd password in a URL never come back: not in the message, not in the echoed invocation, not as base64, not a line
of them; and a key is never sent to the Kubernetes API (the in-memory API of csr_fake_api.py records what it gets).

The modules run in-process with Ansible's own exit_json/fail_json (not the run_module fixture, which skips the
masking): what they print is what ansible-playbook receives.
"""

import base64
import contextlib
import io
import json
import os
import sys

import pytest

from ansible.module_utils.testing import patch_module_args
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeCluster, install  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _deps  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402
from ansible_collections.kubepki.certs.plugins.modules import (  # noqa: E402
    cert_inventory, cert_to_etcd, cluster_trust_bundle, csr_approve, csr_create, csr_info, csr_wait, kubeconfig_render,
    user_certificates,
)

PEM = serialization.Encoding.PEM
# every kind of PEM key, generated once for the module (RSA keys have many lines, the EC key has a short last line)
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP384R1())
KEYS = {
    "rsa": _RSA.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode(),
    "pkcs8": _RSA.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    "encrypted-pkcs8": _EC.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")).decode(),
    "ec": _EC.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode(),
    "openssh": _RSA.private_bytes(PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode(),
}
KEY = KEYS["rsa"]


def b64(text):
    return base64.b64encode(text.encode()).decode()


def visible(text, pem):
    """The parts of ``pem`` readable in ``text``: the PEM (also JSON-escaped), its base64, any full body line."""
    lines = [line for line in pem.splitlines() if line and "-----" not in line]
    found = [name for name, form in (("pem", pem), ("json pem", json.dumps(pem)[1:-1]), ("base64", b64(pem))) if form in text]
    found += ["line %d: %s" % (index, line) for index, line in enumerate(lines) if len(line) >= 16 and line in text]
    end = pem.strip().splitlines()[-1]
    found += ["the last line %s" % lines[-1] for glue in ("\n", "\\n", "\\\\n") if lines[-1] + glue + end in text]
    return found


@pytest.fixture
def printed(monkeypatch):
    """``printed(module, args) -> (result, text)``: what the module prints, masked by Ansible, as a playbook gets it."""
    for name in ("KUBEPKI_ETCD_ENDPOINTS", "KUBEPKI_STORE_URI", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)

    def runner(module, args):
        out = io.StringIO()
        with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            module.main()
        text = out.getvalue()
        return json.loads(text.strip().splitlines()[-1]), text

    return runner


@pytest.fixture
def cluster(monkeypatch):
    return install(monkeypatch, FakeCluster(auto_issue=False))


def sent(cluster, pem):
    """What of ``pem`` reached the in-memory API: in a request path or query, or in a created object."""
    seen = json.dumps([cluster.requests, cluster.objects])
    decoded = " ".join(base64.b64decode(obj["spec"]["request"]).decode() for obj in cluster.objects.values())
    return visible(seen + decoded, pem) + ["percent-encoded"] * ("PRIVATE%20KEY" in seen)


API = {"host": "https://fake.invalid", "cluster": "c1"}
SERVER = "https://fake.invalid"

# case -> (module, arguments); STORE stands for a store in the test's own directory
CASES = {
    "csr_create users[].csr": (csr_create, dict(API, store_uri="STORE", users=[{"name": "alice", "csr": KEY}])),
    "csr_create users[].csr base64": (csr_create, dict(API, store_uri="STORE", users=[{"name": "alice", "csr": b64(KEY)}])),
    "user_certificates users[].csr": (user_certificates, {"users": [{"name": "alice", "csr": KEY}], "store_uri": "STORE",
                                                          "clusters": [{"name": "c1", "server": SERVER}]}),
    "user_certificates ca_data": (user_certificates, {"users": [{"name": "alice"}], "store_uri": "STORE",
                                                      "clusters": [{"name": "c1", "server": SERVER, "ca_data": KEY}]}),
    "user_certificates ca_data base64": (user_certificates, {"users": [{"name": "alice"}], "store_uri": "STORE",
                                                             "clusters": [{"name": "c1", "server": SERVER, "ca_data": b64(KEY)}]}),
    "cert_to_etcd certificates[].certificate": (cert_to_etcd, {"cluster": "c1", "etcd_endpoints": ["http://127.0.0.1:9"],
                                                               "certificates": [{"user": "alice", "certificate": KEY}]}),
    "kubeconfig_render ca_data": (kubeconfig_render, {"user": "alice", "store_uri": "STORE",
                                                      "clusters": [{"name": "c1", "server": SERVER, "ca_data": KEY}]}),
    "kubeconfig_render ca_data base64": (kubeconfig_render, {"user": "alice", "store_uri": "STORE",
                                                             "clusters": [{"name": "c1", "server": SERVER, "ca_data": b64(KEY)}]}),
    "cluster_trust_bundle ca_data base64": (cluster_trust_bundle, {"host": SERVER, "name": "example.com:ca:v1", "signer_name": "example.com/ca",
                                                                   "ca_data": b64(KEY)}),
    "csr_approve names": (csr_approve, dict(API, names=[KEY])),
    "csr_approve names base64": (csr_approve, dict(API, names=[b64(KEY)])),
    "csr_info names": (csr_info, {"host": SERVER, "names": [KEY]}),
    "csr_wait names": (csr_wait, dict(API, names=[KEY], timeout=1)),
    "csr_wait cluster_ca base64": (csr_wait, dict(API, names=["x"], cluster_ca=b64(KEY), timeout=1)),
    "cert_inventory scope": (cert_inventory, {"store_uri": "STORE", "scope": KEY}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_pasted_key_comes_back_nowhere_and_reaches_no_api(printed, cluster, tmp_path, case):
    module, args = CASES[case]
    args = json.loads(json.dumps(args).replace('"STORE"', json.dumps(str(tmp_path / "store.db"))))
    result, text = printed(module, args)
    assert result.get("failed"), result
    assert visible(text, KEY) == [], result["msg"]
    assert sent(cluster, KEY) == []


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_kind_of_key_pasted_as_a_csr_is_hidden(printed, cluster, tmp_path, kind):
    result, text = printed(csr_create, dict(API, store_uri=str(tmp_path / "store.db"), users=[{"name": "alice", "csr": KEYS[kind]}]))
    assert result["failed"] and visible(text, KEYS[kind]) == [], result["msg"]


def test_a_csr_with_its_key_appended_is_refused_before_the_key_is_sent(printed, cluster, tmp_path):
    """The request text goes to the API as given (spec.request): a key behind the request would be published."""
    key = _crypto.generate_private_key()
    both = _crypto.build_csr_pem(key, "alice", ["dev"]) + _crypto.private_key_to_pem(key)
    result, text = printed(csr_create, dict(API, store_uri=str(tmp_path / "store.db"), users=[{"name": "alice", "groups": ["dev"], "csr": both}]))
    assert result["failed"] and "holds a private key" in result["msg"], result
    assert visible(text, _crypto.private_key_to_pem(key)) == []
    assert cluster.objects == {}


def inline(pem):
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://fake.invalid"}}],
            "users": [{"name": "u", "user": {"client-certificate-data": b64("not a certificate"), "client-key-data": b64(pem)}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}


@pytest.mark.parametrize("module,args", [
    (csr_approve, {"kubeconfig": "INLINE", "cluster": "c1", "names": ["x"], "timeout_typo": 3}),
    (csr_create, {"kubeconfig": "INLINE", "cluster": "c1", "users": [{"name": "alice", "groups": "not-a-list-of-dicts"}], "force": "maybe"}),
    (user_certificates, {"users": [{"name": "alice"}], "clusters": [{"name": "c1", "auth": {"kubeconfig": "INLINE"}, "bogus": 1}]}),
], ids=["unknown-option", "wrong-type", "unknown-suboption"])
def test_an_inline_kubeconfig_key_is_hidden_when_argument_validation_fails(printed, module, args):
    args = json.loads(json.dumps(args).replace('"INLINE"', json.dumps(inline(KEY))))
    result, text = printed(module, args)
    assert result["failed"] and ("Unsupported parameters" in result["msg"] or "type" in result["msg"]), result
    assert visible(text, KEY) == []


def test_an_inline_kubeconfig_key_is_hidden_when_a_dependency_is_missing(printed, monkeypatch):
    monkeypatch.setattr(_deps, "probe", lambda name: (False, "%s cannot be imported" % name, _deps.MINIMUM[name][1]))
    result, text = printed(csr_approve, {"kubeconfig": inline(KEY), "cluster": "c1", "names": ["x"]})
    assert result["failed"] and "kubernetes" in result["msg"], result
    assert visible(text, KEY) == []


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_etcd_password_in_an_endpoint_url_comes_back_nowhere(printed, monkeypatch, where):
    url = "https://root:Etcd-S3cret%2Fpw@127.0.0.1:2379"
    args = {"cluster": "c1", "certificates": [{"user": "alice", "certificate": "x"}], "etcd_username": "root", "etcd_password": "other-S3cret"}
    if where == "option":
        args["etcd_endpoints"] = [url]
    else:
        monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", url)
    result, text = printed(cert_to_etcd, args)
    assert result["failed"] and "must be scheme://host:port only" in result["msg"], result
    assert "Etcd-S3cret" not in text and "other-S3cret" not in text
