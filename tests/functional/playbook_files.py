"""The test playbooks of tests/functional/playbooks/, by name.

A playbook is a file there; what a test changes in it comes in as Ansible variables (``extra_vars``), not by
formatting its text. ``playbook(name)`` is its text, for the runners that take one (the ``run_playbook``
fixture of tests/functional/conftest.py and those built on it); ``playbook_path(name)`` is the file itself.
"""

import os

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks")


def playbook_path(name):
    """The path of the test playbook ``name``, relative to tests/functional/playbooks (``modules/store_rekey.yml``)."""
    path = os.path.normpath(os.path.join(PLAYBOOKS, name))
    if not path.startswith(PLAYBOOKS + os.sep) or not os.path.isfile(path):
        raise FileNotFoundError("no test playbook %r in %s" % (name, PLAYBOOKS))
    return path


def playbook(name):
    """The text of the test playbook ``name``."""
    with open(playbook_path(name), encoding="utf-8") as handle:
        return handle.read()
