"""kubelet_bootstrap: node files on kubeadm and systemd trees, and a simulated kubelet TLS bootstrap on the sandbox."""

import base64
import json
import os
import re
import subprocess
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roles_support import assert_ok, env_args, file_mode, snapshot, task_result

ROLE = "kubelet_bootstrap"
TOKEN = "abcdef.0123456789abcdef"
KUBECTL = "/usr/bin/kubectl"


def node_vars(root, style, **extra):
    variables = {
        "kubelet_bootstrap_root": root,
        "kubelet_bootstrap_install_style": style,
        "kubelet_bootstrap_restart": False,
    }
    variables.update(extra)
    return variables


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("style, env_file, variable", [
    ("kubeadm", "var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS"),
    ("systemd", "etc/default/kubelet", "KUBELET_EXTRA_ARGS"),
])
def test_node_files_with_a_given_token(node_tree, run_role, style, env_file, variable):
    root = node_tree(style)
    before = snapshot(root)
    variables = node_vars(root, style, kubelet_bootstrap_manage_cluster=False, kubelet_bootstrap_token=TOKEN,
                          kubelet_bootstrap_server="https://10.0.0.1:6443", kubelet_bootstrap_server_tls_bootstrap=True)
    check = assert_ok(run_role(ROLE, variables, check=True, diff=True))
    assert check.changed == 3
    assert snapshot(root) == before
    assert TOKEN not in check.stdout + check.stderr

    first = assert_ok(run_role(ROLE, variables, diff=True))
    assert TOKEN not in first.stdout + first.stderr
    kubeconfig_path = os.path.join(root, "etc/kubernetes/bootstrap-kubelet.conf")
    assert file_mode(kubeconfig_path) == 0o600
    assert load_yaml(kubeconfig_path) == {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster",
                      "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority": "/etc/kubernetes/pki/ca.crt"}}],
        "contexts": [{"name": "tls-bootstrap-token-user@default-cluster",
                      "context": {"cluster": "default-cluster", "user": "tls-bootstrap-token-user"}}],
        "current-context": "tls-bootstrap-token-user@default-cluster",
        "preferences": {},
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": TOKEN}}],
    }

    args = env_args(os.path.join(root, env_file), variable)
    original = env_args(os.path.join(os.path.dirname(__file__), "fixtures", style, env_file), variable)
    assert args == original + [
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--cert-dir=/var/lib/kubelet/pki",
    ]
    config = load_yaml(os.path.join(root, "var/lib/kubelet/config.yaml"))
    fixture_config = load_yaml(os.path.join(os.path.dirname(__file__), "fixtures", style, "var/lib/kubelet/config.yaml"))
    assert config == dict(fixture_config, rotateCertificates=True, serverTLSBootstrap=True)

    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


@pytest.mark.parametrize("extra, message", [
    ({"kubelet_bootstrap_token": "ABCDEF.0123456789abcdef"}, "kubelet_bootstrap_token must match"),
    ({"kubelet_bootstrap_token": TOKEN, "kubelet_bootstrap_token_extra_groups": ["system:bootstrappers:Bad_Group"]},
     "refused: system:bootstrappers:Bad_Group"),
    ({"kubelet_bootstrap_token": TOKEN, "kubelet_bootstrap_token_extra_groups": ["system:nodes"]}, "refused: system:nodes"),
], ids=["token-format", "group-chars", "group-prefix"])
def test_refuses_bad_token_or_groups(node_tree, run_role, extra, message):
    root = node_tree("systemd")
    before = snapshot(root)
    result = run_role(ROLE, node_vars(root, "systemd", kubelet_bootstrap_manage_cluster=False, **extra))
    assert result.rc != 0
    assert snapshot(root) == before
    if "ABCDEF" in extra.get("kubelet_bootstrap_token", ""):
        # A malformed token may still be a secret: the failure is censored rather than echoed.
        assert "ABCDEF.0123456789abcdef" not in result.stdout + result.stderr
    else:
        assert message in task_result(result, "Check the bootstrap token settings")["msg"]


