"""Fixtures for the tests against real clusters: kube-apiserver and kube-controller-manager from the binaries in
KUBEPKI_K8S_ASSETS (kubeharness.controlplane): v1.36 in ``../shared/k8s``, v1.30 in ``../shared/k8s-1.30``
(tools/real_pass.sh). Without them these tests are skipped.

The version the binaries report is printed in pytest's header (when this directory is named on the command line)
and is the ``real_version`` fixture, (major, minor, patch), for the few checks that differ between minor lines.

Each test file that uses ``real_clusters`` starts its own pair of clusters (about 420 MiB each, stopped at the end of
the file), so the real-cluster tests live in as few files as possible (``--dist loadfile`` keeps a file on one
worker). One pair per file, not per worker: the files count and change what is on the clusters (the onboarding
counts the CSRs the collection manages, the attacker tests leave such CSRs behind), and which files share a worker,
in which order, is xdist's choice.
"""

import pytest

SKIPPED = "KUBEPKI_K8S_ASSETS not set: real control plane tests skipped"


def pytest_report_header(config):  # pylint: disable=unused-argument
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    assets = controlplane.assets_dir()
    if not assets or controlplane.missing_assets(assets):
        return None
    return "real clusters: Kubernetes %s from %s=%s" % (controlplane.binary_version(assets), controlplane.ASSETS_ENV, assets)


@pytest.fixture(scope="session")
def real_assets():
    """The directory of the Kubernetes binaries; skips the test when there is none."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    assets = controlplane.assets_dir()
    if not assets:
        pytest.skip(SKIPPED)
    reason = controlplane.missing_assets(assets)
    if reason:
        pytest.skip("%s: real control plane tests skipped" % reason)
    return assets


@pytest.fixture(scope="session")
def real_version(real_assets):
    """(major, minor, patch) of the kube-apiserver in ``real_assets``."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    return controlplane.parse_version(controlplane.binary_version(real_assets))


@pytest.fixture(scope="module")
def real_clusters(real_assets, real_version, etcd_server, tmp_path_factory):
    """Two real clusters of the test file's own, cluster-1 and cluster-2, each with an etcd of its own; ``etcd_url``
    is the session's etcd (tests/conftest.py), where the collection writes its records. The same surface as the
    sandbox."""
    from kubeharness import controlplane  # pylint: disable=import-outside-toplevel
    clusters = controlplane.start_clusters(str(tmp_path_factory.mktemp("real")), real_assets, etcd_server.url)
    try:
        for name in clusters.names:  # the server answers with the version of the binaries, not another one
            assert controlplane.parse_version(clusters.cluster(name).server_version) == real_version
    except AssertionError:
        clusters.stop()
        raise
    yield clusters
    clusters.stop()
