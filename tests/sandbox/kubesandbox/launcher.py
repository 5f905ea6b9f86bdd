"""Bring sandbox clusters and one etcd up (detached) and down again, by PID."""

import json
import shutil
import os
import subprocess
import sys
import threading
import time

from kubeharness import etcd as etcdlib, pki
from kubeharness.client import kubeconfig
from kubeharness.processes import ours, stop_pid

from .csr import parse_duration

# where the cluster processes import kubesandbox and kubeharness from
IMPORT_PATH = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
               os.path.dirname(os.path.dirname(os.path.abspath(pki.__file__)))]
DURATION_OPTIONS = ("signing_duration", "signing_delay", "cleaner_interval", "approved_ttl", "denied_ttl",
                    "failed_ttl", "pending_ttl", "approver_max_backoff", "bookmark_interval", "watch_timeout",
                    "network_delay")


def normalize_options(options):
    out = {}
    for key, value in options.items():
        if value is None:
            continue
        key = key.replace("-", "_")
        if key in DURATION_OPTIONS:
            value = parse_duration(value)
        out[key] = value
    return out


def _prepare_cluster(directory, options):
    os.makedirs(directory, exist_ok=True)
    for stale in ("server", "pid"):
        path = os.path.join(directory, stale)
        if os.path.exists(path):
            os.unlink(path)
    name = os.path.basename(directory)
    ca = pki.make_ca("%s-ca" % name)
    server = pki.issue(ca, "kube-apiserver", server=True, hosts=["127.0.0.1", "localhost", "::1"])
    admin = pki.issue(ca, "kubernetes-admin", organizations=["system:masters"], client=True)
    pki.write_file(os.path.join(directory, "ca.crt"), pki.cert_pem(ca.cert))
    pki.write_file(os.path.join(directory, "ca.key"), pki.key_pem(ca.key), secret=True)
    pki.write_file(os.path.join(directory, "server.crt"), pki.cert_pem(server.cert))
    pki.write_file(os.path.join(directory, "server.key"), pki.key_pem(server.key), secret=True)
    pki.write_file(os.path.join(directory, "admin.crt"), pki.cert_pem(admin.cert))
    pki.write_file(os.path.join(directory, "admin.key"), pki.key_pem(admin.key), secret=True)
    tokens = os.path.join(directory, "tokens.csv")
    if not os.path.exists(tokens):
        pki.write_file(tokens, "", secret=True)
    pki.write_file(os.path.join(directory, "options.json"), json.dumps(options))
    return ca, admin


def _spawn(directory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(IMPORT_PATH + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log = open(os.path.join(directory, "server.log"), "ab")  # pylint: disable=consider-using-with
    try:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "kubesandbox", "serve", "--dir", directory], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=directory)
    finally:
        log.close()
    pki.write_file(os.path.join(directory, "pid"), "%d\n" % proc.pid)
    return proc


