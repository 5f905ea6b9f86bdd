"""Fixtures for the tests against real clusters: kube-apiserver and kube-controller-manager v1.36 from the
binaries in KUBEPKI_K8S_ASSETS (kubesandbox.controlplane). Without them these tests are skipped.

Each pytest worker that runs a test of this directory starts its own pair of clusters (about 420 MiB each), so
the real-cluster tests live in as few files as possible (``--dist loadfile`` keeps a file on one worker).
"""

import pytest

SKIPPED = "KUBEPKI_K8S_ASSETS not set: real control plane tests skipped"


@pytest.fixture(scope="session")
def real_assets():
    """The directory of the Kubernetes binaries; skips the test when there is none."""
    from kubesandbox import controlplane  # pylint: disable=import-outside-toplevel
    assets = controlplane.assets_dir()
    if not assets:
        pytest.skip(SKIPPED)
    reason = controlplane.missing_assets(assets)
    if reason:
        pytest.skip("%s: real control plane tests skipped" % reason)
    return assets


@pytest.fixture(scope="session")
def real_clusters(real_assets, etcd_server, tmp_path_factory):
    """Two real clusters, cluster-1 and cluster-2, each with an etcd of its own; ``etcd_url`` is the session's
    etcd (tests/conftest.py), where the collection writes its records. The same surface as the sandbox."""
    from kubesandbox import controlplane  # pylint: disable=import-outside-toplevel
    clusters = controlplane.start_clusters(str(tmp_path_factory.mktemp("real")), real_assets, etcd_server.url)
    yield clusters
    clusters.stop()
