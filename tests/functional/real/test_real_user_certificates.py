"""The operators' path (playbooks/onboard_users.yml) against two REAL clusters: kube-apiserver and
kube-controller-manager v1.36 signing with their own CA, real etcd for the records, the embedded store.

One file on purpose: with ``--dist loadfile`` it runs on one worker, which starts one pair of clusters. The
flow tests share the clusters and the store and run in order: onboard, re-run, then a run adding a user whose
groups are given unsorted. Then csr_approve's refusal of system:masters, the points where the sandbox and a
real cluster must agree because the collection relies on them, and a cluster of its own whose signer grants less
than asked (the one test of the sandbox_only ones that a real cluster can stand for, with a flag).
"""

import base64
import json
import os
import re
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubeharness.client import KUBECTL, kubectl, kubectl_json
from playbook_files import playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = os.path.join(REPO, "playbooks", "onboard_users.yml")
PREFIX = "/kubepki-real"
MANAGED = "app.kubernetes.io/managed-by=kubepki.certs"
USERS = [{"name": "real-alice", "groups": ["dev", "ops"]}, {"name": "real-bob", "groups": ["dev"]},
         {"name": "real-erin", "groups": ["auditors"]}]


@pytest.fixture(scope="module")
def flow(real_clusters, tmp_path_factory):
    base = tmp_path_factory.mktemp("real-flow")
    hosts = {}
    for name in real_clusters.names:
        info = real_clusters.cluster(name)
        hosts[name] = {"user_access_kubeconfig": info.kubeconfig, "user_access_ca_cert": info.ca_cert,
                       "user_access_server": info.server}
    extra = {"onboard_hosts": "all", "onboard_users": USERS, "user_access_store_uri": str(base / "store.db"),
             "user_access_output_dir": str(base / "out"), "user_access_etcd_endpoints": [real_clusters.etcd_url],
             "user_access_etcd_prefix": PREFIX, "user_access_verify": True, "user_access_wait_timeout": 60}
    return {"clusters": real_clusters, "hosts": hosts, "extra": extra, "out": base / "out"}


def onboard(run_playbook, flow, **overrides):
    extra = dict(flow["extra"], **overrides)
    return run_playbook("- ansible.builtin.import_playbook: %s\n" % PLAYBOOK, extra_vars=extra, hosts=flow["hosts"])


def managed_csrs(flow, cluster):
    items = kubectl_json(flow["clusters"].cluster(cluster).kubeconfig, "get", "csr", "-l", MANAGED)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def records(flow):
    return {key: json.loads(value) for key, value in flow["clusters"].etcd_prefix(PREFIX + "/certs/").items()}


def whoami(flow, user, cluster):
    path = flow["out"] / ("%s.kubeconfig" % user)
    info = kubectl_json(path, "--context", "%s@%s" % (user, cluster), "auth", "whoami")["status"]["userInfo"]
    return info["username"], info["groups"]


def test_users_get_kubeconfigs_that_log_in_to_both_real_clusters(run_playbook, flow):
    result = onboard(run_playbook, flow)
    assert result.rc == 0, result
    names = flow["clusters"].names
    for cluster in names:
        assert len(managed_csrs(flow, cluster)) == len(USERS)
    found = records(flow)
    assert sorted(found) == sorted("%s/certs/default/%s/%s" % (PREFIX, c, u["name"]) for c in names for u in USERS)
    for user in USERS:
        assert stat.S_IMODE(os.stat(flow["out"] / ("%s.kubeconfig" % user["name"])).st_mode) == 0o600
        for cluster in names:
            assert whoami(flow, user["name"], cluster) == (user["name"], user["groups"] + ["system:authenticated"])
            record = found["%s/certs/default/%s/%s" % (PREFIX, cluster, user["name"])]
            assert record["user"] == user["name"] and record["organizations"] == user["groups"]
            # the record carries the certificate the real signer issued, from that cluster's CA
            cert = x509.load_pem_x509_certificate(record["certificate"].encode())
            with open(flow["clusters"].cluster(cluster).ca_cert, "rb") as handle:
                assert cert.issuer == x509.load_pem_x509_certificate(handle.read()).subject
            assert format(cert.serial_number, "x") == record["serial"]


