"""Unit tests for cluster_trust_bundle.

Three kinds of counterpart:
- input checks: run against an API stand-in that records requests, to show that nothing is sent for bad input;
- the write flows (idempotence, update, check mode, diff, conflicts, version choice): the in-memory ClusterTrustBundle
  API of csr_fake_api.py (``FakeTrustBundles``). It is a mock, used because no real server of v1 (Kubernetes 1.37) or v1alpha1 only (1.27-1.32) can run here,
  and because a 409 or 403 at a chosen moment cannot be provoked on a real server; the flows against a real
  kube-apiserver 1.36 are in tests/functional/real/test_real_trust_bundle.py;
- the "not served" failure: the stand-in answering /version as servers of several minor lines do, for the flags each one is told (the real 1.30
  and 1.36 servers are in tests/functional/real/test_real_trust_bundle.py; the sandbox, a server that serves
  certificates.k8s.io/v1 without ClusterTrustBundles, in tests/functional/inprocess/test_cluster_trust_bundle_sandbox.py).
"""

import datetime
import json
import os
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import pki_support

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeTrustBundles, install  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.modules import cluster_trust_bundle  # noqa: E402


@pytest.fixture
def api(monkeypatch):
    return install(monkeypatch, FakeTrustBundles())


@pytest.fixture(scope="module")
def cas():
    return [pki_support.new_ca("ctb-test-ca-%d" % i) for i in range(3)]


def pem(pair):
    return pki_support.cert_pem(pair.cert).decode()


def der_set(text):
    return {c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(text.encode())}


BASE = {"host": "https://fake.invalid", "api_key": "t0ken"}


def args(**kwargs):
    return dict(BASE, **kwargs)


# ------------------------------------------------------------------ input checked before any request

def test_private_key_is_refused_and_never_echoed(run_module, api, cas):
    key = pki_support.key_pem(cas[0].key).decode()
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]) + key))
    assert failed and "ca_data holds a private key" in result["msg"]
    body = "".join(key.strip().splitlines()[1:-1])
    assert body[:40] not in json.dumps(result)
    assert api.requests == []


@pytest.mark.parametrize("case, expected", [
    ("leaf", "is not a CA certificate"),
    ("csr", "only CERTIFICATE blocks"),
    ("empty", "ca_data is empty"),
    ("text", "holds no PEM block"),
    ("garbage", "does not parse as an X.509 certificate"),
])
def test_bad_pem_is_refused_before_any_request(run_module, api, cas, case, expected):
    leaf = pki_support.client_cert(cas[0], "not-a-ca")
    data = {
        "leaf": pem(cas[0]) + pki_support.cert_pem(leaf.cert).decode(),
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
        "empty": " \n",
        "text": "just a note, no certificate",
        "garbage": "-----BEGIN CERTIFICATE-----\nTUlJQmdhcmJhZ2U=\n-----END CERTIFICATE-----\n",
    }[case]
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=data))
    assert failed and expected in result["msg"], result["msg"]
    assert api.requests == []


@pytest.mark.parametrize("name, signer, expected", [
    ("example.com:kubepki:ca", None, "without signer_name must not have ':'"),
    ("kubepki-ca", "example.com/kubepki", "must be named example.com:kubepki:<suffix>"),
    ("example.com:kubepki:", "example.com/kubepki", "the part after example.com:kubepki: must not be empty"),
    ("example.com:kubepki:Upper", "example.com/kubepki", "the part after example.com:kubepki:"),
    ("kubepki:ca", "kubepki", "of the form 'example.com/signer-name'"),
    ("localhost:kubepki:ca", "localhost/kubepki", "at least two segments separated by dots"),
    ("Kubepki-CA", None, "must consist of lower case letters"),
])
def test_names_and_signers_checked_before_any_request(run_module, api, cas, name, signer, expected):
    failed, result = run_module(cluster_trust_bundle, args(name=name, signer_name=signer, ca_data=pem(cas[0])))
    assert failed and expected in result["msg"], result["msg"]
    assert ("signer_name" in result["msg"]) or ("name" in result["msg"])
    assert api.requests == []


def test_ca_file_errors_name_the_option(run_module, api, tmp_path, cas):
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_file=str(tmp_path / "missing.crt")))
    assert failed and result["msg"].startswith("ca_file: cannot read")
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca"))
    assert failed and "needs ca_file or ca_data" in result["msg"]
    both = tmp_path / "ca.crt"
    both.write_text(pem(cas[0]))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_file=str(both), ca_data=pem(cas[0])))
    assert failed and "mutually exclusive" in result["msg"]
    assert api.requests == []


# ------------------------------------------------------------------ write flows

