"""The watch-first waiter against the sandbox's fault injection: watches answered 5xx fall back to listing, so
certificates issued meanwhile are returned within seconds, not at the timeout; a batch with a denied CSR is
waited for to the end with stop_on_failure=False. The waiter runs in this process on the collection's real API
client; one test goes through csr_wait in a playbook."""

import time
import uuid

import pytest
from playbook_files import playbook

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, WaitTimeout

pytestmark = pytest.mark.sandbox_only("injected watch and list faults, a slow signer")

CLUSTER = "cluster-1"
SIGNER = "kubernetes.io/kube-apiserver-client"
TIMEOUT = 60
# well below TIMEOUT: the signing delay, a poll interval or two and the sandbox's own pace
QUICK = 15


@pytest.fixture
def client(sandbox):
    auth = _kube.resolve_auth({"kubeconfig": sandbox.cluster(CLUSTER).kubeconfig}, environ={})
    return _kube.client_for(auth, deadline=30)


@pytest.fixture
def faults(sandbox):
    """``faults(code, verb, count=1000)``: inject on the CSR collection; cleared (and the signing delay reset) after the test."""

    def inject(code, verb, count=1000):
        sandbox.inject_faults(CLUSTER, code, count, path="certificatesigningrequests", verb=verb)

    yield inject
    sandbox.clear_faults(CLUSTER)
    sandbox.set_options(CLUSTER, signing_delay="0s")


def make_batch(client, count, tag):
    """``count`` new CSRs labelled with ``tag``: their names, in order."""
    names = []
    for index in range(count):
        user = "wf%d-%s" % (index, tag)
        name = "kubepki-test-%s-%d" % (tag, index)
        pem = _crypto.build_csr_pem(_crypto.generate_private_key(), user, ["dev"])
        _csr.create(client, _csr.build_object(name, pem, SIGNER, ["client auth"], labels={"kubepki.test/batch": tag}))
        names.append(name)
    return names


def decide(client, names, decision):
    for name in names:
        _csr.decide(client, name, decision, "WaitFaultsTest", "decided by test_wait_faults")


def waiter_for(client, names, tag, **kwargs):
    return _waiter.Waiter(client, names, label_selector="kubepki.test/batch=%s" % tag, **kwargs)


def states(objects):
    return {name: _waiter.state_of(obj) for name, obj in objects.items()}


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_failing_watches_return_certificates_issued_meanwhile(sandbox, client, faults, code):
    tag = uuid.uuid4().hex[:8]
    sandbox.set_options(CLUSTER, signing_delay="3s")
    names = make_batch(client, 3, tag)
    decide(client, names, "Approved")
    waiter = waiter_for(client, names, tag)
    assert set(states(waiter.prime()).values()) == {"approved"}
    faults(code, "watch")
    started = time.monotonic()
    objects = waiter.run(TIMEOUT, listed=True)
    took = time.monotonic() - started
    assert states(objects) == {name: "issued" for name in names}
    assert all(_csr.certificate_pem(objects[name]) for name in names)
    assert took < QUICK, (took, waiter.stats)
    assert waiter.stats["watch_failures"] >= _waiter.MAX_WATCH_FAILURES, waiter.stats
    assert waiter.stats["fallback_lists"] >= 1, waiter.stats


def test_failing_lists_while_listing_are_tried_again(sandbox, client, faults):
    tag = uuid.uuid4().hex[:8]
    sandbox.set_options(CLUSTER, signing_delay="2s")
    names = make_batch(client, 2, tag)
    decide(client, names, "Approved")
    waiter = waiter_for(client, names, tag, poll_interval=0.5)
    waiter.prime()
    faults(503, "watch")
    faults(502, "list", count=4)
    started = time.monotonic()
    objects = waiter.run(TIMEOUT, listed=True)
    assert time.monotonic() - started < QUICK, waiter.stats
    assert states(objects) == {name: "issued" for name in names}
    assert waiter.stats["list_failures"] == 4, waiter.stats


