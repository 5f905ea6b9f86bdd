"""The roles against a REAL control plane: the flags and files controller_manager_signing and apiserver_auth write
start a real kube-controller-manager and kube-apiserver v1.36, and a real kubelet bootstraps with the files
kubelet_bootstrap writes.

One module-scoped cluster on purpose (one worker with ``--dist loadfile``, one control plane): the two control
plane roles run first, on node paths inside a temporary directory (``*_root: /``, so every path a flag names is
the file the process reads), and the cluster is started from what they wrote:

- controller_manager_signing generates the signing CA and sets the signing files, ``--cluster-signing-duration``
  and ``--controllers``; the cluster uses that CA as its CA (as kubeadm does) and the controller-manager runs with
  those flags, not the harness's;
- apiserver_auth installs a client CA bundle (the cluster CA and a second "users" CA) and a static token file, and
  sets ``--client-ca-file``, ``--token-auth-file``, ``--enable-bootstrap-token-auth`` and ``--authorization-mode``.

Nothing is mocked: ansible-playbook runs the roles and csr_approve, /usr/bin/kubectl talks to the apiserver.
"""

import base64
import datetime
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubeharness import controlplane, pki
from kubeharness.client import KUBECTL, kubectl, kubectl_json
from playbook_files import playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(REPO, "tests", "functional", "roles", "fixtures", "kubeadm", "etc", "kubernetes", "manifests")
KCM_ROLE_FLAGS = ("cluster-signing-cert-file", "cluster-signing-key-file", "cluster-signing-duration", "controllers")
API_ROLE_FLAGS = ("client-ca-file", "token-auth-file", "enable-bootstrap-token-auth", "authorization-mode")
DURATION = datetime.timedelta(hours=720)
NODE = "node-a"
OPS = {"user": "real-ops", "uid": "1001", "groups": ["ops", "dev"]}


# --- running ansible-playbook from a module-scoped fixture (the run_playbook fixture is per test) -------------


