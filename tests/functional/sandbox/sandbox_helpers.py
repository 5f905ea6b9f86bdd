"""Helpers for the sandbox's own tests: CSR builders, API clients and a kubectl runner."""

import base64
import json
import subprocess
import uuid
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config

KUBECTL = "/usr/bin/kubectl"
OLD_KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"
CSR_BASE = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def csr_pem(common_name, orgs=(), dns=(), ips=(), emails=(), uris=(), key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if common_name is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names = [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
    import ipaddress  # pylint: disable=import-outside-toplevel
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def b64(data):
    return base64.b64encode(data).decode()


def unique(prefix="csr"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def csr_body(name, pem, signer="kubernetes.io/kube-apiserver-client", usages=("client auth",), expiration=None,
             labels=None):
    spec = {"request": b64(pem), "signerName": signer, "usages": list(usages)}
    if expiration is not None:
        spec["expirationSeconds"] = expiration
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta,
            "spec": spec}


class Raw:
    """Thin JSON client over the kubernetes ApiClient, returning (status, body) for any path."""

    def __init__(self, api_client):
        self.api = api_client

    def call(self, method, path, body=None, content_type="application/json", query=None, headers=None):
        hdrs = {"Accept": "application/json", "Content-Type": content_type}
        auth = self.api.configuration.api_key.get("authorization")
        if auth:
            hdrs["Authorization"] = auth
        hdrs.update(headers or {})
        url = self.api.configuration.host + path
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        resp = self.api.rest_client.pool_manager.request(method, url, body=data, headers=hdrs, preload_content=True,
                                                         retries=False)
        try:
            return resp.status, json.loads(resp.data)
        except ValueError:
            return resp.status, resp.data


def api_client(kubeconfig):
    return config.new_client_from_config(kubeconfig)


def token_client(cluster, token):
    conf = client.Configuration()
    conf.host = cluster.server
    conf.ssl_ca_cert = cluster.ca_cert
    conf.api_key = {"authorization": "Bearer " + token}
    return client.ApiClient(conf)


def kubectl(kubeconfig, *args, binary=KUBECTL, check=True, stdin=None, env=None):
    cmd = [binary, "--kubeconfig", kubeconfig] + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=60, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc
