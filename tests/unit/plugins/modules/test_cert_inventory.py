"""cert_inventory run in-process: the embedded store in a temporary directory, MongoDB through mongomock, no etcd.

mongomock is a stand-in: no MongoDB server can run on these machines (as in test_store.py). The runs with etcd
configured are in tests/functional/inprocess/test_cert_inventory_on_etcd.py, against a real etcd; they share ``World``
(which takes the etcd URL, None here). Certificates are made with pki_support; the expected figures are read from
the PEMs with cryptography, not from the module.
"""

import datetime
import hashlib
import json
import os
import re
import sqlite3
import stat
import time
import uuid

import mongomock
import pytest
from ansible.module_utils import basic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.modules import cert_inventory

import pki_support

UTC = datetime.timezone.utc


# ---------------------------------------------------------------- independent readings of a certificate

def pem_facts(pem):
    """Serial, expiry and key fingerprint of a PEM certificate, read with cryptography alone."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"serial": format(cert.serial_number, "x"), "expiry": int(cert.not_valid_after_utc.timestamp()),
            "not_before": int(cert.not_valid_before_utc.timestamp()), "fingerprint": hashlib.sha256(spki).hexdigest()}


def key_fingerprint(private_key_pem):
    key = serialization.load_pem_private_key(private_key_pem.encode(), None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text):
    """A small, strict reader of the Prometheus text format: ``{metric: {'help', 'type', 'samples': {labels: value}}}``.

    Refuses a sample before its TYPE line, a family split in two, a repeated series, a bad label or value, and a
    text that does not end with a newline."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, current = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6].lower(), *line[7:].split(" ", 1)
            family = families.setdefault(name, {"help": None, "type": None, "samples": {}})
            assert family[kind] is None, "line %d: second %s of %s" % (number, kind, name)
            assert not family["samples"], "line %d: %s after samples of %s" % (number, kind, name)
            if kind == "type":
                assert rest in ("gauge", "counter", "untyped", "summary", "histogram"), line
            family[kind] = rest
            current = name
            continue
        assert line and not line.startswith("#"), "line %d: unexpected %r" % (number, line)
        match = _SAMPLE.match(line)
        assert match, "line %d: not a sample: %r" % (number, line)
        name, labels_text, value = match.groups()
        assert name == current and families[name]["type"], "line %d: %s outside its family" % (number, name)
        labels, pos = {}, 0
        while labels_text and pos < len(labels_text):
            label = _LABEL.match(labels_text, pos)
            assert label, "line %d: bad labels %r" % (number, labels_text)
            labels[label.group(1)] = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), label.group(2))
            pos = label.end()
        series = tuple(sorted(labels.items()))
        assert series not in families[name]["samples"], "line %d: repeated series" % number
        families[name]["samples"][series] = float(value)
    return families


def series(families, metric, **labels):
    """The value of the one sample of ``metric`` whose labels include ``labels``."""
    found = [v for k, v in families[metric]["samples"].items() if set(labels.items()) <= set(k)]
    assert len(found) == 1, (metric, labels, families[metric]["samples"])
    return found[0]


# ---------------------------------------------------------------- a world of keys and certificates

