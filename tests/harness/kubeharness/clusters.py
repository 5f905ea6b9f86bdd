"""The clusters the functional tests run against, chosen by KUBEPKI_TEST_CLUSTERS.

``start_under_test(DIR)`` gives sandbox clusters by default (the fake API server of ``tests/sandbox``, imported
only then), or with KUBEPKI_TEST_CLUSTERS=real real kube-apiservers and kube-controller-managers
(``controlplane.RealClusters``, binaries from KUBEPKI_K8S_ASSETS) plus an etcd of their own for the collection's
records. Both have ``names``, ``cluster(name)``, ``etcd_url``, ``etcd_prefix()``, ``user_kubeconfig()``,
``clean_issued()`` and ``stop()``; only the sandbox has fault injection and timing knobs.
"""

import os

from . import etcd
from .processes import start_watchdog


def real_mode():
    """True when the functional tests are to run against real clusters (KUBEPKI_TEST_CLUSTERS=real)."""
    mode = os.environ.get("KUBEPKI_TEST_CLUSTERS", "sandbox")
    if mode not in ("sandbox", "real"):
        raise ValueError("KUBEPKI_TEST_CLUSTERS is %r; it takes sandbox (the default) or real" % mode)
    return mode == "real"


def start_under_test(state_dir, clusters=2):
    """``clusters`` clusters under ``state_dir``: sandbox ones, or real ones with KUBEPKI_TEST_CLUSTERS=real. Tests
    that need what only the sandbox has are marked ``sandbox_only`` (tests/functional/conftest.py)."""
    if not real_mode():
        from kubesandbox import testing  # pylint: disable=import-outside-toplevel
        return testing.start(state_dir, clusters=clusters)
    from . import controlplane  # pylint: disable=import-outside-toplevel
    assets = controlplane.assets_dir()
    reason = controlplane.missing_assets(assets) if assets else "KUBEPKI_K8S_ASSETS is not set"
    if reason:
        raise RuntimeError("KUBEPKI_TEST_CLUSTERS=real needs the Kubernetes binaries: %s" % reason)
    records = WatchedEtcd(etcd.EtcdServer(os.path.join(state_dir, "records-etcd")))
    try:
        real = controlplane.start_clusters(state_dir, assets, records.url, count=clusters)
    except BaseException:
        records.stop()
        raise
    real.owned.append(records)
    return real


class WatchedEtcd:
    """A started etcd that a watchdog stops by PID should this process die without stopping it."""

    def __init__(self, server):
        server.start()
        self.server, self.url = server, server.url
        self.watchdog = start_watchdog(os.getpid(), [(server.pid, "etcd")])

    def stop(self):
        self.server.stop()
        self.watchdog.wait(timeout=10)
