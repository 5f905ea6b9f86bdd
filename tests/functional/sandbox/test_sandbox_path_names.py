"""CSR names that kubectl percent-encodes in the URL (a space, a colon): the sandbox, like kube-apiserver, routes
on the decoded path, so the name given to kubectl is the name found, approved and deleted."""

import time

import yaml

from sandbox_helpers import b64, csr_pem, kubectl, unique


def wait_condition(kubeconfig, name, text):
    deadline = time.monotonic() + 10
    out = ""
    while time.monotonic() < deadline:
        out = kubectl(kubeconfig, "get", "csr", name, "--no-headers").stdout
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError("%r never showed %s: %s" % (name, text, out))


def test_a_name_with_a_space_and_a_colon_is_found_approved_and_deleted(c1):
    name = "Ops Team:%s" % unique()
    manifest = yaml.safe_dump({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
                               "spec": {"request": b64(csr_pem("path-user")), "signerName": "kubernetes.io/kube-apiserver-client",
                                        "usages": ["client auth"]}})
    created = kubectl(c1.kubeconfig, "create", "-f", "-", stdin=manifest).stdout.strip()
    assert created == "certificatesigningrequest.certificates.k8s.io/%s created" % name
    # kubectl asks for /certificatesigningrequests/Ops%20Team:csr-...; the object must be found under its own name
    got = kubectl(c1.kubeconfig, "get", "csr", name, "-o", "jsonpath={.metadata.name}").stdout
    assert got == name
    approved = kubectl(c1.kubeconfig, "certificate", "approve", name).stdout.strip()
    assert approved == "certificatesigningrequest.certificates.k8s.io/%s approved" % name
    assert "Approved,Issued" in wait_condition(c1.kubeconfig, name, "Approved,Issued")
    deleted = kubectl(c1.kubeconfig, "delete", "csr", name).stdout.strip()
    assert deleted == 'certificatesigningrequest.certificates.k8s.io "%s" deleted' % name
    missing = kubectl(c1.kubeconfig, "get", "csr", name, check=False)
    assert missing.returncode != 0
    # the message names the object as given, not as it travelled in the URL
    assert 'Error from server (NotFound): certificatesigningrequests.certificates.k8s.io "%s" not found' % name in missing.stderr
