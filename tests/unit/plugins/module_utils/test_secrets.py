"""_secrets: private key material and credentials are recognised in any input, and what it hands to Ansible masks
every rendering of them a message or an echoed invocation can hold (the PEM, its base64, %r of it, any full line)."""

import base64
import textwrap

import pytest
import yaml

from ansible.module_utils.common.parameters import remove_values
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.kubepki.certs.plugins.module_utils import _secrets
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto

PEM = serialization.Encoding.PEM


def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEYS = {
    "pkcs8": lambda: _rsa().private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    "encrypted-pkcs8": lambda: _rsa().private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")),
    "rsa": lambda: _rsa().private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    "ec": lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    "openssh": lambda: _rsa().private_bytes(PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
    "ed25519-pkcs8": lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
}


def key_pem(kind):
    return KEYS[kind]().decode("ascii")


def body_lines(pem):
    return [line for line in pem.splitlines() if line and "-----" not in line]


def leaked(text, pem):
    """The pieces of key ``pem`` still readable in ``text``: the PEM, its base64, any full body line (the last one
    too, however short, beside its END line as every rendering of the block has it)."""
    found = [name for name, form in (("pem", pem), ("base64", base64.b64encode(pem.encode()).decode())) if form in text]
    lines = body_lines(pem)
    found += ["line %d" % index for index, line in enumerate(lines) if len(line) >= 16 and line in text]
    end = pem.strip().splitlines()[-1]
    found += ["last line" for glue in ("\n", "\\n") if lines[-1] + glue + end in text]
    return found


def masked(value, secrets):
    return remove_values(value, secrets)


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_kind_of_pem_key_is_masked_as_given_and_as_repr(kind):
    pem = key_pem(kind)
    secrets = _secrets.key_secrets(pem)
    assert secrets and all(len(secret) >= 16 for secret in secrets)
    shown = masked({"invocation": {"csr": pem}, "msg": "csr %r is not a PEM CERTIFICATE REQUEST" % pem,
                    "warnings": ["line: " + body_lines(pem)[0]]}, secrets)
    text = str(shown) + shown["msg"] + shown["invocation"]["csr"]
    assert leaked(text, pem) == []


@pytest.mark.parametrize("kind", ["pkcs8", "ec", "ed25519-pkcs8"])
def test_base64_of_a_key_plain_or_wrapped_is_masked(kind):
    pem = key_pem(kind)
    data = base64.b64encode(pem.encode()).decode()
    wrapped = "\n".join(textwrap.wrap(data, 76)) + "\n"
    for given in (data, wrapped, "client-key-data: %s\n" % data):
        secrets = _secrets.key_secrets(given)
        text = str(masked({"given": given, "decoded": pem, "msg": "%r is not base64 of a certificate" % given}, secrets))
        assert leaked(text, pem) == [], given[:40]
        assert not any(line in text for line in wrapped.splitlines() if len(line) >= 16)


def test_base64_of_a_kubeconfig_holding_a_key_is_masked_down_to_the_key():
    pem = key_pem("ec")
    kubeconfig = yaml.safe_dump({"users": [{"name": "u", "user": {"client-key-data": base64.b64encode(pem.encode()).decode()}}]})
    secret_data = base64.b64encode(kubeconfig.encode()).decode()  # as a Secret's data carries it
    secrets = _secrets.key_secrets(secret_data)
    assert secret_data in secrets
    assert leaked(str(masked([secret_data, kubeconfig, pem], secrets)), pem) == []


def test_a_key_with_escaped_line_breaks_or_cut_short_or_glued_is_found():
    pem = key_pem("rsa")
    escaped = pem.replace("\n", "\\n")  # JSON text pasted as a string
    cut = pem[:len(pem) // 2]  # pasted without its END line
    glued = "/some/dir/" + base64.b64encode(pem.encode()).decode()
    for given in (escaped, cut, glued):
        secrets = _secrets.key_secrets(given)
        assert secrets and _secrets.holds_private_key(given)
        text = str(masked({"msg": "%r" % given, "echo": given}, secrets))
        assert not [line for line in body_lines(cut)[:-1] if line in text], given[:40]


def test_public_material_is_not_secret():
    key = _crypto.generate_private_key()
    csr = _crypto.build_csr_pem(key, "alice", ["dev"])
    cert = (
        "-----BEGIN CERTIFICATE-----\n"
        + "\n".join(textwrap.wrap(base64.b64encode(bytes(range(256)) * 3).decode(), 64))
        + "\n-----END CERTIFICATE-----\n"
    )
    for text in (csr, cert, base64.b64encode(csr.encode()).decode(), base64.b64encode(cert.encode()).decode(),
                 "A" * 5000, "reason: rotate the PRIVATE KEY of alice", "-----BEGIN PUBLIC KEY-----"):
        assert _secrets.key_secrets(text) == set(), text[:40]
        assert not _secrets.holds_private_key(text)


def test_input_secrets_walk_every_option_and_the_environment():
    pem = key_pem("ec")
    data = base64.b64encode(pem.encode()).decode()
    params = {
        "users": [{"name": "a", "csr": pem}],
        "clusters": [{"name": "c", "ca_data": data, "auth": {"kubeconfig": {"users": [{"user": {"token": "t0ken-in-kubeconfig"}}]}}}],
        "names": ["ok", pem],
        "etcd_endpoints": ["https://root:etcd-pa%2Fss@etcd:2379"],
        "proxy": "http://me:proxy-pass@proxy:3128",
        "store_uri": "mongodb://u:mongo-pass@db/kubepki",
        "flags": {pem: "a key pasted as a dict key"},
        "reason": "free text, with https://example.com/a@b in it",
        "_ansible_check_mode": False,
    }
    environ = {"KUBEPKI_ETCD_ENDPOINTS": "https://x:env-etcd-pass@etcd:2379,https://etcd2:2379",
               "KUBEPKI_STORE_URI": "mongodb://u:env-mongo-pass@db/", "KUBEPKI_STORE_PASSPHRASE": "env-passphrase"}
    found = _secrets.input_secrets(params, environ)
    assert {pem.strip(), data, "t0ken-in-kubeconfig", "etcd-pa%2Fss", "etcd-pa/ss", "proxy-pass", "mongo-pass", "env-etcd-pass",
            "env-mongo-pass", "env-passphrase"} <= found
    assert set(body_lines(pem)) <= found
    assert not any("example.com" in secret or secret in ("b", "ok", "a") for secret in found)
