"""cert_to_etcd run in-process against a real etcd."""

import re
import uuid

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto
from ansible_collections.kubepki.certs.plugins.modules import cert_to_etcd

from kubesandbox import pki


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("cert-to-etcd-ca")


def issued(ca, user="alice", orgs=("team-a",), cluster="c1", **extra):
    key = _crypto.generate_private_key()
    pem = pki.cert_pem(pki.issue(ca, user, list(orgs), client=True, key=key).cert).decode()
    facts = _crypto.certificate_facts(pem)
    record = {"user": user, "cluster": cluster, "certificate": pem, "csr_name": "kubepki-%s-0" % user, "csr_uid": "uid",
              "signer_name": "kubernetes.io/kube-apiserver-client", "serial": facts["serial"], "not_after": facts["not_after"],
              "not_before": facts["not_before"], "public_key_sha256": facts["public_key_sha256"], "common_name": user,
              "organizations": list(orgs), "lifetime_seconds": 1}
    record.update(extra)
    return record


@pytest.fixture
def base(kp_etcd):
    return {"etcd_endpoints": [kp_etcd.url], "etcd_prefix": "/t-%s" % uuid.uuid4().hex[:8]}


def test_put_idempotent_check_and_absent(run_module, base, ca):
    records = [issued(ca, "alice"), issued(ca, "bob", cluster=None)]
    args = dict(base, certificates=records, cluster="c2")
    failed, result = run_module(cert_to_etcd, dict(args, _ansible_check_mode=True))
    assert not failed and result["changed"] is True
    failed, result = run_module(cert_to_etcd, dict(args, _ansible_diff=True))
    assert not failed and result["changed"] is True, result
    assert [r["key"] for r in result["records"]] == [base["etcd_prefix"] + "/certs/default/c1/alice",
                                                     base["etcd_prefix"] + "/certs/default/c2/bob"]
    assert "certificate" not in str(result["diff"]["after"])
    assert result["records"][0]["serial"] == records[0]["serial"]
    failed, result = run_module(cert_to_etcd, args)
    assert not failed and result["changed"] is False
    assert [r["changed"] for r in result["records"]] == [False, False]
    failed, result = run_module(cert_to_etcd, dict(args, state="absent", certificates=[{"user": "bob"}]))
    assert not failed and result["changed"] is True
    failed, result = run_module(cert_to_etcd, dict(args, state="absent", certificates=[{"user": "bob"}]))
    assert not failed and result["changed"] is False


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(serial="abc"), r"certificates\[0\].serial is 'abc' but the certificate says"),
    (lambda r: r.update(not_after="2000-01-01T00:00:00Z"), r"certificates\[0\].not_after is '2000-01-01T00:00:00Z'"),
    (lambda r: r.update(public_key_sha256="00" * 32), r"certificates\[0\].public_key_sha256 is"),
    (lambda r: r.update(certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
     r"certificates\[0\].certificate cannot be parsed"),
    (lambda r: r.update(certificate="hello"), r"certificates\[0\].certificate is not a PEM CERTIFICATE"),
    (lambda r: r.pop("certificate"), r"certificates\[0\] has no certificate"),
    (lambda r: r.update(user="mallory"), r"certificates\[0\].user is 'mallory' but the certificate CN is 'alice'"),
    (lambda r: r.update(organizations=["system:masters"]), r"certificates\[0\].organizations is \['system:masters'\]"),
    (lambda r: r.update(cluster=None), r"certificates\[0\] has no cluster and the cluster option is not set"),
    (lambda r: r.update(cluster="a/b"), r"cluster 'a/b' must not contain '/'"),
])
def test_bad_records(run_module, base, ca, mutate, message):
    record = issued(ca)
    mutate(record)
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record]))
    assert failed
    assert re.search(message, result["msg"]), result["msg"]


def test_nothing_written_when_one_record_is_bad(run_module, base, ca, kp_etcd):
    good, bad = issued(ca, "carol"), issued(ca, "dave", serial="1")
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[good, bad]))
    assert failed and "certificates[1].serial" in result["msg"]
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[good], _ansible_check_mode=True))
    assert result["changed"] is True


def test_duplicate_targets(run_module, base, ca):
    record = issued(ca)
    failed, result = run_module(cert_to_etcd, dict(base, certificates=[record, dict(record)]))
    assert failed and "certificates[0] and certificates[1] both address" in result["msg"]


def test_unreachable_etcd(run_module, ca):
    failed, result = run_module(cert_to_etcd, {"etcd_endpoints": ["http://127.0.0.1:9"], "etcd_timeout": 1,
                                               "certificates": [issued(ca)]})
    assert failed and "etcd_endpoints: no etcd endpoint answered (tried http://127.0.0.1:9" in result["msg"]


def test_no_endpoint(run_module, ca, monkeypatch):
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    failed, result = run_module(cert_to_etcd, {"certificates": [issued(ca)]})
    assert failed and result["msg"].startswith("etcd_endpoints: no etcd endpoint given")


def test_endpoint_from_environment(run_module, ca, kp_etcd, monkeypatch):
    monkeypatch.setenv("KUBEPKI_ETCD_ENDPOINTS", kp_etcd.url)
    failed, result = run_module(cert_to_etcd, {"certificates": [issued(ca, "erin")], "etcd_prefix": "/env-%s" % uuid.uuid4().hex[:6]})
    assert not failed and result["changed"] and result["etcd_endpoint"] == kp_etcd.url
