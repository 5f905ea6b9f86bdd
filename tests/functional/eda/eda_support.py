"""Helpers of the Monitor tests (tests/functional/eda): the engine's environment, one ansible-rulebook process, waiting."""

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)


def engine_missing():
    """Why the rulebook engine cannot run here (a sentence), or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "java (17 or later) not found: the ansible-rulebook tests are skipped"
    if not os.path.exists(os.path.join(VENV_BIN, "ansible-rulebook")) and shutil.which("ansible-rulebook") is None:
        return "ansible-rulebook not installed (tests/requirements.txt): the ansible-rulebook tests are skipped"
    return None


def engine_executable():
    """The ansible-rulebook of this venv, else the one on PATH."""
    local = os.path.join(VENV_BIN, "ansible-rulebook")
    return local if os.path.exists(local) else shutil.which("ansible-rulebook")


def engine_env(tmp_dir, extra=None):
    """The environment of ansible-rulebook and of the playbooks it runs: this venv first on PATH (ansible-runner
    starts ansible-playbook from it), our collection on the collections path and on sys.path."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
    root = os.path.join(repo, ".cache", "collections")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = dict(os.environ)
    env.update({
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([root, site]),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp_dir, "ansible-local"),
        "ANSIBLE_HOME": os.path.join(tmp_dir, "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONPATH": os.pathsep.join([root, os.path.join(repo, "tests", "sandbox")]),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("KUBECONFIG", None)
    env.update(extra or {})
    return env


class Monitor:
    """One ansible-rulebook process running a rulebook of the collection; its output goes to ``log``."""

    def __init__(self, executable, directory, rulebook, variables, env=None):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "ansible-rulebook.log")
        inventory = os.path.join(self.dir, "inventory.yml")
        with open(inventory, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                            "ansible_python_interpreter": sys.executable}}}}, handle)
        self.vars = os.path.join(self.dir, "vars.yml")
        with open(self.vars, "w", encoding="utf-8") as handle:
            yaml.safe_dump(variables, handle)
        self.cmd = [executable, "--rulebook", rulebook, "--inventory", inventory, "--vars", self.vars, "--print-events", "-v"]
        self.env = engine_env(self.dir, env)
        self.proc = None
        self._watchdog = None

    def start(self):
        from kubeharness import processes  # pylint: disable=import-outside-toplevel
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                         env=self.env, cwd=self.dir, start_new_session=True)
        self._watchdog = processes.start_watchdog(os.getpid(), [(self.proc.pid, "ansible-rulebook")])
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self, size=20000):
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-size:]

    def stop(self):
        """SIGTERM to the engine's process group (it and the playbooks it runs), then SIGKILL; by PID."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.terminate()
            self._watchdog.wait(10)


def wait_until(what, probe, timeout=60.0, step=0.2):
    """The first true value of ``probe()`` within ``timeout`` seconds; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(step)


def csr_objects(kubeconfig):
    from kubeharness.client import kubectl_json  # pylint: disable=import-outside-toplevel
    return kubectl_json(kubeconfig, "get", "csr")["items"]


def conditions(obj):
    return [c["type"] for c in (obj.get("status") or {}).get("conditions") or []]


def dump(value):
    return json.dumps(value, indent=1, sort_keys=True)[:4000]


def printed_events(log):
    """The events ansible-rulebook printed (--print-events) in ``log``, as dicts."""
    found = []
    for block in log.split("Event:\n")[1:]:
        text = block.split("\n****", 1)[0]
        try:
            found.append(ast.literal_eval(text))
        except (ValueError, SyntaxError):
            continue  # cut off at the start or the end of the log
    return found


def free_port():
    """A TCP port free on 127.0.0.1 now: each real kubelet gets its own (port 0 means the default 10250, and two test
    files may each run a kubelet at the same time)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def explicit_auth(kubeconfig, directory):
    """The modules' auth options without a kubeconfig: ``{host, ca_cert, client_cert, client_key}``, the client
    certificate and key of ``kubeconfig``'s current user written to files in ``directory`` (0600)."""
    import base64  # pylint: disable=import-outside-toplevel
    with open(kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    auth = {"host": cluster["server"]}
    for option, field in (("ca_cert", "certificate-authority-data"), ("client_cert", "client-certificate-data"), ("client_key", "client-key-data")):
        path = os.path.join(str(directory), option + ".pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(base64.b64decode(cluster[field] if option == "ca_cert" else user[field]))
        auth[option] = path
    return auth
