"""k8s_component_flags: the flag editing itself, and the module run directly on edge cases."""

import os
import sys

import pytest

from playbook_files import playbook
from roles_support import assert_ok, env_args, file_mode, manifest_command, task_result

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                                ".cache", "collections"))

# pylint: disable-next=wrong-import-position,import-error
from ansible_collections.kubepki.certs.plugins.modules.k8s_component_flags import edit_args  # noqa: E402


def test_edit_args_keeps_positions_merges_lists_and_drops_duplicates():
    args = ["kube-apiserver", "--a=1", "--authorization-mode=Node", "--v", "--a=2", "--gone=x", "--mode=RBAC"]
    result = edit_args(args, {"a": 3, "v": True, "new": "n", "bare": None}, {"authorization-mode": ["RBAC", "Node", "Webhook"]}, ["gone"])
    assert result == ["kube-apiserver", "--a=3", "--authorization-mode=Node,RBAC,Webhook", "--v=true", "--mode=RBAC", "--new=n", "--bare"]


def test_edit_args_creates_a_missing_list_flag_and_is_stable():
    once = edit_args(["x"], {}, {"controllers": ["*", "csrsigning", "*"]}, [])
    assert once == ["x", "--controllers=*,csrsigning"]
    assert edit_args(once, {}, {"controllers": ["*", "csrsigning"]}, []) == once


def test_an_explicit_controller_list_stays_explicit():
    """The signing role asks for "*" plus the CSR controllers. Merged into a list an administrator chose, "*" would
    start every default controller; it is only written where the flag was absent. A negated controller gives way."""
    chosen = ["kube-controller-manager", "--controllers=csrsigning,-csrapproving,tokencleaner"]
    merged = edit_args(chosen, {}, {"controllers": ["*", "csrapproving", "csrsigning"]}, [])
    assert merged == ["kube-controller-manager", "--controllers=csrsigning,tokencleaner,csrapproving"]
    assert edit_args(merged, {}, {"controllers": ["*", "csrapproving", "csrsigning"]}, []) == merged
    with_defaults = ["kube-controller-manager", "--controllers=*,-bootstrapsigner"]
    assert edit_args(with_defaults, {}, {"controllers": ["*", "bootstrapsigner"]}, []) == ["kube-controller-manager", "--controllers=*,bootstrapsigner"]


PLAY = playbook("roles/k8s_component_flags.yml")


def run_module(run_playbook, args, check=False):
    return run_playbook(PLAY, extra_vars={"edit": args}, check=check, env={"ANSIBLE_PIPELINING": "1"})


def test_env_file_is_created_and_export_lines_are_understood(run_playbook, tmp_path):
    path = tmp_path / "kubelet"
    created = assert_ok(run_module(run_playbook, {"path": str(path), "format": "env_file", "variable": "ARGS",
                                                  "flags": {"v": 2}, "mode": "0640"}))
    assert created.changed == 1
    assert path.read_text() == 'ARGS="--v=2"\n'
    assert file_mode(str(path)) == 0o640

    path.write_text("# comment\nexport ARGS='--v=2 --x=y'\nOTHER=1\n")
    same = assert_ok(run_module(run_playbook, {"path": str(path), "format": "env_file", "variable": "ARGS", "flags": {"v": 2}}))
    assert same.changed == 0, "equal arguments in another quoting are left alone"
    assert_ok(run_module(run_playbook, {"path": str(path), "format": "env_file", "variable": "ARGS", "absent": ["x"]}))
    assert path.read_text() == '# comment\nARGS="--v=2"\nOTHER=1\n'
    assert env_args(str(path), "ARGS") == ["--v=2"]


def test_an_edited_file_keeps_its_mode_and_a_new_one_is_0600(run_playbook, tmp_path):
    kept = tmp_path / "kept.env"
    kept.write_text('ARGS="--v=1"\n')
    os.chmod(kept, 0o640)
    assert_ok(run_module(run_playbook, {"path": str(kept), "format": "env_file", "variable": "ARGS", "flags": {"v": 2}}))
    assert kept.read_text() == 'ARGS="--v=2"\n' and file_mode(str(kept)) == 0o640
    new = tmp_path / "new.yaml"
    assert_ok(run_module(run_playbook, {"path": str(new), "format": "yaml", "settings": {"token": "s3cr3t"}}))
    assert file_mode(str(new)) == 0o600, "a new file may hold a secret setting: nobody else reads it unless mode says so"


@pytest.mark.parametrize("args, message", [
    ({"format": "env_file", "variable": "ARGS", "flags": {"x": "a b"}}, "holds whitespace, a quote or a backslash"),
    ({"format": "static_pod", "flags": {"--x": "1"}}, "is not a flag name"),
    ({"format": "static_pod", "flags": {"x": "1"}, "absent": ["x"]}, "named in more than one"),
    ({"format": "yaml", "flags": {"x": "1"}}, "do not apply to format=yaml"),
    ({"format": "static_pod", "container": "nope", "flags": {"x": "1"}}, "has no container named 'nope'"),
], ids=["env-space", "dashes", "overlap", "yaml-flags", "container"])
def test_module_refusals(run_playbook, node_tree, args, message):
    root = node_tree("kubeadm")
    manifest = os.path.join(root, "etc/kubernetes/manifests/kube-controller-manager.yaml")
    target = manifest if args["format"] == "static_pod" else os.path.join(root, "var/lib/kubelet/kubeadm-flags.env")
    if args["format"] == "yaml":
        target = os.path.join(root, "var/lib/kubelet/config.yaml")
    result = run_module(run_playbook, dict(args, path=target))
    assert result.rc != 0
    assert message in task_result(result, "Edit")["msg"]
    assert "--x" not in " ".join(manifest_command(manifest))


def test_static_pod_check_mode_and_diff(run_playbook, node_tree):
    root = node_tree("kubeadm")
    manifest = os.path.join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")
    with open(manifest, "rb") as handle:
        original = handle.read()
    args = {"path": manifest, "flags": {"v": 4}, "absent": ["allow-privileged"]}
    result = assert_ok(run_playbook(PLAY, extra_vars={"edit": args}, check=True, diff=True))
    outcome = task_result(result, "Edit")
    assert outcome["changed"] is True
    assert "--v=4" in outcome["flags"] and "--allow-privileged=true" not in outcome["flags"]
    diff = outcome["diff"][0] if isinstance(outcome["diff"], list) else outcome["diff"]
    assert "- --allow-privileged=true" in diff["before"]
    assert "- --v=4" in diff["after"]
    with open(manifest, "rb") as handle:
        assert handle.read() == original
    assert not [name for name in os.listdir(os.path.dirname(manifest)) if name.startswith(".")], "no temporary files left"


def test_static_pod_flags_in_args(run_playbook, tmp_path):
    manifest = tmp_path / "kube-scheduler.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\nspec:\n  containers:\n  - name: s\n"
                        "    command: [kube-scheduler]\n    args: ['--v=2']\n")
    result = assert_ok(run_module(run_playbook, {"path": str(manifest), "flags": {"v": 3, "leader-elect": True}}))
    assert task_result(result, "Edit")["flags"] == ["kube-scheduler", "--v=3", "--leader-elect=true"]
    assert manifest_command(str(manifest)) == ["kube-scheduler"]
    assert assert_ok(run_module(run_playbook, {"path": str(manifest), "flags": {"v": 3, "leader-elect": True}})).changed == 0
