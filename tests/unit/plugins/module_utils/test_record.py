"""One rule for which certificate is newer, wherever the collection compares two (plugins/module_utils/_pki/record.py).

The case that told the copies apart: a renewal with a shorter lifetime. The renewed certificate was issued later
(newer not_before) but expires sooner (older not_after); etcd holds it, the store still holds the first one.
"""

import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._steps import inventory, render

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "record-ca")])
CA = (x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key()).serial_number(1)
      .not_valid_before(NOW - datetime.timedelta(days=30)).not_valid_after(NOW + datetime.timedelta(days=3650))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(CA_KEY, hashes.SHA256()))
CA_PEM = CA.public_bytes(serialization.Encoding.PEM).decode()
USER_KEY = ec.generate_private_key(ec.SECP256R1())


def record(issued_ago, lifetime):
    not_before = NOW - issued_ago
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])).issuer_name(CA_NAME)
            .public_key(USER_KEY.public_key()).serial_number(x509.random_serial_number()).not_valid_before(not_before)
            .not_valid_after(not_before + lifetime).sign(CA_KEY, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    facts = _crypto.certificate_facts(pem)
    return dict(facts, certificate=pem, user="alice", cluster="c1", organizations=[])


FIRST = record(datetime.timedelta(days=10), datetime.timedelta(days=365))   # long-lived, issued ten days ago
RENEWED = record(datetime.timedelta(hours=1), datetime.timedelta(days=1))   # issued an hour ago, expires tomorrow


def test_the_rule():
    assert _record.order(RENEWED, FIRST) == 1 and _record.order(FIRST, RENEWED) == -1 and _record.order(FIRST, FIRST) == 0
    assert _record.order(FIRST, {"not_before": "soon"}) is None
    assert _record.newest([None, FIRST, RENEWED, {"serial": "x"}]) is RENEWED
    assert _record.sort_key({}) < _record.sort_key(FIRST)


def test_every_place_that_compares_takes_the_renewed_certificate():
    key = {"public_key_sha256": _crypto.public_key_sha256(USER_KEY)}
    # kubeconfig_render: the store's unless etcd has a newer usable one
    chosen, _facts, source = render.choose(FIRST, RENEWED, key, "alice", "c1", CA_PEM, True)
    assert (chosen["serial"], source) == (RENEWED["serial"], "etcd")
    # cert_inventory: which source holds the newer certificate
    facts, newer_in = inventory._pick(FIRST, RENEWED)  # pylint: disable=protected-access
    assert (facts["serial"], newer_in) == (RENEWED["serial"], "etcd")
    # the store keeps the newer record and takes a newer one over an older
    first_text, renewed_text = json.dumps(FIRST), json.dumps(RENEWED)
    assert _record.replaces(first_text, renewed_text)
    assert not _record.replaces(renewed_text, first_text)
    # etcd: an older certificate never goes over a newer one
    assert _etcd.transport.decide_record(renewed_text.encode(), first_text.encode(), False) == _etcd.transport.KEPT_NEWER
    assert _etcd.transport.decide_record(first_text.encode(), renewed_text.encode(), False) == _etcd.transport.UPDATED


def test_etcd_and_the_store_keep_the_same_record_when_two_certificates_are_as_new():
    """Two writers with different certificates exactly as new (issued in the same second): both etcd and the store
    keep the one stored first, so the two writers do not replace each other in turn; the same certificate with other
    details (a csr_uid learnt later) is written by both."""
    twin = dict(FIRST, certificate=RENEWED["certificate"], serial="feed")  # another certificate, FIRST's validity
    stored, other, more = json.dumps(FIRST), json.dumps(twin), json.dumps(dict(FIRST, csr_uid="uid-2"))
    assert not _record.replaces(stored, other)
    assert _etcd.transport.decide_record(stored.encode(), other.encode(), False) == _etcd.transport.KEPT_EQUAL
    assert _record.replaces(stored, more)
    assert _etcd.transport.decide_record(stored.encode(), more.encode(), False) == _etcd.transport.UPDATED


def starting(offset, lifetime=datetime.timedelta(days=1)):
    """A certificate of alice whose validity starts ``offset`` from now (negative: in the past)."""
    return record(-offset, lifetime)


CASES = [
    # (certificate, where it stands now, due when renewing 12 hours before expiry)
    (starting(datetime.timedelta(minutes=2)), "valid", False),      # a signer's clock two minutes ahead of ours
    (starting(datetime.timedelta(hours=1)), "not_yet_valid", True),
    (starting(-datetime.timedelta(hours=2)), "valid", False),
    (starting(-datetime.timedelta(hours=20)), "valid", True),      # four hours left
    (starting(-datetime.timedelta(days=2)), "expired", True),
]


def test_every_place_that_asks_whether_a_certificate_is_valid_now_answers_alike():
    """Before, renewal forgave five minutes of clock skew and rendering, waiting and the inventory forgave none: a
    certificate fresh from a signer whose clock ran ahead was not due (kept) and not usable (left out of the
    kubeconfig) at the same time."""
    key = {"public_key_sha256": _crypto.public_key_sha256(USER_KEY)}
    now = NOW.timestamp()
    for cert, standing, due in CASES:
        assert _record.standing(cert) == standing, cert["not_before"]
        assert _record.is_due(cert, 12 * 3600) is due, cert["not_before"]
        _facts, problem = render.usable(cert, key, "alice", "c1", CA_PEM)
        assert (problem is None) is (standing == "valid"), (cert["not_before"], problem)
        row = {"found_in": "store", "expiry_timestamp": _crypto.parse_rfc3339(cert["not_after"]).timestamp()}
        state = inventory._state(row, dict(key, cluster=""), cert, now, 12 * 3600, [])  # pylint: disable=protected-access
        assert state == {"valid": "expiring" if due else "valid"}.get(standing, standing), cert["not_before"]
        # offboarding warns about what it cannot take back: every certificate that is or will be valid
        assert _record.not_expired(cert) is (standing != "expired")


def test_a_record_without_readable_times_is_due_and_never_valid():
    assert _record.standing({"not_after": "tomorrow"}) == "unreadable"
    assert _record.is_due({}, None) and not _record.not_expired({})


def test_a_watched_certificate_is_due_at_renew_before_or_a_third_of_the_lifetime_whichever_is_less():
    record = {"not_before": "2030-01-01T00:00:00Z", "not_after": "2030-01-01T03:00:00Z"}  # three hours
    assert _record.watched_window(record, 600) == 600
    assert _record.watched_window(record, 86400) == 3600
    assert _record.watched_window({"not_before": None}, 86400) == 86400


def test_a_certificate_as_new_as_the_stores_is_not_taken_from_etcd():
    """Two writers renewed in the same second: the store keeps the record it holds (settle: equal), so rendering
    takes the store's too. Taking etcd's would load it again on every run, the store refusing it each time, and
    report a change forever."""
    twin = record(datetime.timedelta(days=10), datetime.timedelta(days=365))  # another certificate, exactly FIRST's validity
    assert twin["serial"] != FIRST["serial"] and _record.order(twin, FIRST) == 0
    assert not _record.replaces(json.dumps(FIRST), json.dumps(twin))
    key = {"public_key_sha256": _crypto.public_key_sha256(USER_KEY)}
    chosen, _facts, source = render.choose(FIRST, twin, key, "alice", "c1", CA_PEM, True)
    assert (chosen["serial"], source) == (FIRST["serial"], "store")
