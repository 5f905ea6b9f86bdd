"""Fixtures for the role tests: node trees copied from fixtures/, and a runner that applies one role to them.

The parent conftest (tests/functional/conftest.py) provides ``run_playbook`` and makes the collection symlink
tree when it loads.
"""

import os
import shutil

import pytest

from playbook_files import playbook

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


@pytest.fixture
def node_tree(tmp_path):
    """``node_tree('kubeadm' | 'systemd')``: a private copy of a fixture node, returned as its root path."""

    def make(style):
        root = tmp_path / ("node-" + style)
        shutil.copytree(os.path.join(FIXTURES, style), root, symlinks=True)
        return str(root)

    return make


@pytest.fixture
def run_role(run_playbook):
    """``run_role(role, variables, check=False, diff=False)`` -> PlaybookResult."""

    def runner(role, variables, check=False, diff=False, hosts=None, env=None):
        env = dict({"ANSIBLE_PIPELINING": "1"}, **(env or {}))
        return run_playbook(playbook("roles/apply_role.yml"), extra_vars=dict(variables, role_under_test=role), check=check, diff=diff,
                            hosts=hosts, env=env)

    return runner
