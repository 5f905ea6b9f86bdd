"""Helpers for running a module's main() in-process (ansible-core 2.19 style)."""

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class AnsibleExitJson(Exception):
    """exit_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    """fail_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def run_module(monkeypatch):
    """``run_module(module, args) -> (failed: bool, result: dict)`` for a module object with ``main()``.

    The result is passed through a JSON round trip, as Ansible would serialise it.
    """

    def exit_json(self, **kwargs):
        kwargs.setdefault("changed", False)
        raise AnsibleExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs["failed"] = True
        raise AnsibleFailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def runner(module, args):
        with patch_module_args(args):
            try:
                module.main()
            except AnsibleExitJson as done:
                return False, json.loads(json.dumps(done.result, default=str))
            except AnsibleFailJson as failed:
                return True, json.loads(json.dumps(failed.result, default=str))
        raise AssertionError("module returned without exit_json or fail_json")

    return runner
