"""The unit tier stays a unit tier: it imports nothing of the test harness (tests/harness), of the sandbox
(tests/sandbox) nor of tests/functional, and it starts no process (tests/unit/conftest.py's ``process_guard`` fails a
test that tries). The built collection ships tests/unit without those directories, and runs it
(tests/functional/test_built_artifact.py)."""

import ast
import multiprocessing
import os
import subprocess

import pytest

UNIT = os.path.dirname(os.path.abspath(__file__))
# what only a checkout has: the harness and sandbox packages, their directories, the functional tier's directories and files
CHECKOUT_ONLY = ("kubeharness", "harness", "kubesandbox", "sandbox", "functional")


def _python_files():
    for root, dirs, files in os.walk(UNIT):
        dirs[:] = sorted(name for name in dirs if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


def _checkout_uses(path):
    """``line: what`` for each import of the harness or sandbox package or of tests/functional, and each path built
    with a 'harness', 'sandbox' or 'functional' part (os.path.join and the like), in one file."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        else:
            continue
        for name in names:
            if set(name.replace("/", ".").split(".")) & set(CHECKOUT_ONLY):
                found.append("%d: %s" % (node.lineno, name))
    return found


def test_no_unit_file_needs_the_harness_the_sandbox_or_the_functional_tier():
    files = list(_python_files())
    assert len(files) > 20, files  # the walk found the unit tests
    uses = {os.path.relpath(path, UNIT): found for path in files for found in [_checkout_uses(path)] if found}
    assert uses == {}, "tests/unit must not use tests/harness, tests/sandbox or tests/functional: %s" % uses


def test_the_scan_sees_an_import_of_the_sandbox(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom kubesandbox import testing\nPATH = os.path.join('tests', 'functional', 'x.py')\n")
    assert _checkout_uses(str(sample)) == ["2: kubesandbox", "3: functional"]


def test_the_scan_sees_the_harness(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import sys\nimport kubeharness.pki\nfrom kubeharness.client import kubectl\n"
                      "sys.path.insert(0, 'tests/harness')\n")
    assert _checkout_uses(str(sample)) == ["2: kubeharness.pki", "3: kubeharness.client", "4: tests/harness"]


@pytest.mark.parametrize("start", ["subprocess", "fork", "multiprocessing", "system"])
def test_a_process_start_is_refused_and_fails_the_test(process_guard, start):
    """Every way of starting a process raises ProcessRefused and is recorded; the guard fails the test at teardown
    when the record is not empty (cleared here, where the attempt is the point)."""
    attempts = {
        "subprocess": lambda: subprocess.run(["true"], check=False),
        "fork": os.fork,
        "multiprocessing": lambda: multiprocessing.get_context("fork").Process(target=print).start(),
        "system": lambda: os.system("true"),
    }
    with pytest.raises(BaseException, match="a unit test started a process") as refused:
        attempts[start]()
    assert type(refused.value).__name__ == "ProcessRefused"  # a BaseException: no ``except Exception`` swallows it
    assert len(process_guard) == 1, process_guard
    process_guard.clear()
