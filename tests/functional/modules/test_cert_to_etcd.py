"""cert_to_etcd through ansible-playbook against a real etcd: check mode, real run, idempotent re-run, removal."""

import os
import sys
import uuid


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sandbox"))

from kubesandbox import pki  # noqa: E402  pylint: disable=wrong-import-position


def records(count=3):
    ca = pki.make_ca("functional-cte-ca")
    found = []
    for index in range(count):
        cert = pki.issue(ca, "user%d" % index, ["team-a"], client=True).cert
        found.append({"user": "user%d" % index, "certificate": pki.cert_pem(cert).decode(), "csr_name": "kubepki-user%d-0" % index,
                      "csr_uid": str(uuid.uuid4()), "signer_name": "kubernetes.io/kube-apiserver-client",
                      "serial": format(cert.serial_number, "x")})
    return found


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: publish
      kubepki.certs.cert_to_etcd:
        certificates: "{{ certs }}"
        cluster: c1
        state: "{{ wanted | default('present') }}"
        etcd_endpoints: ["{{ etcd_url }}"]
        etcd_prefix: "{{ prefix }}"
        etcd_timeout: 2
"""


def test_publish_lifecycle(run_playbook, etcd_url):
    extra = {"certs": records(), "etcd_url": etcd_url, "prefix": "/f-%s" % uuid.uuid4().hex[:8]}
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
    extra = {"certs": records(1), "etcd_url": "http://127.0.0.1:9", "prefix": "/kubepki"}
    outcome = run_playbook(PLAY, extra_vars=extra)
    assert outcome.rc != 0
    result = outcome.result("publish")
    assert result["failed"] and "etcd_endpoints: no etcd endpoint answered (tried http://127.0.0.1:9" in result["msg"]


def test_forged_facts_are_refused(run_playbook, etcd_url):
    forged = records(1)
    forged[0]["serial"] = "deadbeef"
    outcome = run_playbook(PLAY, extra_vars={"certs": forged, "etcd_url": etcd_url, "prefix": "/kubepki-forged"})
    result = outcome.result("publish")
    assert result["failed"] and "certificates[0].serial is 'deadbeef' but the certificate says" in result["msg"]
