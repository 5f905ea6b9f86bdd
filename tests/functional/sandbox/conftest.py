"""Fixtures for the sandbox's own tests (helpers live in sandbox_helpers.py)."""

import pytest
from kubernetes import client

from sandbox_helpers import Raw, api_client


@pytest.fixture(scope="session")
def c1(sandbox):
    return sandbox.cluster(sandbox.names[0])


@pytest.fixture(scope="session")
def admin(c1):
    return api_client(c1.kubeconfig)


@pytest.fixture(scope="session")
def certs(admin):
    return client.CertificatesV1Api(admin)


@pytest.fixture(scope="session")
def raw(admin):
    return Raw(admin)
