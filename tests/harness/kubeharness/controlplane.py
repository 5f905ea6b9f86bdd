"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver and kube-controller-manager.

The Kubernetes binaries come as ``.xz`` files with a ``SHA256SUMS`` list in a directory named by
``KUBEPKI_K8S_ASSETS`` (like envtest's KUBEBUILDER_ASSETS). They are decompressed once into
``.cache/k8s/<digest>/`` of the repository, checked against the list, and shared by every test process.
Any supported minor line works (v1.36 in ``../shared/k8s``, v1.30 in ``../shared/k8s-1.30``): ``binary_version()``
says which one a directory holds, ``plane.server_version`` which one a started cluster answers with, and
``trust_bundle_api()`` the flags that turn ClusterTrustBundles on for that version. A directory without
``fakecri.xz`` (the 1.30 one) takes it from ``KUBEPKI_FAKECRI_ASSETS`` or from a ``k8s`` directory beside it
(``fakecri_dir()``): it is the container runtime stand-in, not part of Kubernetes, and the same for every version.

    plane = ControlPlane(tmpdir + "/cluster-1", assets_dir()).start()
    plane.server, plane.kubeconfig, plane.ca_cert          # the same names as a sandbox ClusterInfo
    plane.server_version                                    # "v1.30.14": what /version answered
    plane.restart_apiserver(while_down=callback)            # the kube-apiserver stopped and started again
    plane.stop()

    kubelet = Kubelet(tmpdir + "/node-a", assets_dir(), ["--config", ..., "--hostname-override", "node-a"]).start()
    kubelet.stop()                                          # kubelet, then its fakecri, by PID

A cluster directory has the sandbox's layout (``admin.kubeconfig``, ``ca.crt``, ``server``), so a test can
take a real cluster where it takes a sandbox cluster. Every process is stopped by its PID; a watchdog stops
them when the process that started them is gone (``processes``).
"""

import hashlib
import json
import lzma
import os
import re
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

from cryptography.hazmat.primitives import serialization

from . import etcd as etcdlib, pki
from .client import kubeconfig as render_kubeconfig, client_kubeconfig, kubectl, kubectl_json
from .processes import Processes, free_port, stop_pid

ASSETS_ENV = "KUBEPKI_K8S_ASSETS"
FAKECRI_ENV = "KUBEPKI_FAKECRI_ASSETS"
REQUIRED = ("kube-apiserver", "kube-controller-manager")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CACHE = os.path.join(REPO, ".cache", "k8s")
CONTROLLERS = ("csrapproving", "csrsigning", "csrcleaner", "bootstrapsigner", "tokencleaner",
               "serviceaccount-token", "serviceaccount", "root-ca-cert-publisher")


def assets_dir():
    """The directory named by KUBEPKI_K8S_ASSETS, or None when the variable is unset or empty."""
    return os.environ.get(ASSETS_ENV) or None


def missing_assets(directory):
    """Why ``directory`` cannot give a control plane (a sentence), or None when it can."""
    if not directory:
        return "%s not set" % ASSETS_ENV
    sums = os.path.join(directory, "SHA256SUMS")
    if not os.path.isfile(sums):
        return "%s=%s has no SHA256SUMS" % (ASSETS_ENV, directory)
    absent = [name for name in REQUIRED if not os.path.isfile(os.path.join(directory, name + ".xz"))]
    if absent:
        return "%s=%s lacks %s" % (ASSETS_ENV, directory, ", ".join(name + ".xz" for name in absent))
    return None


def _lists(directory, name):
    """True when ``directory`` has ``name``.xz and lists ``name`` in its SHA256SUMS."""
    sums = os.path.join(directory, "SHA256SUMS")
    return (os.path.isfile(os.path.join(directory, name + ".xz")) and os.path.isfile(sums)
            and name in _read_sums(sums))


def fakecri_dir(directory):
    """The directory whose ``fakecri.xz`` (and SHA256SUMS) a kubelet of ``directory`` runs on, or None.

    ``directory`` itself when it has one; else the directory named by KUBEPKI_FAKECRI_ASSETS; else ``k8s`` beside
    ``directory`` (``../shared/k8s`` for ``../shared/k8s-1.30``, as that directory's README says)."""
    if not directory:
        return None
    directory = os.path.abspath(directory)
    candidates = [directory, os.environ.get(FAKECRI_ENV) or None, os.path.join(os.path.dirname(directory), "k8s")]
    for candidate in candidates:
        if candidate and _lists(candidate, "fakecri"):
            return os.path.abspath(candidate)
    return None


def missing_kubelet(directory):
    """Why ``directory`` cannot run a kubelet (a sentence), or None when it can."""
    reason = missing_assets(directory)
    if reason:
        return reason
    if not os.path.isfile(os.path.join(directory, "kubelet.xz")):
        return "%s=%s lacks kubelet.xz" % (ASSETS_ENV, directory)
    if fakecri_dir(directory) is None:
        return ("%s=%s lacks fakecri.xz, and neither %s nor %s holds one with its SHA256SUMS"
                % (ASSETS_ENV, directory, FAKECRI_ENV, os.path.join(os.path.dirname(os.path.abspath(directory)), "k8s")))
    return None


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text):
    """(major, minor, patch) of ``v1.30.14`` / ``Kubernetes v1.30.14``; None when there is no such number."""
    found = _VERSION.search(text or "")
    if not found:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)


