"""kubectl against the sandbox: get/describe/approve/deny/jsonpath/create/apply/auth, plus an older kubectl."""

import base64
import os
import re
import time

import pytest
import yaml

from sandbox_helpers import CSR_BASE, KUBECTL, OLD_KUBECTL, b64, csr_pem, kubectl, unique


def manifest(name, cn="k", signer="kubernetes.io/kube-apiserver-client", usages=("client auth",), labels=None,
             expiration=None):
    spec = {"request": b64(csr_pem(cn)), "signerName": signer, "usages": list(usages)}
    if expiration:
        spec["expirationSeconds"] = expiration
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return yaml.safe_dump({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                           "metadata": meta, "spec": spec})


def wait_condition(kc, name, text, binary=KUBECTL):
    deadline = time.monotonic() + 10
    out = ""
    while time.monotonic() < deadline:
        out = kubectl(kc, "get", "csr", name, "--no-headers", binary=binary).stdout
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError("%s never showed %s: %s" % (name, text, out))


def test_create_get_approve_describe(c1, tmp_path):
    name = unique()
    path = tmp_path / "csr.yaml"
    path.write_text(manifest(name, expiration=3600))
    assert kubectl(c1.kubeconfig, "create", "-f", str(path)).stdout.strip() == (
        "certificatesigningrequest.certificates.k8s.io/%s created" % name)
    out = kubectl(c1.kubeconfig, "get", "csr", name).stdout.splitlines()
    header = ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert re.split(r"\s{2,}", out[0].strip()) == header
    cells = re.split(r"\s{2,}", out[1].strip())
    assert cells[0] == name and cells[2:] == ["kubernetes.io/kube-apiserver-client", "kubernetes-admin", "60m",
                                              "Pending"]
    assert kubectl(c1.kubeconfig, "certificate", "approve", name).stdout.strip() == (
        "certificatesigningrequest.certificates.k8s.io/%s approved" % name)
    wait_condition(c1.kubeconfig, name, "Approved,Issued")
    cert = kubectl(c1.kubeconfig, "get", "csr", name, "-o", "jsonpath={.status.certificate}").stdout
    assert base64.b64decode(cert).startswith(b"-----BEGIN CERTIFICATE-----")
    reason = kubectl(c1.kubeconfig, "get", "csr", name, "-o",
                     "jsonpath={.status.conditions[0].reason}").stdout
    assert reason == "KubectlApprove"
    described = kubectl(c1.kubeconfig, "describe", "csr", name).stdout
    assert "Requesting User:     kubernetes-admin" in described
    assert "Status:              Approved,Issued" in described
    assert "Common Name:    k" in described
    # create again -> AlreadyExists from the server
    again = kubectl(c1.kubeconfig, "create", "-f", str(path), check=False)
    assert again.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating "%s": certificatesigningrequests.' \
           'certificates.k8s.io "%s" already exists' % (path, name) in again.stderr


def test_deny_and_condition_column(c1, tmp_path):
    name = unique()
    path = tmp_path / "csr.yaml"
    path.write_text(manifest(name))
    kubectl(c1.kubeconfig, "create", "-f", str(path))
    assert "denied" in kubectl(c1.kubeconfig, "certificate", "deny", name).stdout
    out = wait_condition(c1.kubeconfig, name, "Denied")
    assert out.split()[-1] == "Denied"
    stderr = kubectl(c1.kubeconfig, "certificate", "approve", name, check=False).stderr
    assert "is already Denied" in stderr


def test_apply_is_idempotent_and_updates_labels(c1, tmp_path):
    name = unique()
    path = tmp_path / "csr.yaml"
    text = manifest(name, labels={"stage": "one"})
    path.write_text(text)
    assert "created" in kubectl(c1.kubeconfig, "apply", "-f", str(path)).stdout
    assert "unchanged" in kubectl(c1.kubeconfig, "apply", "-f", str(path)).stdout
    path.write_text(text.replace("stage: one", "stage: two"))
    assert "configured" in kubectl(c1.kubeconfig, "apply", "-f", str(path)).stdout
    labels = kubectl(c1.kubeconfig, "get", "csr", name, "-o", "jsonpath={.metadata.labels.stage}").stdout
    assert labels == "two"


def test_strict_validation_rejects_unknown_field(c1, tmp_path):
    doc = yaml.safe_load(manifest(unique()))
    doc["spec"]["surprise"] = True
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = kubectl(c1.kubeconfig, "create", "-f", str(path), check=False)
    assert proc.returncode == 1
    assert 'strict decoding error: unknown field "spec.surprise"' in proc.stderr


