"""Python API for tests: start a sandbox, reach its clusters, inject faults, change timings. kubectl, real clusters
and the choice between them for the functional tests are the harness's (kubeharness.client, .controlplane, .clusters).

    sandbox = kubesandbox.testing.start(tmpdir, clusters=2, signing_delay="1s")
    c1 = sandbox.cluster("cluster-1")      # .name .server .kubeconfig .ca_cert .ca_key .token_file
    sandbox.inject_faults("cluster-1", 503, 2, path="/certificatesigningrequests", verb="create")
    sandbox.etcd_prefix("/kubepki/certs/")      # {key: value} in the sandbox's etcd
    sandbox.stop()
"""

import csv
import io
import json
import os
import ssl
import urllib.request

from kubeharness import etcd, pki
from kubeharness.client import client_kubeconfig

from . import launcher


class ClusterInfo:
    def __init__(self, state_dir, name):
        self.name = name
        self.dir = os.path.join(state_dir, name)
        with open(os.path.join(self.dir, "server"), encoding="ascii") as handle:
            self.server = handle.read().strip()
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.token_file = os.path.join(self.dir, "tokens.csv")
        self.admin_cert = os.path.join(self.dir, "admin.crt")
        self.admin_key = os.path.join(self.dir, "admin.key")

    def __repr__(self):
        return "<ClusterInfo %s %s>" % (self.name, self.server)


class Sandbox:
    def __init__(self, state_dir):
        self.state_dir = os.path.abspath(state_dir)
        with open(os.path.join(self.state_dir, "clusters"), encoding="ascii") as handle:
            self.names = [line.strip() for line in handle if line.strip()]
        with open(os.path.join(self.state_dir, "etcd"), encoding="ascii") as handle:
            self.etcd_url = handle.read().strip()
        self._clusters = {name: ClusterInfo(self.state_dir, name) for name in self.names}

    def cluster(self, name):
        return self._clusters[name]

    def stop(self):
        return launcher.down(self.state_dir)

    def etcd_prefix(self, prefix):
        """{key: value} (text) of every key under ``prefix`` in the sandbox's etcd."""
        return etcd.read_prefix(self.etcd_url, prefix)

    # --- admin endpoint ----------------------------------------------------------------------------
    def admin_request(self, cluster, method, action, body=None):
        info = self.cluster(cluster)
        context = ssl.create_default_context(cafile=info.ca_cert)
        context.load_cert_chain(info.admin_cert, info.admin_key)
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(info.server + "/_sandbox/" + action, data=data if method != "GET" else None,
                                         method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return json.loads(response.read())

    def inject_faults(self, cluster, code, count, retry_after=None, path=None, verb=None):
        """The next ``count`` requests (matching ``path`` substring / ``verb`` if given) fail with ``code``."""
        return self.admin_request(cluster, "POST", "faults", {"code": code, "count": count,
                                                              "retry_after": retry_after, "path": path, "verb": verb})

    def clear_faults(self, cluster):
        return self.admin_request(cluster, "DELETE", "faults")

    def drop_watches(self, cluster):
        return self.admin_request(cluster, "POST", "drop-watches")["dropped"]

    def expire_next_watch(self, cluster, count=1):
        return self.admin_request(cluster, "POST", "expire-next-watch", {"count": count})

    def set_options(self, cluster, **opts):
        return self.admin_request(cluster, "POST", "options", launcher.normalize_options(opts))

    def get_options(self, cluster):
        return self.admin_request(cluster, "GET", "options")

    def run_cleaner(self, cluster):
        return self.admin_request(cluster, "POST", "run-cleaner")["deleted"]

    def clean_issued(self, cluster):
        """What the controller-manager's cleaner does to issued CSRs once their hour is up, now: the names deleted."""
        ttl = self.get_options(cluster)["approved_ttl"]
        self.set_options(cluster, approved_ttl=0)
        try:
            return self.run_cleaner(cluster)
        finally:
            self.set_options(cluster, approved_ttl=ttl)

    # --- identities --------------------------------------------------------------------------------
    def add_token(self, cluster, token, user, uid="", groups=()):
        """Append a static token row; the cluster picks up the change on the next request."""
        info = self.cluster(cluster)
        with open(info.token_file, encoding="utf-8") as handle:
            current = handle.read()
        out = io.StringIO()
        row = [token, user, uid]
        if groups:
            row.append(",".join(groups))
        csv.writer(out, lineterminator="\n").writerow(row)
        if current and not current.endswith("\n"):
            current += "\n"
        pki.write_file(info.token_file, current + out.getvalue(), secret=True)

    def user_kubeconfig(self, cluster, path, user, groups=()):
        """Write a kubeconfig at ``path`` for a client certificate (CN=user, O=groups) from the cluster CA."""
        return client_kubeconfig(self.cluster(cluster), path, user, groups)


def start(state_dir, clusters=2, owner_pid=None, **options):
    """Bring up ``clusters`` clusters plus etcd under ``state_dir``; options as the CLI flags (underscored).

    The processes stop by themselves once ``owner_pid`` (default: this process) has exited, so an aborted
    test run leaves nothing behind; pass ``owner_pid=0`` to keep them running.
    """
    if owner_pid is None:
        owner_pid = os.getpid()
    if owner_pid:
        options["owner_pid"] = owner_pid
    launcher.up(state_dir, clusters, **options)
    return Sandbox(state_dir)


def attach(state_dir):
    """A Sandbox for a state directory brought up elsewhere (``python -m kubesandbox up``)."""
    return Sandbox(state_dir)
