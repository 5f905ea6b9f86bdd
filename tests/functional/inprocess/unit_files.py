"""Loading a unit test file of tests/unit from the functional tier, for the helpers the two share."""

import importlib.util
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(TESTS, "unit")
if UNIT not in sys.path:
    sys.path.insert(0, UNIT)  # the unit tier's helpers (pki_support, csr_fake_api) are imported by name

_LOADED = {}


def unit_module(relative):
    """The unit test file tests/unit/<relative>, loaded under a name of its own (its tests are not collected here)."""
    if relative not in _LOADED:
        name = "kubepki_unit_" + relative[:-3].replace(os.sep, "_").replace("/", "_")
        spec = importlib.util.spec_from_file_location(name, os.path.join(UNIT, relative))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED[relative] = module
    return _LOADED[relative]
