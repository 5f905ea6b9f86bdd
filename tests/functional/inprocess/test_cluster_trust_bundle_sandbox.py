"""cluster_trust_bundle run in-process against the sandbox, a server that serves certificates.k8s.io/v1 without
ClusterTrustBundles: the module names the flags that would enable them. The other "not served" cases (a stand-in
answering /version as servers of several minor lines) are unit-tested in
tests/unit/plugins/modules/test_cluster_trust_bundle.py, whose CAs these tests share."""

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.modules import cluster_trust_bundle

from .unit_files import unit_module

UNIT = unit_module("plugins/modules/test_cluster_trust_bundle.py")
cas, pem = UNIT.cas, UNIT.pem


@pytest.mark.sandbox_only("the sandbox's /version answer and its served APIs")
def test_sandbox_serving_no_trust_bundles_gets_the_enable_hint(run_module, sandbox, cas):
    _kube._CLIENTS.clear()
    cluster = sandbox.cluster(sandbox.names[0])
    failed, result = run_module(cluster_trust_bundle, {"kubeconfig": cluster.kubeconfig, "name": "kubepki-ca", "ca_data": pem(cas[0])})
    assert failed, result
    assert "does not serve ClusterTrustBundles" in result["msg"] and cluster.server in result["msg"]
    # the sandbox answers /version as v1.32.0: the alpha API is what that version has
    assert "this server is v1.32.0+kubesandbox" in result["msg"] and "--feature-gates ClusterTrustBundle=true" in result["msg"]
    assert "--runtime-config certificates.k8s.io/v1alpha1/clustertrustbundles=true" in result["msg"]
    assert "v1beta1/clustertrustbundles" not in result["msg"]
    failed, result = run_module(cluster_trust_bundle, {"kubeconfig": cluster.kubeconfig, "name": "kubepki-ca", "state": "absent"})
    assert not failed and not result["changed"] and result["api_version"] is None
    failed, result = run_module(cluster_trust_bundle, {"kubeconfig": cluster.kubeconfig, "name": "kubepki-ca", "ca_data": pem(cas[0]),
                                                       "if_served": True})
    assert not failed and not result["changed"] and result["served"] is False, result