def run_play(workdir, playbook, extra_vars=None):
    """(returncode, parsed ansible.posix.json output, stderr) of one ansible-playbook run on localhost."""
    os.makedirs(workdir, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    book = os.path.join(workdir, "play-%s.yml" % tag)
    with open(book, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(playbook))
    inventory = os.path.join(workdir, "inventory-%s.json" % tag)
    with open(inventory, "w", encoding="utf-8") as handle:
        json.dump({"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}, handle)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, book]
    if extra_vars:
        evars = os.path.join(workdir, "vars-%s.json" % tag)
        fd = os.open(evars, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(extra_vars, handle)
        cmd += ["-e", "@" + evars]
    collections = os.path.join(REPO, ".cache", "collections")
    site = next(path for path in sys.path if path.endswith("site-packages"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([collections, site]), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_HOME=os.path.join(workdir, "ansible-home"),
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "ansible-local"), ANSIBLE_REMOTE_TEMP=os.path.join(workdir, "ansible-remote"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_PIPELINING="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               PYTHONPATH=collections)
    env.pop("KUBECONFIG", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = {}
    return proc.returncode, data, proc.stdout[-4000:] + proc.stderr[-4000:]


def failures(data):
    return [(task["task"]["name"], result.get("msg")) for play in data.get("plays", []) for task in play.get("tasks", [])
            for result in task["hosts"].values() if result.get("failed")]


def apply_role(workdir, role, variables):
    rc, data, tail = run_play(workdir, playbook("roles/apply_role.yml"), dict(variables, role_under_test=role))
    assert rc == 0, "%s failed: %s\n%s" % (role, failures(data), tail)
    return data


APPROVE = playbook("modules/csr_approve.yml")


def approve(workdir, kubeconfig, names, policy):
    rc, data, tail = run_play(workdir, APPROVE, {"kc": kubeconfig, "csr_names": list(names), "csr_policy": policy})
    assert rc == 0, "csr_approve failed: %s\n%s" % (failures(data), tail)
    return data


# --- reading what a role wrote -----------------------------------------------------------------------------


def manifest_flags(path, names):
    """[``--name=value``] of the flags ``names`` in a static pod manifest, in the order written there."""
    with open(path, encoding="utf-8") as handle:
        command = yaml.safe_load(handle)["spec"]["containers"][0]["command"]
    return [arg for arg in command if arg.startswith("--") and arg[2:].split("=", 1)[0] in names]


def as_dict(flags):
    return dict(flag[2:].split("=", 1) for flag in flags)


def env_file_args(path, variable):
    """The arguments of ``variable`` in an environment file, as systemd's ``$VARIABLE`` in ExecStart gives them
    (the value unquoted, then split at whitespace)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(variable + "="):
                return " ".join(shlex.split(line[len(variable) + 1:])).split()
    raise AssertionError("%s not in %s" % (variable, path))


def running_args(plane, label):
    """The command line of the running ``label`` process of ``plane`` (its PID file, then /proc)."""
    with open(plane.path(label + ".pid"), encoding="ascii") as handle:
        pid = int(handle.read())
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().decode().split("\0")[:-1]


def load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def cn(cert):
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def wait_until(what, probe, timeout=60, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(step)


# --- the cluster, started from what the two control plane roles wrote -----------------------------------------


@pytest.fixture(scope="module")
def world(real_assets, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("real-roles"))
    cp = os.path.join(base, "cp")
    os.makedirs(os.path.join(cp, "manifests"))
    for name in ("kube-controller-manager.yaml", "kube-apiserver.yaml"):
        shutil.copy(os.path.join(FIXTURES, name), os.path.join(cp, "manifests", name))
    paths = {"kcm": os.path.join(cp, "manifests", "kube-controller-manager.yaml"),
             "apiserver": os.path.join(cp, "manifests", "kube-apiserver.yaml"),
             "ca_cert": os.path.join(cp, "pki", "ca.crt"), "ca_key": os.path.join(cp, "pki", "ca.key"),
             "client_ca": os.path.join(cp, "pki", "clients-ca.crt"), "tokens": os.path.join(cp, "pki", "known-tokens.csv")}

    apply_role(os.path.join(base, "ansible"), "controller_manager_signing", {
        "controller_manager_signing_root": "/",
        "controller_manager_signing_manifest": paths["kcm"],
        "controller_manager_signing_ca_source": "generate",
        "controller_manager_signing_ca_key_type": "ECC",
        "controller_manager_signing_ca_common_name": "kubepki-real-roles-ca",
        "controller_manager_signing_ca_cert_path": paths["ca_cert"],
        "controller_manager_signing_ca_key_path": paths["ca_key"],
        "controller_manager_signing_files": {"cert_file": paths["ca_cert"], "key_file": paths["ca_key"]},
        "controller_manager_signing_duration": "720h",
    })
    with open(paths["ca_cert"], encoding="ascii") as handle:
        ca_pem = handle.read()

    users_ca = pki.make_ca("kubepki-real-roles-users-ca")
    token = secrets.token_hex(20)
    apply_role(os.path.join(base, "ansible"), "apiserver_auth", {
        "apiserver_auth_root": "/",
        "apiserver_auth_manifest": paths["apiserver"],
        "apiserver_auth_client_ca_file": paths["client_ca"],
        "apiserver_auth_client_ca_content": ca_pem.strip() + "\n" + pki.cert_pem(users_ca.cert).decode(),
        "apiserver_auth_token_auth_file": paths["tokens"],
        "apiserver_auth_tokens": [dict(OPS, token=token)],
    })

    kcm_flags = manifest_flags(paths["kcm"], KCM_ROLE_FLAGS)
    api_flags = manifest_flags(paths["apiserver"], API_ROLE_FLAGS)
    plane = controlplane.ControlPlane(os.path.join(base, "cluster"), real_assets, name="roles",
                                      cluster_ca=(paths["ca_cert"], paths["ca_key"]),
                                      apiserver_flags=api_flags, controller_manager_flags=kcm_flags)
    plane.start()
    try:
        yield {"base": base, "plane": plane, "paths": paths, "ca_pem": ca_pem, "users_ca": users_ca, "token": token,
               "kcm_flags": kcm_flags, "api_flags": api_flags}
    finally:
        plane.stop()


def client_csr_manifest(name, common_name, organizations):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["digital signature", "client auth"]}})


def test_controller_manager_signs_with_the_ca_and_flags_the_role_wrote(world):
    paths, plane = world["paths"], world["plane"]
    assert as_dict(world["kcm_flags"]) == {
        "cluster-signing-cert-file": paths["ca_cert"], "cluster-signing-key-file": paths["ca_key"],
        "cluster-signing-duration": "720h", "controllers": "*,bootstrapsigner,tokencleaner,csrapproving,csrsigning,csrcleaner"}
    assert stat.S_IMODE(os.stat(paths["ca_key"]).st_mode) == 0o600
    ca = load_cert(paths["ca_cert"])
    assert cn(ca) == "kubepki-real-roles-ca" and ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the running controller-manager has the role's flags, each once, and no other signing or controllers flag
    args = running_args(plane, "kube-controller-manager")
    for flag in world["kcm_flags"]:
        assert args.count(flag) == 1, (flag, args)
    assert [a for a in args if a.startswith(("--cluster-signing", "--controllers"))] == world["kcm_flags"]

    name = "real-roles-signing-%s" % uuid.uuid4().hex[:8]
    key, manifest = client_csr_manifest(name, "real-signed", ["dev"])
    kubectl(plane.kubeconfig, "create", "-f", "-", stdin=manifest)
    approve(os.path.join(world["base"], "ansible"), plane.kubeconfig, [name],
            {"key_must_match_store": False, "allowed_signers": ["kubernetes.io/kube-apiserver-client"]})

    def issued_csr():
        found = kubectl_json(plane.kubeconfig, "get", "csr", name)
        return found if (found.get("status") or {}).get("certificate") else None

    obj = wait_until("the certificate of %s" % name, issued_csr, timeout=30)
    assert [c["type"] for c in obj["status"]["conditions"]] == ["Approved"]
    issued = x509.load_pem_x509_certificate(base64.b64decode(obj["status"]["certificate"]))
    issued.verify_directly_issued_by(ca)  # raises unless the role's CA signed it
    assert issued.issuer == ca.subject and cn(issued) == "real-signed"
    assert issued.public_key().public_numbers() == key.public_key().public_numbers()
    # no expirationSeconds asked: the lifetime is --cluster-signing-duration (720h, not the built-in 8760h)
    remaining = issued.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert abs(remaining - DURATION) < datetime.timedelta(minutes=10), remaining


def no_user_kubeconfig(world, path):
    """A kubeconfig with the cluster and no credentials: the test adds them on the kubectl command line."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "roles", "cluster": {"server": world["plane"].server, "certificate-authority": world["paths"]["ca_cert"]}}],
              "users": [{"name": "nobody", "user": {}}], "contexts": [{"name": "c", "context": {"cluster": "roles", "user": "nobody"}}]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return str(path)


def whoami(kubeconfig, *credentials):
    """((username, groups) or None, stderr) of ``kubectl auth whoami`` with the given credential flags."""
    proc = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig] + list(credentials) + ["auth", "whoami", "-o", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return None, proc.stderr
    info = json.loads(proc.stdout)["status"]["userInfo"]
    return (info["username"], info.get("groups")), proc.stderr


def user_cert_files(directory, ca, common_name, organizations):
    issued = pki.issue(ca, common_name, organizations=organizations, client=True)
    cert, key = os.path.join(directory, common_name + ".crt"), os.path.join(directory, common_name + ".key")
    pki.write_file(cert, pki.cert_pem(issued.cert))
    pki.write_file(key, pki.key_pem(issued.key), secret=True)
    return ["--client-certificate", cert, "--client-key", key]


def test_apiserver_authenticates_with_the_token_file_and_client_ca_the_role_wrote(world, tmp_path):
    paths, plane = world["paths"], world["plane"]
    assert as_dict(world["api_flags"]) == {"authorization-mode": "Node,RBAC", "client-ca-file": paths["client_ca"],
                                           "enable-bootstrap-token-auth": "true", "token-auth-file": paths["tokens"]}
    assert stat.S_IMODE(os.stat(paths["tokens"]).st_mode) == 0o600
    args = running_args(plane, "kube-apiserver")
    for flag in world["api_flags"]:
        assert args.count(flag) == 1, (flag, args)
    assert not [a for a in args if a.split("=", 1)[0] in ("--authorization-mode", "--client-ca-file", "--token-auth-file",
                                                          "--enable-bootstrap-token-auth") and a not in world["api_flags"]], args
    kubeconfig = no_user_kubeconfig(world, tmp_path / "anonymous.kubeconfig")

    # the static token: user and groups exactly as the role's row gave them
    assert whoami(kubeconfig, "--token", world["token"])[0] == (OPS["user"], OPS["groups"] + ["system:authenticated"])
    refused, stderr = whoami(kubeconfig, "--token", secrets.token_hex(20))
    assert refused is None and "Unauthorized" in stderr, stderr

    # a client certificate from the second CA of the role's bundle is accepted, one from an unknown CA is not
    as_carol = user_cert_files(str(tmp_path), world["users_ca"], "real-carol", ["auditors"])
    assert whoami(kubeconfig, *as_carol)[0] == ("real-carol", ["auditors", "system:authenticated"])
    stranger = user_cert_files(str(tmp_path), pki.make_ca("not-in-the-bundle"), "real-mallory", ["auditors"])
    refused, stderr = whoami(kubeconfig, *stranger)
    assert refused is None and "Unauthorized" in stderr, stderr

    # --enable-bootstrap-token-auth: a bootstrap token Secret authenticates as system:bootstrap:<id>
    token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
    kubectl(plane.kubeconfig, "-n", "kube-system", "create", "secret", "generic", "bootstrap-token-" + token_id,
            "--type", "bootstrap.kubernetes.io/token", "--from-literal", "token-id=" + token_id,
            "--from-literal", "token-secret=" + token_secret, "--from-literal", "usage-bootstrap-authentication=true")
    found = wait_until("the bootstrap token to authenticate",
                       lambda: whoami(kubeconfig, "--token", "%s.%s" % (token_id, token_secret))[0], timeout=30, step=0.5)
    assert found == ("system:bootstrap:" + token_id, ["system:bootstrappers", "system:authenticated"])


def csrs_of(kubeconfig, signer, username):
    return [item for item in kubectl_json(kubeconfig, "get", "csr")["items"]
            if item["spec"]["signerName"] == signer and item["spec"].get("username") == username]


def conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def node_ready(kubeconfig):
    found = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, "get", "node", NODE, "-o", "json"], capture_output=True, text=True,
                           timeout=60, check=False)
    if found.returncode != 0:
        return None
    node = json.loads(found.stdout)
    return node if conditions(node).get("Ready", {}).get("status") == "True" else None


def test_a_real_kubelet_bootstraps_with_the_files_the_role_wrote(world, real_assets, request):
    reason = controlplane.missing_kubelet(real_assets)
    if reason:
        pytest.skip("%s: real kubelet test skipped" % reason)
    if os.geteuid() != 0:
        pytest.skip("a real kubelet needs root")
    plane, ca = world["plane"], load_cert(world["paths"]["ca_cert"])
    node_dir = os.path.join(world["base"], "n")  # short: the fakecri socket path must stay under 108 bytes
    kubelet = controlplane.Kubelet(os.path.join(node_dir, "run"), real_assets)
    request.addfinalizer(kubelet.stop)
    files = {"env": os.path.join(node_dir, "etc", "default", "kubelet"), "config": os.path.join(node_dir, "var", "lib", "kubelet", "config.yaml"),
             "bootstrap": os.path.join(node_dir, "etc", "kubernetes", "bootstrap-kubelet.conf"),
             "kubeconfig": os.path.join(node_dir, "etc", "kubernetes", "kubelet.conf"), "pki": os.path.join(node_dir, "var", "lib", "kubelet", "pki")}
    # a bare node: the role makes the directories of every file it writes
    apply_role(os.path.join(world["base"], "ansible"), "kubelet_bootstrap", {
        "kubelet_bootstrap_root": "/",
        "kubelet_bootstrap_api_kubeconfig": plane.kubeconfig,
        "kubelet_bootstrap_server": plane.server,
        "kubelet_bootstrap_ca_cert_content": world["ca_pem"],
        "kubelet_bootstrap_token_name": "real-roles",
        "kubelet_bootstrap_token_ttl": 3600,
        "kubelet_bootstrap_server_tls_bootstrap": True,
        "kubelet_bootstrap_install_style": "systemd",
        "kubelet_bootstrap_restart": False,
        "kubelet_bootstrap_env_file": files["env"],
        "kubelet_bootstrap_config_file": files["config"],
        "kubelet_bootstrap_bootstrap_kubeconfig": files["bootstrap"],
        "kubelet_bootstrap_kubeconfig": files["kubeconfig"],
        "kubelet_bootstrap_cert_dir": files["pki"],
        # no --node-ip: a kubelet refuses a loopback node IP and then reports no address (and asks no serving certificate)
        "kubelet_bootstrap_extra_flags": {"hostname-override": NODE, "root-dir": os.path.join(node_dir, "var", "lib", "kubelet", "root")},
        # what a kubelet needs to run here (README of the assets): no swap or cgroup checks, loopback only, no ports
        "kubelet_bootstrap_config_settings": {
            "failSwapOn": False, "failCgroupV1": False, "cgroupDriver": "cgroupfs", "address": "127.0.0.1", "port": _free_port(),
            "readOnlyPort": 0, "healthzPort": 0, "authentication": {"x509": {"clientCAFile": world["paths"]["ca_cert"]}},
            "authorization": {"mode": "AlwaysAllow"}, "containerRuntimeEndpoint": kubelet.cri_endpoint},
    })
    assert stat.S_IMODE(os.stat(files["bootstrap"]).st_mode) == 0o600
    with open(files["bootstrap"], encoding="utf-8") as handle:
        token_id = yaml.safe_load(handle)["users"][0]["user"]["token"].split(".")[0]
    with open(files["config"], encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    assert config["rotateCertificates"] is True and config["serverTLSBootstrap"] is True
    flags = env_file_args(files["env"], "KUBELET_EXTRA_ARGS")
    assert {"--bootstrap-kubeconfig=" + files["bootstrap"], "--kubeconfig=" + files["kubeconfig"], "--cert-dir=" + files["pki"]} <= set(flags)

    # the kubelet runs with the role's KubeletConfiguration and the flags of its environment file, nothing else
    kubelet.args = ["--config", files["config"]] + flags
    kubelet.start()

    def alive(check):
        def probe():
            assert kubelet.running(), "the kubelet exited:\n%s" % kubelet.log_tail()
            return check()
        return probe

    # 1. bootstrap: the client CSR made with the role's token is auto-approved and issued by the role's CA
    client_pem = os.path.join(files["pki"], "kubelet-client-current.pem")
    wait_until("kubelet-client-current.pem", alive(lambda: os.path.exists(client_pem)))
    client = load_cert(client_pem)
    client.verify_directly_issued_by(ca)
    assert cn(client) == "system:node:" + NODE
    [client_csr] = csrs_of(plane.kubeconfig, "kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:" + token_id)
    assert conditions(client_csr)["Approved"]["reason"] == "AutoApproved"
    node = wait_until("node %s Ready" % NODE, alive(lambda: node_ready(plane.kubeconfig)))
    # the address the kubelet found for itself: the node network the operator's policy allows
    node_ips = [ipaddress.ip_address(a["address"]) for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert node_ips, node["status"]

    # 2. serving: the kubelet's own CSR waits for an approver; csr_approve's serving policy approves it
    serving = wait_until("the kubelet-serving CSR", alive(lambda: csrs_of(plane.kubeconfig, "kubernetes.io/kubelet-serving", "system:node:" + NODE)))
    assert len(serving) == 1 and not conditions(serving[0]), serving
    server_pem = os.path.join(files["pki"], "kubelet-server-current.pem")
    assert not os.path.exists(server_pem)
    approve(os.path.join(world["base"], "ansible"), plane.kubeconfig, [serving[0]["metadata"]["name"]],
            {"key_must_match_store": False, "allowed_dns_suffixes": ["nodes.kubepki.test"],
             "allowed_ip_cidrs": [str(ipaddress.ip_network(ip)) for ip in node_ips]})
    wait_until("kubelet-server-current.pem", alive(lambda: os.path.exists(server_pem)))
    server = load_cert(server_pem)
    server.verify_directly_issued_by(ca)
    assert cn(server) == "system:node:" + NODE
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NODE]
    assert sorted(sans.get_values_for_type(x509.IPAddress)) == sorted(node_ips)
    approved = kubectl_json(plane.kubeconfig, "get", "csr", serving[0]["metadata"]["name"])
    assert "Approved" in conditions(approved) and "Denied" not in conditions(approved)


def _free_port():
    """A TCP port free on 127.0.0.1 now, for this kubelet alone (port 0 means the default 10250, which another test
    file's kubelet may hold at the same time)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
