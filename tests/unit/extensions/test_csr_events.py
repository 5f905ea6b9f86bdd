"""The event source kubepki.certs.csr_events without the engine: the events it puts, its batches, and the decisions it
makes itself (``approve``) against the in-memory API of the unit tier (tests/unit/plugins/modules/csr_fake_api.py).

ansible-rulebook itself, real clusters and a real kubelet are in tests/functional/eda."""

import asyncio
import base64
import datetime
import ipaddress
import logging
import os
import sys
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "modules"))

from csr_fake_api import FakeCluster, install  # noqa: E402 pylint: disable=wrong-import-position
import pki_support  # noqa: E402 pylint: disable=wrong-import-position,wrong-import-order

from ansible_collections.kubepki.certs.extensions.eda.plugins.event_source import csr_events  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402

SERVING = "kubernetes.io/kubelet-serving"
HOST = "https://serving.invalid"


def serving_request(node, ips=("192.0.2.7",), extra_names=()):
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "system:node:" + node)])
    sans = [x509.DNSName(node)] + [x509.DNSName(name) for name in extra_names] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def pending(cluster, name, node, **kwargs):
    """A serving CSR of ``node`` as the node itself made it, stored in ``cluster``."""
    obj = {"metadata": {"name": name, "resourceVersion": "1", "uid": "u-" + name},
           "spec": {"request": serving_request(node, **kwargs), "signerName": SERVING, "usages": ["digital signature", "server auth"],
                    "username": "system:node:" + node, "groups": ["system:nodes", "system:authenticated"]},
           "status": {}}
    cluster.objects[name] = obj
    return obj


@pytest.fixture
def cluster(monkeypatch):
    fake = FakeCluster(auto_issue=False)
    return install(monkeypatch, fake)


def approver(policy=None):
    return csr_events.Approver("c1", {"host": HOST}, {"signers": [SERVING], "reason": "KubepkiKubeletServing",
                                                      "policy": dict(policy or {"allowed_ip_cidrs": ["192.0.2.0/24"]},
                                                                     allowed_signers=[SERVING], key_must_match_store=False)})


def test_the_csr_event_reads_the_request_as_encoded():
    obj = pending(FakeCluster(), "n1-serving", "n1", extra_names=("n1.nodes.example",))
    event = csr_events.csr_event("c1", "ADDED", obj, initial=True)
    assert (event["type"], event["cluster"], event["change"], event["initial"]) == ("csr", "c1", "ADDED", True)
    csr = event["csr"]
    assert csr["subject"]["common_name"] == "system:node:n1" and csr["subject"]["organizations"] == ["system:nodes"]
    assert csr["sans"]["dns"] == ["n1", "n1.nodes.example"] and csr["sans"]["ip"] == ["192.0.2.7"]
    assert csr["requester"]["username"] == "system:node:n1" and csr["state"] == "pending" and not csr["issued"]
    broken = dict(obj, spec=dict(obj["spec"], request=base64.b64encode(b"not a request").decode()))
    assert csr_events.csr_summary(broken)["parse_error"]


def test_batches_hand_out_each_pending_csr_once_until_it_is_decided_or_times_out():
    batches = csr_events.Batches("c1", [SERVING], timeout=30)
    cluster = FakeCluster()
    first, second = pending(cluster, "a", "n1"), pending(cluster, "b", "n2")
    batches.observe("ADDED", first)
    assert batches.due(0) == []  # nothing before the first sync
    batches.ready = True
    assert [e["names"] for e in batches.due(1)] == [["a"]]
    batches.observe("ADDED", second)
    assert batches.due(2) == []  # a is still being decided
    batches.observe("MODIFIED", dict(first, status={"conditions": [{"type": "Approved", "status": "True"}]}))
    assert [e["names"] for e in batches.due(3)] == [["b"]]
    assert [e["names"] for e in batches.due(40)] == [["b"]]  # timed out: handed out again