def binary_version(directory):
    """The version the kube-apiserver of ``directory`` reports (``v1.30.14``), from ``kube-apiserver --version``."""
    exe = binaries(directory)["kube-apiserver"]
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    found = re.search(r"v\d+\.\d+\.\d+\S*", out)
    if not found:
        raise RuntimeError("%s --version printed no version: %r" % (exe, out))
    return found.group(0)


def trust_bundle_api(version):
    """How a kube-apiserver of ``version`` (``v1.30.14`` or a parse_version tuple) serves ClusterTrustBundles when
    asked to: (API version, feature gates, ``--runtime-config`` value). v1alpha1 from 1.27, v1beta1 from 1.33."""
    parsed = parse_version(version) if isinstance(version, str) else tuple(version)
    if parsed is None or parsed[:2] < (1, 27):
        raise ValueError("ClusterTrustBundles need Kubernetes 1.27 or later, not %s" % (version,))
    api = "v1alpha1" if parsed[:2] < (1, 33) else "v1beta1"
    return api, {"ClusterTrustBundle": True}, "certificates.k8s.io/%s/clustertrustbundles=true" % api


def _flag_groups(args):
    """``args`` (after the executable) as [(flag name, [tokens])]: a flag with the values that follow it."""
    groups = []
    for token in args:
        if token.startswith("--") or not groups:
            groups.append((token[2:].split("=", 1)[0] if token.startswith("--") else None, [token]))
        else:
            groups[-1][1].append(token)
    return groups


def override_flags(defaults, extra):
    """``defaults`` then ``extra``, without the defaults whose flag name ``extra`` gives again.

    kube-apiserver and kube-controller-manager read most repeated flags as "the last one wins" but some (e.g.
    ``--authorization-mode``, ``--controllers``) as lists that grow, so a flag taken from elsewhere (a role's
    manifest) must replace the default instead of following it.
    """
    given = {name for name, _tokens in _flag_groups(extra) if name}
    kept = [token for name, tokens in _flag_groups(defaults) if name not in given for token in tokens]
    return kept + list(extra)


