"""Resilience of the csr modules against the sandbox's fault injection (those tests are sandbox_only): 429 with
Retry-After, 500, 503, dropped watches, 410 Expired on watch; and bad input answered with messages that name the
culprit."""

import threading
import time
import uuid

import pytest
from playbook_files import playbook

FLOW = playbook("modules/csr_create_approve_wait.yml")


@pytest.fixture
def evars(tmp_path, sandbox):
    tag = uuid.uuid4().hex[:6]
    return {"store": str(tmp_path / "store.db"), "kc": sandbox.cluster("cluster-1").kubeconfig,
            "users": [{"name": "r1-" + tag, "groups": ["dev"]}, {"name": "r2-" + tag, "groups": ["dev"]}]}


@pytest.mark.sandbox_only("injected API faults")
def test_429_500_503_are_retried(run_playbook, sandbox, evars):
    sandbox.inject_faults("cluster-1", 503, 2, path="certificatesigningrequests", verb="create")
    sandbox.inject_faults("cluster-1", 429, 2, retry_after=1, path="certificatesigningrequests", verb="get")
    sandbox.inject_faults("cluster-1", 500, 1, path="approval")
    try:
        out = run_playbook(FLOW, extra_vars=evars)
    finally:
        sandbox.clear_faults("cluster-1")
    assert out.rc == 0, out
    assert len(out.result("wait")["certificates"]) == 2


@pytest.mark.sandbox_only("injected API faults")
def test_persistent_503_fails_naming_the_object(run_playbook, sandbox, evars):
    sandbox.inject_faults("cluster-1", 503, 10000, path="certificatesigningrequests", verb="create")
    try:
        out = run_playbook(FLOW, extra_vars=dict(evars, create_may_fail=True), env={"KUBEPKI_TEST": "1"})
    finally:
        sandbox.clear_faults("cluster-1")
    created = out.result("create")
    assert created.get("failed")
    assert "create CertificateSigningRequest kubepki-r1-" in created["msg"] and "HTTP 503" in created["msg"]


def _drop_while(sandbox, stop):
    dropped = 0
    while not stop.is_set():
        try:
            dropped += sandbox.drop_watches("cluster-1")
        except Exception:  # pylint: disable=broad-exception-caught
            pass
        stop.wait(0.5)
    return dropped


@pytest.mark.sandbox_only("dropped and expired watches, a slow signer")
def test_dropped_watches_are_resumed_and_410_relists(run_playbook, sandbox, evars):
    sandbox.set_options("cluster-1", signing_delay="12s")
    sandbox.expire_next_watch("cluster-1")
    stop = threading.Thread
    halt = threading.Event()
    counter = {}

    def dropper():
        time.sleep(1)
        counter["dropped"] = _drop_while(sandbox, halt)

    thread = stop(target=dropper, daemon=True)
    thread.start()
    try:
        out = run_playbook(FLOW, extra_vars=evars)
    finally:
        halt.set()
        thread.join(10)
        sandbox.set_options("cluster-1", signing_delay="0s")
    assert out.rc == 0, out
    stats = out.result("wait")["wait_stats"]
    assert len(out.result("wait")["certificates"]) == 2
    assert stats["relists"] >= 1, stats
    assert stats["watches"] >= 2, stats
    assert stats["resumes"] >= 1 or counter.get("dropped", 0) == 0, (stats, counter)
    assert stats["polls"] == 0, stats


def test_wait_timeout_reports_last_state(run_playbook, sandbox, evars):
    # no approval: the CSRs stay pending
    out = run_playbook(FLOW, extra_vars=dict(evars, approve_csrs=False, wait_timeout=3, wait_may_fail=True))
    waited = out.result("wait")
    assert waited.get("failed") and "timed out after 3s" in waited["msg"] and "=pending" in waited["msg"]
    assert set(waited["last_state"].values()) == {"pending"}


