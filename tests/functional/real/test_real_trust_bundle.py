"""cluster_trust_bundle against a REAL kube-apiserver started with the ClusterTrustBundle feature gate and the API in
--runtime-config: certificates.k8s.io/v1beta1 on v1.36, certificates.k8s.io/v1alpha1 on v1.30 (the alpha API, the
newest 1.27-1.32 have; KUBEPKI_K8S_ASSETS names which binaries, tools/real_pass.sh runs the 1.30 ones). The server's own
validation, dry runs and the attest admission check answer here, and kubectl shows what was written.

One cluster of its own (the pair of conftest.py starts without the feature gate), started once for the file; the
tests run in order on it: publish, re-run, rotate the CA, a signer's bundle, a user without attest, delete. One more
cluster, without the gate, is started for the one test of what a user without the API is told.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubeharness import pki
from kubeharness.client import kubeconfig, kubectl, kubectl_json
from playbook_files import playbook

SIGNER = "example.com/kubepki"
SIGNER_BUNDLE = "example.com:kubepki:signing-ca"


@pytest.fixture(scope="module")
def ctb_cluster(real_assets, real_version, tmp_path_factory):
    """One real cluster serving ClusterTrustBundles (v1beta1 from 1.33, v1alpha1 before), with an etcd of its own;
    ``ctb_api`` is that version, ``ctb_flags`` the feature gate and runtime-config it was started with."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    api, gates, runtime_config = controlplane.trust_bundle_api(real_version)
    plane = controlplane.ControlPlane(str(tmp_path_factory.mktemp("real-ctb") / "ctb-1"), real_assets, feature_gates=gates,
                                      apiserver_flags=["--runtime-config", runtime_config])
    plane.start()
    plane.ctb_api = api
    plane.ctb_flags = {"feature-gates": ",".join("%s=%s" % (k, str(v).lower()) for k, v in gates.items()), "runtime-config": runtime_config}
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def new_ca(tmp_path_factory):
    path = tmp_path_factory.mktemp("real-ctb-ca") / "new-ca.crt"
    path.write_bytes(pki.cert_pem(pki.make_ca("kubepki-next-ca").cert))
    return str(path)


def publish(run_playbook, cluster, check=False, diff=False, **options):
    args = dict({"kubeconfig": cluster.kubeconfig}, **options)
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "bundle", "kubepki.certs.cluster_trust_bundle": args, "register": "out", "ignore_errors": True}]}]
    result = run_playbook(play, check=check, diff=diff)
    assert result.rc in (0, 2), result.stdout[-3000:] + result.stderr[-3000:]
    return result.result("bundle")


def ders_of(text):
    return sorted(c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(text.encode()))


def ders_of_files(*paths):
    found = []
    for path in paths:
        with open(path, encoding="ascii") as handle:
            found.extend(ders_of(handle.read()))
    return sorted(set(found))


def bundle(cluster, name):
    return kubectl_json(cluster.kubeconfig, "get", "clustertrustbundles.%s.certificates.k8s.io" % cluster.ctb_api, name)


def test_publish_the_cluster_ca(run_playbook, ctb_cluster):
    out = publish(run_playbook, ctb_cluster, name="kubepki-client-ca", ca_file=ctb_cluster.ca_cert)
    assert not out.get("failed") and out["changed"], out
    assert out["api_version"] == "certificates.k8s.io/" + ctb_cluster.ctb_api
    obj = bundle(ctb_cluster, "kubepki-client-ca")
    assert ders_of(obj["spec"]["trustBundle"]) == ders_of_files(ctb_cluster.ca_cert)
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubepki.certs"
    listed = kubectl(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "-o", "name")
    assert "clustertrustbundle.certificates.k8s.io/kubepki-client-ca" in listed.split()


def test_rerun_is_unchanged_and_writes_nothing(run_playbook, ctb_cluster):
    before = bundle(ctb_cluster, "kubepki-client-ca")["metadata"]["resourceVersion"]
    out = publish(run_playbook, ctb_cluster, name="kubepki-client-ca", ca_file=ctb_cluster.ca_cert)
    assert not out.get("failed") and not out["changed"], out
    assert bundle(ctb_cluster, "kubepki-client-ca")["metadata"]["resourceVersion"] == before


def test_check_mode_update_is_a_server_dry_run(run_playbook, ctb_cluster, new_ca):
    before = bundle(ctb_cluster, "kubepki-client-ca")
    out = publish(run_playbook, ctb_cluster, check=True, name="kubepki-client-ca", ca_file=new_ca)
    assert not out.get("failed") and out["changed"], out
    assert ders_of(out["bundle"]["spec"]["trustBundle"]) == ders_of_files(new_ca)  # the server's dry-run answer
    after = bundle(ctb_cluster, "kubepki-client-ca")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"] == before["spec"]


