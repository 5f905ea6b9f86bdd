"""The floor: the same onboarding job done by one Python process with the kubernetes client, no Ansible.

For every user: one P-256 key (kept in OUT_DIR/keys, made once), one PKCS#10 request; for every cluster
(one thread each): create the CertificateSigningRequests, approve them through /approval, wait for all of
them with one watch started from the resourceVersion of a list, write one kubeconfig per user and
cluster (0600). A user whose kubeconfig is already there, loads, matches its key and is valid now is
skipped, so a re-run does only the checks.

usage: python floor.py SPEC.json    (written by run.py; see its floor variant for the fields)
Writes SPEC["timings"] (JSON) with {cluster, user, approved, observed} epoch times per issued CSR.
"""

import base64
import datetime
import json
import os
import sys
import threading
import time

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config, watch

SIGNER = "kubernetes.io/kube-apiserver-client"


def b64(data):
    return base64.b64encode(data).decode("ascii")


def write_secret(path, data):
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def load_or_make_key(key_dir, user):
    path = os.path.join(key_dir, user + ".key")
    if os.path.exists(path):
        with open(path, "rb") as handle:
            pem = handle.read()
        return serialization.load_pem_private_key(pem, None), pem
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_secret(path, pem)
    return key, pem


def csr_pem(key, user, groups):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def kubeconfig_ok(path, key):
    """True when the kubeconfig at path holds a certificate for key that is valid now."""
    if not os.path.exists(path):
        return False
    try:
        with open(path, "rb") as handle:
            data = yaml.safe_load(handle)
        cert_pem = base64.b64decode(data["users"][0]["user"]["client-certificate-data"])
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return (cert.not_valid_before_utc <= now < cert.not_valid_after_utc
            and cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


def render_kubeconfig(cluster, server, ca_pem, user, cert_b64, key_pem):
    context = "%s@%s" % (user, cluster)
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": cert_b64, "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
    }, indent=1).encode()


def onboard_cluster(cluster, spec, material, timings, errors):
    try:
        out_dir = os.path.join(spec["out_dir"], cluster["name"])
        os.makedirs(out_dir, exist_ok=True)
        with open(cluster["ca_cert"], "rb") as handle:
            ca_pem = handle.read()
        todo = {}
        for user in spec["users"]:
            key, key_pem, request = material[user["name"]]
            if not kubeconfig_ok(os.path.join(out_dir, user["name"] + ".kubeconfig"), key):
                todo["user-" + user["name"]] = user["name"]
        if not todo:
            return
        api = client.CertificatesV1Api(config.new_client_from_config(cluster["kubeconfig"]))

        for name, user in todo.items():
            body = client.V1CertificateSigningRequest(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1CertificateSigningRequestSpec(
                    request=b64(material[user][2]), signer_name=SIGNER, usages=["client auth"]))
            try:
                api.create_certificate_signing_request(body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

        listing = api.list_certificate_signing_request(_preload_content=False)
        listing = json.loads(listing.data)
        issued = {}
        for item in listing["items"]:
            name = item["metadata"]["name"]
            if name in todo and item.get("status", {}).get("certificate"):
                issued[name] = item["status"]["certificate"]
        approved_at = {}
        observed_at = {name: None for name in issued}
        done = threading.Event()

        def watch_until_issued():
            stream = watch.Watch()
            rv = listing["metadata"]["resourceVersion"]
            while len(issued) < len(todo):
                for event in stream.stream(api.list_certificate_signing_request, resource_version=rv,
                                           timeout_seconds=60, deserialize=False):
                    obj = event.get("raw_object") or event["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    name = obj["metadata"]["name"]
                    cert = (obj.get("status") or {}).get("certificate")
                    if name in todo and cert and name not in issued:
                        issued[name] = cert
                        observed_at[name] = time.time()
                    if len(issued) == len(todo):
                        stream.stop()
                        break
            done.set()

        watcher = threading.Thread(target=watch_until_issued, daemon=True)
        watcher.start()
        for name in todo:
            if name in issued:
                continue
            condition = client.V1CertificateSigningRequestCondition(
                type="Approved", status="True", reason="BenchFloor", message="approved by the benchmark floor")
            current = api.read_certificate_signing_request(name)
            current.status.conditions = (current.status.conditions or []) + [condition]
            # Stamped as the approval is sent: the watch may see the certificate before the PUT returns.
            approved_at[name] = time.time()
            api.replace_certificate_signing_request_approval(name, current)
        if not done.wait(spec.get("timeout", 300)):
            raise RuntimeError("%s: certificates not issued in time: %d of %d" % (
                cluster["name"], len(issued), len(todo)))

        for name, user in todo.items():
            key, key_pem, _request = material[user]
            path = os.path.join(out_dir, user + ".kubeconfig")
            write_secret(path, render_kubeconfig(cluster["name"], cluster["server"], ca_pem, user,
                                                 issued[name], key_pem))
            if name in approved_at and observed_at.get(name):
                timings.append({"cluster": cluster["name"], "user": user,
                                "approved": approved_at[name], "observed": observed_at[name]})
    except Exception as exc:  # reported by the main thread
        errors.append("%s: %s" % (cluster["name"], exc))


def main(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    key_dir = os.path.join(spec["out_dir"], "keys")
    os.makedirs(key_dir, mode=0o700, exist_ok=True)
    material = {}
    for user in spec["users"]:
        key, key_pem = load_or_make_key(key_dir, user["name"])
        material[user["name"]] = (key, key_pem, csr_pem(key, user["name"], user.get("groups", [])))
    timings, errors = [], []
    threads = [threading.Thread(target=onboard_cluster, args=(c, spec, material, timings, errors))
               for c in spec["clusters"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if spec.get("timings"):
        with open(spec["timings"], "w") as handle:
            json.dump(timings, handle)
    if errors:
        sys.stderr.write("\n".join(errors) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