def _read_sums(path):
    sums = {}
    with open(path, encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 2:
                sums[fields[1].lstrip("*")] = fields[0].lower()
    return sums


def binaries(directory, cache=CACHE, names=None):
    """{name: path} of the decompressed executables (all listed, or only ``names``), verified against SHA256SUMS.

    Each one is decompressed under a temporary name, checked and then renamed into place, so two processes
    doing this at once both end with a whole, verified file; an existing file was verified before its rename.
    """
    directory = os.path.abspath(directory)
    reason = missing_assets(directory)
    if reason:
        raise RuntimeError(reason)
    sums_path = os.path.join(directory, "SHA256SUMS")
    with open(sums_path, "rb") as handle:
        target = os.path.join(cache, hashlib.sha256(handle.read()).hexdigest()[:16])
    os.makedirs(target, exist_ok=True)
    found = {}
    for name, digest in sorted(_read_sums(sums_path).items()):
        packed = os.path.join(directory, name + ".xz")
        if (names is not None and name not in names) or not os.path.isfile(packed):
            continue
        path = os.path.join(target, name)
        if not os.path.exists(path):
            _unpack(packed, path, digest)
        found[name] = path
    return found


def _unpack(packed, path, digest):
    handle, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        sha = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, lzma.open(packed) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                sha.update(block)
                out.write(block)
        if sha.hexdigest() != digest:
            raise RuntimeError("%s does not match SHA256SUMS (sha256 %s, listed %s)" % (packed, sha.hexdigest(), digest))
        os.chmod(temp, 0o755)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _https_ok(url, context, timeout=2):
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class ControlPlane(Processes):  # pylint: disable=too-many-instance-attributes
    """One real cluster in ``directory``.

    ``etcd_url``: an etcd to keep the cluster's objects in (under ``etcd_prefix``); by default one of its own.
    ``apiserver_flags`` / ``controller_manager_flags``: extra arguments, after the defaults. ``feature_gates``:
    {gate: bool} for both. ``signing_cert`` / ``signing_key``: the CA the controller-manager signs with
    (default: the cluster CA; another CA is added to the apiserver's client CAs). A
    ``--cluster-signing-*`` flag among ``controller_manager_flags`` replaces the default signing flags, and any
    other flag there or in ``apiserver_flags`` replaces the default flag of the same name (``override_flags``).
    ``cluster_ca``: (certificate path, key path) of an existing CA to use as the cluster CA (serving, admin and
    controller-manager certificates are issued by it) instead of a new one.
    """

    def __init__(self, directory, assets, name=None, etcd_url=None, etcd_prefix="/registry", apiserver_flags=(),
                 controller_manager_flags=(), feature_gates=None, signing_cert=None, signing_key=None, owner_pid=None,
                 cluster_ca=None):
        super().__init__(directory, owner_pid)
        self.name = name or os.path.basename(self.dir)
        self.assets = assets
        self.etcd_url = etcd_url
        self.etcd_prefix = etcd_prefix
        self.apiserver_flags = list(apiserver_flags)
        self.controller_manager_flags = list(controller_manager_flags)
        self.feature_gates = dict(feature_gates or {})
        if bool(signing_cert) != bool(signing_key):
            raise ValueError("signing_cert and signing_key go together")
        self.signing_cert, self.signing_key = signing_cert, signing_key
        self.cluster_ca = tuple(cluster_ca) if cluster_ca else None
        self.server = None
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.admin_cert = os.path.join(self.dir, "admin.crt")
        self.admin_key = os.path.join(self.dir, "admin.key")
        self.controller_manager_port = None
        self.startup_seconds = None
        self.server_version = None
        self._etcd = None

    def __repr__(self):
        return "<ControlPlane %s %s %s>" % (self.name, self.server, self.server_version)

    # --- files --------------------------------------------------------------------------------------
    def _write_pki(self):
        if self.cluster_ca:
            with open(self.cluster_ca[0], "rb") as cert_file, open(self.cluster_ca[1], "rb") as key_file:
                ca = pki.KeyPair(pki.load_cert(cert_file.read()), pki.load_key(key_file.read()))
        else:
            ca = pki.make_ca("%s-ca" % self.name)
        serving = pki.issue(ca, "kube-apiserver", server=True,
                            hosts=["127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc", "10.96.0.1"])
        admin = pki.issue(ca, "kubernetes-admin", organizations=["system:masters"], client=True)
        manager = pki.issue(ca, "system:kube-controller-manager", client=True)
        service_accounts = pki.new_key()
        files = {"ca.crt": ca.cert, "ca.key": ca.key, "apiserver.crt": serving.cert, "apiserver.key": serving.key,
                 "admin.crt": admin.cert, "admin.key": admin.key, "sa.key": service_accounts}
        for name, item in files.items():
            secret = name.endswith(".key")
            pki.write_file(self.path(name), pki.key_pem(item) if secret else pki.cert_pem(item), secret=secret)
        pki.write_file(self.path("sa.pub"), service_accounts.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        client_cas = pki.cert_pem(ca.cert)
        if self.signing_cert:
            with open(self.signing_cert, "rb") as handle:
                other = handle.read()
            if other.strip() != client_cas.strip():
                client_cas = client_cas + other
        pki.write_file(self.path("client-ca.crt"), client_cas)
        pki.write_file(self.path("controller-manager.kubeconfig"), "", secret=True)
        return ca, admin, manager

    # --- processes ----------------------------------------------------------------------------------
    def _spawn(self, label, args):
        proc = super()._spawn(label, args)
        pki.write_file(self.path(label + ".pid"), "%d\n" % proc.pid)
        return proc

    def _wait(self, label, url, context, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._procs[label].poll() is not None:
                raise RuntimeError("%s of %s exited with %s:\n%s" % (label, self.name, self._procs[label].returncode, self.log_tail(label)))
            if _https_ok(url, context):
                return
            time.sleep(0.2)
        raise RuntimeError("%s of %s not ready within %ss (%s):\n%s" % (label, self.name, timeout, url, self.log_tail(label)))

    def _gates(self):
        if not self.feature_gates:
            return []
        return ["--feature-gates", ",".join("%s=%s" % (gate, str(bool(on)).lower()) for gate, on in sorted(self.feature_gates.items()))]

    def _apiserver_args(self, exe, port):
        return [exe] + override_flags([
            "--etcd-servers", self.etcd_url, "--etcd-prefix", self.etcd_prefix,
            "--secure-port", str(port), "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--tls-cert-file", self.path("apiserver.crt"), "--tls-private-key-file", self.path("apiserver.key"),
            "--client-ca-file", self.path("client-ca.crt"), "--cert-dir", self.path("apiserver-certs"),
            "--authorization-mode", "Node,RBAC", "--enable-bootstrap-token-auth",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", self.path("sa.pub"), "--service-account-signing-key-file", self.path("sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/12", "--endpoint-reconciler-type", "none", "--profiling=false",
        ] + self._gates(), self.apiserver_flags)

    def _controller_manager_args(self, exe, port):
        signing = []
        if not any(flag.startswith("--cluster-signing-") and flag != "--cluster-signing-duration"
                   and not flag.startswith("--cluster-signing-duration=") for flag in self.controller_manager_flags):
            signing = ["--cluster-signing-cert-file", self.signing_cert or self.ca_cert,
                       "--cluster-signing-key-file", self.signing_key or self.ca_key]
        return [exe] + override_flags([
            "--kubeconfig", self.path("controller-manager.kubeconfig"), "--use-service-account-credentials=true",
            "--root-ca-file", self.ca_cert, "--service-account-private-key-file", self.path("sa.key"),
            "--controllers", ",".join(CONTROLLERS), "--leader-elect=false", "--profiling=false",
            "--bind-address", "127.0.0.1", "--secure-port", str(port), "--cert-dir", self.path("controller-manager-certs"),
        ] + signing + self._gates(), self.controller_manager_flags)

    def start(self, timeout=90.0):
        """Bring the cluster up; returns self once the controller-manager is healthy. Stops what it started on failure."""
        began = time.monotonic()
        exes = binaries(self.assets)
        os.makedirs(self.dir, exist_ok=True)
        ca, admin, manager = self._write_pki()
        try:
            if not self.etcd_url:
                self._etcd = etcdlib.EtcdServer(self.path("etcd"), name=self.name)
                self._etcd.start()
                self.etcd_url = self._etcd.url
            port = free_port()
            self.server = "https://127.0.0.1:%d" % port
            ca_pem = pki.cert_pem(ca.cert)
            pki.write_file(self.kubeconfig, render_kubeconfig(self.name, self.server, ca_pem, pki.cert_pem(admin.cert),
                                                              pki.key_pem(admin.key)), secret=True)
            pki.write_file(self.path("controller-manager.kubeconfig"), render_kubeconfig(
                self.name, self.server, ca_pem, pki.cert_pem(manager.cert), pki.key_pem(manager.key),
                user="system:kube-controller-manager"), secret=True)
            self._spawn("kube-apiserver", self._apiserver_args(exes["kube-apiserver"], port))
            self._start_watchdog()
            admin_context = self._admin_context()
            self._wait("kube-apiserver", self.server + "/readyz", admin_context, timeout - (time.monotonic() - began))
            with urllib.request.urlopen(self.server + "/version", context=admin_context, timeout=10) as response:
                self.server_version = json.loads(response.read())["gitVersion"]
            self.controller_manager_port = free_port()
            self._spawn("kube-controller-manager", self._controller_manager_args(exes["kube-controller-manager"],
                                                                                 self.controller_manager_port))
            self._start_watchdog()
            # the controller-manager serves /healthz with a self-signed certificate of its own, to anyone
            unverified = ssl._create_unverified_context()  # pylint: disable=protected-access
            self._wait("kube-controller-manager", "https://127.0.0.1:%d/healthz" % self.controller_manager_port,
                       unverified, timeout - (time.monotonic() - began))
        except BaseException:
            self.stop()
            raise
        pki.write_file(self.path("server"), self.server + "\n")
        pki.write_file(self.path("version"), self.server_version + "\n")
        self.startup_seconds = time.monotonic() - began
        return self

    def _admin_context(self):
        context = ssl.create_default_context(cafile=self.ca_cert)
        context.load_cert_chain(self.admin_cert, self.admin_key)
        return context

    def restart_apiserver(self, while_down=None, timeout=90.0):
        """Stop the kube-apiserver by its PID (SIGTERM, then SIGKILL after 10 s: it may drain open watches for a long
        while), call ``while_down()`` when given, start it again on the same port with the same flags, and return
        once it is ready. The controller-manager and etcd run on; clients see connections refused meanwhile."""
        proc = self._procs["kube-apiserver"]
        if proc.poll() is None:
            stop_pid(proc.pid, timeout=10)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if while_down is not None:
            while_down()
        port = int(self.server.rsplit(":", 1)[1])
        self._spawn("kube-apiserver", self._apiserver_args(binaries(self.assets)["kube-apiserver"], port))
        self._start_watchdog()
        self._wait("kube-apiserver", self.server + "/readyz", self._admin_context(), timeout)
        return self

    def _start_watchdog(self, extra=()):
        etcd = [(self._etcd.pid, "etcd")] if self._etcd is not None and self._etcd.pid else []
        super()._start_watchdog(list(extra) + etcd)

    def stop(self):
        """Stop the controller-manager, the apiserver and the cluster's own etcd, by PID (newest first)."""
        for label in self._stop_processes():
            if os.path.exists(self.path(label + ".pid")):
                os.unlink(self.path(label + ".pid"))
        if self._etcd is not None:
            self._etcd.stop()
            self._etcd = None
        self._stop_watchdog()
        for name in ("server", "version"):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))


class Kubelet(Processes):
    """A real kubelet on a fake container runtime (``fakecri``, no pod ever runs): the kubelet from ``assets``,
    fakecri from ``fakecri_dir(assets)``.

    ``args`` are the kubelet's arguments; ``--container-runtime-endpoint`` / the KubeletConfiguration's
    ``containerRuntimeEndpoint`` must be ``self.cri_endpoint`` (``unix://<directory>/cri.sock``). Logs go to
    ``<directory>/kubelet.log`` and ``fakecri.log``. Runs as root; both processes are stopped by their PID, and a
    watchdog stops them when the process that started them is gone.
    """

    def __init__(self, directory, assets, args=(), owner_pid=None):
        super().__init__(directory, owner_pid)
        self.assets = assets
        self.args = list(args)
        self.socket = os.path.join(self.dir, "cri.sock")
        self.cri_endpoint = "unix://" + self.socket

    @property
    def pid(self):
        proc = self._procs.get("kubelet")
        return proc.pid if proc else None

    def running(self):
        proc = self._procs.get("kubelet")
        return proc is not None and proc.poll() is None

    def log_tail(self, label="kubelet", size=3000):
        return super().log_tail(label, size)

    def start(self, timeout=30.0):
        """Start fakecri, wait for its socket, then start the kubelet; returns self. Stops both on failure."""
        reason = missing_kubelet(self.assets)
        if reason:
            raise RuntimeError(reason)
        exes = dict(binaries(self.assets))
        exes["fakecri"] = binaries(fakecri_dir(self.assets), names=("fakecri",))["fakecri"]
        os.makedirs(self.dir, exist_ok=True)
        if len(self.socket) > 100:
            raise RuntimeError("%s is too long for a unix socket path" % self.socket)
        try:
            cri = self._spawn("fakecri", [exes["fakecri"], self.cri_endpoint])
            deadline = time.monotonic() + timeout
            while not os.path.exists(self.socket):
                if cri.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fakecri did not serve %s (exit %s):\n%s" % (self.socket, cri.poll(), self.log_tail("fakecri")))
                time.sleep(0.05)
            self._spawn("kubelet", [exes["kubelet"]] + self.args)
            self._start_watchdog()
        except BaseException:
            self.stop()
            raise
        return self

    def root_dir(self):
        """The ``--root-dir`` of ``args`` (absolute), or None when none is given."""
        for index, arg in enumerate(self.args):
            if arg.startswith("--root-dir="):
                return os.path.abspath(arg.split("=", 1)[1])
            if arg == "--root-dir" and index + 1 < len(self.args):
                return os.path.abspath(self.args[index + 1])
        return None

    def _unmount_root_dir(self):
        """A kubelet bind-mounts its root directory onto itself (to make it a shared mount) and leaves the mount
        behind when it stops; take off the mounts at or under the ``--root-dir`` it was given, deepest first."""
        root = self.root_dir()
        if not root or root == "/":
            return
        for _attempt in range(5):
            with open("/proc/self/mountinfo", encoding="utf-8") as handle:
                points = [line.split()[4].encode().decode("unicode_escape") for line in handle if len(line.split()) > 4]
            ours = sorted({p for p in points if p == root or p.startswith(root + "/")}, key=len, reverse=True)
            if not ours:
                return
            for point in ours:
                subprocess.run(["umount", point], capture_output=True, check=False, timeout=30)

    def stop(self):
        """Stop the kubelet, then fakecri, by PID; then the watchdog; then unmount what the kubelet mounted."""
        if self._stop_processes():
            self._unmount_root_dir()
        self._stop_watchdog()


class RealClusters:
    """Several ControlPlanes plus the etcd the collection writes its records to: the sandbox's test surface
    (``names``, ``cluster(name)``, ``etcd_url``, ``etcd_prefix()``, ``user_kubeconfig()``, ``stop()``).
    ``owned``: servers (an etcd for the records) that ``stop()`` stops too, after the clusters."""

    def __init__(self, planes, etcd_url):
        self.planes = {plane.name: plane for plane in planes}
        self.names = [plane.name for plane in planes]
        self.etcd_url = etcd_url
        self.owned = []

    def cluster(self, name):
        return self.planes[name]

    def etcd_prefix(self, prefix):
        """{key: value} (text) of every key under ``prefix`` in the records etcd."""
        return etcdlib.read_prefix(self.etcd_url, prefix)

    def user_kubeconfig(self, cluster, path, user, groups=()):
        """A kubeconfig at ``path`` for a client certificate (CN=user, O=groups) from the cluster CA."""
        return client_kubeconfig(self.cluster(cluster), path, user, groups)

    def clean_issued(self, cluster):
        """The issued CSRs deleted now, as the controller-manager's cleaner deletes them an hour after issue (it
        cannot be told to hurry): the names deleted."""
        kubeconfig = self.cluster(cluster).kubeconfig
        issued = [item["metadata"]["name"] for item in kubectl_json(kubeconfig, "get", "csr")["items"]
                  if item.get("status", {}).get("certificate")]
        if issued:
            kubectl(kubeconfig, "delete", "csr", *issued)
        return issued

    def stop(self):
        for plane in self.planes.values():
            plane.stop()
        for server in self.owned:
            server.stop()


def start_clusters(state_dir, assets, etcd_url, count=2, **options):
    """``count`` ControlPlanes named cluster-1... under ``state_dir``, started side by side; RealClusters."""
    binaries(assets)  # once, before the threads
    planes = [ControlPlane(os.path.join(state_dir, "cluster-%d" % i), assets, **options) for i in range(1, count + 1)]
    errors = []

    def run(plane):
        try:
            plane.start()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(plane,)) for plane in planes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for plane in planes:
            plane.stop()
        raise errors[0]
    return RealClusters(planes, etcd_url)