class World:
    """A CA, a store (embedded or mongomock) and an etcd prefix, with helpers to place keys and certificates."""

    def __init__(self, tmp_path, etcd_url, kind="embedded", monkeypatch=None):
        self.tmp_path = tmp_path
        self.etcd_url = etcd_url
        self.prefix = "/inv-%s" % uuid.uuid4().hex[:8]
        self.ca = pki_support.new_ca("inventory-ca")
        if kind == "embedded":
            self.uri = str(tmp_path / "store" / "store.db")
            self.factory = None
        else:
            self.uri = "mongodb://inv:pw-not-shown@mongo.invalid:27017/inv_%s" % uuid.uuid4().hex[:6]
            client = mongomock.MongoClient(self.uri)
            self.factory = lambda uri, **kwargs: client
            assert _store.import_pymongo()
            monkeypatch.setattr(_store.mongodb.pymongo.lib, "MongoClient", self.factory)

    def store(self, passphrase=""):
        return _store.open_store(self.uri, passphrase, mongo_client_factory=self.factory)

    def key(self, user, cluster="", scope="default", key_type="ec-p256", passphrase=""):
        with self.store(passphrase) as store:
            return store.ensure_key(scope, user, cluster, key_type)[0]

    def cert(self, user, cluster, key_pem, days=90, start=None, scope="default", orgs=("dev",)):
        key = _crypto.load_private_key(key_pem)
        start = start or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
                         + [x509.NameAttribute(NameOID.COMMON_NAME, user)])
        leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(self.ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(start + datetime.timedelta(days=days)).sign(self.ca.key, hashes.SHA256()))
        pem = pki_support.cert_pem(leaf).decode()
        facts = _crypto.certificate_facts(pem)
        return {"scope": scope, "cluster": cluster, "user": user, "common_name": user, "organizations": list(orgs),
                "certificate": pem, "csr_name": "n", "csr_uid": "u", "signer_name": "kubernetes.io/kube-apiserver-client",
                "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
                "public_key_sha256": facts["public_key_sha256"]}

    def to_store(self, record):
        with self.store() as store:
            store.put_cert(record)

    def to_etcd(self, record):
        with _etcd.EtcdTransport([self.etcd_url], prefix=self.prefix) as transport:
            transport.put_record(record)

    def args(self, **extra):
        return dict({"store_uri": self.uri}, **extra)

    def with_etcd(self, **extra):
        return self.args(etcd_endpoints=[self.etcd_url], etcd_prefix=self.prefix, **extra)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, None)


@pytest.fixture(params=["embedded", "mongomock"])
def any_world(request, tmp_path, monkeypatch):
    return World(tmp_path, None, request.param, monkeypatch)


def by_identity(result):
    return {(r["scope"], r["user"], r["cluster"]): r for r in result["inventory"]}


def no_secrets(result, *keys):
    text = json.dumps(result)
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for key in keys:
        body = "".join(key["private_key_pem"].splitlines()[1:-1])
        assert body[:40] not in text


# ---------------------------------------------------------------- tests

def test_every_state_from_the_store(run_module, any_world):
    w = any_world
    alice = w.key("alice")
    valid, expiring = w.cert("alice", "c1", alice["private_key_pem"], days=90), w.cert("alice", "c2", alice["private_key_pem"], days=10)
    expired = w.cert("alice", "c3", alice["private_key_pem"], days=1,
                     start=datetime.datetime.now(UTC) - datetime.timedelta(days=3))
    future = w.cert("alice", "c4", alice["private_key_pem"], days=30, start=datetime.datetime.now(UTC) + datetime.timedelta(days=2))
    bob = w.key("bob", "c1", key_type="rsa-2048")  # per_cluster key without a certificate
    w.key("carol")  # shared key without a certificate
    stranger = _crypto.private_key_to_pem(_crypto.generate_private_key())
    dave = w.cert("dave", "c1", stranger)  # no key in the store
    erin = w.key("erin")
    mismatch = w.cert("erin", "c1", stranger)
    for record in (valid, expiring, expired, future, dave, mismatch):
        w.to_store(record)

    before = time.time()
    failed, result = run_module(cert_inventory, w.args(warn_within="30d"))
    after = time.time()
    assert not failed, result
    assert result["changed"] is False and "report" not in result
    rows = by_identity(result)
    assert sorted(rows) == [("default", "alice", c) for c in ("c1", "c2", "c3", "c4")] + [
        ("default", "bob", "c1"), ("default", "carol", ""), ("default", "dave", "c1"), ("default", "erin", "c1")]
    states = {identity[1:]: row["state"] for identity, row in rows.items()}
    assert states == {("alice", "c1"): "valid", ("alice", "c2"): "expiring", ("alice", "c3"): "expired",
                      ("alice", "c4"): "not_yet_valid", ("bob", "c1"): "missing_certificate", ("carol", ""): "missing_certificate",
                      ("dave", "c1"): "missing_key", ("erin", "c1"): "key_mismatch"}
    for record in (valid, expiring, expired, future, dave, mismatch):
        row, facts = rows[("default", record["user"], record["cluster"])], pem_facts(record["certificate"])
        assert row["serial"] == facts["serial"]
        assert row["expiry_timestamp"] == facts["expiry"]
        assert (facts["expiry"] - after) / 86400 - 0.006 <= row["days_left"] <= (facts["expiry"] - before) / 86400 + 0.006
        assert row["certificate_fingerprint"] == facts["fingerprint"]
        assert row["found_in"] == "store" and row["etcd"] is None and row["sources_differ"] is False
    assert rows[("default", "alice", "c3")]["days_left"] < 0
    assert rows[("default", "alice", "c1")]["key_fingerprint"] == key_fingerprint(alice["private_key_pem"])
    assert rows[("default", "alice", "c1")]["key_scope"] == "shared"
    assert rows[("default", "erin", "c1")]["key_fingerprint"] == key_fingerprint(erin["private_key_pem"])
    assert rows[("default", "erin", "c1")]["store"]["key_matches"] is False
    bob_row = rows[("default", "bob", "c1")]
    assert (bob_row["key_scope"], bob_row["key_type"], bob_row["found_in"]) == ("per_cluster", "rsa-2048", "none")
    assert bob_row["key_fingerprint"] == key_fingerprint(bob["private_key_pem"]) and bob_row["serial"] is None
    assert rows[("default", "dave", "c1")]["key_fingerprint"] is None
    assert result["summary"]["total"] == 8 and result["summary"]["missing_certificate"] == 2
    no_secrets(result, alice, bob, erin)


