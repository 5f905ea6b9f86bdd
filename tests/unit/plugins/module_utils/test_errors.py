"""secrets_in: which secrets a result holds, so that only those are handed to Ansible's masking; mask_inputs and the
AnsibleModule of the collection: the secrets of the input are known to Ansible before anything can fail."""

import base64
import contextlib
import io
import json

import pytest

from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kubepki.certs.plugins.module_utils import _errors
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import mask_inputs, secrets_in


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


# ---------------------------------------------------------------- mask_inputs and the masking AnsibleModule

def printed_result(spec, args, **options):
    """What an AnsibleModule of ``_errors`` prints when it fails, as Ansible receives it (masked, invocation echoed)."""
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module = _errors.AnsibleModule(argument_spec=spec, **options)
        module.fail_json(msg="the module ran")
    return out.getvalue()


def inline_kubeconfig(key_pem):
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": {"client-certificate-data": "Y2VydA==", "client-key-data": base64.b64encode(key_pem.encode()).decode()}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}


def visible(text, pem):
    """The parts of key ``pem`` readable in ``text``: itself, its base64, any body line of 16 characters or more."""
    lines = [line for line in pem.splitlines() if "-----" not in line and len(line) >= 16]
    return [part for part in [pem, base64.b64encode(pem.encode()).decode()] + lines if part in text]


def test_mask_inputs_registers_a_key_pasted_into_any_option():
    pem, _lines, data = key_secrets()

    class Module:  # pylint: disable=too-few-public-methods
        no_log_values = set()
        params = {"users": [{"name": "a", "csr": pem}], "clusters": [{"name": "c", "ca_data": data}], "names": ["x"]}

    mask_inputs(Module)
    assert pem.strip() in Module.no_log_values and data in Module.no_log_values
    assert visible(str(remove_values(Module.params, Module.no_log_values)), pem) == []


SPEC = {"users": {"type": "list", "elements": "dict", "options": {"name": {"type": "str", "required": True}}},
        "kubeconfig": {"type": "raw"}, "timeout": {"type": "int", "default": 5}}


@pytest.mark.parametrize("args", [
    {"users": [{"name": "a", "csr": "KEY"}]},                          # an option the spec does not know
    {"users": [{"name": "a"}], "timeout": "KEY"},                      # a wrong type: the message quotes the value
    {"users": [{"name": "a"}], "kubeconfig": "INLINE", "bogus": 1},    # an inline kubeconfig beside a bad option
], ids=["unknown-suboption", "wrong-type", "inline-kubeconfig"])
def test_a_validation_failure_echoes_no_key_and_no_kubeconfig_credential(args):
    """AnsibleModule validates inside __init__ and fails echoing the raw invocation: the secrets must be known before."""
    pem, _lines, _data = key_secrets()
    args = json.loads(json.dumps(args).replace('"KEY"', json.dumps(pem)).replace('"INLINE"', json.dumps(inline_kubeconfig(pem))))
    text = printed_result(SPEC, args)
    result = json.loads(text.strip().splitlines()[-1])
    assert result["failed"] and result["msg"] != "the module ran", result
    assert visible(text, pem) == []
