"""Fault injection, the cleaner with shortened durations, and the up/down command line."""

import os
import subprocess
import sys
import time

import pytest
from kubernetes import client

from sandbox_helpers import CSR_BASE, Raw, api_client, csr_body, csr_pem, unique

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# what `python -m kubesandbox` imports: the sandbox, and the harness it takes etcd and the PKI helpers from
SANDBOX_PYTHONPATH = os.pathsep.join([os.path.join(TESTS, "sandbox"), os.path.join(TESTS, "harness")])


def test_injected_faults(sandbox, c1, raw, certs):
    sandbox.inject_faults(c1.name, 429, 2, retry_after=1, path="/certificatesigningrequests", verb="list")
    assert raw.call("GET", "/api/v1/namespaces")[0] == 200  # other paths are unaffected
    for _i in range(2):
        status, body = raw.call("GET", CSR_BASE)
        assert status == 429
        assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 1
    assert raw.call("GET", CSR_BASE)[0] == 200
    # urllib3 (under the Python client) honours Retry-After on 429 by itself, as against a real server
    sandbox.inject_faults(c1.name, 429, 1, retry_after=1, verb="list")
    start = time.monotonic()
    certs.list_certificate_signing_request()
    assert time.monotonic() - start >= 0.9
    sandbox.inject_faults(c1.name, 503, 1)
    with pytest.raises(client.ApiException) as info:
        certs.list_certificate_signing_request()
    assert info.value.status == 503
    sandbox.inject_faults(c1.name, 500, 1, verb="create")
    certs.list_certificate_signing_request()  # not a create: unaffected
    with pytest.raises(client.ApiException) as info:
        certs.create_certificate_signing_request(csr_body(unique(), csr_pem("f")))
    assert info.value.status == 500


def test_admin_endpoint_requires_masters(sandbox, c1, tmp_path):
    kc = sandbox.user_kubeconfig(c1.name, str(tmp_path / "u.kubeconfig"), "eve", ["devs"])
    status, body = Raw(api_client(kc)).call("POST", "/_sandbox/drop-watches", {})
    assert status == 403 and body["reason"] == "Forbidden"


def _conditioned(raw, signer, ctype):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("c"), signer=signer))
    if ctype:
        _s, obj = raw.call("GET", CSR_BASE + "/" + name)
        obj["status"] = {"conditions": [{"type": ctype, "status": "True", "reason": "T"}]}
        assert raw.call("PUT", CSR_BASE + "/" + name + "/approval", obj)[0] == 200
    return name


def test_cleaner(fresh_sandbox):
    box = fresh_sandbox
    cluster = box.cluster(box.names[0])
    raw = Raw(api_client(cluster.kubeconfig))
    issued = _conditioned(raw, "kubernetes.io/kube-apiserver-client", "Approved")
    denied = _conditioned(raw, "example.com/x", "Denied")
    approved_unissued = _conditioned(raw, "example.com/x", "Approved")
    pending = _conditioned(raw, "example.com/x", None)
    time.sleep(0.5)
    assert box.run_cleaner(cluster.name) == []
    box.set_options(cluster.name, approved_ttl="1s", denied_ttl="1s", failed_ttl="1s")
    time.sleep(2.1)
    assert sorted(box.run_cleaner(cluster.name)) == sorted([issued, denied])
    names = {i["metadata"]["name"] for i in raw.call("GET", CSR_BASE)[1]["items"]}
    assert names == {approved_unissued, pending}
    box.set_options(cluster.name, pending_ttl="1s", cleaner_interval="0.5s")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        names = {i["metadata"]["name"] for i in raw.call("GET", CSR_BASE)[1]["items"]}
        if pending not in names:
            break
        time.sleep(0.1)
    assert names == {approved_unissued}


def test_cli_up_down(tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, PYTHONPATH=SANDBOX_PYTHONPATH)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kubesandbox", "up", "--state", str(state), "--clusters", "2",
                           "--signing-delay", "0", "--pending-ttl", "2h"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    elapsed = time.monotonic() - start
    try:
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 10  # about 1 s on an idle machine; the budget is 5 s, slack for loaded CI
        assert (state / "ready").exists()
        assert (state / "etcd").read_text().strip().startswith("http://127.0.0.1:")
        for name in ("cluster-1", "cluster-2"):
            server = (state / name / "server").read_text().strip()
            assert server.startswith("https://127.0.0.1:")
            for item in ("admin.kubeconfig", "ca.crt", "ca.key", "tokens.csv"):
                assert (state / name / item).exists()
            assert oct((state / name / "ca.key").stat().st_mode & 0o777) == "0o600"
            version = client.VersionApi(api_client(str(state / name / "admin.kubeconfig"))).get_code()
            assert version.major == "1"
        pids = [int((state / n / "pid").read_text()) for n in ("cluster-1", "cluster-2")]
        pids.append(int((state / "etcd.pid").read_text()))
        again = subprocess.run([sys.executable, "-m", "kubesandbox", "up", "--state", str(state)],
                               capture_output=True, text=True, env=env, timeout=60, check=False)
        assert again.returncode == 1 and "already has running processes" in again.stderr
    finally:
        down = subprocess.run([sys.executable, "-m", "kubesandbox", "down", "--state", str(state)],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
    assert down.returncode == 0
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"


def test_processes_end_with_their_owner(tmp_path):
    state = tmp_path / "owned"
    code = "from kubesandbox import testing; testing.start(%r, clusters=1)" % str(state)
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=SANDBOX_PYTHONPATH), check=True,
                   timeout=60)
    pids = [int((state / "cluster-1" / "pid").read_text()), int((state / "etcd.pid").read_text())]
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if os.path.exists("/proc/%d" % p) and open("/proc/%d/stat" % p).read().split()[2] != "Z"]
        time.sleep(0.2)
    assert alive == []
