"""What the module tests against the in-memory API (csr_fake_api.py) share: a cluster and the module arguments
that reach it and a store of the test's own."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from csr_fake_api import FakeCluster, install  # noqa: E402 pylint: disable=wrong-import-position


@pytest.fixture
def cluster(monkeypatch):
    """A fake cluster whose signer issues every approved request; no etcd unless a test configures one."""
    monkeypatch.delenv("KUBEPKI_ETCD_ENDPOINTS", raising=False)
    return install(monkeypatch, FakeCluster())


@pytest.fixture
def base(tmp_path):
    return {"host": "https://fake.invalid", "cluster": "c1", "store_uri": str(tmp_path / "store.db")}