def test_keys_are_never_decrypted(run_module, world):
    """Encrypted keys are reported without the passphrase: only the fingerprints beside them are read."""
    key = world.key("alice", passphrase="s3cret-phrase")
    world.to_store(world.cert("alice", "c1", key["private_key_pem"]))
    failed, result = run_module(cert_inventory, world.args())
    assert not failed, result
    [row] = result["inventory"]
    assert row["state"] == "valid" and row["key_encrypted"] is True
    assert row["key_fingerprint"] == key_fingerprint(key["private_key_pem"])
    no_secrets(result, key)


def test_a_store_record_that_is_not_json_is_reported_not_fatal(run_module, world):
    """A record damaged past JSON (written into the file by hand here) is an ``invalid`` row; the others are reported."""
    alice = world.key("alice")
    good = world.cert("alice", "c1", alice["private_key_pem"])
    world.to_store(good)
    with sqlite3.connect(world.uri) as db:
        db.execute("INSERT INTO certificates (scope, cluster, user, record) VALUES ('default', 'c2', 'alice', '{broken')")
    failed, result = run_module(cert_inventory, world.args())
    assert not failed, result
    rows = by_identity(result)
    assert rows[("default", "alice", "c1")]["state"] == "valid" and rows[("default", "alice", "c1")]["serial"] == good["serial"]
    broken = rows[("default", "alice", "c2")]
    assert (broken["state"], broken["found_in"], broken["serial"]) == ("invalid", "store", None)
    assert "the store record of user 'alice', cluster 'c2' (scope 'default') is not a JSON certificate record" in broken["store"]["problem"]
    assert result["summary"]["invalid"] == 1 and result["summary"]["total"] == 2


def test_table(run_module, world):
    alice = world.key("alice")
    record = world.cert("alice", "c1", alice["private_key_pem"], days=10)
    world.to_store(record)
    world.key("bob")
    failed, result = run_module(cert_inventory, world.args(format="table"))
    assert not failed, result
    header, first, second, blank, total = result["report_lines"]
    assert result["report"] == "\n".join(result["report_lines"]) + "\n"
    assert header.split()[:4] == ["SCOPE", "USER", "CLUSTER", "STATE"]
    assert first.split()[:4] == ["default", "alice", "c1", "expiring"]
    assert record["serial"] in first and key_fingerprint(alice["private_key_pem"])[:16] in first
    assert result["inventory"][0]["not_after"] in first and "DAYS" not in header
    assert second.split()[:4] == ["default", "bob", "-", "missing_certificate"]
    assert header.index("STATE") == first.index("expiring") == second.index("missing_certificate")
    assert blank == "" and total == "2 entries: 1 expiring, 1 missing certificate"


