"""The carry rulebook (kubepki.certs.carry) under ansible-rulebook against a real v1.36 cluster: a user's CSR that a
person approves with `kubectl certificate approve` after the play timed out still reaches the central etcd, the
store and the user's kubeconfig. The Monitor reaches the cluster without a kubeconfig, with the other auth options the
modules take (host, ca_cert, client_cert, client_key), which the rulebook hands to csr_wait unchanged."""

import json
import os

import yaml
from kubeharness.client import kubectl, kubectl_json

from ansible_collections.kubepki.certs.plugins.module_utils import _store
from eda_support import explicit_auth, wait_until  # pylint: disable=import-error

CLUSTER = "cluster-1"
USER = "late-user"


def play(tasks):
    return yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])


def test_a_csr_approved_by_hand_after_the_play_timed_out_reaches_etcd_the_store_and_the_kubeconfig(real_clusters, start_monitor, run_playbook,
                                                                                                   tmp_path):
    info = real_clusters.cluster(CLUSTER)
    store = str(tmp_path / "store.db")
    out = tmp_path / "kubeconfigs"
    auth = explicit_auth(info.kubeconfig, tmp_path)  # no kubeconfig: host, CA and client certificate files
    monitor = start_monitor("kubepki.certs.carry", {
        "kubepki_clusters": [dict(auth, name=CLUSTER)],
        "kubepki_store_uri": store, "kubepki_etcd_endpoints": [real_clusters.etcd_url], "kubepki_etcd_prefix": "/kubepki-eda",
        "kubepki_render_clusters": {CLUSTER: {"server": info.server, "ca_cert": info.ca_cert}},
        "kubepki_kubeconfig_dir": str(out)})
    wait_until("the Monitor's first sync", lambda: monitor.running() and "'type': 'synced'" in monitor.output(), timeout=120)

    # the play creates the CSR, nobody approves it, the play gives up
    common = {"kubeconfig": info.kubeconfig, "cluster": CLUSTER, "store_uri": store}
    result = run_playbook(play([
        {"name": "create", "kubepki.certs.csr_create": dict(common, users=[{"name": USER, "groups": ["dev"]}]), "register": "created"},
        {"name": "wait", "kubepki.certs.csr_wait": {"kubeconfig": info.kubeconfig, "cluster": CLUSTER, "csrs": "{{ created.csrs }}", "timeout": 3},
         "ignore_errors": True},
    ]))
    waited = result.result("wait")
    assert waited.get("failed") and "timed out" in waited["msg"], result
    name = result.result("create")["csrs"][0]["csr_name"]
    assert _store.open_store(store).get_cert("default", CLUSTER, USER) is None

    # hours later, a person approves it
    kubectl(info.kubeconfig, "certificate", "approve", name)
    key = "/kubepki-eda/certs/default/%s/%s" % (CLUSTER, USER)

    def landed():
        assert monitor.running(), monitor.output()
        return real_clusters.etcd_prefix(key).get(key) and (out / ("%s.kubeconfig" % USER)).exists()

    wait_until("the certificate in etcd and the kubeconfig", landed, timeout=90, step=0.5)
    record = json.loads(real_clusters.etcd_prefix(key)[key])
    issued = kubectl_json(info.kubeconfig, "get", "csr", name)
    assert record["csr_name"] == name and record["user"] == USER and record["organizations"] == ["dev"]
    assert record["certificate"].strip() == __import__("base64").b64decode(issued["status"]["certificate"]).decode().strip()
    stored = _store.open_store(store).get_cert("default", CLUSTER, USER)
    assert stored is not None and stored["serial"] == record["serial"]
    assert oct(os.stat(out / ("%s.kubeconfig" % USER)).st_mode & 0o777) == "0o600"
    # approved once, by the person; the Monitor carried it without deciding anything
    assert [c["type"] for c in issued["status"]["conditions"]] == ["Approved"]
    assert "kubepki.certs.csr_approve" not in monitor.output()
