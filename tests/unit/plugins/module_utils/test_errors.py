"""secrets_in: which secrets a result holds, so that only those are handed to Ansible's masking."""

import base64

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import secrets_in


def key_secrets():
    pem = _crypto.private_key_to_pem(_crypto.generate_private_key())
    lines = [line for line in pem.splitlines() if "-----" not in line]
    return pem, lines, base64.b64encode(pem.encode()).decode()


def test_a_pem_block_with_line_breaks_is_found_in_a_message():
    pem, _lines, _data = key_secrets()
    result = {"msg": "the key cannot be used:\n" + pem + "(end)"}
    assert secrets_in(result, [pem]) == {pem}


def test_a_key_line_inside_a_longer_string_is_found():
    _pem, lines, _data = key_secrets()
    result = {"users": [{"clusters": [{"warning": "line: x" + lines[1] + "y and more"}]}]}
    assert secrets_in(result, lines) == {lines[1]}


def test_base64_data_and_tokens_are_found_where_they_are_and_only_there():
    _pem, lines, data = key_secrets()
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl-_x"
    result = {"kubeconfig": "client-key-data: %s\n" % data, "invocation": {"token": token}}
    other_pem, other_lines, other_data = key_secrets()
    found = secrets_in(result, [data, token, other_data, other_pem] + other_lines + lines)
    assert found == {data, token}


def test_nothing_secret_in_a_large_result_finds_nothing():
    secrets = []
    for _round in range(50):
        pem, lines, data = key_secrets()
        secrets += [pem, data] + lines
    digest = "93ba1a67a0d3e115844e3b17fb82ccafc1b03d99be779b08a8ce43244f6a0b2c"
    result = {"csrs": [{"name": "user-%d" % i, "public_key_sha256": digest, "path": "/tmp/out/user-%d.kubeconfig" % i}
                       for i in range(2000)]}
    assert secrets_in(result, secrets + ["", None]) == set()
