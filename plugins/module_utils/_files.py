# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Files the modules write (whole or not at all) and the user-supplied files they read (regular files only).

The writer owns the names of its temporary files: ``.<name>.<8 of [a-z0-9_]>.tmp`` beside the file written (the
shape tempfile.mkstemp gave them before, so leftovers of earlier versions match too). While a write is in flight
its temporary file is locked (flock), so ``remove_stale_temps`` removes only what a killed run left behind.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import re
import secrets
import stat

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_RANDOM = 8
_TEMP_ATTEMPTS = 100
_ANY_TEMP = re.compile(r"\A\..+\.[a-z0-9_]{%d}\.tmp\Z" % _TEMP_RANDOM)


def temp_name_pattern(path):
    """The compiled pattern of the names (not paths) of the temporary files write_atomically uses for ``path``."""
    return re.compile(r"\A\.%s\.[a-z0-9_]{%d}\.tmp\Z" % (re.escape(os.path.basename(path)), _TEMP_RANDOM))


def temp_names(directory):
    """The names in ``directory`` shaped like a temporary file of write_atomically, for any target: listed once for a
    batch of files in one directory (remove_stale_temps' ``listed``). None when the directory cannot be listed."""
    try:
        return [name for name in os.listdir(directory) if _ANY_TEMP.match(name)]
    except OSError:
        return None


def _temp_path(path):
    random = "".join(secrets.choice(_TEMP_CHARS) for _index in range(_TEMP_RANDOM))
    return os.path.join(os.path.dirname(path), ".%s.%s.tmp" % (os.path.basename(path), random))


def _same_file(path, fd):
    try:
        named, opened = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _open_temp(path):
    """``(fd, temp path)``: a new temporary file for ``path``, mode 0600, locked for as long as fd is open."""
    for _attempt in range(_TEMP_ATTEMPTS):
        temp = _temp_path(path)
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            _unlink_quietly(temp)
            raise
        if _same_file(temp, fd):
            return fd, temp
        # a clean-up took the file between its creation and the lock (it looked like a leftover): take another name
        os.close(fd)
    raise OSError(errno.EEXIST, "no free temporary file name")


def write_atomically(path, text, mode=0o600, what="dest", uid=None, gid=None):
    """Write ``text`` to ``path`` whole or not at all: through a temporary file in the same directory (mode 0600 while
    it is written), fsynced, given ``uid``/``gid`` (None: unchanged) and ``mode``, and only then renamed over ``path``.
    KubePkiError naming ``what`` (or owner/group) on failure. The temporary file is removed on any failure (an
    exception of any kind); one left by a killed run is removed by ``remove_stale_temps``."""
    path = os.path.abspath(path)
    try:
        fd, temp = _open_temp(path)
    except OSError as exc:
        raise KubePkiError("%s %s cannot be written: %s" % (what, path, exc.strerror or exc)) from None
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        if uid is not None or gid is not None:
            # just before the rename: a run killed after this leaves the one temporary file not ours to clean up
            try:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            except OSError as exc:
                raise KubePkiError("owner/group: %s cannot be given to %s:%s: %s" % (
                    path, "-" if uid is None else user_name(uid), "-" if gid is None else group_name(gid), exc.strerror or exc)) from None
        os.fchmod(fd, mode)  # after fchown, which may clear set-id bits
        os.replace(temp, path)
    except OSError as exc:
        _unlink_quietly(temp)
        raise KubePkiError("%s %s cannot be written: %s" % (what, path, exc.strerror or exc)) from None
    except BaseException:
        _unlink_quietly(temp)
        raise
    finally:
        os.close(fd)


def remove_stale_temps(path, check=False, listed=None):
    """Remove the temporary files of ``path`` that runs of write_atomically killed mid-write left behind: names of
    the writer's pattern for this very file, regular files owned by the effective user, not locked by a write in
    flight. Symbolic links, directories, other non-regular files and other users' files are left alone. Returns
    their paths, sorted; with ``check`` nothing is removed. Best effort: a file that cannot be removed is skipped.
    ``listed``: temp_names() of the directory, when the caller lists it once for many files."""
    directory = os.path.dirname(os.path.abspath(path))
    listed = temp_names(directory) if listed is None else listed
    if not listed:
        return []
    pattern = temp_name_pattern(path)
    names = sorted(name for name in listed if pattern.match(name))
    removed = []
    for name in names:
        temp = os.path.join(directory, name)
        try:
            seen = os.lstat(temp)
        except OSError:
            continue
        if not stat.S_ISREG(seen.st_mode) or seen.st_uid != os.geteuid():
            continue
        try:
            fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # locked: a write in flight
            if not _same_file(temp, fd):
                continue
            if not check:
                os.unlink(temp)
            removed.append(temp)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(KubePkiError):
    """A user-supplied path names a directory, FIFO, device or socket; ``kind`` says which ("a FIFO")."""

    def __init__(self, what, path, mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        super().__init__("%s: %s is %s, not a regular file" % (what, path, kind))
        self.kind = kind


def read_regular_file(path, what, limit=-1):
    """The bytes of the user-supplied file ``path`` (option ``what``), at most ``limit`` of them.

    Anything but a regular file (a FIFO, device, socket or directory, also behind a symbolic link) is refused with
    NotRegularFile, a KubePkiError naming ``what`` and ``path``, before it is opened: reading a FIFO would block until
    the task times out, and opening a device can have effects of its own. The file is then opened non-blocking and
    checked again, in case it was replaced in between. Other failures (missing, unreadable) raise OSError, for the
    caller to report in its own words.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(what, path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(what, path, mode)
        return handle.read(limit)


def user_name(uid):
    """The name of user ``uid`` (the id as text when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    """The name of group ``gid`` (the id as text when it has none)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
