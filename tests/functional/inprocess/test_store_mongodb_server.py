"""The credential store's contract tests (tests/unit/plugins/module_utils/test_store.py, every test that takes a
``backend``) against a real MongoDB server: the one ``KUBEPKI_TEST_MONGODB_URI`` names, a database of its own for
each test. Without that variable they are skipped, saying so: no mongod runs on these machines (the wire-protocol
server of tests/functional/modules/test_store_mongodb_wire.py runs the same tests on every run)."""

import inspect

import pytest

from .unit_files import unit_module

contract = unit_module("plugins/module_utils/test_store.py")
quick_kdf = contract.quick_kdf  # the same autouse fixture: these tests are about the protocol, not the KDF's cost
for test_name, test_function in vars(contract).items():
    if test_name.startswith("test_") and "backend" in inspect.signature(test_function).parameters:
        globals()[test_name] = test_function


@pytest.fixture
def backend(tmp_path):
    if not contract.REAL_MONGO:
        pytest.skip("KUBEPKI_TEST_MONGODB_URI is not set: no real MongoDB server to test against")
    item = contract.Backend("mongodb", tmp_path)
    yield item
    item.cleanup()
