"""The csrsigning controller: validation failures, issued certificate shape and lifetimes."""

import base64
import datetime
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox_helpers import CSR_BASE, csr_body, csr_pem, unique


def approve_and_wait(raw, name, timeout=10.0):
    _s, obj = raw.call("GET", CSR_BASE + "/" + name)
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "t"}]}
    status, _body = raw.call("PUT", CSR_BASE + "/" + name + "/approval", obj)
    assert status == 200
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _s, obj = raw.call("GET", CSR_BASE + "/" + name)
        status = obj.get("status") or {}
        if status.get("certificate") or any(c["type"] == "Failed" for c in status.get("conditions", [])):
            return obj
        time.sleep(0.05)
    raise AssertionError("not signed in time: %s" % obj)


def issue(raw, pem, **kwargs):
    name = unique()
    status, body = raw.call("POST", CSR_BASE, csr_body(name, pem, **kwargs))
    assert status == 201, body
    return approve_and_wait(raw, name)


def failed_message(obj):
    conds = [c for c in obj["status"]["conditions"] if c["type"] == "Failed"]
    assert conds, obj["status"]
    assert conds[0]["reason"] == "SignerValidationFailure" and conds[0]["status"] == "True"
    assert "certificate" not in obj["status"]
    return conds[0]["message"]


@pytest.mark.parametrize("usages,message", [
    (["client auth", "server auth"], "invalid usage for client certificate: server auth"),
    (["digital signature"], "missing required usage for client certificate: client auth"),
])
def test_apiserver_client_usage_failures(raw, usages, message):
    assert failed_message(issue(raw, csr_pem("u"), usages=usages)) == message


@pytest.mark.parametrize("cn,orgs,sans,usages,message", [
    ("system:node:a", ["other"], {}, ["digital signature", "client auth"], "subject organization is not system:nodes"),
    ("system:node:a", ["system:nodes"], {"dns": ["a"]}, ["digital signature", "client auth"],
     "DNS subjectAltNames are not allowed"),
    ("system:node:a", ["system:nodes"], {"ips": ["10.0.0.1"]}, ["digital signature", "client auth"],
     "IP subjectAltNames are not allowed"),
    ("node-a", ["system:nodes"], {}, ["digital signature", "client auth"],
     "subject common name does not begin with system:node:"),
    ("system:node:a", ["system:nodes"], {}, ["client auth"],
     "usages did not match [client auth digital signature key encipherment]"),
])
def test_kubelet_client_failures(raw, cn, orgs, sans, usages, message):
    obj = issue(raw, csr_pem(cn, orgs, **sans), signer="kubernetes.io/kube-apiserver-client-kubelet", usages=usages)
    assert failed_message(obj) == message


@pytest.mark.parametrize("sans,usages,message", [
    ({}, ["digital signature", "server auth"], "DNS or IP subjectAltName is required"),
    ({"dns": ["n"], "emails": ["a@b.c"]}, ["digital signature", "server auth"], "Email subjectAltNames are not allowed"),
    ({"dns": ["n"]}, ["server auth"], "usages did not match [digital signature key encipherment server auth]"),
])
def test_kubelet_serving_failures(raw, sans, usages, message):
    obj = issue(raw, csr_pem("system:node:n", ["system:nodes"], **sans), signer="kubernetes.io/kubelet-serving",
                usages=usages)
    assert failed_message(obj) == message


def _cert(obj):
    data = base64.b64decode(obj["status"]["certificate"])
    assert data.count(b"-----BEGIN CERTIFICATE-----") == 1
    return x509.load_pem_x509_certificate(data)


def test_issued_certificate_shape(raw, c1):
    obj = issue(raw, csr_pem("system:node:n1", ["system:nodes"], dns=["n1.example"], ips=["10.1.2.3"]),
                signer="kubernetes.io/kubelet-serving", usages=["digital signature", "key encipherment",
                                                                "server auth"])
    cert = _cert(obj)
    ca = x509.load_pem_x509_certificate(open(c1.ca_cert, "rb").read())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert 0 < cert.serial_number < 2 ** 128
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1.example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False


def _window(cert):
    return cert.not_valid_after_utc - cert.not_valid_before_utc


@pytest.mark.parametrize("expiration,expected", [
    (600, datetime.timedelta(minutes=15)),
    (3600, datetime.timedelta(minutes=65)),
    (10 * 3600, datetime.timedelta(hours=10)),
    (None, datetime.timedelta(hours=8760)),
    (2 ** 31 - 1, datetime.timedelta(hours=8760)),
])
def test_lifetimes(raw, expiration, expected):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert = _cert(issue(raw, csr_pem("life"), expiration=expiration))
    after = datetime.datetime.now(datetime.timezone.utc)
    assert _window(cert) == expected
    backdate = datetime.timedelta(minutes=5)
    assert before - backdate <= cert.not_valid_before_utc <= after - backdate


def test_signing_duration_option_caps_lifetime(sandbox, c1, raw):
    sandbox.set_options(c1.name, signing_duration="2h")
    try:
        assert _window(_cert(issue(raw, csr_pem("short"), expiration=86400))) == datetime.timedelta(minutes=125)
        assert _window(_cert(issue(raw, csr_pem("short")))) == datetime.timedelta(minutes=125)
    finally:
        sandbox.set_options(c1.name, signing_duration="8760h")


def test_denied_and_unknown_signer_not_signed(raw):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("d")))
    _s, obj = raw.call("GET", CSR_BASE + "/" + name)
    obj["status"] = {"conditions": [{"type": "Denied", "status": "True", "reason": "No"}]}
    assert raw.call("PUT", CSR_BASE + "/" + name + "/approval", obj)[0] == 200
    other = unique()
    raw.call("POST", CSR_BASE, csr_body(other, csr_pem("d"), signer="kubernetes.io/foo"))
    _s, obj2 = raw.call("GET", CSR_BASE + "/" + other)
    obj2["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Yes"}]}
    assert raw.call("PUT", CSR_BASE + "/" + other + "/approval", obj2)[0] == 200
    time.sleep(0.5)
    assert "certificate" not in raw.call("GET", CSR_BASE + "/" + name)[1]["status"]
    assert "certificate" not in raw.call("GET", CSR_BASE + "/" + other)[1]["status"]


def test_signing_delay(sandbox, c1, raw):
    sandbox.set_options(c1.name, signing_delay="1.5s")
    try:
        name = unique()
        raw.call("POST", CSR_BASE, csr_body(name, csr_pem("slow")))
        start = time.monotonic()
        approve_and_wait(raw, name)
        assert time.monotonic() - start >= 1.4
    finally:
        sandbox.set_options(c1.name, signing_delay="0s")


def test_lifetime_cut_to_ca_not_after(sandbox, c1, raw):
    sandbox.set_options(c1.name, signing_duration="200000h")
    try:
        cert = _cert(issue(raw, csr_pem("long")))
    finally:
        sandbox.set_options(c1.name, signing_duration="8760h")
    ca = x509.load_pem_x509_certificate(open(c1.ca_cert, "rb").read())
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_kubelet_serving_checks_usages_before_common_name(raw):
    obj = issue(raw, csr_pem("node-x", ["system:nodes"], dns=["x"]), signer="kubernetes.io/kubelet-serving",
                usages=["server auth"])
    assert failed_message(obj) == "usages did not match [digital signature key encipherment server auth]"
    obj = issue(raw, csr_pem("node-x", ["system:nodes"], dns=["x"]), signer="kubernetes.io/kubelet-serving",
                usages=["server auth", "digital signature"])
    assert failed_message(obj) == "subject common name does not begin with system:node:"