BAD_TASKS = [
    ("empty user", {"users": [{"name": ""}]}, "users[0].name"),
    ("control char", {"users": [{"name": "a\u0001b"}]}, "control characters"),
    ("comma group", {"users": [{"name": "u", "groups": ["a,b"]}]}, "group 'a,b' must not contain a comma"),
    ("empty group", {"users": [{"name": "u", "groups": [""]}]}, "group '' must not be empty"),
    ("masters", {"users": [{"name": "u", "groups": ["system:masters"]}]}, "system:masters is refused"),
    ("signer format", {"signer_name": "nosuchsigner"}, "signer_name 'nosuchsigner' is not valid"),
    ("legacy signer", {"signer_name": "kubernetes.io/legacy-unknown"}, "legacy signerName is not allowed"),
    ("one-label signer", {"signer_name": "localhost/x"}, "at least two segments"),
    ("unknown usage", {"usages": ["client auth", "teleport"]}, "usages: unsupported usage 'teleport'"),
    ("usage not for signer", {"usages": ["client auth", "server auth"]}, "invalid usage for client certificate: server auth"),
    ("missing client auth", {"usages": ["digital signature"]}, "missing required usage for client certificate: client auth"),
    ("short expiration", {"expiration_seconds": 300}, "expiration_seconds 300 is too short"),
    ("key type", {"key_type": "ed448"}, "key_type"),
    ("malformed csr", {"users": [{"name": "u", "csr": "not a csr"}]}, "users[0] (u).csr is not a PEM CERTIFICATE REQUEST"),
    ("renew_before", {"renew_before": "tomorrow"}, "renew_before: 'tomorrow' is not a duration"),
    ("bad ip", {"users": [{"name": "u", "ip_addresses": ["1.2.3"]}]}, "ip_addresses: '1.2.3' is not an IP address"),
    ("kubelet cn", {"signer_name": "kubernetes.io/kube-apiserver-client-kubelet"}, "system:node:<node name>"),
    ("store uri", {"store_uri": "ftp://store"}, "store_uri 'ftp://store' has an unsupported scheme"),
    ("kubeconfig missing", {"kubeconfig": "/nonexistent/kubeconfig"}, "kubeconfig"),
    ("unreachable", {"kubeconfig": None, "host": "https://127.0.0.1:9", "api_key": "x", "validate_certs": False},
     "cannot reach the Kubernetes API at https://127.0.0.1:9"),
    ("bad context", {"context": "no-such-context"}, "no-such-context"),
    ("duplicate user", {"users": [{"name": "u"}, {"name": "u"}]}, "users[1].name 'u' is listed twice"),
]


def test_bad_input_names_the_culprit(run_playbook, sandbox, tmp_path):
    kc = sandbox.cluster("cluster-1").kubeconfig
    tasks = []
    for index, (title, override, _fragment) in enumerate(BAD_TASKS):
        args = {"kubeconfig": kc, "cluster": "cluster-1", "users": [{"name": "u", "groups": ["dev"]}],
                "store_uri": str(tmp_path / "store.db")}
        args.update(override)
        args = {k: v for k, v in args.items() if v is not None}
        tasks.append({"name": "bad %d %s" % (index, title), "kubepki.certs.csr_create": args, "ignore_errors": True})
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    out = run_playbook(play, env={"K8S_AUTH_KUBECONFIG": ""})
    for index, (title, _override, fragment) in enumerate(BAD_TASKS):
        result = out.result("bad %d %s" % (index, title))
        assert result.get("failed"), (title, result)
        assert fragment in result["msg"], (title, result["msg"])


def test_forbidden_user_gets_the_api_message_naming_the_object(run_playbook, sandbox, tmp_path, evars):
    # a plain user (no RBAC on CSRs): create is refused with the apiserver's 403 text, naming the CSR
    kc = sandbox.user_kubeconfig("cluster-1", str(tmp_path / "user.kubeconfig"), "plain-user", ["dev"])
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "create", "kubepki.certs.csr_create": {"kubeconfig": kc, "cluster": "cluster-1", "users": evars["users"][:1],
                                                        "store_uri": evars["store"]}, "ignore_errors": True},
        {"name": "info", "kubepki.certs.csr_info": {"kubeconfig": kc}, "ignore_errors": True},
    ]}]
    out = run_playbook(play)
    created = out.result("create")
    assert created.get("failed")
    assert "CertificateSigningRequest kubepki-r1-" in created["msg"] and "HTTP 403" in created["msg"], created["msg"]
    assert "plain-user" in created["msg"]
    info = out.result("info")
    assert info.get("failed") and "list CertificateSigningRequests failed" in info["msg"] and "HTTP 403" in info["msg"]


@pytest.mark.sandbox_only("the signing duration changed while it runs")
def test_clamped_lifetime_is_reported(run_playbook, sandbox, evars):
    # the signer's --cluster-signing-duration (30m) is shorter than the 2h asked for
    sandbox.set_options("cluster-1", signing_duration="30m")
    try:
        out = run_playbook(FLOW, extra_vars=dict(evars, users=evars["users"][:1], expiration=7200))
    finally:
        sandbox.set_options("cluster-1", signing_duration="8760h")
    assert out.rc == 0, out
    waited = out.result("wait")
    record = waited["certificates"][0]
    assert record["requested_expiration_seconds"] == 7200
    assert record["lifetime_clamped"] is True
    assert 1800 <= record["granted_lifetime_seconds"] <= 2100
    assert any("clamped" in str(w) for w in waited.get("warnings", [])), waited.get("warnings")
