"""playbooks/bootstrap_signing.yml: a kubeadm control-plane host and a systemd worker, against the clusters under test."""

import os

import yaml

from roles_support import assert_ok, env_args, manifest_command

PLAY = """
- name: Run the collection playbook
  ansible.builtin.import_playbook: kubepki.certs.bootstrap_signing
"""


def test_bootstrap_signing_playbook(sandbox, node_tree, run_playbook):
    cluster = sandbox.cluster(sandbox.names[1])
    with open(cluster.ca_cert, encoding="ascii") as handle:
        ca_pem = handle.read()
    control, worker = node_tree("kubeadm"), node_tree("systemd")
    hosts = {
        "cp-1": {"controller_manager_signing_root": control, "apiserver_auth_root": control, "kubelet_bootstrap_root": control},
        "node-1": {"kubelet_bootstrap_root": worker, "kubelet_bootstrap_install_style": "systemd"},
    }
    extra = {
        "kubepki_become": False,
        "kubepki_control_plane_hosts": "cp-1",
        "kubepki_node_hosts": "all",
        "kubelet_bootstrap_restart": False,
        "kubelet_bootstrap_api_kubeconfig": cluster.kubeconfig,
        "kubelet_bootstrap_server": cluster.server,
        "kubelet_bootstrap_ca_cert_content": ca_pem,
        "kubelet_bootstrap_token_name": "playbook-%d" % os.getpid(),
    }
    env = {"ANSIBLE_PIPELINING": "1"}
    assert_ok(run_playbook(PLAY, extra_vars=extra, hosts=hosts, env=env))

    kcm = manifest_command(os.path.join(control, "etc/kubernetes/manifests/kube-controller-manager.yaml"))
    assert "--controllers=*,bootstrapsigner,tokencleaner,csrapproving,csrsigning,csrcleaner" in kcm
    assert "--cluster-signing-duration=8760h" in kcm
    apiserver = manifest_command(os.path.join(control, "etc/kubernetes/manifests/kube-apiserver.yaml"))
    assert "--authorization-mode=Node,RBAC" in apiserver and "--enable-bootstrap-token-auth=true" in apiserver
    assert "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf" in env_args(
        os.path.join(worker, "etc/default/kubelet"), "KUBELET_EXTRA_ARGS")
    tokens = set()
    for root in (control, worker):
        with open(os.path.join(root, "etc/kubernetes/bootstrap-kubelet.conf"), encoding="utf-8") as handle:
            tokens.add(yaml.safe_load(handle)["users"][0]["user"]["token"])
    assert len(tokens) == 1, "one token for every node of the run"

    again = assert_ok(run_playbook(PLAY, extra_vars=extra, hosts=hosts, env=env))
    assert again.changed == 0, repr(again)
