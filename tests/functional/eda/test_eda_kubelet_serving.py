"""The kubelet-serving rulebook (kubepki.certs.kubelet_serving) under ansible-rulebook against a real v1.36 cluster:
a real kubelet on fakecri with serverTLSBootstrap gets its serving certificate approved within seconds, and again
after a forced rotation; serving requests that claim another node or an address outside the node networks are
denied with the reason; nothing is approved twice.

One file, one pair of real clusters (tests/functional/real/conftest.py), one Monitor for all its tests.
"""

import base64
import datetime
import ipaddress
import json
import os

import psutil
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eda_support import Monitor, conditions, csr_objects, engine_executable, engine_missing, free_port, wait_until  # pylint: disable=import-error

CLUSTER = "cluster-1"
NODE = "node-a"
SERVING = "kubernetes.io/kubelet-serving"
SUFFIX = "nodes.kubepki.test"
APPROVE_WITHIN = 10.0  # seconds from the CSR's creation to its approval


def host_networks():
    """Every non-loopback address of this machine as a /32 or /128: the addresses a kubelet here may report."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address.address.split("%")[0])
            except ValueError:
                continue
            if not ip.is_loopback and not ip.is_link_local:
                found.append(str(ipaddress.ip_network(ip)))
    return sorted(set(found))


@pytest.fixture(scope="module")
def lab(real_clusters, tmp_path_factory):
    reason = engine_missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("eda-serving")
    info = real_clusters.cluster(CLUSTER)
    policy = {"allowed_ip_cidrs": host_networks(), "allowed_dns_suffixes": [SUFFIX]}
    monitor = Monitor(engine_executable(), base / "monitor",
                      "kubepki.certs.kubelet_serving",
                      {"kubepki_clusters": [{"name": CLUSTER, "kubeconfig": info.kubeconfig}], "kubepki_kubelet_serving_policy": policy})
    monitor.start()
    try:
        wait_until("the Monitor's first sync", lambda: _alive(monitor) and "'type': 'synced'" in monitor.output(), timeout=120)
        yield {"base": base, "info": info, "monitor": monitor, "policy": policy, "clusters": real_clusters}
    finally:
        monitor.stop()


def _alive(monitor):
    assert monitor.running(), "ansible-rulebook exited:\n%s" % monitor.output()
    return True


def serving_csrs(kubeconfig, requester):
    return [o for o in csr_objects(kubeconfig) if o["spec"]["signerName"] == SERVING and o["spec"].get("username") == requester]


def approval_delay(obj):
    """Seconds from the CSR's creation to its Approved condition (API timestamps, whole seconds)."""
    created = datetime.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    approved = next(c for c in obj["status"]["conditions"] if c["type"] == "Approved")
    stamp = approved.get("lastUpdateTime") or approved.get("lastTransitionTime")
    return (datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) - created).total_seconds()