def kubectl(kubeconfig, *args, stdin=None):
    proc = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, "kubectl %s failed: %s %s" % (" ".join(args), proc.stdout, proc.stderr)
    return proc.stdout


def kubelet_client_csr(node):
    """What the kubelet sends: ECDSA P-256 key, CN system:node:<node>, O system:nodes, no SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + node)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def test_simulated_kubelet_bootstrap_on_the_sandbox(sandbox, node_tree, run_role, tmp_path):
    cluster = sandbox.cluster(sandbox.names[0])
    with open(cluster.ca_cert, encoding="ascii") as handle:
        ca_pem = handle.read()
    root = node_tree("systemd")
    token_name = "functional-%d" % os.getpid()
    variables = node_vars(root, "systemd",
                          kubelet_bootstrap_api_kubeconfig=cluster.kubeconfig,
                          kubelet_bootstrap_server=cluster.server,
                          kubelet_bootstrap_ca_cert_content=ca_pem,
                          kubelet_bootstrap_token_name=token_name,
                          kubelet_bootstrap_token_ttl=3600)

    first = assert_ok(run_role(ROLE, variables))
    bootstrap_kubeconfig = os.path.join(root, "etc/kubernetes/bootstrap-kubelet.conf")
    assert file_mode(bootstrap_kubeconfig) == 0o600
    rendered = load_yaml(bootstrap_kubeconfig)
    token = rendered["users"][0]["user"]["token"]
    assert re.match(r"^[a-z0-9]{6}\.[a-z0-9]{16}$", token)
    token_id, token_secret = token.split(".")
    assert token_secret not in first.stdout + first.stderr
    assert base64.b64decode(rendered["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == ca_pem

    # The Secret, as the apiserver's bootstrap authenticator reads it.
    secret = json.loads(kubectl(cluster.kubeconfig, "-n", "kube-system", "get", "secret", "bootstrap-token-" + token_id, "-o", "json"))
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert data["token-id"] == token_id and data["token-secret"] == token_secret
    assert data["usage-bootstrap-authentication"] == "true" and data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubepki:default-node-token"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", data["expiration"])
    for name, role, group in [
            ("kubepki:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers"),
            ("kubepki:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
             "system:bootstrappers"),
            ("kubepki:node-autoapprove-certificate-rotation",
             "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes")]:
        binding = json.loads(kubectl(cluster.kubeconfig, "get", "clusterrolebinding", name, "-o", "json"))
        assert binding["roleRef"]["name"] == role
        assert [subject["name"] for subject in binding["subjects"]] == [group]

    # Re-runs reuse the token and change nothing, in check mode too.
    second = assert_ok(run_role(ROLE, variables))
    assert second.changed == 0, repr(second)
    assert load_yaml(bootstrap_kubeconfig)["users"][0]["user"]["token"] == token
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0

    # The kubelet's side: with nothing but the bootstrap kubeconfig, ask for a client certificate.
    node = "node-%s" % token_id
    key, csr_pem = kubelet_client_csr(node)
    csr_name = "node-csr-%s" % token_id
    manifest = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": csr_name},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }
    kubectl(bootstrap_kubeconfig, "create", "-f", "-", stdin=json.dumps(manifest))

    deadline = time.monotonic() + 60
    while True:
        current = json.loads(kubectl(bootstrap_kubeconfig, "get", "csr", csr_name, "-o", "json"))
        if current.get("status", {}).get("certificate") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert current["spec"]["username"] == "system:bootstrap:" + token_id
    assert "system:bootstrappers:kubepki:default-node-token" in current["spec"]["groups"]
    conditions = {cond["type"]: cond for cond in current.get("status", {}).get("conditions", [])}
    assert conditions.get("Approved", {}).get("reason") == "AutoApproved", current
    assert "Denied" not in conditions and "Failed" not in conditions
    issued = x509.load_pem_x509_certificate(base64.b64decode(current["status"]["certificate"]))
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:" + node
    assert issued.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert issued.public_key().public_numbers() == key.public_key().public_numbers()
    usages = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
