"""Make ``ansible_collections.kubepki.certs`` importable for the unit tests, and give them real etcd.

The import root is the same symlink tree the functional tests use (tests/functional/conftest.py:
``collections_root()``), loaded by file path so no conftest is imported twice.
"""

import importlib.util
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collections_root():
    spec = importlib.util.spec_from_file_location("_kubepki_functional_conftest", os.path.join(TESTS, "functional", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.collections_root()


for _path in (_collections_root(), os.path.join(TESTS, "sandbox")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


import pytest  # noqa: E402  pylint: disable=wrong-import-position


def start_etcd(workdir, tls=False):
    """A real etcd (kubesandbox). For TLS the server certificate also gets clientAuth: etcd's grpc-gateway
    dials its own gRPC port with the server certificate, and with --client-cert-auth that dial needs it."""
    from kubesandbox import etcd, pki  # pylint: disable=import-outside-toplevel

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
def kp_etcd(request, tmp_path_factory):
    """A plain-HTTP etcd: tests/conftest.py's ``etcd_server`` when it exists, else one of our own."""
    try:
        yield request.getfixturevalue("etcd_server")
        return
    except pytest.FixtureLookupError:
        pass
    server = start_etcd(tmp_path_factory.mktemp("kp-etcd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kp_etcd_tls(tmp_path_factory):
    """An etcd serving HTTPS that requires client certificates (``.ca_cert/.client_cert/.client_key``)."""
    server = start_etcd(tmp_path_factory.mktemp("kp-etcd-tls"), tls=True)
    yield server
    server.stop()