def test_rotation_publishes_old_and_new_then_new_only(run_playbook, ctb_cluster, new_ca):
    with open(ctb_cluster.ca_cert, encoding="ascii") as old, open(new_ca, encoding="ascii") as new:
        both = old.read() + new.read()
    out = publish(run_playbook, ctb_cluster, diff=True, name="kubepki-client-ca", ca_data=both)
    assert not out.get("failed") and out["changed"], out
    assert ders_of(bundle(ctb_cluster, "kubepki-client-ca")["spec"]["trustBundle"]) == ders_of_files(ctb_cluster.ca_cert, new_ca)
    assert ders_of(out["diff"]["before"]["trustBundle"]) == ders_of_files(ctb_cluster.ca_cert)
    out = publish(run_playbook, ctb_cluster, name="kubepki-client-ca", ca_file=new_ca)
    assert not out.get("failed") and out["changed"], out
    assert ders_of(bundle(ctb_cluster, "kubepki-client-ca")["spec"]["trustBundle"]) == ders_of_files(new_ca)


def test_signer_bundle_created_unchanged_and_listed_with_its_signer(run_playbook, ctb_cluster):
    out = publish(run_playbook, ctb_cluster, name=SIGNER_BUNDLE, signer_name=SIGNER, ca_file=ctb_cluster.ca_cert)
    assert not out.get("failed") and out["changed"], out
    assert bundle(ctb_cluster, SIGNER_BUNDLE)["spec"]["signerName"] == SIGNER
    again = publish(run_playbook, ctb_cluster, name=SIGNER_BUNDLE, signer_name=SIGNER, ca_file=ctb_cluster.ca_cert)
    assert not again.get("failed") and not again["changed"], again
    table = kubectl(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "--field-selector", "spec.signerName=%s" % SIGNER)
    assert SIGNER_BUNDLE in table and SIGNER in table


