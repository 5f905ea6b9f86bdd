"""cert_to_etcd through ansible-playbook against a real etcd: check mode, real run, idempotent re-run, removal."""

import os
import sys
import uuid


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "harness"))

from kubeharness import pki  # noqa: E402  pylint: disable=wrong-import-position
from playbook_files import playbook  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.kubepki.certs.plugins.module_utils import _etcd  # noqa: E402  pylint: disable=wrong-import-position


def records(count=3):
    ca = pki.make_ca("functional-cte-ca")
    found = []
    for index in range(count):
        cert = pki.issue(ca, "user%d" % index, ["team-a"], client=True).cert
        found.append({"user": "user%d" % index, "certificate": pki.cert_pem(cert).decode(), "csr_name": "kubepki-user%d-0" % index,
                      "csr_uid": str(uuid.uuid4()), "signer_name": "kubernetes.io/kube-apiserver-client",
                      "serial": format(cert.serial_number, "x")})
    return found


PLAY = playbook("modules/cert_to_etcd.yml")


def test_publish_lifecycle(run_playbook, etcd_url):
    extra = {"certs": records(), "etcd_url": etcd_url, "prefix": "/f-%s" % uuid.uuid4().hex[:8], "etcd_timeout": 2}
    checked = run_playbook(PLAY, extra_vars=extra, check=True, diff=True)
    assert checked.rc == 0, checked
    assert checked.changed == 1
    first = run_playbook(PLAY, extra_vars=extra)
    assert first.rc == 0, first
    result = first.result("publish")
    assert result["changed"] is True and all(item["changed"] for item in result["records"])
    assert result["records"][0]["key"] == extra["prefix"] + "/certs/default/c1/user0"
    again = run_playbook(PLAY, extra_vars=extra)
    assert again.rc == 0 and again.changed == 0, again
    removed = run_playbook(PLAY, extra_vars=dict(extra, wanted="absent"))
    assert removed.rc == 0 and removed.changed == 1, removed
    removed_again = run_playbook(PLAY, extra_vars=dict(extra, wanted="absent"))
    assert removed_again.rc == 0 and removed_again.changed == 0, removed_again


def test_unreachable_etcd_fails_clearly(run_playbook):
    extra = {"certs": records(1), "etcd_url": "http://127.0.0.1:9", "prefix": "/kubepki", "etcd_timeout": 2}
    outcome = run_playbook(PLAY, extra_vars=extra)
    assert outcome.rc != 0
    result = outcome.result("publish")
    assert result["failed"] and "etcd_endpoints: no etcd endpoint answered (tried http://127.0.0.1:9" in result["msg"]


def test_forged_facts_are_refused(run_playbook, etcd_url):
    forged = records(1)
    forged[0]["serial"] = "deadbeef"
    outcome = run_playbook(PLAY, extra_vars={"certs": forged, "etcd_url": etcd_url, "prefix": "/kubepki-forged",
                                             "etcd_timeout": 2})
    result = outcome.result("publish")
    assert result["failed"] and "certificates[0].serial is 'deadbeef' but the certificate says" in result["msg"]


TWO_HOSTS = playbook("modules/cert_to_etcd_every_host.yml")


def test_two_hosts_publish_the_same_records_at_once(run_playbook, etcd_url):
    """Two inventory hosts (two Ansible worker processes) run the same task at the same time, over fresh prefixes:
    both succeed every time and each record is created by exactly one of them."""
    rounds = 4
    extra = {"certs": records(8), "etcd_url": etcd_url, "prefix": "/twin-%s" % uuid.uuid4().hex[:8], "rounds": rounds}
    outcome = run_playbook(TWO_HOSTS, extra_vars=extra, hosts={"first": {}, "second": {}})
    assert outcome.rc == 0, outcome
    per_host = [outcome.result("publish", host)["results"] for host in ("first", "second")]
    for first, second in zip(*per_host):
        assert not first.get("failed") and not second.get("failed"), (first.get("msg"), second.get("msg"))
        for mine, theirs in zip(first["records"], second["records"]):
            assert mine["key"] == theirs["key"]
            assert sorted([mine["action"], theirs["action"]]) == ["created", "unchanged"], (mine, theirs)


def test_an_older_certificate_is_kept_out(run_playbook, etcd_url):
    ca = pki.make_ca("functional-cte-age-ca")
    short = pki.cert_pem(pki.issue(ca, "zoe", ["team-a"], client=True, days=10).cert).decode()
    # issued in the same second or later and valid for longer: newer either way
    long = pki.cert_pem(pki.issue(ca, "zoe", ["team-a"], client=True, days=20).cert).decode()
    extra = {"etcd_url": etcd_url, "prefix": "/age-%s" % uuid.uuid4().hex[:8]}
    newer = run_playbook(PLAY, extra_vars=dict(extra, certs=[{"certificate": long}]))
    assert newer.rc == 0 and newer.result("publish")["records"][0]["action"] == "created", newer
    older = run_playbook(PLAY, extra_vars=dict(extra, certs=[{"certificate": short}]))
    assert older.rc == 0 and older.changed == 0, older
    assert older.result("publish")["records"][0]["action"] == "kept_newer"


def test_bad_prefix_is_refused_before_etcd_is_touched(run_playbook, etcd_url):
    extra = {"certs": records(1), "etcd_url": etcd_url, "prefix": "/kubepki/../other", "etcd_timeout": 2}
    outcome = run_playbook(PLAY, extra_vars=extra)
    result = outcome.result("publish")
    assert result["failed"] and result["msg"] == "etcd_prefix '/kubepki/../other' must not contain a '..' segment"
    assert result["records"] == []
    with _etcd.EtcdTransport([etcd_url], prefix="/") as transport:
        assert transport.list_prefix("/kubepki/../other") == []
