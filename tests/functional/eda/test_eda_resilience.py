"""The Monitor survives what a long-running approver meets: its kube-apiserver restarting (connections refused,
then a fresh watch cache) and a watch that expired (410 Gone after an etcd compaction), on a real v1.36 cluster
under ansible-rulebook. Requests made afterwards are approved within seconds, and none twice."""

import base64
import json
import subprocess
import sys
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubeharness.client import kubectl, kubectl_json

from eda_support import conditions, printed_events, wait_until  # pylint: disable=import-error

CLUSTER = "cluster-2"
NODE = "node-r"
POLICY = {"allowed_ip_cidrs": ["192.0.2.0/24"], "allowed_dns_suffixes": []}


def serving_request():
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"), x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + NODE)])
    sans = x509.SubjectAlternativeName([x509.DNSName(NODE), x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.10"))])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(sans, critical=False).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def create(kubeconfig, name):
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
           "spec": {"request": serving_request(), "signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"]}}
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(obj))


def etcdctl(url, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "etcdctl")
    return subprocess.run([exe, "--endpoints", url] + list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def approved(admin, name, monitor):
    assert monitor.running(), monitor.output()
    obj = kubectl_json(admin, "get", "csr", name)
    return obj if conditions(obj) else None


def test_an_apiserver_restart_and_an_expired_watch_are_survived(real_clusters, start_monitor, tmp_path):
    plane = real_clusters.cluster(CLUSTER)
    admin = plane.kubeconfig
    as_node = real_clusters.user_kubeconfig(CLUSTER, str(tmp_path / "node.kubeconfig"), "system:node:" + NODE, ["system:nodes"])
    monitor = start_monitor("kubepki.certs.kubelet_serving", {"kubepki_clusters": [{"name": CLUSTER, "kubeconfig": admin}],
                                                              "kubepki_kubelet_serving_policy": POLICY})
    wait_until("the Monitor's first sync", lambda: monitor.running() and "'type': 'synced'" in monitor.output(), timeout=120)
    create(as_node, "eda-before")
    first = wait_until("eda-before decided", lambda: approved(admin, "eda-before", monitor), timeout=30)
    assert conditions(first) == ["Approved"], first["status"]

    # 1. the apiserver goes away; meanwhile etcd moves on and is compacted past what the Monitor last saw, so its
    #    watch cannot be resumed (410 Gone) once the apiserver is back
    def compact():
        etcdctl(plane.etcd_url, "put", "/kubepki-eda-test/tick", "1")
        revision = json.loads(etcdctl(plane.etcd_url, "endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
        etcdctl(plane.etcd_url, "compact", str(revision))

    plane.restart_apiserver(while_down=compact)
    wait_until("the Monitor to relist", lambda: "'type': 'relisted'" in monitor.output(), timeout=60)
    assert "'type': 'error'" in monitor.output()  # it saw the apiserver go away, and went on

    # 2. requests made after the restart are approved within seconds
    started = time.monotonic()
    create(as_node, "eda-after")
    after = wait_until("eda-after decided", lambda: approved(admin, "eda-after", monitor), timeout=30)
    assert conditions(after) == ["Approved"], after["status"]
    assert time.monotonic() - started < 15
    # 3. nothing decided twice: the relist brought back no CSR that was already approved
    for name in ("eda-before", "eda-after"):
        assert conditions(kubectl_json(admin, "get", "csr", name)) == ["Approved"]

    def decided():  # the decided events come once the decisions of the moment are made (a quarter of a second later)
        names = sorted(e["name"] for e in printed_events(monitor.output(500000)) if e.get("type") == "decided" and e["name"].startswith("eda-"))
        return names if "eda-after" in names else None

    assert wait_until("the decided event of eda-after", decided, timeout=15) == ["eda-after", "eda-before"]