def test_invalid_csr_error_text(c1, tmp_path):
    name = unique()
    doc = yaml.safe_load(manifest(name))
    doc["spec"]["usages"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = kubectl(c1.kubeconfig, "create", "-f", str(path), check=False)
    assert proc.returncode == 1
    assert ('The CertificateSigningRequest "%s" is invalid: spec.usages: Required value: usages must be provided'
            % name) in proc.stderr


def test_auth_whoami_and_can_i(sandbox, c1, tmp_path):
    out = kubectl(c1.kubeconfig, "auth", "whoami").stdout
    assert re.search(r"Username\s+kubernetes-admin", out)
    assert re.search(r"Groups\s+\[system:masters system:authenticated\]", out)
    user_kc = sandbox.user_kubeconfig(c1.name, str(tmp_path / "u.kubeconfig"), "dora", ["devs"])
    assert "dora" in kubectl(user_kc, "auth", "whoami").stdout
    denied = kubectl(user_kc, "auth", "can-i", "create", "certificatesigningrequests", check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    assert kubectl(c1.kubeconfig, "auth", "can-i", "create", "certificatesigningrequests").stdout.strip() == "yes"
    listed = kubectl(user_kc, "get", "csr", check=False)
    assert listed.returncode == 1
    assert ('Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io is forbidden: User "dora" '
            'cannot list resource "certificatesigningrequests" in API group "certificates.k8s.io" at the cluster '
            'scope') in listed.stderr


def test_generic_resources(c1):
    ns = unique("ns")
    kubectl(c1.kubeconfig, "create", "namespace", ns)
    kubectl(c1.kubeconfig, "-n", ns, "create", "secret", "generic", "s", "--from-literal=k=v")
    kubectl(c1.kubeconfig, "-n", ns, "create", "configmap", "c", "--from-literal=k=v")
    kubectl(c1.kubeconfig, "-n", ns, "create", "serviceaccount", "sa")
    kubectl(c1.kubeconfig, "create", "clusterrolebinding", ns, "--clusterrole=view", "--user=x")
    data = kubectl(c1.kubeconfig, "-n", ns, "get", "secret", "s", "-o", "jsonpath={.data.k}").stdout
    assert base64.b64decode(data) == b"v"
    names = kubectl(c1.kubeconfig, "-n", ns, "get", "configmaps", "-o", "name").stdout.split()
    assert names == ["configmap/c", "configmap/kube-root-ca.crt"]
    assert "sa" in kubectl(c1.kubeconfig, "-n", ns, "get", "sa").stdout
    kubectl(c1.kubeconfig, "delete", "namespace", ns)


@pytest.mark.skipif(not os.path.exists(OLD_KUBECTL), reason="kubectl 1.27 is not installed")
def test_old_kubectl(c1, tmp_path):
    name = unique()
    path = tmp_path / "csr.yaml"
    path.write_text(manifest(name))
    kubectl(c1.kubeconfig, "apply", "-f", str(path), binary=OLD_KUBECTL)
    kubectl(c1.kubeconfig, "certificate", "approve", name, binary=OLD_KUBECTL)
    out = wait_condition(c1.kubeconfig, name, "Approved,Issued", binary=OLD_KUBECTL)
    assert "kubernetes.io/kube-apiserver-client" in out
    assert "kubernetes-admin" in kubectl(c1.kubeconfig, "auth", "whoami", binary=OLD_KUBECTL).stdout


def test_raw_table_output(raw):
    status, table = raw.call("GET", CSR_BASE, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert status == 200
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age", "SignerName", "Requestor",
                                                               "RequestedDuration", "Condition"]
    for row in table["rows"]:
        assert row["object"]["kind"] == "PartialObjectMetadata"


def test_impersonation(sandbox, c1, tmp_path):
    ns = unique("imp")
    user = unique("zed")
    kubectl(c1.kubeconfig, "create", "namespace", ns)
    kubectl(c1.kubeconfig, "-n", ns, "create", "role", "reader", "--verb=get", "--resource=secrets")
    kubectl(c1.kubeconfig, "-n", ns, "create", "rolebinding", "reader", "--role=reader", "--user=" + user)
    assert kubectl(c1.kubeconfig, "-n", ns, "auth", "can-i", "get", "secrets", "--as", user).stdout.strip() == "yes"
    listed = kubectl(c1.kubeconfig, "-n", ns, "get", "secrets", "--as", user, check=False)
    assert listed.returncode == 1
    assert ('secrets is forbidden: User "%s" cannot list resource "secrets" in API group "" in the namespace "%s"'
            % (user, ns)) in listed.stderr
    out = kubectl(c1.kubeconfig, "auth", "whoami", "--as", user, "--as-group", "g1").stdout
    assert re.search(r"Groups\s+\[g1 system:authenticated\]", out)
    # impersonating needs the impersonate verb
    plain = sandbox.user_kubeconfig(c1.name, str(tmp_path / "p.kubeconfig"), "plain")
    denied = kubectl(plain, "get", "csr", "--as", "someone", check=False)
    assert 'users "someone" is forbidden: User "plain" cannot impersonate resource "users" in API group "" at the ' \
           'cluster scope' in denied.stderr


def test_server_side_apply(c1, tmp_path):
    name = unique()
    path = tmp_path / "csr.yaml"
    path.write_text(manifest(name, labels={"stage": "ssa"}))
    assert "serverside-applied" in kubectl(c1.kubeconfig, "apply", "--server-side", "-f", str(path)).stdout
    managers = kubectl(c1.kubeconfig, "get", "csr", name, "-o",
                       "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}").stdout
    assert managers == "kubectl/Apply"


def test_explain_and_api_resources(c1):
    out = kubectl(c1.kubeconfig, "explain", "csr.spec").stdout
    assert "signerName\t<string>" in out and "usages\t<[]string>" in out
    resources = kubectl(c1.kubeconfig, "api-resources", "--api-group=certificates.k8s.io", "--no-headers").stdout
    assert resources.split() == ["certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false",
                                 "CertificateSigningRequest"]
