"""Processes of the test harness, on this machine only: started detached, stopped by their PID (never by name), and
watched by a watchdog process that stops them once the process that started them is gone.

    port = free_port()                                  # a free TCP port of 127.0.0.1
    watchdog = start_watchdog(os.getpid(), [(pid, "etcd")])
    stop_pid(pid)                                       # SIGTERM, then SIGKILL
    ours(pid, "kubesandbox")                            # is ``pid`` still the process whose command line says so
"""

import os
import signal
import socket
import subprocess
import sys
import time

# Stops the processes named after the owner (argv[1]) once the owner is gone. argv[2:] are "pid:marker"
# pairs, newest first; each gets SIGTERM, then SIGKILL after 15 s (an apiserver whose etcd is gone does not
# finish on SIGTERM). A PID is signalled only while its command line holds its marker (PIDs get reused).
_WATCHDOG = """
import os, sys, time
owner = int(sys.argv[1])
children = [(int(item.split(":", 1)[0]), item.split(":", 1)[1].encode()) for item in sys.argv[2:]]
def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
def ours(pid, marker):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return alive(pid) and marker in handle.read()
    except OSError:
        return False
while alive(owner) and any(alive(pid) for pid, _ in children):
    time.sleep(1)
for pid, marker in children:
    for sig, wait in ((15, 15.0), (9, 5.0)):
        if not ours(pid, marker):
            break
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
"""


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_pid(pid, timeout=10.0):
    """Stop one process by PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _status = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return
        except ChildProcessError:
            # Not our child: poll for its disappearance instead (a zombie nobody reaps counts as gone).
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if _is_zombie(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def ours(pid, marker):
    """True when process ``pid`` exists and its command line holds ``marker`` (a PID on record may have been reused)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return marker.encode() in handle.read()
    except OSError:
        return False


def start_watchdog(owner_pid, watched):
    """A detached process that stops ``watched`` ([(pid, marker)], newest first) by PID once ``owner_pid`` is gone."""
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(owner_pid)] + ["%d:%s" % item for item in watched],  # pylint: disable=consider-using-with
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Processes:
    """Processes started in ``self.dir``, each logging to ``<label>.log``, and one watchdog over all of them."""

    def __init__(self, directory, owner_pid):
        self.dir = os.path.abspath(directory)
        self.owner_pid = os.getpid() if owner_pid is None else owner_pid
        self._procs = {}
        self._watchdog = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def _spawn(self, label, args):
        log = open(self.path(label + ".log"), "ab")  # pylint: disable=consider-using-with
        try:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                    start_new_session=True, cwd=self.dir)
        finally:
            log.close()
        self._procs[label] = proc
        return proc

    def log_tail(self, label, size=3000):
        try:
            with open(self.path(label + ".log"), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-size:]
        except OSError:
            return ""

    def _start_watchdog(self, extra=()):
        """A fresh watchdog for every process started so far (the previous one is stopped by PID)."""
        if not self.owner_pid:
            return
        self._stop_watchdog()
        watched = [(proc.pid, label) for label, proc in reversed(list(self._procs.items()))]
        self._watchdog = start_watchdog(self.owner_pid, watched + list(extra))

    def _stop_processes(self):
        """Stop every process started here by its PID, newest first; returns their labels."""
        labels = list(reversed(list(self._procs)))
        for label in labels:
            proc = self._procs.pop(label)
            if proc.poll() is None:
                stop_pid(proc.pid)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return labels

    def _stop_watchdog(self):
        if self._watchdog is not None:
            if self._watchdog.poll() is None:
                stop_pid(self._watchdog.pid)
            self._watchdog.wait(timeout=10)
            self._watchdog = None