def test_dest_written_atomically_and_only_on_change(run_module, world, tmp_path):
    world.key("alice")  # a key without a certificate: the report holds nothing that moves with time
    dest = tmp_path / "metrics" / "kubepki.prom"
    failed, result = run_module(cert_inventory, world.args(format="prometheus", dest=str(dest)))
    assert failed and result["msg"] == "dest: the directory %s does not exist" % dest.parent
    dest.parent.mkdir()
    failed, result = run_module(cert_inventory, world.args(format="prometheus", dest=str(dest), _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and result["changed"] is True and not dest.exists()
    assert result["diff"]["before"] == "" and result["diff"]["after"] == result["report"]
    failed, result = run_module(cert_inventory, world.args(format="prometheus", dest=str(dest)))
    assert not failed and result["changed"] is True
    assert dest.read_text() == result["report"] and stat.S_IMODE(os.stat(dest).st_mode) == 0o644
    assert os.listdir(dest.parent) == ["kubepki.prom"]  # no temporary file left behind
    inode = os.stat(dest).st_ino
    failed, result = run_module(cert_inventory, world.args(format="prometheus", dest=str(dest)))
    assert not failed and result["changed"] is False and os.stat(dest).st_ino == inode
    world.key("bob")
    failed, result = run_module(cert_inventory, world.args(format="prometheus", dest=str(dest)))
    assert not failed and result["changed"] is True and 'user="bob"' in dest.read_text()
    assert os.stat(dest).st_ino != inode  # replaced by rename, never rewritten in place
    failed, result = run_module(cert_inventory, world.args(dest=str(dest)))  # json into the same file
    assert not failed and result["changed"] is True
    assert json.loads(dest.read_text()) == [{k: v for k, v in row.items() if k != "days_left"} for row in result["inventory"]]
    failed, result = run_module(cert_inventory, world.args(dest=str(tmp_path)))
    assert failed and result["msg"] == "dest: %s is a directory" % tmp_path


@pytest.mark.parametrize("report_format", ["prometheus", "json", "table"])
def test_a_report_written_to_dest_does_not_change_with_the_clock(run_module, world, tmp_path, monkeypatch, report_format):
    """A scheduled job writes the report again and again: only a change of the certificates changes the file."""
    alice = world.key("alice")
    world.to_store(world.cert("alice", "c1", alice["private_key_pem"], days=40))
    dest = tmp_path / "report"
    failed, result = run_module(cert_inventory, world.args(format=report_format, dest=str(dest)))
    assert not failed and result["changed"] is True
    first = dest.read_text()
    later = time.time() + 6 * 3600
    monkeypatch.setattr(cert_inventory.time, "time", lambda: later)
    failed, result = run_module(cert_inventory, world.args(format=report_format, dest=str(dest)))
    assert not failed and result["changed"] is False, result.get("diff")
    assert dest.read_text() == first
    assert result["inventory"][0]["days_left"] < 40 - 0.2  # the result itself still says how long is left


def test_a_missing_store_is_not_created(run_module, tmp_path, monkeypatch):
    warned = []  # the run_module fixture replaces exit_json, which would carry the warnings: collect them here
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warned.append(text))
    path = tmp_path / "nowhere" / "store.db"
    failed, result = run_module(cert_inventory, {"store_uri": str(path)})
    assert not failed and result["inventory"] == [] and result["summary"]["total"] == 0
    assert warned == ["the embedded store %s does not exist; it is read as empty" % path]
    assert not path.parent.exists()


@pytest.mark.parametrize("args, message", [
    ({"warn_within": "soon"}, "warn_within: 'soon' is not a duration"),
    ({"scope": "a/b"}, "scope 'a/b' must not contain '/'"),
    ({"users": ["ok", ""]}, "users[1] '' must not be empty"),
    ({"clusters": [".."]}, "clusters[0] '..' is not a usable name"),
    ({"format": "xml"}, "value of format must be one of: json, table, prometheus"),
    ({"etcd_endpoints": ["http://127.0.0.1:9"], "etcd_timeout": 1}, "etcd_endpoints: no etcd endpoint answered"),
    ({"store_uri": "ftp://x/y"}, "store_uri 'ftp://x/y' has an unsupported scheme"),
])
def test_bad_input(run_module, world, args, message):
    failed, result = run_module(cert_inventory, world.args(**args))
    assert failed and message in result["msg"], result["msg"]
