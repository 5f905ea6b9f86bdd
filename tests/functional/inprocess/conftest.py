"""The modules and module_utils run in this process, as in tests/unit, against what the unit tier may not start: a
real etcd (plain and with TLS), the sandbox's clusters, processes racing each other, and files only a checkout has.

These tests were parts of tests/unit files; the helpers they share with those files (the ``World`` of a module's
tests, a CA fixture) are read from the unit file itself (``unit_module``), so the two tiers build their inputs the
same way. ``run_module`` is the unit tier's own (tests/unit/conftest.py).
"""

import pytest

from .unit_files import unit_module

run_module = unit_module("conftest.py").run_module


def start_etcd(workdir, tls=False):
    """A real etcd (kubeharness). For TLS the server certificate also gets clientAuth: etcd's grpc-gateway
    dials its own gRPC port with the server certificate, and with --client-cert-auth that dial needs it."""
    from kubeharness import etcd, pki  # pylint: disable=import-outside-toplevel

    class _Server(etcd.EtcdServer):
        def _tls_files(self):
            original = pki.issue

            def issue(ca, common_name, *args, **kwargs):
                if kwargs.get("server"):
                    kwargs["client"] = True
                return original(ca, common_name, *args, **kwargs)

            etcd.pki.issue = issue
            try:
                return super()._tls_files()
            finally:
                etcd.pki.issue = original

    return _Server(str(workdir), tls=tls).start()


@pytest.fixture(scope="session")
def kp_etcd(etcd_server):
    """The session's plain-HTTP etcd (tests/functional/conftest.py)."""
    return etcd_server


@pytest.fixture(scope="session")
def kp_etcd_tls(tmp_path_factory):
    """An etcd serving HTTPS that requires client certificates (``.ca_cert/.client_cert/.client_key``)."""
    server = start_etcd(tmp_path_factory.mktemp("kp-etcd-tls"), tls=True)
    yield server
    server.stop()