def test_a_user_without_attest_is_refused_with_the_permission_named(run_playbook, ctb_cluster, tmp_path):
    """RBAC lets the user write ClusterTrustBundles, but not attest for the signer: the admission plugin refuses."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ctb-writer"},
            "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["clustertrustbundles"],
                       "verbs": ["get", "list", "create", "update", "delete"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ctb-writer"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ctb-writer"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ctb-writer"}]}
    kubectl(ctb_cluster.kubeconfig, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}))
    with open(ctb_cluster.ca_cert, "rb") as cert, open(ctb_cluster.ca_key, "rb") as key:
        ca = pki.KeyPair(pki.load_cert(cert.read()), pki.load_key(key.read()))
    user = pki.issue(ca, "ctb-writer", client=True)
    path = tmp_path / "writer.kubeconfig"
    pki.write_file(str(path), kubeconfig("ctb-1", ctb_cluster.server, pki.cert_pem(ca.cert), pki.cert_pem(user.cert),
                                         pki.key_pem(user.key), user="ctb-writer"), secret=True)
    # without a signer the RBAC grant is enough
    out = publish(run_playbook, ctb_cluster, kubeconfig=str(path), name="writer-ca", ca_file=ctb_cluster.ca_cert)
    assert not out.get("failed") and out["changed"], out
    out = publish(run_playbook, ctb_cluster, kubeconfig=str(path), name="example.com:kubepki:writer", signer_name=SIGNER,
                  ca_file=ctb_cluster.ca_cert)
    assert out.get("failed") and out["status"] == 403, out
    assert "not permitted to attest" in out["msg"] and "verb attest on resource signers" in out["msg"]
    names = kubectl(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "-o", "name").split()
    assert "clustertrustbundle.certificates.k8s.io/example.com:kubepki:writer" not in names


def test_the_server_and_the_module_agree_on_what_is_refused(run_playbook, ctb_cluster):
    """A leaf certificate: refused by the module before any request, and by the server when sent with kubectl."""
    with open(ctb_cluster.admin_cert, encoding="ascii") as handle:
        leaf = handle.read()
    out = publish(run_playbook, ctb_cluster, name="leaf-bundle", ca_data=leaf)
    assert out.get("failed") and "is not a CA certificate" in out["msg"], out
    obj = {"apiVersion": "certificates.k8s.io/" + ctb_cluster.ctb_api, "kind": "ClusterTrustBundle", "metadata": {"name": "leaf-bundle"},
           "spec": {"trustBundle": leaf}}
    proc = subprocess.run(["kubectl", "--kubeconfig", ctb_cluster.kubeconfig, "create", "-f", "-"], input=json.dumps(obj),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "does not have the CA bit set" in proc.stderr, proc.stderr


def test_delete_all(run_playbook, ctb_cluster):
    for name in ("kubepki-client-ca", SIGNER_BUNDLE, "writer-ca"):
        out = publish(run_playbook, ctb_cluster, name=name, state="absent")
        assert not out.get("failed") and out["changed"], out
        again = publish(run_playbook, ctb_cluster, name=name, state="absent")
        assert not again.get("failed") and not again["changed"], again
    assert kubectl(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "-o", "name").strip() == ""


def test_a_version_the_server_does_not_serve_fails_naming_the_one_it_does(run_playbook, ctb_cluster):
    """1.36 serves ClusterTrustBundles in v1beta1, 1.30 in v1alpha1: each api_version above that (v1; on 1.30 v1beta1
    too) fails clearly, is not taken for a missing object, and says which version to ask for; nothing is written."""
    newer = ["v1", "v1beta1", "v1alpha1"]
    newer = newer[:newer.index(ctb_cluster.ctb_api)]
    for asked in newer:
        out = publish(run_playbook, ctb_cluster, name="kubepki-" + asked, ca_file=ctb_cluster.ca_cert, api_version=asked)
        assert out.get("failed") and "does not serve ClusterTrustBundles in certificates.k8s.io/%s:" % asked in out["msg"], out
        assert "it serves them in certificates.k8s.io/%s: set api_version to auto or %s" % (ctb_cluster.ctb_api, ctb_cluster.ctb_api) in out["msg"]
        assert "kubepki-" + asked not in kubectl(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "-o", "name")


def flags_in(message):
    """{flag: value} of the ``--name value`` pairs a message names."""
    return dict(re.findall(r"--([a-z-]+) (\S+?)(?=[\s;,)]|$)", message))


def test_a_server_without_the_api_is_told_the_flags_of_its_own_version(run_playbook, real_assets, ctb_cluster, tmp_path):
    """A cluster started without the gate (the default before 1.37): the failure names the server's version and exactly
    the flags ctb_cluster was started with - those that made the tests above pass on this version; if_served skips it and
    state=absent warns. On 1.30 an explicit v1beta1 is told that 1.30 has no such API version."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    plane = controlplane.ControlPlane(str(tmp_path / "plain"), real_assets).start()
    try:
        out = publish(run_playbook, plane, name="kubepki-client-ca", ca_file=plane.ca_cert)
        assert out.get("failed") and "the API server at %s does not serve ClusterTrustBundles" % plane.server in out["msg"], out
        assert "this server is %s" % plane.server_version in out["msg"], out["msg"]
        assert flags_in(out["msg"]) == ctb_cluster.ctb_flags, out["msg"]
        if ctb_cluster.ctb_api == "v1alpha1":
            assert "v1beta1/clustertrustbundles" not in out["msg"] and "upgrade to Kubernetes 1.33" in out["msg"], out["msg"]
            out = publish(run_playbook, plane, name="kubepki-client-ca", ca_file=plane.ca_cert, api_version="v1beta1")
            assert out.get("failed") and "Kubernetes %s has no certificates.k8s.io/v1beta1 at all (its newest is v1alpha1): " \
                "set api_version to auto or v1alpha1" % plane.server_version in out["msg"], out["msg"]
            assert flags_in(out["msg"]) == ctb_cluster.ctb_flags, out["msg"]
        out = publish(run_playbook, plane, name="kubepki-client-ca", ca_file=plane.ca_cert, if_served=True)
        assert not out.get("failed") and not out["changed"] and out["served"] is False and out["api_version"] is None, out
        out = publish(run_playbook, plane, name="kubepki-client-ca", state="absent")
        assert not out.get("failed") and not out["changed"], out
        assert any("serves no ClusterTrustBundle API" in warning for warning in out.get("warnings", [])), out
    finally:
        plane.stop()


ROLE_PLAY = playbook("roles/apply_role.yml")


def test_the_signing_role_publishes_its_ca(run_playbook, ctb_cluster, tmp_path):
    """controller_manager_signing with controller_manager_signing_trust_bundle on a server that serves the API: the
    bundle holds exactly the role's signing CA, and a second run is unchanged."""
    root = tmp_path / "node"
    shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(__file__)), "roles", "fixtures", "kubeadm"), root, symlinks=True)
    ca = pki.make_ca("role-signing-ca")
    variables = {"controller_manager_signing_root": str(root), "controller_manager_signing_ca_source": "content",
                 "controller_manager_signing_ca_cert_content": pki.cert_pem(ca.cert).decode(),
                 "controller_manager_signing_ca_key_content": pki.key_pem(ca.key).decode(),
                 "controller_manager_signing_trust_bundle": True,
                 "controller_manager_signing_trust_bundle_name": "role-signing-ca",
                 "controller_manager_signing_trust_bundle_kubeconfig": ctb_cluster.kubeconfig,
                 "role_under_test": "controller_manager_signing"}
    first = run_playbook(ROLE_PLAY, extra_vars=variables)
    assert first.rc == 0, first
    bundle = kubectl_json(ctb_cluster.kubeconfig, "get", "clustertrustbundles", "role-signing-ca")
    assert ders_of(bundle["spec"]["trustBundle"]) == ders_of(pki.cert_pem(ca.cert).decode())
    again = run_playbook(ROLE_PLAY, extra_vars=variables)
    assert again.rc == 0 and again.changed == 0, again