def start_kubelet(lab, assets, request):
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    reason = controlplane.missing_kubelet(assets)
    if reason:
        pytest.skip("%s: real kubelet test skipped" % reason)
    if os.geteuid() != 0:
        pytest.skip("a real kubelet needs root")
    node_dir = os.path.join(str(lab["base"]), "n")  # short: the fakecri socket path must stay under 108 bytes
    os.makedirs(node_dir, exist_ok=True)
    kubelet = controlplane.Kubelet(os.path.join(node_dir, "run"), assets)
    request.addfinalizer(kubelet.stop)
    info = lab["info"]
    # the node's own client certificate (CN=system:node:node-a, O=system:nodes); the serving one it asks for itself
    kubeconfig = lab["clusters"].user_kubeconfig(CLUSTER, os.path.join(node_dir, "kubelet.kubeconfig"), "system:node:" + NODE, ["system:nodes"])
    config = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "failSwapOn": False, "failCgroupV1": False,
              "cgroupDriver": "cgroupfs", "rotateCertificates": True, "serverTLSBootstrap": True, "address": "127.0.0.1", "port": free_port(),
              "readOnlyPort": 0, "healthzPort": 0, "authentication": {"x509": {"clientCAFile": info.ca_cert}},
              "authorization": {"mode": "AlwaysAllow"}, "containerRuntimeEndpoint": kubelet.cri_endpoint}
    config_path = os.path.join(node_dir, "kubelet.yaml")
    with open(config_path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    pki_dir = os.path.join(node_dir, "pki")
    kubelet.args = ["--config", config_path, "--kubeconfig", kubeconfig, "--cert-dir", pki_dir, "--hostname-override", NODE,
                    "--root-dir", os.path.join(node_dir, "root")]
    return kubelet, pki_dir


def serving_pem(pki_dir):
    path = os.path.join(pki_dir, "kubelet-server-current.pem")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def test_a_real_kubelet_gets_its_serving_certificate_within_seconds_and_again_after_a_forced_rotation(lab, real_assets, request):
    kubelet, pki_dir = start_kubelet(lab, real_assets, request)
    admin = lab["info"].kubeconfig
    kubelet.start()

    def alive(check):
        def probe():
            assert kubelet.running(), "the kubelet exited:\n%s" % kubelet.log_tail()
            _alive(lab["monitor"])
            return check()
        return probe

    first = wait_until("the kubelet's serving certificate", alive(lambda: serving_pem(pki_dir)), timeout=90)
    [csr] = serving_csrs(admin, "system:node:" + NODE)
    assert conditions(csr) == ["Approved"], csr["status"]
    assert approval_delay(csr) <= APPROVE_WITHIN, csr["status"]
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:" + NODE

    # forced rotation: the kubelet loses its serving certificate and asks again at its next start
    kubelet.stop()
    for name in os.listdir(pki_dir):
        if name.startswith("kubelet-server"):
            os.unlink(os.path.join(pki_dir, name))
    kubelet.start()
    second = wait_until("the kubelet's new serving certificate", alive(lambda: serving_pem(pki_dir)), timeout=90)
    assert second.serial_number != first.serial_number
    csrs = serving_csrs(admin, "system:node:" + NODE)
    assert len(csrs) == 2, [c["metadata"]["name"] for c in csrs]
    for obj in csrs:
        # approved once, by the Monitor, never twice and never denied
        assert conditions(obj) == ["Approved"], obj["status"]
        assert obj["status"]["conditions"][0]["reason"] == "KubepkiKubeletServing"
        assert approval_delay(obj) <= APPROVE_WITHIN, obj["status"]


def node_request(key, common_name, dns=(), ips=()):
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_serving_requests_for_another_node_or_outside_the_node_networks_are_denied_with_the_reason(lab, tmp_path):
    from kubeharness.client import kubectl, kubectl_json  # pylint: disable=import-outside-toplevel
    as_node = lab["clusters"].user_kubeconfig(CLUSTER, str(tmp_path / "node-a.kubeconfig"), "system:node:" + NODE, ["system:nodes"])
    allowed_ip = lab["policy"]["allowed_ip_cidrs"][0].split("/")[0]
    cases = {
        "eda-other-node": (node_request(ec.generate_private_key(ec.SECP256R1()), "system:node:node-b", dns=["node-b"], ips=[allowed_ip]),
                           "is not the node 'system:node:node-b' itself"),
        "eda-foreign-ip": (node_request(ec.generate_private_key(ec.SECP256R1()), "system:node:" + NODE, dns=[NODE], ips=["203.0.113.9"]),
                           "IP address 203.0.113.9 is not in policy.allowed_ip_cidrs"),
        "eda-foreign-dns": (node_request(ec.generate_private_key(ec.SECP256R1()), "system:node:" + NODE, dns=[NODE, "kubernetes.default"],
                                         ips=[allowed_ip]), "DNS name kubernetes.default"),
    }
    for name, (pem, _why) in cases.items():
        obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
               "spec": {"request": base64.b64encode(pem).decode(), "signerName": SERVING,
                        "usages": ["digital signature", "server auth"]}}
        kubectl(as_node, "create", "-f", "-", stdin=json.dumps(obj))

    def decided():
        _alive(lab["monitor"])
        objs = {n: kubectl_json(lab["info"].kubeconfig, "get", "csr", n) for n in cases}
        return objs if all(conditions(o) for o in objs.values()) else None

    objs = wait_until("the decisions on the refused requests", decided, timeout=60)
    for name, (_pem, why) in cases.items():
        obj = objs[name]
        assert conditions(obj) == ["Denied"], (name, obj["status"])
        assert not obj["status"].get("certificate")
        message = obj["status"]["conditions"][0]["message"]
        assert why in message, (name, message)
