"""cert_inventory through ansible-playbook after the real flow: user_certificates against the two clusters under test
(the sandbox, or real ones with KUBEPKI_TEST_CLUSTERS=real), real etcd and the embedded store, then the inventory
as a list, a table and a Prometheus textfile.

The expected figures come from the certificates themselves: the client certificates inside the rendered
kubeconfigs, parsed here with cryptography, and the records read back from etcd.
"""

import base64
import hashlib
import json
import os
import re
import sqlite3
import stat
import time
import uuid

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playbook_files import playbook

FLOW = playbook("modules/user_certificates.yml")

INVENTORY = playbook("modules/cert_inventory_formats.yml")

USERS = [{"name": "inv-alice", "groups": ["dev"]}, {"name": "inv-bob", "groups": ["dev", "ops"]}]
WARN = 150 * 60


def clusters_of(box):
    out = []
    for name in box.names:
        info = box.cluster(name)
        out.append({"name": name, "server": info.server, "ca_cert": info.ca_cert, "auth": {"kubeconfig": info.kubeconfig}})
    return out


def spki_sha256(public_key):
    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def kubeconfig_certificates(out_dir, user):
    """``{cluster: facts}`` of the client certificates in ``user``'s rendered kubeconfig, read with cryptography."""
    with open(os.path.join(out_dir, "%s.kubeconfig" % user), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    users = {entry["name"]: entry["user"] for entry in config["users"]}
    found = {}
    for context in config["contexts"]:
        pem = base64.b64decode(users[context["context"]["user"]]["client-certificate-data"])
        cert = x509.load_pem_x509_certificate(pem)
        found[context["context"]["cluster"]] = {
            "pem": pem.decode(), "serial": format(cert.serial_number, "x"), "expiry": int(cert.not_valid_after_utc.timestamp()),
            "fingerprint": spki_sha256(cert.public_key()),
            "cn": cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value}
    return found


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\} (\S+)$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def read_exposition(text):
    """``{metric: [(labels dict, value)]}`` from Prometheus text, refusing what the format does not allow here:
    a sample before its family's TYPE line, a family in two places, a repeated series, a missing final newline."""
    assert text.endswith("\n")
    metrics, typed, finished, seen = {}, set(), set(), set()
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in finished and name not in metrics, line
            if current and current != name:
                finished.add(current)
            current = name
            continue
        if line.startswith("# TYPE "):
            _hash, _word, name, kind = line.split(" ")
            assert name == current and kind == "gauge", line
            typed.add(name)
            metrics[name] = []
            continue
        match = _SAMPLE.match(line)
        assert match, "not a sample line: %r" % line
        name, labels_text, value = match.groups()
        assert name == current and name in typed, line
        labels = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PAIR.findall(labels_text)}
        identity = (name, tuple(sorted(labels.items())))
        assert identity not in seen, "repeated series: %r" % line
        seen.add(identity)
        metrics[name].append((labels, float(value)))
    return metrics