def test_a_list_refused_while_listing_fails_at_once(client, faults):
    tag = uuid.uuid4().hex[:8]
    names = make_batch(client, 2, tag)
    waiter = waiter_for(client, names, tag)
    waiter.prime()
    faults(503, "watch")
    faults(403, "list", count=1)
    started = time.monotonic()
    with pytest.raises(KubePkiError) as info:
        waiter.run(TIMEOUT, listed=True)
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, WaitTimeout)
    assert "list CertificateSigningRequests failed" in info.value.msg and "HTTP 403" in info.value.msg


def test_certificates_not_issued_time_out_with_the_last_states(client, faults):
    tag = uuid.uuid4().hex[:8]
    names = make_batch(client, 2, tag)
    waiter = waiter_for(client, names, tag, poll_interval=0.5)
    waiter.prime()
    faults(503, "watch")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        waiter.run(3, listed=True)
    assert 3 <= time.monotonic() - started < 8
    assert info.value.last_state == {name: "pending" for name in names}
    assert "HTTP 503" in info.value.msg and waiter.stats["fallback_lists"] >= 2


@pytest.mark.parametrize("watch_fault", [None, 503], ids=["watching", "listing"])
def test_a_batch_with_a_denied_csr_is_waited_for_to_the_end(sandbox, client, faults, watch_fault):
    tag = uuid.uuid4().hex[:8]
    sandbox.set_options(CLUSTER, signing_delay="4s")
    names = make_batch(client, 3, tag)
    denied, issued = names[1], [names[0], names[2]]
    decide(client, issued, "Approved")
    decide(client, [denied], "Denied")
    # the default stops at the first denied CSR, before the others are signed
    first = waiter_for(client, names, tag).run(TIMEOUT)
    assert states(first) == {names[0]: "approved", denied: "denied", names[2]: "approved"}
    if watch_fault:
        faults(watch_fault, "watch")
    waiter = waiter_for(client, names, tag, stop_on_failure=False)
    started = time.monotonic()
    objects = waiter.run(TIMEOUT)
    assert time.monotonic() - started < QUICK, waiter.stats
    assert states(objects) == {names[0]: "issued", denied: "denied", names[2]: "issued"}
    assert all(_csr.certificate_pem(objects[name]) for name in issued)
    if watch_fault:
        assert waiter.stats["fallback_lists"] >= 1, waiter.stats


def test_a_batch_timeout_tells_each_outcome(client, faults):
    tag = uuid.uuid4().hex[:8]
    names = make_batch(client, 3, tag)
    decide(client, [names[0]], "Approved")
    decide(client, [names[1]], "Denied")
    faults(503, "watch")
    waiter = waiter_for(client, names, tag, stop_on_failure=False, poll_interval=0.5)
    with pytest.raises(WaitTimeout) as info:
        waiter.run(3)
    error = info.value
    assert error.last_state == {names[0]: "issued", names[1]: "denied", names[2]: "pending"}
    assert "waiting for CertificateSigningRequest %s" % names[2] in error.msg
    assert "ended before: %s=issued, %s=denied" % (names[0], names[1]) in error.msg
    # what the caller needs to finish the issued one
    assert _csr.certificate_pem(error.objects[names[0]])


FLOW = playbook("modules/csr_create_approve_wait.yml")


def test_csr_wait_under_failing_watches(run_playbook, sandbox, faults, tmp_path):
    tag = uuid.uuid4().hex[:6]
    extra = {"store": str(tmp_path / "store.db"), "kc": sandbox.cluster(CLUSTER).kubeconfig,
             "users": [{"name": "wf-a-" + tag, "groups": ["dev"]}, {"name": "wf-b-" + tag, "groups": ["dev"]}], "wait_timeout": TIMEOUT}
    # signed a while after approval, so csr_wait has to wait while its watches fail
    sandbox.set_options(CLUSTER, signing_delay="6s")
    faults(503, "watch")
    out = run_playbook(FLOW, extra_vars=extra)
    assert out.rc == 0, out
    waited = out.result("wait")
    assert len(waited["certificates"]) == 2
    stats = waited["wait_stats"]
    assert stats["seconds"] < QUICK, stats
    assert stats["watch_failures"] >= _waiter.MAX_WATCH_FAILURES and stats["fallback_lists"] >= 1, stats
