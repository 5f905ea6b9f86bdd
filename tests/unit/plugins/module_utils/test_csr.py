"""Unit tests for plugins/module_utils/_csr/objects.py."""

import base64

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


@pytest.fixture(scope="module")
def key():
    return _crypto.generate_private_key()


def obj_with(conditions=(), certificate=None, **spec):
    status = {"conditions": [dict(type=t, status="True", reason="R", message="M") for t in conditions]}
    if certificate:
        status["certificate"] = certificate
    return {"metadata": {"name": "n"}, "spec": spec, "status": status}


@pytest.mark.parametrize("conds,cert,state", [
    ((), None, "pending"),
    (("Approved",), None, "approved"),
    (("Approved",), "Y2VydA==", "issued"),
    (("Denied",), None, "denied"),
    (("Approved", "Failed"), None, "failed"),
    (("Approved", "Failed"), "Y2VydA==", "failed"),
])
def test_csr_state(conds, cert, state):
    assert _csr.csr_state(obj_with(conds, cert)) == state


def test_name_is_deterministic_and_changes_with_the_request():
    args = ("alice", "ab" * 32, "alice", ["dev"], _csr.SIGNER_CLIENT, ["client auth", "digital signature"], None)
    name = _csr.csr_name(*args)
    assert name == _csr.csr_name(*args)
    assert name.startswith("kubepki-alice-") and len(name.split("-")[-1]) == 20
    assert _csr.csr_name("alice", "ab" * 32, "alice", ["dev"], _csr.SIGNER_CLIENT, ["digital signature", "client auth"], None) == name
    assert _csr.csr_name(*args, renews_serial="1f") != name
    assert _csr.csr_name("alice", "ab" * 32, "alice", ["dev", "ops"], _csr.SIGNER_CLIENT, ["client auth"], None) != name
    assert _csr.csr_name("alice", "ab" * 32, "alice", ["dev"], _csr.SIGNER_CLIENT, ["client auth", "digital signature"], 3600) != name


def test_slug_is_label_safe_and_distinct():
    assert _csr.slug("alice") == "alice"
    weird = _csr.slug("Alice Smith@EXAMPLE")
    assert all(c.isalnum() or c in "-._" for c in weird) and weird == weird.lower()
    assert _csr.slug("a b") != _csr.slug("a_b")
    assert len(_csr.slug("x" * 200)) <= 40
    assert _csr.slug("system:node:n1") != "system:node:n1"


def test_build_object_sends_expiration_only_when_asked(key):
    pem = _crypto.build_csr_pem(key, "alice", ["dev"])
    plain = _csr.build_object("n", pem, _csr.SIGNER_CLIENT, ["client auth"])
    assert "expirationSeconds" not in plain["spec"]
    assert base64.b64decode(plain["spec"]["request"]).decode() == pem
    timed = _csr.build_object("n", pem, _csr.SIGNER_CLIENT, ["client auth"], 3600, labels=_csr.labels_for("alice", "default", "c1"))
    assert timed["spec"]["expirationSeconds"] == 3600
    assert timed["metadata"]["labels"][_csr.MANAGED_BY] == "kubepki.certs"
    assert timed["metadata"]["labels"][_csr.LABEL_CLUSTER] == "c1"


def test_compare_same_request_new_signature_is_compatible(key):
    pem1 = _crypto.build_csr_pem(key, "alice", ["dev"])
    existing = _csr.build_object("n", pem1, _csr.SIGNER_CLIENT, ["client auth", "digital signature"])
    facts = _crypto.csr_facts(_crypto.build_csr_pem(key, "alice", ["dev"]))
    assert _csr.compare(existing, facts, _csr.SIGNER_CLIENT, ["digital signature", "client auth"], None) == []


def test_compare_reports_differences(key):
    existing = _csr.build_object("n", _crypto.build_csr_pem(key, "alice", ["dev"]), _csr.SIGNER_CLIENT, ["client auth"], 3600)
    facts = _crypto.csr_facts(_crypto.build_csr_pem(key, "alice", ["ops"]))
    diffs = _csr.compare(existing, facts, "example.com/x", ["client auth"], 7200)
    text = " ".join(diffs)
    assert "signerName" in text and "expirationSeconds" in text and "organizations" in text


def test_compare_tolerates_a_server_that_dropped_expiration(key):
    existing = _csr.build_object("n", _crypto.build_csr_pem(key, "alice", []), _csr.SIGNER_CLIENT, ["client auth"])
    facts = _crypto.csr_facts(_crypto.build_csr_pem(key, "alice", []))
    assert _csr.compare(existing, facts, _csr.SIGNER_CLIENT, ["client auth"], 3600) == []


@pytest.mark.parametrize("signer,fragment", [
    ("", "must be provided"),
    ("kubernetes.io/legacy-unknown", "legacy"),
    ("example", "fully qualified"),
    ("a/b/c", "fully qualified"),
    ("Example.com/x", "validating label"),
    ("localhost/x", "at least two segments"),
    ("example.com/", "must not be empty"),
    ("example.com/UPPER", "subdomain"),
])
def test_signer_name_problems(signer, fragment):
    assert fragment in _csr.signer_name_problem(signer)


