"""Time N CSRs created, approved, signed and observed by one watch against a fresh sandbox cluster.

    PYTHONPATH=tests/sandbox:tests/harness .venv/bin/python benchmarks/sandbox_throughput.py --count 1000

Each CSR is created (POST) and approved (PUT .../approval) over HTTPS with the admin client certificate,
by ``--workers`` processes with keep-alive connections; the in-cluster signer issues the certificate; one
watch (opened before the first create) counts the CSRs whose certificate it has seen. The figure is the
wall time from the first create until the watch has seen all N certificates.

``--client kubernetes`` does the same through the kubernetes Python client (models, watch.Watch): slower,
because that client's (de)serialization, not the sandbox, becomes the bottleneck.
"""

import argparse
import base64
import json
import multiprocessing
import os
import ssl
import sys
import tempfile
import threading
import time
import http.client

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

for _part in ("harness", "sandbox"):  # the sandbox takes etcd and the PKI helpers from the harness
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", _part))

from kubesandbox import testing  # noqa: E402  pylint: disable=wrong-import-position

BASE = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def make_requests(count):
    key = ec.generate_private_key(ec.SECP256R1())
    out = []
    for i in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-user-%d" % i)])
        pem = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM)
        out.append(base64.b64encode(pem).decode())
    return out


def connect(cluster):
    context = ssl.create_default_context(cafile=cluster["ca_cert"])
    context.load_cert_chain(cluster["admin_cert"], cluster["admin_key"])
    host, port = cluster["server"].split("//", 1)[1].rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=context, timeout=120)


def call(conn, method, path, body):
    conn.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                               "Accept": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise RuntimeError("%s %s: %s %s" % (method, path, resp.status, data[:200]))
    return json.loads(data)


def raw_worker(args):
    cluster, jobs = args
    conn = connect(cluster)
    for name, request in jobs:
        body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name, "labels": {"bench": "1"}},
                "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                         "usages": ["client auth"]}}
        created = call(conn, "POST", BASE, body)
        created["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Bench",
                                             "message": "benchmark"}]}
        call(conn, "PUT", "%s/%s/approval" % (BASE, name), created)
    conn.close()
    return len(jobs)


def kube_worker(args):
    from kubernetes import client, config  # pylint: disable=import-outside-toplevel
    cluster, jobs = args
    api = client.CertificatesV1Api(config.new_client_from_config(cluster["kubeconfig"]))
    for name, request in jobs:
        body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name, "labels": {"bench": "1"}},
                "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client",
                         "usages": ["client auth"]}}
        created = api.create_certificate_signing_request(body)
        created.status.conditions = [client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="Bench", message="benchmark")]
        api.replace_certificate_signing_request_approval(name, created)
    return len(jobs)


def raw_watch(cluster, rv, count, done):
    conn = connect(cluster)
    conn.request("GET", "%s?watch=1&labelSelector=bench%%3D1&resourceVersion=%s&timeoutSeconds=600" % (BASE, rv),
                 headers={"Accept": "application/json"})
    resp = conn.getresponse()
    issued = set()
    while len(issued) < count:
        line = resp.readline()
        if not line:
            break
        event = json.loads(line)
        if (event["object"].get("status") or {}).get("certificate"):
            issued.add(event["object"]["metadata"]["name"])
    done["seen"] = len(issued)
    done["at"] = time.monotonic()
    conn.close()


def kube_watch(cluster, rv, count, done):
    from kubernetes import client, config, watch  # pylint: disable=import-outside-toplevel
    api = client.CertificatesV1Api(config.new_client_from_config(cluster["kubeconfig"]))
    issued = set()
    stream = watch.Watch()
    for event in stream.stream(api.list_certificate_signing_request, resource_version=rv, label_selector="bench=1",
                               timeout_seconds=600):
        obj = event["object"]
        if obj.status and obj.status.certificate:
            issued.add(obj.metadata.name)
            if len(issued) == count:
                stream.stop()
    done["seen"] = len(issued)
    done["at"] = time.monotonic()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--client", choices=("raw", "kubernetes"), default="raw")
    args = parser.parse_args()
    requests = make_requests(args.count)
    with tempfile.TemporaryDirectory() as state:
        box = testing.start(state, clusters=1)
        try:
            info = box.cluster(box.names[0])
            cluster = {"server": info.server, "ca_cert": info.ca_cert, "admin_cert": info.admin_cert,
                       "admin_key": info.admin_key, "kubeconfig": info.kubeconfig}
            conn = connect(cluster)
            conn.request("GET", BASE)
            rv = json.loads(conn.getresponse().read())["metadata"]["resourceVersion"]
            conn.close()
            done = {}
            observer = threading.Thread(target=raw_watch if args.client == "raw" else kube_watch,
                                        args=(cluster, rv, args.count, done), daemon=True)
            observer.start()
            time.sleep(0.3)
            names = [("bench-%05d" % i, r) for i, r in enumerate(requests)]
            chunks = [(cluster, names[i::args.workers]) for i in range(args.workers)]
            worker = raw_worker if args.client == "raw" else kube_worker
            start = time.monotonic()
            # spawn, not fork: the watch thread is already running in this process
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                submitted = sum(pool.map(worker, chunks))
            submit_time = time.monotonic() - start
            observer.join(timeout=600)
            total = done.get("at", time.monotonic()) - start
        finally:
            box.stop()
    result = {"csrs": args.count, "client": args.client, "workers": args.workers, "submitted": submitted,
              "created_and_approved_s": round(submit_time, 2), "all_issued_seen_by_watch_s": round(total, 2),
              "per_csr_ms": round(1000 * total / args.count, 2), "seen_by_watch": done.get("seen", 0)}
    print(json.dumps(result))
    return 0 if done.get("seen") == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
