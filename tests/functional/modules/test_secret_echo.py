"""Private keys pasted where a CSR, a certificate or a CA belongs, and an inline kubeconfig's client key when argument
validation fails, appear nowhere in what ``ansible-playbook -vvv`` prints (the echoed invocations included): not as
PEM, not as base64, not one full line of them.

No cluster is needed: every task fails on its input before it reaches any server (the ones it names are closed ports).
"""

import base64
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from playbook_files import playbook

PLAY = playbook("modules/pasted_keys.yml")

EXPECTED = ["users[0] (alice).csr is not a PEM CERTIFICATE REQUEST", "Unsupported parameters", "is not a PEM CERTIFICATE",
            "clusters[c1].ca_data holds no PEM CERTIFICATE", "not_an_option", "force"]


def pem_key(private_key, private_format):
    return private_key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption()).decode()


def readable(text, pem):
    """The forms of key ``pem`` found in ``text``: the PEM, its base64, any full body line (16 characters or more)."""
    forms = {"pem": pem, "escaped pem": pem.replace("\n", "\\n"), "base64": base64.b64encode(pem.encode()).decode()}
    found = [name for name, form in forms.items() if form in text]
    lines = [line for line in pem.splitlines() if "-----" not in line and len(line) >= 16]
    return found + ["line: " + line for line in lines if line in text]


def test_pasted_keys_and_inline_kubeconfig_keys_stay_hidden_at_vvv(run_playbook, tmp_path):
    key = pem_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), serialization.PrivateFormat.TraditionalOpenSSL)
    client_key = pem_key(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    inline = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
              "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(b"certificate").decode(),
                                               "client-key-data": base64.b64encode(client_key.encode()).decode()}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    env = {"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_VERBOSITY": "3"}
    store = str(tmp_path / ("store-%s.db" % uuid.uuid4().hex[:8]))
    out = run_playbook(PLAY, extra_vars={"key": key, "inline": inline, "store": store}, env=env)
    text = out.stdout + out.stderr
    assert out.rc == 0 and text.count("...ignoring") == 7, text[-3000:]
    for message in EXPECTED:
        assert message in text, (message, text[-3000:])
    assert readable(text, key) == []
    assert readable(text, client_key) == []