def test_a_rerun_changes_nothing_and_creates_no_csr(run_playbook, flow):
    before = {cluster: managed_csrs(flow, cluster) for cluster in flow["clusters"].names}
    stored = records(flow)
    result = onboard(run_playbook, flow)
    assert result.rc == 0, result
    assert result.changed == 0, result
    assert {cluster: managed_csrs(flow, cluster) for cluster in flow["clusters"].names} == before
    assert records(flow) == stored


def test_groups_given_unsorted_succeed_and_do_not_block_the_others(run_playbook, flow):
    """The real signer puts the groups into one RDN, which DER sorts: a CSR for O=[ops, dev] comes back as a
    certificate with O=[dev, ops]. That certificate is the one asked for and must be taken as such."""
    carol = {"name": "real-carol", "groups": ["ops", "dev"]}
    dave = {"name": "real-dave", "groups": ["dev"]}
    users = USERS + [carol, dave]
    result = onboard(run_playbook, flow, onboard_users=users)
    assert result.rc == 0, result
    found = records(flow)
    for cluster in flow["clusters"].names:
        for user in (carol, dave):
            assert "%s/certs/default/%s/%s" % (PREFIX, cluster, user["name"]) in found
            username, groups = whoami(flow, user["name"], cluster)
            assert username == user["name"]
            assert sorted(groups[:-1]) == sorted(user["groups"]) and groups[-1] == "system:authenticated"
    before = {cluster: managed_csrs(flow, cluster) for cluster in flow["clusters"].names}
    again = onboard(run_playbook, flow, onboard_users=users)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert {cluster: managed_csrs(flow, cluster) for cluster in flow["clusters"].names} == before


# --- helpers for hand-made CSRs ---------------------------------------------------------------------


