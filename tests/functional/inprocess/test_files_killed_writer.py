"""_files: a writer killed (SIGKILL, in a child forked from this process) while the key is in its temporary file
leaves that file behind, named so that the next run for the same destination finds and removes it, and only it. The
rest of _files, in one process, is unit-tested in tests/unit/plugins/module_utils/test_files.py."""

import os
import signal

from ansible_collections.kubepki.certs.plugins.module_utils import _files

from .unit_files import unit_module

UNIT = unit_module("plugins/module_utils/test_files.py")
KEY_TEXT, leftovers = UNIT.KEY_TEXT, UNIT.leftovers


def killed_while_writing(dest):
    """Run write_atomically(dest) in a child process that is SIGKILLed once the key is in the temporary file (a run
    killed by a timeout or the OOM killer): whatever it leaves behind is what the writer's own naming produces."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
            _files.write_atomically(str(dest), KEY_TEXT)
        finally:
            os._exit(3)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_a_killed_writer_leaves_a_temporary_file_that_the_next_run_removes(tmp_path):
    alice, bob = tmp_path / "alice.kubeconfig", tmp_path / "bob.kubeconfig"
    killed_while_writing(alice)
    killed_while_writing(bob)
    names = leftovers(tmp_path)
    assert len(names) == 2 and all(name.endswith(".tmp") for name in names), names
    [alice_temp] = [name for name in names if name.startswith(".alice.kubeconfig.")]
    assert "PRIVATE KEY" in (tmp_path / alice_temp).read_text()
    assert _files.temp_name_pattern(str(alice)).match(alice_temp)

    # check mode names it and removes nothing
    assert _files.remove_stale_temps(str(alice), check=True) == [str(tmp_path / alice_temp)]
    assert alice_temp in leftovers(tmp_path)

    assert _files.remove_stale_temps(str(alice)) == [str(tmp_path / alice_temp)]
    remaining = leftovers(tmp_path)
    assert len(remaining) == 1 and remaining[0].startswith(".bob.kubeconfig."), "bob's file is not alice's to remove"
    _files.write_atomically(str(alice), "config\n")
    assert leftovers(tmp_path) == sorted(["alice.kubeconfig", remaining[0]])
