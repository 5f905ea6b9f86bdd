"""How a test talks to a cluster, sandbox or real: kubeconfig files and the real kubectl.

    text = kubeconfig("cluster-1", server, ca_pem, cert_pem, key_pem)          # YAML, cluster/user/context named alike
    client_kubeconfig(info, path, "alice", ["dev"])                           # a new client certificate from the CA
    kubectl_json(info.kubeconfig, "get", "csr")                               # the real kubectl, output parsed
"""

import base64
import json
import subprocess

import yaml

from . import pki

KUBECTL = "kubectl"


def kubectl(kubeconfig, *args, stdin=None, timeout=60):
    """stdout of the real kubectl run with ``kubeconfig``; AssertionError naming the command when it fails."""
    cmd = [KUBECTL, "--kubeconfig", str(kubeconfig)] + list(args)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s failed (%d): %s %s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def kubectl_json(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, *(list(args) + ["-o", "json"])))


def kubeconfig(name, server, ca_pem, cert_pem, key_pem, user=None):
    """A kubeconfig (YAML text) for ``server`` with client certificate authentication; the cluster and the context are
    named ``name``, the user ``user`` (default ``name``)."""

    def b64(data):
        return base64.b64encode(data).decode()
    user = user or name
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name, "preferences": {},
    }, default_flow_style=False)


def client_kubeconfig(info, path, user, groups=()):
    """Write a kubeconfig at ``path`` for a new client certificate (CN=user, O=groups) issued by the CA of the
    cluster ``info`` (``name``, ``server``, ``ca_cert``, ``ca_key``); returns ``path``."""
    with open(info.ca_cert, "rb") as handle:
        ca_pem = handle.read()
    with open(info.ca_key, "rb") as handle:
        ca_key = pki.load_key(handle.read())
    ca = pki.KeyPair(pki.load_cert(ca_pem), ca_key)
    leaf = pki.issue(ca, user, organizations=list(groups), client=True)
    pki.write_file(path, kubeconfig(info.name, info.server, ca_pem, pki.cert_pem(leaf.cert), pki.key_pem(leaf.key), user=user),
                   secret=True)
    return path