def test_the_source_approves_what_the_policy_allows_and_denies_the_rest_with_the_reason(cluster):
    decide = approver()
    good = pending(cluster, "n1-serving", "n1")
    assert decide.wants("ADDED", good) and not decide.wants("DELETED", good)
    event = decide.decide(good)
    assert (event["type"], event["name"], event["decision"], event["violations"]) == ("decided", "n1-serving", "approved", [])
    assert [c["type"] for c in cluster.objects["n1-serving"]["status"]["conditions"]] == ["Approved"]
    assert not decide.wants("MODIFIED", cluster.objects["n1-serving"])  # decided: never again
    outside = pending(cluster, "n2-serving", "n2", ips=("198.51.100.9",))
    event = decide.decide(outside)
    assert event["decision"] == "denied" and any("198.51.100.9" in reason for reason in event["violations"]), event
    condition = cluster.objects["n2-serving"]["status"]["conditions"][0]
    assert condition["type"] == "Denied" and "198.51.100.9" in condition["message"]


def test_a_request_that_names_another_node_is_denied(cluster):
    other = pending(cluster, "n3-serving", "n3")
    other["spec"]["username"] = "system:node:n4"  # node n4 asks for n3's certificate
    event = approver().decide(other)
    assert event["decision"] == "denied" and event["violations"], event


def test_a_bad_approve_option_stops_the_source_before_it_starts():
    with pytest.raises(KubePkiError, match="approve step's parameters are not valid: .*deny_on_violation"):
        csr_events.Approver("c1", {"host": HOST}, {"deny_on_violation": "sometimes"})


# ---------------------------------------------------------------- deciding on each CSR as seen

def test_the_source_decides_on_the_object_it_saw_without_reading_it_again(cluster):
    good = pending(cluster, "n5-serving", "n5")
    cluster.requests.clear()
    assert approver().decide(good)["decision"] == "approved"
    # one request: the approval itself; the CSR just seen on the watch is not fetched again
    assert [(method, path.rsplit("/", 1)[-1]) for method, path, _query in cluster.requests] == [("PUT", "approval")], cluster.requests


def user_request(common_name, organizations=(), unit=None):
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations] + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes)).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def user_pending(cluster, name, unit=None):
    obj = {"metadata": {"name": name, "resourceVersion": "1", "uid": "u-" + name},
           "spec": {"request": user_request(name, ["dev"], unit), "signerName": "kubernetes.io/kube-apiserver-client",
                    "usages": ["digital signature", "client auth"], "username": name, "groups": ["system:authenticated"],
                    "expirationSeconds": 3600},
           "status": {}}
    cluster.objects[name] = obj
    return obj


def user_approver(deny_on_violation=False):
    return csr_events.Approver("c1", {"host": HOST}, {
        "signers": ["kubernetes.io/kube-apiserver-client"], "reason": "KubepkiUserPolicy", "deny_on_violation": deny_on_violation,
        "policy": {"requester_may_be_subject": True, "allowed_groups": ["dev"], "allowed_signers": ["kubernetes.io/kube-apiserver-client"],
                   "key_must_match_store": False}})


def test_a_refused_or_vanished_user_csr_is_reported_alone_and_never_holds_the_others_back(cluster):
    decide = user_approver()
    refused, gone, good = user_pending(cluster, "eve", unit="admins"), user_pending(cluster, "gus"), user_pending(cluster, "dora")
    del cluster.objects["gus"]  # deleted after the watch showed it
    events = {obj["metadata"]["name"]: decide.decide(obj) for obj in (refused, gone, good)}
    assert events["eve"]["decision"] == "refused" and any("OU=admins" in v for v in events["eve"]["violations"]), events["eve"]
    assert "status" not in cluster.objects["eve"] or not cluster.objects["eve"]["status"].get("conditions")  # left pending
    assert events["gus"]["decision"] == "failed" and "gus" in events["gus"]["message"], events["gus"]
    assert events["dora"]["decision"] == "approved", events["dora"]
    assert [c["type"] for c in cluster.objects["dora"]["status"]["conditions"]] == ["Approved"]
    # denying instead: the refused one is denied with the reason, on its own
    other = user_pending(cluster, "eli", unit="ops")
    event = user_approver(deny_on_violation=True).decide(other)
    assert event["decision"] == "denied" and "OU=ops" in cluster.objects["eli"]["status"]["conditions"][0]["message"], event


