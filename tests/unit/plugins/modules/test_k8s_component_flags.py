"""k8s_component_flags run in-process: flag names and values that would put a new line (or any other control
character) into a systemd environment file or a static pod manifest are refused before anything is written, and
the refusal names the option and the flag without echoing the value."""

import json
import os

import pytest
import yaml

from ansible_collections.kubepki.certs.plugins.modules import k8s_component_flags

MANIFEST = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-apiserver", "namespace": "kube-system"},
    "spec": {"containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.31.0",
                             "command": ["kube-apiserver", "--authorization-mode=Node,RBAC", "--v=2"]}]},
}
ENV = '# managed\nKUBELET_ARGS="--v=2"\nOTHER=1\n'
SECRET = "s3cr3t-oidc-value"


@pytest.fixture
def files(tmp_path):
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    env = tmp_path / "kubelet"
    env.write_text(ENV)
    for path in (manifest, env):
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return {"static_pod": manifest, "env_file": env}


def state(tmp_path):
    return {name: (os.stat(tmp_path / name).st_mtime_ns, (tmp_path / name).read_bytes()) for name in sorted(os.listdir(tmp_path))}


@pytest.mark.parametrize("fmt", ["static_pod", "env_file"])
@pytest.mark.parametrize("args, where", [
    ({"flags": {"v\n": "3"}}, "flags: the flag name 'v\\n'"),
    ({"flags": {"authorization-mode\r": "AlwaysAllow"}}, "flags: the flag name 'authorization-mode\\r'"),
    ({"flags": {"oidc-client-secret": SECRET + "\n--authorization-mode=AlwaysAllow"}}, "flags: the value of flag 'oidc-client-secret'"),
    ({"flags": {"oidc-client-secret": SECRET + "\x00tail"}}, "flags: the value of flag 'oidc-client-secret'"),
    ({"flags": {"oidc-client-secret": SECRET + "\x1b[2J"}}, "flags: the value of flag 'oidc-client-secret'"),
    ({"flags": {"oidc-client-secret": SECRET + "\x7f"}}, "flags: the value of flag 'oidc-client-secret'"),
    ({"flags": {"oidc-client-secret": SECRET + "\u2028--v=9"}}, "flags: the value of flag 'oidc-client-secret'"),
    ({"merge_lists": {"authorization-mode": ["RBAC", SECRET + "\nAlwaysAllow"]}}, "merge_lists: the value of flag 'authorization-mode'"),
    ({"merge_lists": {"admission\nplugins": ["NodeRestriction"]}}, "merge_lists: the flag name 'admission\\nplugins'"),
    ({"absent": ["v\n"]}, "absent: the flag name 'v\\n'"),
], ids=["name-newline", "name-cr", "value-newline", "value-nul", "value-escape", "value-del", "value-line-separator",
        "list-item-newline", "list-name-newline", "absent-name-newline"])
def test_control_characters_are_refused_before_anything_is_written(run_module, tmp_path, files, fmt, args, where):
    before = state(tmp_path)
    module_args = dict(args, path=str(files[fmt]), format=fmt)
    if fmt == "env_file":
        module_args["variable"] = "KUBELET_ARGS"
    failed, result = run_module(k8s_component_flags, module_args)
    assert failed, result
    assert result["msg"].startswith(where), result["msg"]
    assert "control character" in result["msg"] and "nothing was written" in result["msg"]
    assert SECRET not in json.dumps(result), "the value may be a secret: it is never echoed"
    assert state(tmp_path) == before


def test_a_variable_name_with_a_new_line_is_refused(run_module, tmp_path, files):
    before = state(tmp_path)
    failed, result = run_module(k8s_component_flags, {"path": str(files["env_file"]), "format": "env_file",
                                                      "variable": "KUBELET_ARGS\n", "flags": {"v": 3}})
    assert failed and result["msg"].startswith("variable"), result
    assert state(tmp_path) == before


def test_an_env_file_value_that_systemd_would_split_is_refused_without_echoing_it(run_module, tmp_path, files):
    before = state(tmp_path)
    failed, result = run_module(k8s_component_flags, {"path": str(files["env_file"]), "format": "env_file", "variable": "KUBELET_ARGS",
                                                      "flags": {"oidc-client-secret": SECRET + " and more"}})
    assert failed and "flags: the value of flag 'oidc-client-secret' holds whitespace, a quote or a backslash" in result["msg"], result
    assert SECRET not in json.dumps(result)
    assert state(tmp_path) == before


def test_ordinary_flags_still_work(run_module, tmp_path, files):
    failed, result = run_module(k8s_component_flags, {"path": str(files["static_pod"]), "flags": {"oidc-issuer-url": "https://issuer.example/x?a=b"},
                                                      "merge_lists": {"authorization-mode": ["Webhook"]}, "absent": ["v"]})
    assert not failed and result["changed"], result
    assert result["flags"] == ["kube-apiserver", "--authorization-mode=Node,RBAC,Webhook", "--oidc-issuer-url=https://issuer.example/x?a=b"]
    failed, result = run_module(k8s_component_flags, {"path": str(files["env_file"]), "format": "env_file", "variable": "KUBELET_ARGS",
                                                      "flags": {"node-labels": "a=b,c=d"}})
    assert not failed and files["env_file"].read_text() == '# managed\nKUBELET_ARGS="--v=2 --node-labels=a=b,c=d"\nOTHER=1\n'