def store_copy(source, target):
    """A consistent copy of an embedded store (sqlite's online backup), as a second controller would hold it."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    os.chmod(target, 0o600)


@pytest.fixture
def job(sandbox, tmp_path):
    scope = "inv-" + uuid.uuid4().hex[:8]
    return {"users": USERS, "clusters": clusters_of(sandbox), "scope": scope, "store": str(tmp_path / "store.db"),
            "etcd": [sandbox.etcd_url], "prefix": "/" + scope, "out": str(tmp_path / "out"), "lifetime": 7200,
            "renew_before": "1h", "dest": str(tmp_path / "textfile" / "kubepki.prom")}


def test_inventory_after_the_real_flow(run_playbook, sandbox, job, tmp_path):
    flow = run_playbook(FLOW, extra_vars=job)
    assert flow.rc == 0, flow
    # a second controller with a copy of the store renews everything (4 h certificates) and publishes to etcd:
    # etcd then holds newer certificates than the first store, whose records still say 2 h
    second = dict(job, store=str(tmp_path / "second.db"), out=str(tmp_path / "second-out"), lifetime=14400, renew_before="3h")
    store_copy(job["store"], second["store"])
    renewed = run_playbook(FLOW, extra_vars=second)
    assert renewed.rc == 0, renewed
    os.makedirs(os.path.dirname(job["dest"]))

    checked = run_playbook(INVENTORY, extra_vars=job, check=True)
    assert checked.rc == 0, checked
    assert checked.result("as a textfile")["changed"] is True and not os.path.exists(job["dest"])

    start = time.time()
    out = run_playbook(INVENTORY, extra_vars=job)
    end = time.time()
    assert out.rc == 0, out
    listed = out.result("as a list")
    assert listed["changed"] is False
    rows = {(r["user"], r["cluster"]): r for r in listed["inventory"]}
    assert sorted(rows) == sorted((u["name"], c) for u in USERS for c in sandbox.names)
    in_etcd = {key: json.loads(value) for key, value in sandbox.etcd_prefix(job["prefix"] + "/certs/").items()}
    for user in USERS:
        old = kubeconfig_certificates(job["out"], user["name"])
        new = kubeconfig_certificates(second["out"], user["name"])
        for cluster in sandbox.names:
            row, first, latest = rows[(user["name"], cluster)], old[cluster], new[cluster]
            assert latest["serial"] != first["serial"] and latest["expiry"] > first["expiry"]
            assert in_etcd["%s/certs/%s/%s/%s" % (job["prefix"], job["scope"], cluster, user["name"])]["certificate"] == latest["pem"]
            # the entry reports etcd's newer certificate and says the store is behind
            assert (row["found_in"], row["sources_differ"], row["newer_in"]) == ("both", True, "etcd"), row
            assert row["serial"] == latest["serial"] and row["expiry_timestamp"] == latest["expiry"]
            assert row["store"]["serial"] == first["serial"] and row["etcd"]["serial"] == latest["serial"]
            assert row["key_fingerprint"] == row["certificate_fingerprint"] == latest["fingerprint"] == first["fingerprint"]
            assert row["common_name"] == latest["cn"] == user["name"] and row["organizations"] == user["groups"]
            assert (latest["expiry"] - end) / 86400 - 0.006 <= row["days_left"] <= (latest["expiry"] - start) / 86400 + 0.006
            assert row["state"] == ("expiring" if latest["expiry"] - start <= WARN else "valid")
            assert row["key_type"] == "ec-p256" and row["key_scope"] == "shared"
    assert "PRIVATE KEY" not in out.stdout and "BEGIN CERTIFICATE" not in out.stdout

    table = out.result("as a table")["report_lines"]
    assert table[0].split()[:4] == ["SCOPE", "USER", "CLUSTER", "STATE"]
    assert len(table) == 1 + len(rows) + 2 and table[-1].startswith("%d entries: " % len(rows))
    for line in table[1:1 + len(rows)]:
        scope, user, cluster, state = line.split()[:4]
        assert scope == job["scope"] and state == rows[(user, cluster)]["state"]
        assert rows[(user, cluster)]["serial"] in line and "etcd newer" in line

    text = open(job["dest"], encoding="utf-8").read()
    assert stat.S_IMODE(os.stat(job["dest"]).st_mode) == 0o644
    assert out.result("as a textfile")["changed"] is True
    metrics = read_exposition(text)
    expiry = {(labels["user"], labels["cluster"], labels["serial"]): value
              for labels, value in metrics["kubepki_certificate_expiry_timestamp_seconds"]}
    assert expiry == {(u["name"], c, f["serial"]): f["expiry"]
                      for u in USERS for c, f in kubeconfig_certificates(second["out"], u["name"]).items()}
    assert "kubepki_certificate_days_left" not in metrics  # timestamps only: the file changes with the certificates
    assert sorted((labels["user"], labels["cluster"], labels["state"], value) for labels, value in metrics["kubepki_certificate_state"]) == \
        sorted((user, cluster, row["state"], 1.0) for (user, cluster), row in rows.items())
    assert all(value == 1.0 for _labels, value in metrics["kubepki_certificate_sources_differ"])

    # once kubeconfig_render (or the next user_certificates run) loads etcd's certificates into the store, they agree
    again = run_playbook(FLOW, extra_vars=dict(job, lifetime=14400, renew_before="1h"))
    assert again.rc == 0, again
    synced = run_playbook(INVENTORY, extra_vars=job)
    assert synced.rc == 0, synced
    for row in synced.result("as a list")["inventory"]:
        assert (row["found_in"], row["sources_differ"], row["newer_in"]) == ("both", False, None), row
        assert row["serial"] == kubeconfig_certificates(second["out"], row["user"])[row["cluster"]]["serial"]
    assert all(value == 0.0 for _labels, value in read_exposition(open(job["dest"], encoding="utf-8").read())[
        "kubepki_certificate_sources_differ"])
