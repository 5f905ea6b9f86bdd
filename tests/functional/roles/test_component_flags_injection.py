"""k8s_component_flags and the roles that feed it, through ansible-playbook: a flag name or value holding a line break
(or another control character) is refused before the environment file or manifest is written, and the value is not
echoed in the output."""

import os

from playbook_files import playbook
from roles_support import manifest_command, snapshot, task_result

SECRET = "s3cr3t-oidc-client"

PLAY = playbook("roles/k8s_component_flags.yml")


def run_module(run_playbook, args):
    return run_playbook(PLAY, extra_vars={"edit": args}, env={"ANSIBLE_PIPELINING": "1"})


def test_a_new_line_in_a_flag_name_or_value_never_reaches_the_file(run_playbook, node_tree):
    root = node_tree("kubeadm")
    env_file = os.path.join(root, "var/lib/kubelet/kubeadm-flags.env")
    manifest = os.path.join(root, "etc/kubernetes/manifests/kube-controller-manager.yaml")
    before = snapshot(root)
    cases = [
        ({"path": env_file, "format": "env_file", "variable": "KUBELET_KUBEADM_ARGS", "flags": {"v\n": 4}},
         "flags: the flag name 'v\\n' holds a control character"),
        ({"path": env_file, "format": "env_file", "variable": "KUBELET_KUBEADM_ARGS\n", "flags": {"v": 4}},
         "variable must be set to an environment variable name"),
        ({"path": env_file, "format": "env_file", "variable": "KUBELET_KUBEADM_ARGS", "flags": {"bootstrap-token": SECRET + "\x00"}},
         "flags: the value of flag 'bootstrap-token' holds a control character"),
        ({"path": manifest, "container": "kube-controller-manager", "flags": {"cluster-signing-duration": "1h\n- --controllers=*"}},
         "flags: the value of flag 'cluster-signing-duration' holds a control character"),
        ({"path": manifest, "container": "kube-controller-manager", "merge_lists": {"controllers": ["csrsigning", SECRET + "\r"]}},
         "merge_lists: the value of flag 'controllers' holds a control character"),
    ]
    for args, message in cases:
        result = run_module(run_playbook, args)
        assert result.rc != 0, (args, result)
        assert task_result(result, "Edit")["msg"].startswith(message), task_result(result, "Edit")["msg"]
        assert SECRET not in task_result(result, "Edit")["msg"]
    assert snapshot(root) == before


def test_a_role_cannot_write_a_flag_with_a_new_line(run_role, node_tree):
    """apiserver_auth hands apiserver_auth_extra_flags to k8s_component_flags: the same refusal, the manifest as it was."""
    root = node_tree("kubeadm")
    manifest = os.path.join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")
    original = manifest_command(manifest)
    before = snapshot(root)
    result = run_role("apiserver_auth", {"apiserver_auth_root": root,
                                         "apiserver_auth_extra_flags": {"oidc-client-id": "kubernetes\n--authorization-mode=AlwaysAllow"}})
    assert result.rc != 0, result
    msg = task_result(result, "Set the authentication and authorization flags in the kube-apiserver manifest")["msg"]
    assert msg.startswith("flags: the value of flag 'oidc-client-id' holds a control character"), msg
    assert manifest_command(manifest) == original and snapshot(root) == before