def test_create_rerun_and_update(run_module, api, cas, tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text(pem(cas[0]))
    failed, first = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_file=str(path)))
    assert not failed and first["changed"], first
    stored = api.objects["kubepki-ca"]
    assert der_set(stored["spec"]["trustBundle"]) == der_set(pem(cas[0]))
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubepki.certs"} and "signerName" not in stored["spec"]
    assert first["api_version"] == "certificates.k8s.io/v1beta1"
    expected_fp = cas[0].cert.fingerprint(hashes.SHA256()).hex()
    assert [c["sha256_fingerprint"] for c in first["certificates"]] == [expected_fp]
    assert "managedFields" not in first["bundle"]["metadata"]

    failed, again = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_file=str(path)))
    assert not failed and not again["changed"]
    assert api.objects["kubepki-ca"]["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    # the same set, otherwise written: other order, duplicate, a note between blocks, CRLF line ends
    noisy = "issued by ops\r\n" + (pem(cas[1]) + "\n" + pem(cas[0]) + pem(cas[1])).replace("\n", "\r\n")
    failed, seeded = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]) + pem(cas[1])))
    assert not failed and seeded["changed"]
    failed, same = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=noisy))
    assert not failed and not same["changed"], same

    failed, rotated = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[2])))
    assert not failed and rotated["changed"]
    assert der_set(api.objects["kubepki-ca"]["spec"]["trustBundle"]) == der_set(pem(cas[2]))


def test_duplicates_are_written_once(run_module, api, cas):
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]) + pem(cas[1]) + pem(cas[0])))
    assert not failed
    written = api.objects["kubepki-ca"]["spec"]["trustBundle"]
    assert written.count("BEGIN CERTIFICATE") == 2 and len(result["certificates"]) == 2


def test_check_mode_uses_server_dry_run_and_stores_nothing(run_module, api, cas):
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), _ansible_check_mode=True))
    assert not failed and result["changed"] and api.objects == {}
    assert [w[2].get("dryRun") for w in api.writes()] == ["All"]
    run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    before = json.dumps(api.objects)
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[1]), _ansible_check_mode=True))
    assert not failed and result["changed"] and json.dumps(api.objects) == before
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", state="absent", _ansible_check_mode=True))
    assert not failed and result["changed"] and "kubepki-ca" in api.objects
    assert [w[2].get("dryRun") for w in api.writes()] == ["All", None, "All", "All"]


def test_diff_shows_the_bundle_before_and_after(run_module, api, cas):
    run_module(cluster_trust_bundle, args(name="example.com:kubepki:ca", signer_name="example.com/kubepki", ca_data=pem(cas[0])))
    failed, result = run_module(cluster_trust_bundle, args(name="example.com:kubepki:ca", signer_name="example.com/kubepki",
                                                           ca_data=pem(cas[1]), _ansible_diff=True))
    assert not failed and result["changed"]
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert der_set(before["trustBundle"]) == der_set(pem(cas[0])) and der_set(after["trustBundle"]) == der_set(pem(cas[1]))
    assert before["signerName"] == after["signerName"] == "example.com/kubepki"


def test_conflict_is_read_again_and_retried(run_module, api, cas):
    run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    api.conflicts = 2
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[1])))
    assert not failed and result["changed"], result
    stored = api.objects["kubepki-ca"]
    assert der_set(stored["spec"]["trustBundle"]) == der_set(pem(cas[1]))
    assert stored["metadata"]["labels"]["touched-by"] == "someone-else"  # the other writer's change is kept


def test_attest_refusal_says_which_permission(run_module, monkeypatch, cas):
    install(monkeypatch, FakeTrustBundles(deny_attest=True))
    failed, result = run_module(cluster_trust_bundle, args(name="example.com:kubepki:ca", signer_name="example.com/kubepki", ca_data=pem(cas[0])))
    assert failed and result["status"] == 403
    assert "verb attest on resource signers, resourceName example.com/kubepki" in result["msg"]


def test_absent_deletes_then_is_unchanged(run_module, api, cas):
    run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", state="absent"))
    assert not failed and result["changed"] and api.objects == {}
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", state="absent"))
    assert not failed and not result["changed"]


# ------------------------------------------------------------------ API version

@pytest.mark.parametrize("served, listed, expected", [
    (("v1", "v1beta1"), None, "v1"),
    (("v1beta1", "v1alpha1"), None, "v1beta1"),
    (("v1alpha1",), None, "v1alpha1"),
])
def test_auto_picks_the_newest_served(run_module, monkeypatch, cas, served, listed, expected):
    api = install(monkeypatch, FakeTrustBundles(versions=served, listed=listed))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    assert not failed and result["api_version"] == "certificates.k8s.io/" + expected
    assert [w[1] for w in api.writes()] == ["/apis/certificates.k8s.io/%s/clustertrustbundles" % expected]
    assert api.objects["kubepki-ca"]["apiVersion"] == "certificates.k8s.io/" + expected


def test_a_version_served_without_the_resource_does_not_count(run_module, monkeypatch, cas):
    """v1beta1 listed for PodCertificateRequests only (runtime-config for CTBs missing): not served."""
    api = install(monkeypatch, FakeTrustBundles(versions=(), listed=["v1", "v1beta1"]))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    assert failed and "ClusterTrustBundle feature gate" in result["msg"] and "--runtime-config" in result["msg"]
    assert api.writes() == []


def test_explicit_version_not_served_is_a_failure(run_module, api, cas):
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), api_version="v1"))
    assert failed and "certificates.k8s.io/v1:" in result["msg"] and api.writes() == []
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), api_version="v1beta1"))
    assert not failed and result["api_version"] == "certificates.k8s.io/v1beta1"


