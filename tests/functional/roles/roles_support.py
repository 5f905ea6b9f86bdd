"""Helpers shared by the role tests."""

import os
import stat

import yaml


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def snapshot(root):
    """{relative path: (mode, bytes)} of every file below ``root``."""
    found = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = (file_mode(path), handle.read())
    return found


def assert_ok(result):
    assert result.rc == 0, repr(result)
    return result


def manifest_command(path, container=0):
    """The command list of a static pod manifest's container."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["spec"]["containers"][container]["command"]


def env_args(path, variable):
    """The arguments held by ``variable`` in an environment file, read the way systemd does for simple quoting."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(variable + "="):
                value = line[len(variable) + 1:].strip()
                assert value.startswith('"') and value.endswith('"'), line
                return value[1:-1].split()
    raise AssertionError("%s not in %s" % (variable, path))


def task_result(result, name, host="localhost"):
    """The result of the last task called ``name`` (role tasks are reported as ``<role> : <name>``)."""
    found = None
    for task in result.tasks():
        task_name = task["task"]["name"]
        if task_name == name or task_name.endswith(" : " + name):
            found = task["hosts"].get(host, found)
    assert found is not None, "no task %r in %r" % (name, result)
    return found
