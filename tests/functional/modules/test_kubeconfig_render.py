"""kubeconfig_render through ansible-playbook: check mode, real run, idempotent re-run, lazy load from a real etcd,
refusals, and (with the clusters under test) the rendered kubeconfig used by kubectl."""

import os
import subprocess
import sys
import uuid

import pytest
from playbook_files import playbook

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TESTS, "harness"))
sys.path.insert(0, os.path.join(os.path.dirname(TESTS), ".cache", "collections"))

from kubeharness import pki  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto  # noqa: E402  pylint: disable=wrong-import-position


def certificate_record(ca, key_pem, user="alice", cluster="c1", orgs=("team-a",), days=30):
    key = _crypto.load_private_key(key_pem)
    pem = pki.cert_pem(pki.issue(ca, user, list(orgs), client=True, key=key, days=days).cert).decode()
    facts = _crypto.certificate_facts(pem)
    return {"scope": "default", "cluster": cluster, "user": user, "common_name": user, "organizations": list(orgs),
            "certificate": pem, "csr_name": "kubepki-%s-x" % user, "csr_uid": "uid", "signer_name": "kubernetes.io/kube-apiserver-client",
            "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
            "public_key_sha256": facts["public_key_sha256"]}


PLAY = playbook("modules/kubeconfig_render.yml")


@pytest.fixture
def setup(tmp_path, etcd_url):
    ca = pki.make_ca("functional-render-ca")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(pki.cert_pem(ca.cert))
    store = str(tmp_path / "store.db")
    with _store.open_store(store, "") as opened:
        key = opened.ensure_key("default", "alice")[0]
    extra = {"user": "alice", "ca_file": str(ca_file), "dest": str(tmp_path / "kubeconfig"), "store": store, "etcd": [etcd_url],
             "prefix": "/fr-%s" % uuid.uuid4().hex[:8]}
    return {"ca": ca, "key": key, "extra": extra, "tmp": tmp_path}


def to_etcd(setup, record):
    with _etcd.EtcdTransport(setup["extra"]["etcd"], prefix=setup["extra"]["prefix"]) as transport:
        transport.put_record(record)


def test_lazy_load_write_and_rerun(run_playbook, setup):
    record = certificate_record(setup["ca"], setup["key"]["private_key_pem"])
    to_etcd(setup, record)
    extra = setup["extra"]
    checked = run_playbook(PLAY, extra_vars=extra, check=True, diff=True)
    assert checked.rc == 0 and checked.changed == 1, checked
    assert not os.path.exists(extra["dest"])
    assert "PRIVATE KEY" not in checked.stdout and setup["key"]["private_key_pem"].splitlines()[1] not in checked.stdout
    first = run_playbook(PLAY, extra_vars=extra)
    assert first.rc == 0 and first.changed == 1, first
    result = first.result("render")
    assert result["clusters"][0]["source"] == "etcd" and result["clusters"][0]["loaded_from_etcd"] is True
    assert os.stat(extra["dest"]).st_mode & 0o777 == 0o600
    with _store.open_store(extra["store"], "") as store:
        assert store.get_cert("default", "c1", "alice")["serial"] == record["serial"]
    again = run_playbook(PLAY, extra_vars=extra)
    assert again.rc == 0 and again.changed == 0, again
    assert again.result("render")["clusters"][0]["source"] == "store"
    check_again = run_playbook(PLAY, extra_vars=extra, check=True)
    assert check_again.rc == 0 and check_again.changed == 0, check_again


def test_key_mismatch_refused(run_playbook, setup):
    stranger = _crypto.private_key_to_pem(_crypto.generate_private_key())
    to_etcd(setup, certificate_record(setup["ca"], stranger))
    outcome = run_playbook(PLAY, extra_vars=setup["extra"])
    result = outcome.result("render")
    assert result["failed"] and "user 'alice' for cluster 'c1'" in result["msg"] and "does not match the stored private key" in result["msg"]
    assert not os.path.exists(setup["extra"]["dest"])


def test_expired_refused(run_playbook, setup):
    to_etcd(setup, certificate_record(setup["ca"], setup["key"]["private_key_pem"], days=-0.001))
    outcome = run_playbook(PLAY, extra_vars=setup["extra"])
    result = outcome.result("render")
    assert result["failed"] and "user 'alice' for cluster 'c1'" in result["msg"] and "expired at" in result["msg"]


def _load(value, loader):
    if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
        with open(value, "rb") as handle:
            return loader(handle.read())
    return value


def test_kubectl_auth_whoami_with_rendered_kubeconfig(sandbox, run_playbook, setup):
    name = sandbox.names[0]
    cluster = sandbox.cluster(name)
    ca = pki.KeyPair(_load(cluster.ca_cert, pki.load_cert), _load(cluster.ca_key, pki.load_key))
    record = certificate_record(ca, setup["key"]["private_key_pem"], cluster="c1", orgs=("team-a", "team-b"))
    to_etcd(setup, record)
    extra = dict(setup["extra"], server=cluster.server, verify=True)
    extra["ca_file"] = str(cluster.ca_cert)
    outcome = run_playbook(PLAY, extra_vars=extra)
    assert outcome.rc == 0, outcome
    identity = outcome.result("render")["identities"][0]
    assert identity["authenticated"] is True
    if identity["groups"] is not None:
        assert identity["username"] == "alice" and {"team-a", "team-b"} <= set(identity["groups"])
    whoami = subprocess.run(["kubectl", "--kubeconfig", extra["dest"], "auth", "whoami", "-o", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert whoami.returncode == 0, whoami.stderr
    assert '"alice"' in whoami.stdout and "team-a" in whoami.stdout and "team-b" in whoami.stdout
