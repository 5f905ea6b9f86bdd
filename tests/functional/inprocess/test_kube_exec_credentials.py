"""A kubeconfig whose user is an exec credential plugin is handed to the kubernetes library, which runs the plugin
(a process, here ``true``): the module_utils do not build that connection themselves. The rest of _kube is
unit-tested in tests/unit/plugins/module_utils/test_kube.py, whose ``params`` these tests share."""

from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._kube import transport as _kube_transport
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

from .unit_files import unit_module

params = unit_module("plugins/module_utils/test_kube.py").params


def test_exec_credentials_go_through_the_kubernetes_library(monkeypatch):
    _kube._CLIENTS.clear()
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
              "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "true"}}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    calls = []
    real = _kube._build_configuration

    def spy(auth):
        calls.append(auth["context"])
        return real(auth)

    monkeypatch.setattr(_kube, "_build_configuration", spy)
    try:
        _kube.client_for(_kube.resolve_auth(params(kubeconfig=config), {}))
    except KubePkiError:
        pass  # the exec plugin returns nothing usable; what matters is which path was taken
    assert calls == [None]
    assert _kube_transport.connection_for(_kube.resolve_auth(params(kubeconfig=config), {}), "kubeconfig") is None