def csr_pem(common_name, organizations=()):
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def csr_manifest(name, pem, signer="kubernetes.io/kube-apiserver-client", usages=("client auth",)):
    return yaml.safe_dump({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
                           "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer, "usages": list(usages)}})


def kubectl_run(kubeconfig, *args, stdin=None):
    """The finished kubectl process (no check): for the requests an apiserver must refuse."""
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig)] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def wait_for(kubeconfig, name, done, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        obj = kubectl_json(kubeconfig, "get", "csr", name)
        if done(obj) or time.monotonic() > deadline:
            return obj
        time.sleep(0.1)


def condition_types(obj):
    return [c["type"] for c in (obj.get("status") or {}).get("conditions") or []]


def test_csr_approve_refuses_system_masters_on_a_real_cluster(run_playbook, real_clusters):
    info = real_clusters.cluster(real_clusters.names[0])
    # the real apiserver already refuses system:masters for the client signer, so ask another signer for it
    masters = csr_manifest("real-masters-%s" % uuid.uuid4().hex[:6], csr_pem("mallory", ["system:masters"]))
    refused = kubectl_run(info.kubeconfig, "create", "-f", "-", stdin=masters)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr and "system:masters" in refused.stderr, refused
    name = "real-masters-%s" % uuid.uuid4().hex[:6]
    signer = "example.com/kubepki-test"
    kubectl(info.kubeconfig, "create", "-f", "-", stdin=csr_manifest(name, csr_pem("mallory", ["system:masters"]), signer=signer))
    out = run_playbook(playbook("modules/csr_approve.yml"), extra_vars={
        "kc": info.kubeconfig, "csr_names": [name], "csr_policy": {"allowed_signers": [signer], "key_must_match_store": False}})
    assert out.rc != 0
    [(_task, _host, msg)] = out.failures()
    assert name in msg and re.search(r"group system:masters .*never approved", msg), msg
    assert condition_types(kubectl_json(info.kubeconfig, "get", "csr", name)) == [], "nothing may be approved"


# --- the sandbox and a real cluster agree -----------------------------------------------------------


def raw_get(info, path):
    """(HTTP status, decoded Status body) of a GET made with the cluster's admin certificate."""
    context = ssl.create_default_context(cafile=info.ca_cert)
    context.load_cert_chain(info.admin_cert, info.admin_key)
    try:
        with urllib.request.urlopen(info.server + path, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def observe(info):
    """What the collection relies on, as one cluster shows it."""
    tag = uuid.uuid4().hex[:8]
    seen = {}
    status, body = raw_get(info, "/apis/certificates.k8s.io/v1/certificatesigningrequests/missing-%s" % tag)
    seen["missing"] = (status, body["reason"], body["message"].replace(tag, "TAG"), body["details"]["kind"])

    # an approved client-signer CSR asking for server auth: Approved, then Failed by the signer
    name = "contract-server-auth-%s" % tag
    kubectl(info.kubeconfig, "create", "-f", "-", stdin=csr_manifest(name, csr_pem("contract"), usages=("client auth", "server auth")))
    kubectl(info.kubeconfig, "certificate", "approve", name)
    obj = wait_for(info.kubeconfig, name, lambda o: "Failed" in condition_types(o))
    failed = [c for c in obj["status"]["conditions"] if c["type"] == "Failed"]
    seen["server_auth"] = (condition_types(obj), failed[0]["reason"] if failed else None, bool(obj["status"].get("certificate")))

    # system:masters through the client signer is refused at creation
    refused = kubectl_run(info.kubeconfig, "create", "-f", "-", stdin=csr_manifest("contract-masters-%s" % tag, csr_pem("m", ["system:masters"])))
    seen["masters"] = (refused.returncode != 0, refused.stderr.strip().replace(tag, "TAG"))

    # a name kubectl percent-encodes in the URL, and the signer's order of the groups (one RDN, DER sorted)
    name = "Contract Team:%s" % tag
    kubectl(info.kubeconfig, "create", "-f", "-", stdin=csr_manifest(name, csr_pem("contract", ["ops", "dev"])))
    kubectl(info.kubeconfig, "certificate", "approve", name)
    obj = wait_for(info.kubeconfig, name, lambda o: bool((o.get("status") or {}).get("certificate")))
    cert = x509.load_pem_x509_certificate(base64.b64decode(obj["status"]["certificate"]))
    seen["odd_name"] = obj["metadata"]["name"].replace(tag, "TAG")
    seen["issued_groups"] = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    kubectl(info.kubeconfig, "delete", "csr", name)
    return seen


def test_the_sandbox_and_a_real_cluster_agree_on_the_csr_contract(real_clusters, sandbox):
    real = observe(real_clusters.cluster(real_clusters.names[1]))
    # the real cluster's answers first, so a disagreement says which side moved
    assert real["missing"] == (404, "NotFound", 'certificatesigningrequests.certificates.k8s.io "missing-TAG" not found',
                               "certificatesigningrequests")
    assert real["server_auth"] == (["Approved", "Failed"], "SignerValidationFailure", False)
    assert real["masters"][0] and "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed" in real["masters"][1]
    assert real["odd_name"] == "Contract Team:TAG"
    assert real["issued_groups"] == ["dev", "ops"]
    assert observe(sandbox.cluster(sandbox.names[0])) == real


SHORT_SIGNER_PLAY = playbook("modules/user_certificates.yml")


def test_a_real_signer_granting_less_than_asked_is_reported_as_clamped(run_playbook, real_assets, tmp_path):
    """A real controller-manager that signs for 30m at most (--cluster-signing-duration) gets a request for 2h: the
    certificate is issued for the signer's 30m, and the module says so instead of passing it off as 2h."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    plane = controlplane.ControlPlane(str(tmp_path / "short"), real_assets, name="short",
                                      controller_manager_flags=["--cluster-signing-duration=30m"])
    plane.start()
    try:
        short = {"name": "short", "server": plane.server, "ca_cert": plane.ca_cert, "auth": {"kubeconfig": plane.kubeconfig}}
        out = run_playbook(SHORT_SIGNER_PLAY, extra_vars={"users": [{"name": "real-brief", "groups": ["dev"]}], "clusters": [short],
                                                          "lifetime": 7200, "store": str(tmp_path / "store.db")})
    finally:
        plane.stop()
    assert out.rc == 0, out
    result = out.result("access")
    record = result["clusters"][0]["certificates"][0]
    assert record["requested_expiration_seconds"] == 7200
    assert record["lifetime_clamped"] is True
    assert 1800 <= record["granted_lifetime_seconds"] <= 2100, record
    assert any("clamped" in str(warning) for warning in result.get("warnings", [])), result.get("warnings")
