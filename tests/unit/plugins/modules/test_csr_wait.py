"""Unit tests for csr_wait and csr_info against the in-memory API."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeCluster, install  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _store  # noqa: E402
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record  # noqa: E402
from ansible_collections.kubepki.certs.plugins.modules import csr_approve, csr_create, csr_info, csr_wait  # noqa: E402


def flow(run_module, base, expiration=None, names=("alice", "bob")):
    args = dict(base, users=[{"name": n, "groups": ["dev"]} for n in names])
    if expiration:
        args["expiration_seconds"] = expiration
    failed, created = run_module(csr_create, args)
    assert not failed, created
    failed, approved = run_module(csr_approve, dict(base, csrs=created["csrs"]))
    assert not failed, approved
    return created["csrs"]


def test_records_have_the_contract_fields(run_module, cluster, base):
    csrs = flow(run_module, base, expiration=3600)
    failed, result = run_module(csr_wait, dict(base, csrs=csrs, cluster_ca=cluster.ca_pem))
    assert not failed, result
    assert not result["changed"]
    assert len(result["certificates"]) == 2
    record = result["certificates"][0]
    assert set(_record.FIELDS) <= set(record)
    assert record["user"] == "alice" and record["common_name"] == "alice" and record["organizations"] == ["dev"]
    assert record["scope"] == "default" and record["cluster"] == "c1"
    assert record["requested_expiration_seconds"] == 3600 and not record["lifetime_clamped"]
    assert record["public_key_sha256"] == csrs[0]["public_key_sha256"]
    assert result["wait_stats"]["watches"] == 0


def test_clamped_lifetime_is_reported(run_module, monkeypatch, base):
    cluster = install(monkeypatch, FakeCluster(lifetime=1200))
    csrs = flow(run_module, base, expiration=86400, names=("alice",))
    failed, result = run_module(csr_wait, dict(base, csrs=csrs))
    assert not failed and result["certificates"][0]["lifetime_clamped"]
    assert cluster.objects


def test_wrong_ca_is_refused(run_module, cluster, base):
    csrs = flow(run_module, base, names=("alice",))
    other = FakeCluster()
    failed, result = run_module(csr_wait, dict(base, csrs=csrs, cluster_ca=other.ca_pem))
    assert failed and "not signed by the given cluster CA" in result["msg"] and csrs[0]["csr_name"] in result["msg"]


def test_failed_csr_fails_at_once(run_module, monkeypatch, base):
    install(monkeypatch, FakeCluster(signer_fails=True))
    csrs = flow(run_module, base, names=("alice",))
    failed, result = run_module(csr_wait, dict(base, csrs=csrs, timeout=30))
    assert failed and csrs[0]["csr_name"] in result["msg"] and "SignerValidationFailure" in result["msg"]


def test_denied_csr_fails_at_once(run_module, cluster, base):
    failed, created = run_module(csr_create, dict(base, users=[{"name": "alice"}]))
    name = created["csrs"][0]["csr_name"]
    run_module(csr_approve, dict(base, names=[name], action="deny", reason="NoWay", condition_message="go away"))
    failed, result = run_module(csr_wait, dict(base, names=[name]))
    assert failed and "was denied: NoWay: go away" in result["msg"]


def test_missing_csr_is_named(run_module, cluster, base):
    failed, result = run_module(csr_wait, dict(base, names=["ghost"]))
    assert failed and "CertificateSigningRequest ghost does not exist" in result["msg"]


def test_gone_csr_answered_from_store(run_module, cluster, base):
    csrs = flow(run_module, base, names=("alice",))
    failed, first = run_module(csr_wait, dict(base, csrs=csrs))
    record = {k: first["certificates"][0][k] for k in _record.FIELDS}
    with _store.open_store(base["store_uri"]) as store:
        store.put_cert(record)
    cluster.objects.clear()
    failed, again = run_module(csr_wait, dict(base, csrs=csrs))
    assert not failed, again
    assert again["certificates"][0]["source"] == "store"
    assert {k: again["certificates"][0][k] for k in _record.FIELDS} == record


@pytest.mark.parametrize("override,fragment", [
    ({}, "nothing to wait for"),
    ({"names": ["x"], "cluster_ca": "/nonexistent/ca.pem"}, "cluster_ca: /nonexistent/ca.pem is neither PEM text nor an existing file"),
    ({"names": ["x"], "cluster_ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "cluster_ca"),
    ({"names": ["x"], "timeout": -1}, "timeout must not be negative"),
    ({"csrs": ["oops"]}, "csrs"),
])
def test_bad_input(run_module, cluster, base, override, fragment):
    failed, result = run_module(csr_wait, dict(base, **override))
    assert failed and fragment in result["msg"], result


def test_info_lists_states_and_filters(run_module, cluster, base):
    flow(run_module, base)
    run_module(csr_create, dict(base, users=[{"name": "carol"}]))
    failed, result = run_module(csr_info, {"host": base["host"]})
    assert not failed and len(result["csrs"]) == 3
    states = {c["user"]: c["state"] for c in result["csrs"]}
    assert states == {"alice": "issued", "bob": "issued", "carol": "pending"}
    issued = [c for c in result["csrs"] if c["state"] == "issued"][0]
    assert issued["certificate_not_after"] and issued["requester"] == "admin" and issued["age_seconds"] >= 0
    failed, only = run_module(csr_info, {"host": base["host"], "users": ["carol"], "state": ["pending"], "managed_only": True})
    assert [c["user"] for c in only["csrs"]] == ["carol"]
    failed, none = run_module(csr_info, {"host": base["host"], "signer_name": "example.com/other"})
    assert none["csrs"] == []