def test_main_puts_every_decision_of_a_burst_once_each_after_the_burst(cluster, monkeypatch):
    monkeypatch.setattr(csr_events, "QUIET", 1.0)  # a burst ends after a second without a decision (slow machines)
    ended = []
    decide = csr_events.Approver.decide

    def timed(self, obj):
        try:
            return decide(self, obj)
        finally:
            ended.append(time.monotonic())

    monkeypatch.setattr(csr_events.Approver, "decide", timed)
    for index in range(6):
        pending(cluster, "burst-%d" % index, "n%d" % index)
    pending(cluster, "burst-bad", "n9", ips=("198.51.100.1",))
    put_at = []
    policy = {"allowed_ip_cidrs": ["192.0.2.0/24"], "allowed_signers": [SERVING], "key_must_match_store": False}
    events = run_main({"host": HOST, "approve": {"policy": policy}, "event_types": ["decided"], "max_events": 7}, put_at=put_at)
    decided = {e["name"]: e["decision"] for e in events}
    assert len(events) == 7 and decided == dict({"burst-%d" % i: "approved" for i in range(6)}, **{"burst-bad": "denied"}), events
    # the engine got the decided events once the burst's decisions were made, not in between
    assert len(ended) == 7 and min(put_at) >= max(ended), (put_at, ended)


def run_main(args, timeout=30, put_at=None):
    put = []

    class Queue:
        async def put(self, event):
            put.append(event)
            if put_at is not None:
                put_at.append(time.monotonic())

    asyncio.run(asyncio.wait_for(csr_events.main(Queue(), args), timeout))
    return put


# ---------------------------------------------------------------- what falls due

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
LOCAL_CA = pki_support.new_ca("eda-unit-ca")


def stored(store, user, issued_ago, lifetime, scope="default", cluster="c1", signer="kubernetes.io/kube-apiserver-client", key=True):
    """A certificate record of ``user`` in ``store``, issued ``issued_ago`` ago for ``lifetime``, for the user's stored key."""
    if key:
        key_pem = store.ensure_key(scope, user)[0]["private_key_pem"]
        private = _crypto.load_private_key(key_pem)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    start = NOW - issued_ago
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(LOCAL_CA.cert.subject).public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + lifetime).sign(LOCAL_CA.key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    facts = _crypto.certificate_facts(pem)
    record = {"scope": scope, "cluster": cluster, "user": user, "common_name": user, "organizations": ["dev"], "certificate": pem,
              "csr_name": "kubepki-%s-0" % user, "csr_uid": "uid", "signer_name": signer, "serial": facts["serial"],
              "not_before": facts["not_before"], "not_after": facts["not_after"], "public_key_sha256": facts["public_key_sha256"]}
    store.put_cert(record)
    return record


def test_a_certificate_shorter_lived_than_renew_before_is_due_once_a_third_of_its_life_is_left_not_at_every_reading(tmp_path, caplog):
    uri = str(tmp_path / "store.db")
    store = _store.open_store(uri, "")
    hour = datetime.timedelta(hours=1)
    fresh = stored(store, "ann", datetime.timedelta(minutes=5), hour)        # just renewed: 55 of 60 minutes left
    aged = stored(store, "bob", datetime.timedelta(minutes=45), hour)        # 15 of 60 minutes left: under a third
    long_lived = stored(store, "cid", datetime.timedelta(days=340), 365 * 24 * hour)  # 25 days left, renew_before 30 days
    stored(store, "dan", datetime.timedelta(minutes=50), hour, key=False)    # brings their own key: renewed with users listed
    stored(store, "kay", datetime.timedelta(minutes=50), hour, signer="kubernetes.io/kubelet-serving")  # another signer's
    ola = stored(store, "ola", datetime.timedelta(minutes=50), hour, scope="team")  # another scope
    stored(store, "pat", datetime.timedelta(minutes=50), hour, cluster="elsewhere")  # a cluster not watched
    store.close()
    args = {"renew_before": "30d", "store_uri": uri, "store_passphrase": ""}
    warned = set()
    with caplog.at_level(logging.WARNING, logger="kubepki.certs.csr_events"):
        due = csr_events._due_records(args, {"c1"}, warned)  # pylint: disable=protected-access
        again = csr_events._due_records(args, {"c1"}, warned)  # pylint: disable=protected-access
    # without scopes: every scope the store holds keys of
    assert [(e["scope"], e["user"], e["serial"]) for e in due] == [
        ("default", "bob", aged["serial"]), ("default", "cid", long_lived["serial"]), ("team", "ola", ola["serial"])], due
    assert again == due
    assert {e["user"]: e["renew_before"] for e in due} == {"bob": 1200, "cid": 30 * 86400, "ola": 1200}
    assert fresh["serial"] not in [e["serial"] for e in due]
    # the warning names each short-lived certificate once, not at every reading
    warnings = [r.getMessage() for r in caplog.records if "lives shorter" in r.getMessage()]
    assert sorted(w.split()[4] for w in warnings) == ["ann", "bob", "ola"], warnings
    assert [e["user"] for e in csr_events._due_records(dict(args, scopes=["team"]), {"c1"})] == ["ola"]  # pylint: disable=protected-access
    assert [e["user"] for e in csr_events._due_records(dict(args, scopes=["default"]), {"c1"})] == ["bob", "cid"]  # pylint: disable=protected-access


# ---------------------------------------------------------------- the rulebooks pass every auth option

RULEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "extensions", "eda", "rulebooks")
AUTH = {"kubeconfig": None, "context": None, "host": "https://api.c1.example:6443", "api_key": "token-of-c1", "validate_certs": False,
        "ca_cert": "/etc/kubepki/c1-ca.pem", "client_cert": "/etc/kubepki/c1.crt", "client_key": "/etc/kubepki/c1.key",
        "proxy": "http://proxy.example:3128"}


