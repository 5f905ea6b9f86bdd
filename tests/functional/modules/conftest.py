"""Fixtures shared by the module tests."""

import pytest


@pytest.fixture(scope="session")
def etcd_url(etcd_server):
    """Client URL of the session's real etcd (tests/functional/conftest.py)."""
    return etcd_server.url
