"""The crypto helpers the store and the modules rely on."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

import pki_support


# rsa-3072 and rsa-4096 take seconds to generate and go through the same code as rsa-2048
@pytest.mark.parametrize("key_type", [k for k in _crypto.KEY_TYPES if k not in ("rsa-3072", "rsa-4096")])
def test_key_round_trip(key_type):
    key = _crypto.generate_private_key(key_type)
    assert _crypto.key_type_of(key) == key_type
    plain = _crypto.private_key_to_pem(key)
    assert "BEGIN PRIVATE KEY" in plain
    assert _crypto.public_key_sha256(_crypto.load_private_key(plain)) == _crypto.public_key_sha256(key)


def test_encrypted_pem():
    key = _crypto.generate_private_key()
    pem = _crypto.private_key_to_pem(key, "s3cret")
    assert "ENCRYPTED PRIVATE KEY" in pem
    assert _crypto.public_key_sha256(_crypto.load_private_key(pem, "s3cret")) == _crypto.public_key_sha256(key)
    with pytest.raises(KubePkiError, match="is encrypted: give its passphrase"):
        _crypto.load_private_key(pem)
    with pytest.raises(KubePkiError, match="wrong passphrase"):
        _crypto.load_private_key(pem, "other")


def test_unknown_key_type():
    with pytest.raises(KubePkiError, match="key_type 'ed25519' is not supported"):
        _crypto.generate_private_key("ed25519")


def test_certificate_facts_and_issuer():
    ca = pki_support.new_ca("crypto-test-ca")
    other = pki_support.new_ca("crypto-other-ca")
    key = _crypto.generate_private_key()
    leaf = pki_support.client_cert(ca, "alice", ["team-a", "team-b"], key=key)
    pem = pki_support.cert_pem(leaf.cert).decode()
    facts = _crypto.certificate_facts(pem)
    assert facts["common_name"] == "alice"
    assert facts["organizations"] == ["team-a", "team-b"]
    assert facts["serial"] == format(leaf.cert.serial_number, "x")
    assert facts["public_key_sha256"] == _crypto.public_key_sha256(key)
    assert _record.standing(facts) == "valid"
    _crypto.verify_issued_by(pem, pki_support.cert_pem(ca.cert).decode())
    with pytest.raises(KubePkiError, match="is not signed by the given cluster CA"):
        _crypto.verify_issued_by(pem, pki_support.cert_pem(other.cert).decode())


def test_malformed_certificate():
    with pytest.raises(KubePkiError, match="certificate is not a PEM CERTIFICATE"):
        _crypto.certificate_facts("hello")
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(KubePkiError, match="cannot be parsed"):
        _crypto.certificate_facts(broken)


def test_rfc3339():
    moment = _crypto.parse_rfc3339("2025-01-02T03:04:05Z")
    assert _crypto.rfc3339(moment) == "2025-01-02T03:04:05Z"
    with pytest.raises(KubePkiError, match="not an RFC 3339 timestamp"):
        _crypto.parse_rfc3339("yesterday")


def test_remembered_facts_are_copies_and_failures_are_not_remembered():
    ca = pki_support.new_ca("crypto-memo-ca")
    key = _crypto.generate_private_key()
    pem = pki_support.cert_pem(pki_support.client_cert(ca, "bob", ["team-a"], key=key).cert).decode()
    first = _crypto.certificate_facts(pem)
    first["organizations"].append("injected")
    first["common_name"] = "mallory"
    again = _crypto.certificate_facts(pem)
    assert again["organizations"] == ["team-a"] and again["common_name"] == "bob"
    csr = _crypto.build_csr_pem(key, "bob", ["team-a"])
    facts = _crypto.csr_facts(csr)
    facts["organizations"].clear()
    assert _crypto.csr_facts(csr)["organizations"] == ["team-a"]
    tampered = csr.replace(csr.splitlines()[3], csr.splitlines()[3][::-1])
    for _attempt in range(2):
        with pytest.raises(KubePkiError, match="CSR (cannot be parsed|has an invalid signature)"):
            _crypto.csr_facts(tampered)


def test_a_request_and_a_certificate_without_subject_alt_names_have_empty_name_lists():
    """A user's request carries no SAN extension. cryptography >= 51 refuses an empty SubjectAlternativeName,
    which the facts once built for a missing extension: every onboarding failed there."""
    key = _crypto.generate_private_key("ec-p256")
    facts = _crypto.csr_facts(_crypto.build_csr_pem(key, "no-sans", ["dev"]))
    assert (facts["dns_names"], facts["ip_addresses"], facts["emails"], facts["uris"]) == ([], [], [], [])
    ca = pki_support.new_ca("crypto-nosan-ca")
    cert = _crypto.certificate_facts(pki_support.cert_pem(pki_support.client_cert(ca, "no-sans", ["dev"], key=key).cert).decode())
    assert cert["common_name"] == "no-sans"
