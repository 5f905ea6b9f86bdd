"""controller_manager_signing against kubeadm and systemd node trees."""

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from playbook_files import playbook
from roles_support import assert_ok, env_args, file_mode, manifest_command, snapshot, task_result

ROLE = "controller_manager_signing"
KCM = "etc/kubernetes/manifests/kube-controller-manager.yaml"
CONTROLLERS = "--controllers=*,bootstrapsigner,tokencleaner,csrapproving,csrsigning,csrcleaner"

KUBEADM_EXPECTED = [
    "kube-controller-manager",
    "--allocate-node-cidrs=true",
    "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
    "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
    "--bind-address=127.0.0.1",
    "--client-ca-file=/etc/kubernetes/pki/ca.crt",
    "--cluster-cidr=10.244.0.0/16",
    "--cluster-name=kubernetes",
    "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
    "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
    CONTROLLERS,
    "--kubeconfig=/etc/kubernetes/controller-manager.conf",
    "--leader-elect=true",
    "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
    "--root-ca-file=/etc/kubernetes/pki/ca.crt",
    "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
    "--service-cluster-ip-range=10.96.0.0/12",
    "--use-service-account-credentials=true",
    "--cluster-signing-duration=8760h",
]


def make_ca(common_name="operator-ca"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_kubeadm_exact_flags_idempotent_and_check_mode(node_tree, run_role):
    root = node_tree("kubeadm")
    before = snapshot(root)
    variables = {"controller_manager_signing_root": root}

    check = assert_ok(run_role(ROLE, variables, check=True, diff=True))
    assert check.changed == 1
    assert snapshot(root) == before, "check mode changed files"

    first = assert_ok(run_role(ROLE, variables))
    assert first.changed == 1
    manifest = os.path.join(root, KCM)
    assert manifest_command(manifest) == KUBEADM_EXPECTED
    assert file_mode(manifest) == 0o600
    # Only the manifest was touched: no CA written with ca_source=existing, nothing else in the tree.
    after = snapshot(root)
    assert set(after) == set(before)
    assert {path for path in after if after[path] != before[path]} == {KCM}

    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


def test_systemd_env_file_drops_removed_flag_and_merges_controllers(node_tree, run_role):
    root = node_tree("systemd")
    path = os.path.join(root, "etc/kubernetes/controller-manager")
    with open(path, encoding="utf-8") as handle:
        original_lines = handle.read().splitlines()
    variables = {
        "controller_manager_signing_root": root,
        "controller_manager_signing_install_style": "systemd",
        "controller_manager_signing_restart": False,
        "controller_manager_signing_duration": "720h",
    }
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 1
    assert env_args(path, "KUBE_CONTROLLER_MANAGER_ARGS")[3] == "--experimental-cluster-signing-duration=43800h"

    assert assert_ok(run_role(ROLE, variables)).changed == 1
    assert env_args(path, "KUBE_CONTROLLER_MANAGER_ARGS") == [
        "--kubeconfig=/etc/kubernetes/controller-manager.kubeconfig",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--controllers=*,bootstrapsigner,csrapproving,csrsigning,csrcleaner,tokencleaner",
        "--leader-elect=true",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--cluster-signing-duration=720h",
    ]
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[:-1] == original_lines[:-1], "comments and other lines are kept"
    assert file_mode(path) == 0o644

    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


def test_per_signer_pairs_replace_the_generic_pair(node_tree, run_role):
    root = node_tree("kubeadm")
    variables = {
        "controller_manager_signing_root": root,
        "controller_manager_signing_files": {
            "kubelet_client": {"cert_file": "/etc/kubernetes/pki/kubelet-ca.crt", "key_file": "/etc/kubernetes/pki/kubelet-ca.key"},
            "kube_apiserver_client": {"cert_file": "/etc/kubernetes/pki/users-ca.crt", "key_file": "/etc/kubernetes/pki/users-ca.key"},
        },
    }
    assert_ok(run_role(ROLE, variables))
    command = manifest_command(os.path.join(root, KCM))
    signing = [arg for arg in command if arg.startswith("--cluster-signing")]
    assert signing == [
        "--cluster-signing-kubelet-client-cert-file=/etc/kubernetes/pki/kubelet-ca.crt",
        "--cluster-signing-kubelet-client-key-file=/etc/kubernetes/pki/kubelet-ca.key",
        "--cluster-signing-kube-apiserver-client-cert-file=/etc/kubernetes/pki/users-ca.crt",
        "--cluster-signing-kube-apiserver-client-key-file=/etc/kubernetes/pki/users-ca.key",
        "--cluster-signing-duration=8760h",
    ]
    assert assert_ok(run_role(ROLE, variables)).changed == 0

    # Back to the generic pair: every per-signer flag goes away again.
    generic = {"controller_manager_signing_root": root}
    assert assert_ok(run_role(ROLE, generic)).changed == 1
    command = manifest_command(os.path.join(root, KCM))
    assert sorted(command) == sorted(KUBEADM_EXPECTED)
    assert [arg for arg in command if arg.startswith("--cluster-signing")] == [
        "--cluster-signing-duration=8760h",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
    ]


@pytest.mark.parametrize("files, message", [
    ({"cert_file": "/a.crt", "key_file": "/a.key", "kubelet_serving": {"cert_file": "/b.crt", "key_file": "/b.key"}},
     "parameters are mutually exclusive: cert_file|kubelet_serving, key_file|kubelet_serving"),
    ({"cert_file": "/a.crt"}, "parameters are required together: cert_file, key_file"),
    ({"legacy_unknown": {"cert_file": "/b.crt"}}, "missing required arguments: key_file found in controller_manager_signing_files -> legacy_unknown"),
    ({}, "one of the following is required"),
], ids=["mixed", "generic-cert-without-key", "signer-cert-without-key", "none"])
def test_refuses_mixed_or_incomplete_signing_files(node_tree, run_role, files, message):
    root = node_tree("kubeadm")
    before = snapshot(root)
    result = run_role(ROLE, {"controller_manager_signing_root": root, "controller_manager_signing_files": files})
    assert result.rc != 0
    failure = task_result(result, "Validating arguments against arg spec 'main' - Make kube-controller-manager sign CertificateSigningRequests")
    assert message in failure["msg"], failure["msg"]
    assert snapshot(root) == before


def test_operator_ca_from_content_and_from_files(node_tree, run_role, tmp_path):
    cert_pem, key_pem = make_ca()
    root = node_tree("kubeadm")
    variables = {
        "controller_manager_signing_root": root,
        "controller_manager_signing_ca_source": "content",
        "controller_manager_signing_ca_cert_content": cert_pem,
        "controller_manager_signing_ca_key_content": key_pem,
    }
    first = assert_ok(run_role(ROLE, variables, diff=True))
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    cert_path = os.path.join(root, "etc/kubernetes/pki/ca.crt")
    key_path = os.path.join(root, "etc/kubernetes/pki/ca.key")
    with open(cert_path, encoding="ascii") as handle:
        assert handle.read() == cert_pem
    with open(key_path, encoding="ascii") as handle:
        assert handle.read() == key_pem
    assert file_mode(cert_path) == 0o644
    assert file_mode(key_path) == 0o600
    assert assert_ok(run_role(ROLE, variables)).changed == 0

    # The same CA from files on the controller, into other node paths: the flags follow.
    (tmp_path / "ca.crt").write_text(cert_pem)
    (tmp_path / "ca.key").write_text(key_pem)
    root2 = node_tree("systemd")
    variables = {
        "controller_manager_signing_root": root2,
        "controller_manager_signing_install_style": "systemd",
        "controller_manager_signing_restart": False,
        "controller_manager_signing_ca_source": "file",
        "controller_manager_signing_ca_cert_src": str(tmp_path / "ca.crt"),
        "controller_manager_signing_ca_key_src": str(tmp_path / "ca.key"),
        "controller_manager_signing_ca_cert_path": "/etc/kubernetes/ssl/signer.pem",
        "controller_manager_signing_ca_key_path": "/etc/kubernetes/ssl/signer-key.pem",
        "controller_manager_signing_files": {"cert_file": "/etc/kubernetes/ssl/signer.pem", "key_file": "/etc/kubernetes/ssl/signer-key.pem"},
    }
    assert_ok(run_role(ROLE, variables))
    assert file_mode(os.path.join(root2, "etc/kubernetes/ssl/signer-key.pem")) == 0o600
    args = env_args(os.path.join(root2, "etc/kubernetes/controller-manager"), "KUBE_CONTROLLER_MANAGER_ARGS")
    assert "--cluster-signing-cert-file=/etc/kubernetes/ssl/signer.pem" in args
    assert "--cluster-signing-key-file=/etc/kubernetes/ssl/signer-key.pem" in args
    assert assert_ok(run_role(ROLE, variables)).changed == 0


def test_content_source_needs_cert_and_key(node_tree, run_role):
    root = node_tree("kubeadm")
    result = run_role(ROLE, {"controller_manager_signing_root": root, "controller_manager_signing_ca_source": "content",
                             "controller_manager_signing_ca_cert_content": "x"})
    assert result.rc != 0
    assert "needs both the certificate and the key" in task_result(result, "Check that the chosen signing CA source has its inputs")["msg"]


def test_generated_ca_and_component_certificates(node_tree, run_role):
    root = node_tree("kubeadm")
    variables = {
        "controller_manager_signing_root": root,
        "controller_manager_signing_ca_source": "generate",
        "controller_manager_signing_ca_key_type": "ECC",
        "controller_manager_signing_component_certs_enabled": True,
    }
    before = snapshot(root)
    assert assert_ok(run_role(ROLE, variables, check=True)).changed > 0
    assert snapshot(root) == before

    assert_ok(run_role(ROLE, variables))
    pki = os.path.join(root, "etc/kubernetes/pki")
    with open(os.path.join(pki, "ca.crt"), "rb") as handle:
        ca = x509.load_pem_x509_certificate(handle.read())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-ca"
    assert file_mode(os.path.join(pki, "ca.key")) == 0o600
    for name, common_name in [("apiserver", "kube-apiserver"), ("admin", "kubernetes-admin"),
                              ("controller-manager", "system:kube-controller-manager")]:
        with open(os.path.join(pki, name + ".crt"), "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
        assert file_mode(os.path.join(pki, name + ".key")) == 0o600
    with open(os.path.join(pki, "admin.crt"), "rb") as handle:
        admin = x509.load_pem_x509_certificate(handle.read())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    with open(os.path.join(pki, "apiserver.crt"), "rb") as handle:
        sans = x509.load_pem_x509_certificate(handle.read()).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)

    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


def test_generated_ca_is_shared_by_every_control_plane_host(node_tree, run_playbook):
    roots = {"cp-1": node_tree("kubeadm"), "cp-2": node_tree("systemd")}
    hosts = {
        "cp-1": {"controller_manager_signing_root": roots["cp-1"]},
        "cp-2": {"controller_manager_signing_root": roots["cp-2"], "controller_manager_signing_install_style": "systemd",
                 "controller_manager_signing_restart": False},
    }
    play = playbook("roles/two_control_plane_hosts.yml")
    env = {"ANSIBLE_PIPELINING": "1"}
    first = assert_ok(run_playbook(play, hosts=hosts, env=env))
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    contents = {}
    for host, root in roots.items():
        pki = os.path.join(root, "etc/kubernetes/pki")
        assert file_mode(os.path.join(pki, "ca.key")) == 0o600
        assert file_mode(os.path.join(pki, "ca.crt")) == 0o644
        with open(os.path.join(pki, "ca.crt"), "rb") as crt, open(os.path.join(pki, "ca.key"), "rb") as key:
            contents[host] = (crt.read(), key.read())
    assert contents["cp-1"] == contents["cp-2"], "the second host got the CA generated on the first"
    again = assert_ok(run_playbook(play, hosts=hosts, env=env))
    assert again.changed == 0, repr(again)


def test_trust_bundle_is_left_alone_where_the_server_serves_none(node_tree, run_role, sandbox):
    """The sandbox, like Kubernetes 1.36 without the feature gate, serves no ClusterTrustBundle API: with
    controller_manager_signing_trust_bundle the role still succeeds and publishes nothing (the publishing itself
    is proven against a real kube-apiserver in tests/functional/real/test_real_trust_bundle.py)."""
    root = node_tree("kubeadm")
    cert_pem, key_pem = make_ca()
    variables = {"controller_manager_signing_root": root, "controller_manager_signing_ca_source": "content",
                 "controller_manager_signing_ca_cert_content": cert_pem, "controller_manager_signing_ca_key_content": key_pem,
                 "controller_manager_signing_trust_bundle": True,
                 "controller_manager_signing_trust_bundle_kubeconfig": sandbox.cluster(sandbox.names[0]).kubeconfig}
    first = assert_ok(run_role(ROLE, variables))
    [published] = [task["hosts"]["localhost"] for task in first.tasks() if "ClusterTrustBundle" in task["task"]["name"]]
    assert published["served"] is False and not published["changed"], published
