"""_files: the atomic writer leaves no temporary file behind, and user-supplied files that are not regular files are
refused without hanging on them. A writer killed mid-write (a child process) and the next run removing what it left:
tests/functional/inprocess/test_files_killed_writer.py."""

import fcntl
import os
import socket
import stat

import pytest

from ansible_collections.kubepki.certs.plugins.module_utils import _files
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def leftovers(directory, keep=()):
    return sorted(name for name in os.listdir(directory) if name not in keep)


def raise_(error):
    """A stand-in for an os function that fails with ``error``."""

    def raiser(*args):
        raise error

    return raiser


# ---------------------------------------------------------------- the writer cleans up after itself

@pytest.mark.parametrize("failure", ["os-error", "interrupt", "unencodable"])
def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch, failure):
    dest = tmp_path / "alice.kubeconfig"
    text = KEY_TEXT
    if failure == "os-error":
        monkeypatch.setattr(os, "replace", raise_(OSError(28, "No space left on device")))
    elif failure == "interrupt":
        monkeypatch.setattr(os, "fsync", raise_(KeyboardInterrupt()))
    else:
        text = KEY_TEXT + "\udc80"  # a lone surrogate: cannot be encoded as UTF-8
    with pytest.raises((KubePkiError, KeyboardInterrupt, UnicodeError)):
        _files.write_atomically(str(dest), text)
    assert leftovers(tmp_path) == []


def test_only_the_writers_own_names_of_that_file_are_removed(tmp_path):
    dest = tmp_path / "alice.kubeconfig"
    ours = tmp_path / ".alice.kubeconfig.k3j_9z0q.tmp"
    ours.write_text(KEY_TEXT)
    not_ours = [".alice.kubeconfig.tmp", ".alice.kubeconfig.k3j_9z0q.tmp~", "alice.kubeconfig.k3j_9z0q.tmp",
                ".alice.kubeconfig.K3J_9Z0Q.tmp", ".alice.kubeconfig.k3j9z0q.tmp", ".alice.kubeconfig.k3j_9z0qq.tmp",
                ".alice.kubeconfig.bak.k3j_9z0q.tmp", ".xalice.kubeconfig.k3j_9z0q.tmp", ".alice.kubeconfigs.k3j_9z0q.tmp"]
    for name in not_ours:
        (tmp_path / name).write_text("someone else's\n")
    # names of the writer's pattern that are not regular files of ours: a symlink (and what it points at), a directory
    target = tmp_path / "target"
    target.write_text("the link's target\n")
    os.symlink(target, tmp_path / ".alice.kubeconfig.aaaaaaaa.tmp")
    (tmp_path / ".alice.kubeconfig.bbbbbbbb.tmp").mkdir()
    os.mkfifo(tmp_path / ".alice.kubeconfig.cccccccc.tmp")
    foreign = tmp_path / ".alice.kubeconfig.dddddddd.tmp"
    foreign.write_text("another user's\n")
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)
    else:  # pragma: no cover - without root the file is ours and goes
        not_ours.append(None)
    removed = _files.remove_stale_temps(str(dest))
    expected = [str(ours)] + ([] if os.geteuid() == 0 else [str(foreign)])
    assert removed == expected
    for name in not_ours:
        if name is not None:
            assert (tmp_path / name).read_text() == "someone else's\n"
    assert target.read_text() == "the link's target\n" and os.path.islink(tmp_path / ".alice.kubeconfig.aaaaaaaa.tmp")
    assert (tmp_path / ".alice.kubeconfig.bbbbbbbb.tmp").is_dir()
    assert stat.S_ISFIFO(os.lstat(tmp_path / ".alice.kubeconfig.cccccccc.tmp").st_mode)
    if os.geteuid() == 0:
        assert foreign.read_text() == "another user's\n"


def test_a_temporary_file_in_flight_is_left_to_its_writer(tmp_path, monkeypatch):
    """Two runs writing the same kubeconfig at once: the second one's clean-up must not pull the first one's file away."""
    dest = tmp_path / "alice.kubeconfig"
    seen = []
    real_fsync = os.fsync

    def fsync_and_clean_up(fd):
        seen.append(_files.remove_stale_temps(str(dest)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_and_clean_up)
    _files.write_atomically(str(dest), "config\n")
    assert seen == [[]] and dest.read_text() == "config\n" and leftovers(tmp_path) == ["alice.kubeconfig"]

    held = tmp_path / ".alice.kubeconfig.zzzzzzzz.tmp"
    held.write_text(KEY_TEXT)
    with open(held, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        assert _files.remove_stale_temps(str(dest)) == [] and held.exists()
    assert _files.remove_stale_temps(str(dest)) == [str(held)] and not held.exists()


def test_a_missing_directory_has_no_stale_files(tmp_path):
    assert _files.remove_stale_temps(str(tmp_path / "nope" / "alice.kubeconfig")) == []


# ---------------------------------------------------------------- reading user-supplied files

@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "socket", "link-to-fifo"])
def test_a_file_that_is_not_regular_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "ca.crt"
    expected = {"fifo": "a FIFO", "link-to-fifo": "a FIFO", "directory": "a directory", "device": "a character device",
                "socket": "a socket"}[kind]
    server = None
    if kind in ("fifo", "link-to-fifo"):
        os.mkfifo(tmp_path / "fifo")
        os.symlink(tmp_path / "fifo", path) if kind == "link-to-fifo" else os.rename(tmp_path / "fifo", path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = "/dev/null"
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    try:
        with pytest.raises(KubePkiError) as caught:
            _files.read_regular_file(str(path), "clusters[c1].ca_cert")
    finally:
        if server is not None:
            server.close()
    assert caught.value.msg == "clusters[c1].ca_cert: %s is %s, not a regular file" % (path, expected)
    assert caught.value.kind == expected


def test_regular_files_are_read(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"0123456789")
    os.symlink(path, tmp_path / "link")
    assert _files.read_regular_file(str(path), "tokenFile") == b"0123456789"
    assert _files.read_regular_file(str(tmp_path / "link"), "tokenFile", limit=4) == b"0123"
    with pytest.raises(FileNotFoundError):
        _files.read_regular_file(str(tmp_path / "missing"), "tokenFile")
