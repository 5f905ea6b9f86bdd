"""The user_csrs and renew rulebooks under ansible-rulebook on a real v1.36 cluster: a person's own CSR is approved
under the user policy and one that says more than the policy allows is denied with the reason; a refused or deleted
request does not hold the others back; a certificate that falls due is issued again and carried to etcd, once, even
when the signer issues certificates shorter than renew_before."""

import base64
import datetime
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubeharness.client import kubectl, kubectl_json

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from eda_support import conditions, printed_events, wait_until  # pylint: disable=import-error

CLUSTER = "cluster-1"


def own_request(attributes):
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in attributes])).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def test_people_bringing_their_own_csr_are_approved_under_the_user_policy_and_refused_with_the_reason(real_clusters, start_monitor, tmp_path):
    info = real_clusters.cluster(CLUSTER)
    admin = info.kubeconfig
    kubectl(admin, "create", "clusterrole", "eda-csr-creator", "--verb=create", "--resource=certificatesigningrequests.certificates.k8s.io")
    for user in ("eda-dora", "eda-eve"):
        kubectl(admin, "create", "clusterrolebinding", user, "--clusterrole=eda-csr-creator", "--user=%s" % user)
    monitor = start_monitor("kubepki.certs.user_csrs", {
        "kubepki_clusters": [{"name": CLUSTER, "kubeconfig": admin}], "kubepki_deny_on_violation": True,
        "kubepki_user_policy": {"requester_may_be_subject": True, "allowed_groups": ["dev"], "max_expiration_seconds": 86400}})
    wait_until("the Monitor's first sync", lambda: monitor.running() and "'type': 'synced'" in monitor.output(), timeout=120)
    cases = {
        "eda-dora": ([(NameOID.ORGANIZATION_NAME, "dev"), (NameOID.COMMON_NAME, "eda-dora")], "Approved", None),
        "eda-eve": ([(NameOID.COMMON_NAME, "eda-eve"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins")], "Denied", "OU=admins"),
    }
    for user, (attributes, _decision, _why) in cases.items():
        as_user = real_clusters.user_kubeconfig(CLUSTER, str(tmp_path / ("%s.kubeconfig" % user)), user)
        obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": user},
               "spec": {"request": own_request(attributes), "signerName": "kubernetes.io/kube-apiserver-client",
                        "usages": ["digital signature", "client auth"], "expirationSeconds": 3600}}
        kubectl(as_user, "create", "-f", "-", stdin=json.dumps(obj))

    def decided():
        assert monitor.running(), monitor.output()
        objs = {n: kubectl_json(admin, "get", "csr", n) for n in cases}
        return objs if all(conditions(o) for o in objs.values()) else None

    objs = wait_until("both decisions", decided, timeout=60)
    for user, (_attributes, decision, why) in cases.items():
        assert conditions(objs[user]) == [decision], objs[user]["status"]
        if why:
            assert why in objs[user]["status"]["conditions"][0]["message"]


def test_one_refused_or_deleted_user_csr_never_holds_the_others_back(real_clusters, start_monitor, tmp_path):
    """deny_on_violation false (the default): the refused request stays pending, reported with its reason, and the
    requests beside it are decided at once, not after a batch_timeout, and not failed with it."""
    info = real_clusters.cluster(CLUSTER)
    admin = info.kubeconfig
    kubectl(admin, "create", "clusterrole", "eda-csr-creator-2", "--verb=create,delete", "--resource=certificatesigningrequests.certificates.k8s.io")
    users = ("eda-ivy", "eda-jon", "eda-lea")
    for user in users:
        kubectl(admin, "create", "clusterrolebinding", user, "--clusterrole=eda-csr-creator-2", "--user=%s" % user)
    monitor = start_monitor("kubepki.certs.user_csrs", {
        "kubepki_clusters": [{"name": CLUSTER, "kubeconfig": admin}],
        "kubepki_user_policy": {"requester_may_be_subject": True, "allowed_groups": ["dev"], "max_expiration_seconds": 86400}})
    wait_until("the Monitor's first sync", lambda: monitor.running() and "'type': 'synced'" in monitor.output(), timeout=120)
    subjects = {"eda-ivy": [(NameOID.COMMON_NAME, "eda-ivy"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins")],  # refused: OU
                "eda-jon": [(NameOID.ORGANIZATION_NAME, "dev"), (NameOID.COMMON_NAME, "eda-jon")],  # deleted at once
                "eda-lea": [(NameOID.ORGANIZATION_NAME, "dev"), (NameOID.COMMON_NAME, "eda-lea")]}
    kubeconfigs = {user: real_clusters.user_kubeconfig(CLUSTER, str(tmp_path / ("%s.kubeconfig" % user)), user) for user in users}
    for user in users:  # the refused and the deleted one first
        obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": user},
               "spec": {"request": own_request(subjects[user]), "signerName": "kubernetes.io/kube-apiserver-client",
                        "usages": ["digital signature", "client auth"], "expirationSeconds": 3600}}
        kubectl(kubeconfigs[user], "create", "-f", "-", stdin=json.dumps(obj))
        if user == "eda-jon":
            kubectl(kubeconfigs[user], "delete", "csr", user)

    def approved():
        assert monitor.running(), monitor.output()
        return conditions(kubectl_json(admin, "get", "csr", "eda-lea")) == ["Approved"]

    # well within batch_timeout (30 s): nothing waited for the refused request
    wait_until("eda-lea approved", approved, timeout=15)

    def reported():
        found = [e for e in printed_events(monitor.output(500000)) if e.get("type") == "decided" and e.get("name") == "eda-ivy"]
        return found[0] if found else None

    event = wait_until("the decision on eda-ivy", reported, timeout=30)
    assert event["decision"] == "refused" and any("OU=admins" in v for v in event["violations"]), event
    assert conditions(kubectl_json(admin, "get", "csr", "eda-ivy")) == []  # left pending, for a person to decide
    assert "refused, left pending" in monitor.output(500000)


def aged_certificate(info, store_uri, user, issued_ago, lifetime, signer="kubernetes.io/kube-apiserver-client"):
    """A certificate of ``user`` for the user's key in the store, signed by the cluster's CA ``issued_ago`` ago for
    ``lifetime``, recorded in the store (as an earlier play would have left it)."""
    store = _store.open_store(store_uri)
    try:
        key = _crypto.load_private_key(store.ensure_key("default", user)[0]["private_key_pem"])
        with open(info.ca_cert, "rb") as handle:
            ca = x509.load_pem_x509_certificate(handle.read())
        with open(info.ca_key, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), None)
        start = datetime.datetime.now(datetime.timezone.utc) - issued_ago
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dev"),
                                                                  x509.NameAttribute(NameOID.COMMON_NAME, user)]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + lifetime).sign(ca_key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        facts = _crypto.certificate_facts(pem)
        record = {"scope": "default", "cluster": CLUSTER, "user": user, "common_name": user, "organizations": ["dev"], "certificate": pem,
                  "csr_name": "earlier-%s" % user, "csr_uid": "earlier", "signer_name": signer, "serial": facts["serial"],
                  "not_before": facts["not_before"], "not_after": facts["not_after"], "public_key_sha256": facts["public_key_sha256"]}
        store.put_cert(record)
        return record
    finally:
        store.close()


def test_a_due_certificate_is_renewed_once_and_a_renewal_shorter_lived_than_renew_before_is_not_renewed_at_every_reading(
        real_clusters, start_monitor, tmp_path):
    """renew_before of ten years, longer than the signer issues for (one year): every certificate is within it, and
    without a rule for that each renewal would be due again at the next reading (every 2 s here)."""
    info = real_clusters.cluster(CLUSTER)
    store, out, prefix = str(tmp_path / "store.db"), str(tmp_path / "out"), "/kubepki-renew"
    hour = datetime.timedelta(hours=1)
    first = aged_certificate(info, store, "eda-frank", 50 * datetime.timedelta(minutes=1), hour)  # 10 of 60 minutes left
    # another signer's certificate (a kubelet's) is not the client renewal's business, whatever it has left
    aged_certificate(info, store, "eda-kay", 50 * datetime.timedelta(minutes=1), hour, signer="kubernetes.io/kubelet-serving")
    monitor = start_monitor("kubepki.certs.renew", {
        "kubepki_clusters": [{"name": CLUSTER, "kubeconfig": info.kubeconfig}], "kubepki_renew_before": "3650d", "kubepki_due_interval": 2,
        "kubepki_store_uri": store, "kubepki_etcd_endpoints": [real_clusters.etcd_url], "kubepki_etcd_prefix": prefix,
        "kubepki_render_clusters": {CLUSTER: {"server": info.server, "ca_cert": info.ca_cert}}, "kubepki_kubeconfig_dir": out})
    key = "%s/certs/default/%s/eda-frank" % (prefix, CLUSTER)

    def renewed():
        assert monitor.running(), monitor.output()
        value = real_clusters.etcd_prefix(key).get(key)
        return json.loads(value) if value else None

    second = wait_until("the renewed certificate in etcd", renewed, timeout=120, step=1)
    assert second["serial"] != first["serial"] and second["public_key_sha256"] == first["public_key_sha256"]
    assert second["not_after"] > first["not_after"]
    # several readings later: the renewal (a year, shorter than renew_before) was not renewed again
    time.sleep(10)
    assert json.loads(real_clusters.etcd_prefix(key)[key])["serial"] == second["serial"]
    due = [(e["user"], e["serial"]) for e in printed_events(monitor.output(1000000)) if e.get("type") == "due"]
    assert due and set(due) == {("eda-frank", first["serial"])}, due
    log = monitor.output(1000000)
    assert "lives shorter than three times renew_before" in log and second["serial"] in log
