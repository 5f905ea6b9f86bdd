#!/usr/bin/env python
"""The Monitor's approval latency: from a kubelet-serving CSR's creation to its approval, for a burst of N CSRs
(default 200), done two ways on the same real cluster in one run:

    floor    one Python thread that watches CSRs and approves each pending one at once (no policy, no Ansible)
    monitor  ansible-rulebook running kubepki.certs.kubelet_serving (csr_events deciding with the approval step of
             csr_approve, under the policy, as each request is seen)

Times are taken on this side: a CSR is "created" when its POST returned and "approved" when a separate watch first
shows its Approved condition. Reports median and p95 per way, their ratios, and the engine's peak memory (the
ansible-rulebook process with its JVM and the playbooks it starts).

    KUBEPKI_K8S_ASSETS=../shared/k8s .venv/bin/python benchmarks/eda_approval.py [--csrs 200]

Results: benchmarks/results/eda-approval.{md,json}.
"""

import argparse
import base64
import datetime
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "tests", "harness"), os.path.join(REPO, ".cache", "collections"),
                os.path.join(REPO, "tests", "functional", "eda")]

import psutil  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter  # noqa: E402
from eda_support import Monitor, engine_executable, engine_missing  # noqa: E402
from kubeharness import controlplane  # noqa: E402
from kubeharness.client import client_kubeconfig  # noqa: E402

NODE = "node-bench"
SIGNER = "kubernetes.io/kubelet-serving"


def requests(count):
    """``count`` serving requests of one node (keys made before the clock starts)."""
    made = []
    for _index in range(count):
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + NODE)])
        sans = x509.SubjectAlternativeName([x509.DNSName(NODE), x509.IPAddress(ipaddress.ip_address("192.0.2.20"))])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(sans, critical=False).sign(
            ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        made.append(base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode())
    return made


class Observer(threading.Thread):
    """Watches every CSR and notes when each is first seen approved."""

    def __init__(self, kubeconfig):
        super().__init__(daemon=True)
        self.client = _kube.client_for(_kube.resolve_auth({"kubeconfig": kubeconfig}))
        self.approved = {}
        self.stopping = threading.Event()
        self.synced = threading.Event()

    def run(self):
        for kind, obj in _waiter.follow(self.client, self.stopping.is_set, sleep=self.stopping.wait):
            if kind == "SYNCED":
                self.synced.set()
            elif obj and _csr.csr_state(obj) in ("approved", "issued", "denied"):
                self.approved.setdefault(obj["metadata"]["name"], time.monotonic())


def floor_approver(kubeconfig, stopping):
    """The floor: approve every pending kubelet-serving CSR the moment the watch shows it."""
    client = _kube.client_for(_kube.resolve_auth({"kubeconfig": kubeconfig}))
    for kind, obj in _waiter.follow(client, stopping.is_set, sleep=stopping.wait):
        if kind in ("ADDED", "MODIFIED") and obj["spec"]["signerName"] == SIGNER and _csr.csr_state(obj) == "pending":
            _csr.decide(client, obj["metadata"]["name"], "Approved", "FloorApproved", "floor", obj=obj)


def burst(node_client, prefix, pems):
    """POST every request as the node, as fast as one client goes; {name: time the POST returned}."""
    created = {}
    for index, pem in enumerate(pems):
        name = "%s-%03d" % (prefix, index)
        obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
               "spec": {"request": pem, "signerName": SIGNER, "usages": ["digital signature", "server auth"]}}
        _csr.create(node_client, obj)
        created[name] = time.monotonic()
    return created


def latencies(created, observer, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in observer.approved for n in created):
        time.sleep(0.05)
    missing = [n for n in created if n not in observer.approved]
    return sorted(observer.approved[n] - t for n, t in created.items() if n in observer.approved), missing


def summary(values):
    if not values:
        return {"median": None, "p95": None, "max": None}
    p95 = values[min(len(values) - 1, int(round(0.95 * len(values))) - 1)]
    return {"median": statistics.median(values), "p95": p95, "max": values[-1]}


