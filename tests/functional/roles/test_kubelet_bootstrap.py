"""kubelet_bootstrap: node files on kubeadm and systemd trees, and a simulated kubelet TLS bootstrap on the clusters
under test."""

import base64
import ipaddress
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

from kubeharness.client import kubectl, kubectl_json
from playbook_files import playbook
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

    # Check mode on a cluster that has no token yet: changes reported, nothing created anywhere.
    before = snapshot(root)
    check = assert_ok(run_role(ROLE, variables, check=True, diff=True))
    assert check.changed > 0
    assert snapshot(root) == before
    selector = "kubepki.certs/bootstrap-token=" + token_name
    assert kubectl_json(cluster.kubeconfig, "-n", "kube-system", "get", "secrets", "-l", selector)["items"] == []

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
    secret = kubectl_json(cluster.kubeconfig, "-n", "kube-system", "get", "secret", "bootstrap-token-" + token_id)
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
        binding = kubectl_json(cluster.kubeconfig, "get", "clusterrolebinding", name)
        assert binding["roleRef"]["name"] == role
        assert [subject["name"] for subject in binding["subjects"]] == [group]

    # Re-runs reuse the token and change nothing, in check mode too.
    second = assert_ok(run_role(ROLE, variables))
    assert second.changed == 0, repr(second)
    assert load_yaml(bootstrap_kubeconfig)["users"][0]["user"]["token"] == token
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0

    # The kubelet's side: with nothing but the bootstrap kubeconfig, ask for a client certificate.
    bootstrap_client_certificate(bootstrap_kubeconfig, "node-%s" % token_id, token_id, ca_pem)

    # Dropping the extra groups removes the key from the Secret (replaced, not merged); the token stays.
    variables["kubelet_bootstrap_token_extra_groups"] = []
    assert assert_ok(run_role(ROLE, variables)).changed == 1
    secret = kubectl_json(cluster.kubeconfig, "-n", "kube-system", "get", "secret", "bootstrap-token-" + token_id)
    assert "auth-extra-groups" not in secret["data"]
    assert base64.b64decode(secret["data"]["expiration"]).decode() == data["expiration"]


def wait_for_certificate(kubeconfig, name, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        current = kubectl_json(kubeconfig, "get", "csr", name)
        if current.get("status", {}).get("certificate") or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


def bootstrap_client_certificate(bootstrap_kubeconfig, node, token_id, ca_pem):
    """Do what the kubelet does with its bootstrap kubeconfig; return (key, issued certificate)."""
    key, csr_pem = kubelet_client_csr(node)
    csr_name = "node-csr-%s-%s" % (token_id, node)
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
    current = wait_for_certificate(bootstrap_kubeconfig, csr_name)
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
    return key, issued


def node_kubeconfig(path, server, ca_pem, key, cert):
    """The kubeconfig the kubelet writes after bootstrap (client certificate of the node)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "default-context",
        "clusters": [{"name": "default-cluster", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": "default-auth", "user": {
            "client-certificate-data": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
            "client-key-data": base64.b64encode(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption())).decode()}}],
        "contexts": [{"name": "default-context",
                      "context": {"cluster": "default-cluster", "user": "default-auth", "namespace": "default"}}],
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return str(path)


def serving_csr(kubeconfig, name, node, dns, ips):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + node)])
    sans = [x509.DNSName(item) for item in dns] + [x509.IPAddress(ipaddress.ip_address(item)) for item in ips]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    manifest = {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"]},
    }
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(manifest))


APPROVE_PLAY = playbook("modules/csr_approve.yml")


def approval(kubeconfig, name):
    """The variables of APPROVE_PLAY: kubelet serving certificates under a policy allowing only 10.0.0.0/16."""
    return {"kc": kubeconfig, "csr_names": [name], "csr_policy": {"key_must_match_store": False, "allowed_ip_cidrs": ["10.0.0.0/16"]}}


def test_serving_bootstrap_csr_approved_by_policy_and_forged_one_refused(sandbox, node_tree, run_role, run_playbook, tmp_path):
    cluster = sandbox.cluster(sandbox.names[0])
    with open(cluster.ca_cert, encoding="ascii") as handle:
        ca_pem = handle.read()
    root = node_tree("kubeadm")
    variables = node_vars(root, "kubeadm",
                          kubelet_bootstrap_api_kubeconfig=cluster.kubeconfig,
                          kubelet_bootstrap_server=cluster.server,
                          kubelet_bootstrap_ca_cert_content=ca_pem,
                          kubelet_bootstrap_token_name="serving-%d" % os.getpid(),
                          kubelet_bootstrap_server_tls_bootstrap=True)
    assert_ok(run_role(ROLE, variables))
    assert load_yaml(os.path.join(root, "var/lib/kubelet/config.yaml"))["serverTLSBootstrap"] is True
    bootstrap_kubeconfig = os.path.join(root, "etc/kubernetes/bootstrap-kubelet.conf")
    token_id = load_yaml(bootstrap_kubeconfig)["users"][0]["user"]["token"].split(".")[0]
    node = "worker-%s" % token_id
    key, cert = bootstrap_client_certificate(bootstrap_kubeconfig, node, token_id, ca_pem)
    as_node = node_kubeconfig(tmp_path / "kubelet.conf", cluster.server, ca_pem, key, cert)

    # A real apiserver's Node authorizer lets nodes create CSRs; the sandbox has RBAC only, so bind it here.
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "test:nodes-request-certificates"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-bootstrapper"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}
    subprocess.run([KUBECTL, "--kubeconfig", cluster.kubeconfig, "create", "-f", "-"], input=json.dumps(binding),
                   capture_output=True, text=True, timeout=60, check=False)

    good, forged = "serving-%s" % token_id, "forged-%s" % token_id
    serving_csr(as_node, good, node, [node], ["10.0.0.7"])
    # The node asks for another node's serving certificate, with an address outside the cluster network.
    serving_csr(as_node, forged, "victim-%s" % token_id, ["victim"], ["192.168.99.9"])

    approved = assert_ok(run_playbook(APPROVE_PLAY, extra_vars=approval(cluster.kubeconfig, good)))
    assert task_result(approved, "Approve")["changed"] is True
    issued = wait_for_certificate(as_node, good)
    cert = x509.load_pem_x509_certificate(base64.b64decode(issued["status"]["certificate"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [node]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]

    refused = run_playbook(APPROVE_PLAY, extra_vars=approval(cluster.kubeconfig, forged))
    assert refused.rc != 0
    message = task_result(refused, "Approve")["msg"]
    assert "is not the node" in message and "192.168.99.9" in message, message
    state = kubectl_json(cluster.kubeconfig, "get", "csr", forged)
    assert not state.get("status", {}).get("conditions"), "the forged request stays pending"