def _version(git, major="1", minor=None):
    return {"major": major, "minor": minor if minor is not None else git.split(".")[1], "gitVersion": git}


@pytest.mark.parametrize("answer, expected, absent", [
    (_version("v1.30.14"), ["this server is v1.30.14, where ClusterTrustBundles are alpha",
                            "--feature-gates ClusterTrustBundle=true --runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true",
                            "upgrade to Kubernetes 1.33"], ["v1beta1/clustertrustbundles"]),
    (_version("v1.27.0"), ["--runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true"], ["v1beta1/clustertrustbundles"]),
    (_version("v1.33.1"), ["this server is v1.33.1, where ClusterTrustBundles are beta",
                           "--feature-gates ClusterTrustBundle=true --runtime-config certificates.k8s.io/v1beta1/clustertrustbundles=true"],
     ["v1alpha1/clustertrustbundles", "upgrade"]),
    (_version("v1.36.2"), ["--runtime-config certificates.k8s.io/v1beta1/clustertrustbundles=true"], ["v1alpha1/clustertrustbundles"]),
    # a distribution's version string: the major and minor fields are read instead
    ({"major": "1", "minor": "30+", "gitVersion": "custom-build"}, ["this server is custom-build",
                                                                    "certificates.k8s.io/v1alpha1/clustertrustbundles=true"], ["v1beta1/c"]),
    (_version("v1.26.9"), ["ClusterTrustBundles need Kubernetes 1.27 or later, and this server is v1.26.9"], ["--runtime-config"]),
    # a version this module does not know the API of yet, and a /version it cannot read: both flag sets
    (_version("v1.38.0"), ["this server is v1.38.0", "certificates.k8s.io/v1beta1/clustertrustbundles=true",
                           "certificates.k8s.io/v1alpha1/clustertrustbundles=true before Kubernetes 1.33"], []),
    (None, ["ClusterTrustBundle feature gate", "certificates.k8s.io/v1beta1/clustertrustbundles=true",
            "certificates.k8s.io/v1alpha1/clustertrustbundles=true before Kubernetes 1.33"], ["this server is"]),
])
def test_not_served_names_the_flags_of_the_servers_version(run_module, monkeypatch, cas, answer, expected, absent):
    api = install(monkeypatch, FakeTrustBundles(versions=(), listed=["v1"], server_version=answer))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0])))
    assert failed and "does not serve ClusterTrustBundles in any of" in result["msg"], result
    for text in expected:
        assert text in result["msg"], (text, result["msg"])
    for text in absent:
        assert text not in result["msg"], (text, result["msg"])
    assert api.writes() == []


def test_explicit_version_the_servers_line_lacks_names_the_one_to_use(run_module, monkeypatch, cas):
    """api_version=v1beta1 on a 1.30 server without the API: 1.30 never has v1beta1, so the answer is v1alpha1 and its flags."""
    install(monkeypatch, FakeTrustBundles(versions=(), listed=["v1"], server_version=_version("v1.30.14")))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), api_version="v1beta1"))
    assert failed and "Kubernetes v1.30.14 has no certificates.k8s.io/v1beta1 at all (its newest is v1alpha1): " \
        "set api_version to auto or v1alpha1" in result["msg"], result["msg"]
    assert "--runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true" in result["msg"]
    # an older version than the newest, on a line that has it: the flags to turn on that one
    install(monkeypatch, FakeTrustBundles(versions=(), listed=["v1"], server_version=_version("v1.36.2")))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), api_version="v1alpha1"))
    assert failed and "--runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true" in result["msg"], result["msg"]
    assert "has no" not in result["msg"]


def test_explicit_version_not_served_where_another_is_names_it(run_module, monkeypatch, cas):
    install(monkeypatch, FakeTrustBundles(versions=("v1alpha1",), server_version=_version("v1.30.14")))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=pem(cas[0]), api_version="v1beta1"))
    assert failed and "it serves them in certificates.k8s.io/v1alpha1: set api_version to auto or v1alpha1" in result["msg"], result
    assert "--runtime-config" not in result["msg"]


def test_expired_ca_still_counts_as_a_ca(run_module, api):
    """Validity is the consumer's business, as for the API server: an expired CA is published (rotation overlap)."""
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - datetime.timedelta(days=20)).not_valid_after(now - datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    failed, result = run_module(cluster_trust_bundle, args(name="kubepki-ca", ca_data=cert.public_bytes(serialization.Encoding.PEM).decode()))
    assert not failed and result["certificates"][0]["serial"] == "7"


def test_absent_finds_a_signer_bundle_by_name_alone(run_module, api, cas):
    run_module(cluster_trust_bundle, args(name="example.com:kubepki:ca", signer_name="example.com/kubepki", ca_data=pem(cas[0])))
    failed, result = run_module(cluster_trust_bundle, args(name="example.com:kubepki:ca", state="absent"))
    assert not failed and result["changed"] and api.objects == {}
    failed, result = run_module(cluster_trust_bundle, args(name="example.com:kubepki:Bad", state="absent"))
    assert failed and "name" in result["msg"]