def tree_rss(pid):
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root] + root.children(recursive=True))
    except psutil.Error:
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csrs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    options = parser.parse_args()
    assets = controlplane.assets_dir()
    reason = controlplane.missing_assets(assets) or engine_missing()
    if reason:
        sys.exit("eda_approval: %s" % reason)
    work = tempfile.mkdtemp(prefix="kubepki-eda-bench-")
    plane = controlplane.ControlPlane(os.path.join(work, "cluster-1"), assets).start()
    results = {"csrs": options.csrs, "kubernetes": plane.server_version, "ways": {}}
    try:
        node_kubeconfig = client_kubeconfig(plane, os.path.join(work, "node.kubeconfig"), "system:node:" + NODE, ["system:nodes"])
        node_client = _kube.client_for(_kube.resolve_auth({"kubeconfig": node_kubeconfig}))
        observer = Observer(plane.kubeconfig)
        observer.start()
        observer.synced.wait(60)

        # the floor
        stopping = threading.Event()
        floor = threading.Thread(target=floor_approver, args=(plane.kubeconfig, stopping), daemon=True)
        floor.start()
        time.sleep(1)
        pems = requests(options.csrs)
        began = time.monotonic()
        created = burst(node_client, "floor", pems)
        values, missing = latencies(created, observer, options.timeout)
        results["ways"]["floor"] = dict(summary(values), missing=len(missing), burst_seconds=max(created.values()) - began)
        stopping.set()

        # the Monitor
        monitor = Monitor(engine_executable(), os.path.join(work, "monitor"), "kubepki.certs.kubelet_serving", {
            "kubepki_clusters": [{"name": "cluster-1", "kubeconfig": plane.kubeconfig}],
            "kubepki_kubelet_serving_policy": {"allowed_ip_cidrs": ["192.0.2.0/24"]}}).start()
        try:
            deadline = time.monotonic() + 120
            while "'type': 'synced'" not in monitor.output() and time.monotonic() < deadline:
                time.sleep(0.2)
            idle = tree_rss(monitor.proc.pid)
            peak = [idle]
            sampling = threading.Event()

            def sample():
                while not sampling.is_set():
                    peak[0] = max(peak[0], tree_rss(monitor.proc.pid))
                    sampling.wait(0.2)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            pems = requests(options.csrs)
            began = time.monotonic()
            created = burst(node_client, "monitor", pems)
            values, missing = latencies(created, observer, options.timeout)
            sampling.set()
            sampler.join()
            # decided events come after the burst (the source holds them up to five seconds): counted once they are printed
            deadline = time.monotonic() + 10
            while monitor.output(10 ** 8).count("'type': 'decided'") < len(created) and time.monotonic() < deadline:
                time.sleep(0.2)
            decisions = monitor.output(10 ** 8).count("'type': 'decided'")
            results["ways"]["monitor"] = dict(summary(values), missing=len(missing), burst_seconds=max(created.values()) - began,
                                              rss_idle_mib=idle / 2 ** 20, rss_peak_mib=peak[0] / 2 ** 20, decisions=decisions)
        finally:
            monitor.stop()
        observer.stopping.set()
    finally:
        plane.stop()
    floor_p95, floor_median = results["ways"]["floor"]["p95"], results["ways"]["floor"]["median"]
    mon = results["ways"]["monitor"]
    results["ratio_p95"] = mon["p95"] / floor_p95 if floor_p95 else None
    results["ratio_median"] = mon["median"] / floor_median if floor_median else None
    results["when"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.makedirs(options.out, exist_ok=True)
    with open(os.path.join(options.out, "eda-approval.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
    lines = ["# The Monitor: creation to approval, %d kubelet-serving CSRs in one burst (Kubernetes %s, %s)" % (
        options.csrs, results["kubernetes"], results["when"]), "",
        "| way | median s | p95 s | max s | not approved | burst took s | ratio p95 to floor | ratio median to floor |",
        "|---|---|---|---|---|---|---|---|"]
    for way in ("floor", "monitor"):
        row = results["ways"][way]
        lines.append("| %s | %.3f | %.3f | %.3f | %d | %.2f | %s | %s |" % (
            way, row["median"], row["p95"], row["max"], row["missing"], row["burst_seconds"],
            "1" if way == "floor" else "%.1f" % results["ratio_p95"], "1" if way == "floor" else "%.1f" % results["ratio_median"]))
    lines += ["", "Engine memory (ansible-rulebook with its JVM and the playbooks it runs): %.0f MiB idle after the first sync, "
              "%.0f MiB peak during the burst. Decisions made (decided events): %d." % (mon["rss_idle_mib"], mon["rss_peak_mib"], mon["decisions"]), ""]
    with open(os.path.join(options.out, "eda-approval.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