@pytest.mark.parametrize("signer", [_csr.SIGNER_CLIENT, _csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING, "example.com/my-signer"])
def test_valid_signers(signer):
    assert _csr.signer_name_problem(signer) is None


@pytest.mark.parametrize("signer,usages,fragment", [
    (_csr.SIGNER_CLIENT, ["server auth", "client auth"], "invalid usage for client certificate: server auth"),
    (_csr.SIGNER_CLIENT, ["digital signature"], "missing required usage"),
    (_csr.SIGNER_CLIENT, ["client auth", "bogus"], "unsupported usage 'bogus'"),
    (_csr.SIGNER_CLIENT, ["client auth", "client auth"], "repeated"),
    (_csr.SIGNER_CLIENT, [], "at least one"),
    (_csr.SIGNER_KUBELET_CLIENT, ["client auth"], "needs exactly"),
    (_csr.SIGNER_KUBELET_SERVING, ["digital signature", "client auth"], "needs exactly"),
])
def test_usage_problems(signer, usages, fragment):
    assert fragment in _csr.usages_problem(signer, usages)


@pytest.mark.parametrize("signer", [_csr.SIGNER_CLIENT, _csr.SIGNER_KUBELET_CLIENT, _csr.SIGNER_KUBELET_SERVING, "example.com/x"])
@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_default_usages_are_accepted(signer, key_type):
    assert _csr.usages_problem(signer, _csr.default_usages(signer, key_type)) is None


@pytest.mark.parametrize("text,seconds", [("720h", 720 * 3600), ("30d", 30 * 86400), ("3600", 3600), ("90m", 5400),
                                          ("1d12h", 129600), ("2w", 1209600), ("45s", 45), (600, 600)])
def test_parse_duration(text, seconds):
    assert _csr.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "12x", "", "h"])
def test_parse_duration_rejects(text):
    with pytest.raises(KubePkiError, match="renew_before"):
        _csr.parse_duration(text)


def test_name_and_group_problems():
    assert _csr.name_problem("") and _csr.name_problem("a\nb") and _csr.name_problem(" a") and _csr.name_problem("x" * 65)
    assert _csr.name_problem("alice@example.com") is None
    assert "comma" in _csr.group_problem("a,b")
    assert _csr.group_problem("") and _csr.group_problem("a\tb")
    assert _csr.group_problem("system:nodes") is None


class FakeApprovalClient:
    def __init__(self, obj, conflicts=0):
        self.obj = obj
        self.conflicts = conflicts
        self.puts = []

    def request(self, method, path, body=None, what=None, **_kw):
        if method == "GET":
            return self.obj
        assert path.endswith("/approval")
        if self.conflicts:
            self.conflicts -= 1
            error = KubePkiError("conflict")
            error.status = 409
            raise error
        self.puts.append(body)
        return body


def test_decide_appends_condition_and_retries_conflicts():
    obj = {"metadata": {"name": "n", "resourceVersion": "5"}, "spec": {"signerName": "x/y"}, "status": {}}
    client = FakeApprovalClient(obj, conflicts=2)
    changed, updated = _csr.decide(client, "n", "Approved", "R", "M")
    assert changed
    assert updated["status"]["conditions"][-1]["type"] == "Approved"
    assert updated["metadata"]["resourceVersion"] == "5"
    assert len(client.puts) == 1


def test_decide_is_idempotent_and_refuses_the_opposite():
    approved = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    client = FakeApprovalClient(approved)
    assert _csr.decide(client, "n", "Approved", "R", "M", obj=approved) == (False, approved)
    with pytest.raises(KubePkiError, match="already Approved"):
        _csr.decide(client, "n", "Denied", "R", "M", obj=approved)


def test_group_order_does_not_change_the_request():
    first = _csr.csr_name("alice", "ab" * 32, "alice", ["ops", "dev"], _csr.SIGNER_CLIENT, ["client auth"])
    second = _csr.csr_name("alice", "ab" * 32, "alice", ["dev", "ops"], _csr.SIGNER_CLIENT, ["client auth"])
    assert first == second
    assert _csr.same_groups(["ops", "dev"], ["dev", "ops"])
    assert not _csr.same_groups(["ops"], ["dev", "ops"])


@pytest.mark.parametrize("name, fragment", [
    ("a/b", "must not contain '/'"), ("a\\b", "must not contain '/'"), ("..", "is not a usable name"), (".", "is not a usable name"),
])
def test_names_that_cannot_be_key_segments_or_file_names(name, fragment):
    assert fragment in _csr.name_problem(name)


def test_durations_beyond_any_certificate_are_refused():
    with pytest.raises(KubePkiError, match="renew_before: '99999999999d' is longer than 36500 days"):
        _csr.parse_duration("99999999999d")
    assert _csr.parse_duration("36500d") == 36500 * 86400
