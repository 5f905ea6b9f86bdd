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