def up(state, clusters=2, timeout=30.0, **options):
    """Start ``clusters`` cluster processes and one etcd; returns when ``state/ready`` is written."""
    state = os.path.abspath(state)
    os.makedirs(state, exist_ok=True)
    if os.path.exists(os.path.join(state, "ready")):
        os.unlink(os.path.join(state, "ready"))
    opts = normalize_options(options)
    for entry in sorted(os.listdir(state)):
        pid_file = os.path.join(state, entry, "pid") if entry != "etcd.pid" else os.path.join(state, entry)
        if os.path.isfile(pid_file):
            with open(pid_file, encoding="ascii") as handle:
                text = handle.read().strip()
            if text.isdigit() and (ours(int(text), "kubesandbox") or ours(int(text), "etcd")):
                raise RuntimeError("state directory %s already has running processes (pid %s); run down first"
                                   % (state, text))
    if os.path.isdir(os.path.join(state, "etcd-data")):
        shutil.rmtree(os.path.join(state, "etcd-data"))
    etcd_box = {}

    def start_etcd():
        try:
            server = etcdlib.EtcdServer(os.path.join(state, "etcd-data"), name="kubesandbox")
            server.start()
            etcd_box["server"] = server
        except Exception as exc:  # pylint: disable=broad-except
            etcd_box["error"] = exc
    etcd_thread = threading.Thread(target=start_etcd)
    etcd_thread.start()
    names = ["cluster-%d" % i for i in range(1, int(clusters) + 1)]
    procs = {}
    prepared = {}
    for name in names:
        directory = os.path.join(state, name)
        prepared[name] = _prepare_cluster(directory, opts)
        procs[name] = _spawn(directory)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            directory = os.path.join(state, name)
            if os.path.exists(os.path.join(directory, "server")):
                pending.discard(name)
            elif procs[name].poll() is not None:
                _abort(state, procs, etcd_thread, etcd_box)
                with open(os.path.join(directory, "server.log"), encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-3000:]
                raise RuntimeError("sandbox cluster %s exited with %s:\n%s" % (name, procs[name].returncode, tail))
        time.sleep(0.02)
    if pending:
        _abort(state, procs, etcd_thread, etcd_box)
        raise RuntimeError("sandbox clusters did not come up within %ss: %s" % (timeout, sorted(pending)))
    for name in names:
        directory = os.path.join(state, name)
        with open(os.path.join(directory, "server"), encoding="ascii") as handle:
            server = handle.read().strip()
        ca, admin = prepared[name]
        pki.write_file(os.path.join(directory, "admin.kubeconfig"),
                       kubeconfig(name, server, pki.cert_pem(ca.cert), pki.cert_pem(admin.cert),
                                  pki.key_pem(admin.key)), secret=True)
    etcd_thread.join(timeout=max(deadline - time.monotonic(), 1.0))
    if "server" not in etcd_box:
        _abort(state, procs, etcd_thread, etcd_box)
        raise RuntimeError("etcd did not come up: %s" % etcd_box.get("error", "timeout"))
    pki.write_file(os.path.join(state, "etcd"), etcd_box["server"].url)
    pki.write_file(os.path.join(state, "etcd.pid"), "%d\n" % etcd_box["server"].pid)
    pki.write_file(os.path.join(state, "clusters"), "\n".join(names) + "\n")
    pki.write_file(os.path.join(state, "ready"), "ready\n")
    return names


def _abort(state, procs, etcd_thread, etcd_box):
    for proc in procs.values():
        if proc.poll() is None:
            stop_pid(proc.pid)
    etcd_thread.join(timeout=30)
    if "server" in etcd_box:
        etcd_box["server"].stop()
    del state


def down(state):
    """Stop the processes recorded in ``state`` (cluster pid files and etcd.pid), by PID."""
    state = os.path.abspath(state)
    stopped = []
    if os.path.isdir(state):
        for entry in sorted(os.listdir(state)):
            pid_file = os.path.join(state, entry, "pid")
            if os.path.isfile(pid_file):
                stopped += _stop_file(pid_file, "kubesandbox")
        stopped += _stop_file(os.path.join(state, "etcd.pid"), "etcd")
        stopped += _stop_file(os.path.join(state, "etcd-data", "etcd.pid"), "etcd")
        ready = os.path.join(state, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
    return stopped


def _stop_file(path, marker):
    if not os.path.isfile(path):
        return []
    with open(path, encoding="ascii") as handle:
        text = handle.read().strip()
    os.unlink(path)
    if not text.isdigit():
        return []
    pid = int(text)
    if not ours(pid, marker):
        return []
    stop_pid(pid)
    return [pid]


def stop_recorded_etcd(state):
    """Stop the etcd recorded in ``state`` (used when the owner of a sandbox disappeared)."""
    stopped = _stop_file(os.path.join(state, "etcd.pid"), "etcd")
    stopped += _stop_file(os.path.join(state, "etcd-data", "etcd.pid"), "etcd")
    return stopped