def module_actions():
    """(rulebook, module, module_args) of every run_module action of the collection's rulebooks."""
    found = []
    for name in sorted(os.listdir(RULEBOOKS)):
        with open(os.path.join(RULEBOOKS, name), encoding="utf-8") as handle:
            for ruleset in yaml.safe_load(handle):
                for rule in ruleset["rules"]:
                    for action in rule.get("actions") or [rule.get("action")]:
                        if "run_module" in action:
                            found.append((name, action["run_module"]["name"], action["run_module"].get("module_args")))
    return found


def test_every_module_the_rulebooks_run_against_a_cluster_gets_every_auth_option_of_the_cluster_as_the_modules_name_them():
    env = NativeEnvironment(undefined=StrictUndefined)  # how ansible-rulebook renders action arguments
    clusters = [dict(AUTH, name="c0", host="https://other.example"), dict(AUTH, name="c1")]
    event = {"cluster": "c1", "csr": {"name": "kubepki-ann-0", "kubepki": {"cluster": "c1", "scope": "default"}}, "user": "ann",
             "groups": ["dev"], "scope": "default", "renew_before": 600}
    context = {"kubepki_clusters": clusters, "event": event, "kubepki_render_clusters": {"c1": {"server": "https://api.c1.example:6443"}},
               "kubepki_kubeconfig_dir": "/srv/kubeconfigs"}
    checked = []
    for rulebook, module, module_args in module_actions():
        if module not in ("kubepki.certs.csr_wait", "kubepki.certs.user_certificates", "kubepki.certs.csr_approve"):
            continue  # etcd and files only
        rendered = env.from_string(module_args).render(context) if isinstance(module_args, str) else module_args
        assert isinstance(rendered, dict), (rulebook, module, rendered)
        for option in csr_events.AUTH_KEYS:
            assert rendered.get(option) == AUTH[option], (rulebook, module, option, rendered.get(option))
        assert "name" not in rendered, (rulebook, module)
        checked.append((rulebook, module))
    assert sorted(checked) == [("carry.yml", "kubepki.certs.csr_wait"), ("renew.yml", "kubepki.certs.user_certificates")], checked
    # the other rulebooks decide in the source, which takes the same options per cluster
    assert csr_events.cluster_specs({"clusters": clusters})[1] == ("c1", {key: AUTH[key] for key in csr_events.AUTH_KEYS})
