"""The threat model of docs/security.md, each line tried against a REAL cluster (v1.36, and v1.30 in the real pass).

The attacker, mallory, is a second identity with nothing but ``create`` on certificatesigningrequests (a client
certificate from the cluster CA and one RBAC binding). The collection runs as the cluster's admin, as an operator's
playbook does. Every case produced a working credential before the approval policy read the request as encoded and
looked at who asked; each test says what the policy refuses and checks the cluster afterwards with kubectl.

One file on purpose: it starts one pair of real clusters (tests/functional/real/conftest.py), and with
``--dist loadfile`` it runs on one worker.
"""

import base64
import json
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from kubeharness.client import kubectl, kubectl_json

from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr

CLUSTER = "cluster-1"
USER_UID = ObjectIdentifier("1.3.6.1.4.1.57683.2")  # the user UID attribute kube-apiserver >= 1.33 reads
CLIENT_USAGES = ("digital signature", "client auth")


@pytest.fixture(scope="module")
def lab(real_clusters, tmp_path_factory):
    """The admin's kubeconfig, mallory's (create on CSRs only) and alice's (the same right, for her own CSR)."""
    base = tmp_path_factory.mktemp("attacks")
    info = real_clusters.cluster(CLUSTER)
    admin = info.kubeconfig
    kubectl(admin, "create", "clusterrole", "attack-csr-creator", "--verb=create", "--resource=certificatesigningrequests.certificates.k8s.io")
    for user in ("mallory", "alice-self"):
        kubectl(admin, "create", "clusterrolebinding", "attack-%s" % user, "--clusterrole=attack-csr-creator", "--user=%s" % user)
    lab = {"admin": admin, "base": base, "info": info}
    for user in ("mallory", "alice-self"):
        lab[user] = real_clusters.user_kubeconfig(CLUSTER, str(base / ("%s.kubeconfig" % user)), user)
    # mallory may create CSRs and nothing else
    assert kubectl(lab["mallory"], "auth", "can-i", "create", "certificatesigningrequests").strip() == "yes"
    for verb in ("get", "list", "update", "delete"):
        proc = kubectl_can(lab["mallory"], verb, "certificatesigningrequests")
        assert proc == "no", verb
    return lab


def kubectl_can(kubeconfig, verb, resource):
    import subprocess  # pylint: disable=import-outside-toplevel
    from kubeharness.client import KUBECTL  # pylint: disable=import-outside-toplevel
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "auth", "can-i", verb, resource],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def request_pem(key, attributes, extensions=()):
    """A PKCS#10 request whose subject is exactly ``attributes`` [(oid, value)] in order, one RDN each."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in attributes]))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def create_as(kubeconfig, name, pem, signer=_csr.SIGNER_CLIENT, usages=CLIENT_USAGES, labels=None, annotations=None):
    """Create a CSR with kubectl under ``kubeconfig``'s identity."""
    obj = _csr.build_object(name, pem, signer, list(usages), labels=labels, annotations=annotations)
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(obj))


def csr(lab, name):
    return kubectl_json(lab["admin"], "get", "csr", name)


def condition_types(obj):
    return [c["type"] for c in (obj.get("status") or {}).get("conditions") or []]


def module_task(module, args, name, register=True):
    task = {"name": name, module: args, "ignore_errors": True}
    if register:
        task["register"] = name.replace(" ", "_")
    return task


def play(tasks):
    return yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])


def test_system_and_component_user_names_are_refused_before_anything_is_written(run_playbook, lab, tmp_path):
    """Line 1: an AWX survey user types a system identity as the new user's name."""
    common = {"kubeconfig": lab["admin"], "store_uri": str(tmp_path / "store.db"), "timeout": 60,
              "clusters": [{"name": CLUSTER}]}
    names = ["system:kube-controller-manager", "system:node:n1", "system:serviceaccount:kube-system:default", "system:anonymous",
             "kube-proxy"]
    tasks = [module_task("kubepki.certs.user_certificates", dict(common, users=[{"name": n, "groups": []}]), "refuse %d" % i)
             for i, n in enumerate(names)]
    # the explicit opt-in for one component certificate, named in the result
    tasks.append(module_task("kubepki.certs.user_certificates",
                             dict(common, users=[{"name": "system:kube-scheduler"}], policy={"allowed_system_users": ["system:kube-scheduler"]}),
                             "opt in"))
    result = run_playbook(play(tasks))
    for i, name in enumerate(names):
        refused = result.result("refuse %d" % i)
        assert refused.get("failed"), refused
        assert "allowed_system_users" in refused["msg"] and name in refused["msg"], refused["msg"]
    opted = result.result("opt in")
    assert not opted.get("failed"), opted
    assert "policy.allowed_system_users: system:kube-scheduler" in json.dumps(opted)
    items = kubectl_json(lab["admin"], "get", "csr", "-l", "app.kubernetes.io/managed-by=kubepki.certs")["items"]
    made = {item["metadata"]["annotations"][_csr.ANN_USER] for item in items}
    assert not made & set(names)
    assert "system:kube-scheduler" in made


EVIL = {
    "two-cns": ([(NameOID.COMMON_NAME, "byo-a"), (NameOID.COMMON_NAME, "system:kube-controller-manager")], (), "common names"),
    "ou": ([(NameOID.COMMON_NAME, "byo-b"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins")], (), "OU=admins"),
    "serial": ([(NameOID.COMMON_NAME, "byo-c"), (NameOID.SERIAL_NUMBER, "1")], (), "serialNumber=1"),
    "uid": ([(NameOID.COMMON_NAME, "byo-d"), (USER_UID, "0f1e")], (), "user UID attribute=0f1e"),
    "sans": ([(NameOID.COMMON_NAME, "byo-e")],
             ((x509.SubjectAlternativeName([x509.DNSName("kubernetes.default"), x509.IPAddress(__import__("ipaddress").ip_address("10.96.0.1"))]),
               False),), "kubernetes.default"),
    "ca": ([(NameOID.COMMON_NAME, "byo-f")], ((x509.BasicConstraints(ca=True, path_length=None), True),), "CA:TRUE"),
}


def test_what_the_signer_would_copy_is_refused_and_denied_with_the_reason(run_playbook, lab):
    """Line 2: a brought CSR (users[].csr, key_must_match_store false) says more than its first CN and O."""
    tasks, pems = [], {}
    for label, (attributes, extensions, _why) in EVIL.items():
        pems[label] = request_pem(ec.generate_private_key(ec.SECP256R1()), attributes, extensions)
        user = attributes[0][1]
        tasks.append(module_task("kubepki.certs.csr_create", {"kubeconfig": lab["admin"], "cluster": CLUSTER,
                                                              "users": [{"name": user, "csr": pems[label]}]}, "create %s" % label))
        tasks.append(module_task("kubepki.certs.csr_approve", {"kubeconfig": lab["admin"], "cluster": CLUSTER, "deny_on_violation": True,
                                                               "csrs": "{{ create_%s.csrs }}" % label.replace("-", "_"),
                                                               "policy": {"key_must_match_store": False}}, "approve %s" % label))
    for task in tasks:
        task["register"] = task["register"].replace("-", "_")
    result = run_playbook(play(tasks))
    for label, (_attributes, _extensions, why) in EVIL.items():
        created = result.result("create %s" % label)
        assert not created.get("failed"), created
        decided = result.result("approve %s" % label)
        assert not decided.get("failed"), decided
        entry = decided["csrs"][0]
        assert entry["decision"] == "denied", (label, entry)
        obj = csr(lab, entry["name"])
        assert condition_types(obj) == ["Denied"] and not obj["status"].get("certificate")
        message = obj["status"]["conditions"][0]["message"]
        assert why in message, (label, message)


def test_what_the_v1_36_signer_copies_into_a_certificate(lab):
    """Why the policy must read every RDN and extension: approved by hand, the real signer keeps the LAST common
    name, and copies OU, serialNumber and the subjectAltNames into a client certificate. It drops the user UID
    attribute (v1.36.2 copies only the attributes Go's pkix.Name knows) and writes CA:FALSE and client auth itself;
    the policy refuses those too, as another signer or release may copy them."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [(NameOID.COMMON_NAME, "first"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "admins"), (NameOID.SERIAL_NUMBER, "7"),
                  (USER_UID, "uid-7"), (NameOID.COMMON_NAME, "system:kube-controller-manager")]
    sans = x509.SubjectAlternativeName([x509.DNSName("kubernetes.default")])
    pem = request_pem(key, attributes, ((sans, False), (x509.BasicConstraints(ca=True, path_length=None), True),
                                        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)))
    create_as(lab["admin"], "attack-what-is-copied", pem)
    kubectl(lab["admin"], "certificate", "approve", "attack-what-is-copied")
    cert = None
    for _attempt in range(100):
        issued = csr(lab, "attack-what-is-copied").get("status", {}).get("certificate")
        if issued:
            cert = x509.load_pem_x509_certificate(base64.b64decode(issued))
            break
        time.sleep(0.1)
    assert cert is not None, "the signer did not issue"
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["system:kube-controller-manager"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == ["admins"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == ["7"]
    assert subject.get_attributes_for_oid(USER_UID) == []
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["kubernetes.default"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    # the same request made through the collection's approver is refused on each of those points
    from ansible_collections.kubepki.certs.plugins.module_utils._csr import policy as _policy  # pylint: disable=import-outside-toplevel
    reasons = " ".join(v["reason"] for v in _policy.evaluate(csr(lab, "attack-what-is-copied"), {}, {}, own_identity=lambda: "kubernetes-admin"))
    for fragment in ("2 common names", "OU=admins", "serialNumber=7", "user UID attribute=uid-7", "CA:TRUE", "kubernetes.default"):
        assert fragment in reasons, fragment


def test_a_predicted_name_or_a_replayed_request_is_not_adopted_nor_approved(run_playbook, lab):
    """Line 3: mallory takes the name the collection will use for alice's brought CSR, and replays alice's
    subject under another name with the collection's labels and mallory's own key."""
    alice_key = ec.generate_private_key(ec.SECP256R1())
    alice_pem = request_pem(alice_key, [(NameOID.ORGANIZATION_NAME, "dev"), (NameOID.COMMON_NAME, "alice")])
    public_sha = __import__("hashlib").sha256(alice_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    predicted = _csr.csr_name("alice", public_sha, "alice", ["dev"], _csr.SIGNER_CLIENT, list(CLIENT_USAGES))
    labels = _csr.labels_for("alice", "default", CLUSTER)
    annotations = _csr.annotations_for("alice", "default", CLUSTER)
    create_as(lab["mallory"], predicted, alice_pem, labels=labels, annotations=annotations)
    mallory_pem = request_pem(ec.generate_private_key(ec.SECP256R1()), [(NameOID.ORGANIZATION_NAME, "dev"), (NameOID.COMMON_NAME, "alice")])
    create_as(lab["mallory"], "kubepki-alice-replayed", mallory_pem, labels=labels, annotations=annotations)
    common = {"kubeconfig": lab["admin"], "cluster": CLUSTER}
    tasks = [
        module_task("kubepki.certs.csr_create", dict(common, users=[{"name": "alice", "csr": alice_pem}], usages=list(CLIENT_USAGES)), "byo create"),
        module_task("kubepki.certs.csr_approve", dict(common, names=[predicted], policy={"key_must_match_store": False}), "approve predicted"),
        module_task("kubepki.certs.csr_approve", dict(common, users=[{"name": "alice", "groups": ["dev"]}], deny_on_violation=True,
                                                      policy={"key_must_match_store": False}), "approve by labels"),
    ]
    result = run_playbook(play(tasks))
    created = result.result("byo create")
    assert created.get("failed") and "requested by mallory and not by the identity this task authenticates as (kubernetes-admin)" in created["msg"]
    predicted_answer = result.result("approve predicted")
    assert predicted_answer.get("failed") and "requester mallory is not the identity this task authenticates as" in predicted_answer["msg"]
    by_labels = result.result("approve by labels")
    assert not by_labels.get("failed"), by_labels
    assert sorted(e["decision"] for e in by_labels["csrs"]) == ["denied", "denied"]
    for name in (predicted, "kubepki-alice-replayed"):
        obj = csr(lab, name)
        assert condition_types(obj) == ["Denied"] and "requester mallory" in obj["status"]["conditions"][0]["message"]


def test_a_user_asking_for_their_own_certificate_only_when_the_policy_says_so(run_playbook, lab):
    """Line 3, the relaxation: a person who brings their own CSR and creates it as themselves."""
    pem = request_pem(ec.generate_private_key(ec.SECP256R1()), [(NameOID.COMMON_NAME, "alice-self")])
    create_as(lab["alice-self"], "attack-alice-self", pem)
    common = {"kubeconfig": lab["admin"], "cluster": CLUSTER, "names": ["attack-alice-self"]}
    tasks = [module_task("kubepki.certs.csr_approve", dict(common, policy={"key_must_match_store": False}), "by default"),
             module_task("kubepki.certs.csr_approve", dict(common, policy={"key_must_match_store": False, "requester_may_be_subject": True}),
                         "opted in")]
    result = run_playbook(play(tasks))
    assert result.result("by default").get("failed") and "requester alice-self" in result.result("by default")["msg"]
    opted = result.result("opted in")
    assert not opted.get("failed") and opted["csrs"][0]["decision"] == "approved", opted
    assert opted["csrs"][0]["relaxations"] == ["policy.requester_may_be_subject: alice-self"]
    assert "Approved" in condition_types(csr(lab, "attack-alice-self"))


def test_a_node_client_request_from_an_ordinary_user_is_refused(run_playbook, lab):
    """Line 4: mallory asks the kubelet client signer for system:node:n1; kube-controller-manager's own approver
    leaves it pending (its SubjectAccessReviews fail), and so must the collection."""
    pem = request_pem(ec.generate_private_key(ec.SECP256R1()), [(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                                                (NameOID.COMMON_NAME, "system:node:n1")])
    create_as(lab["mallory"], "attack-node-client", pem, signer=_csr.SIGNER_KUBELET_CLIENT)
    tasks = [module_task("kubepki.certs.csr_approve", {"kubeconfig": lab["admin"], "names": ["attack-node-client"], "deny_on_violation": True,
                                                       "policy": {"key_must_match_store": False}}, "approve node client")]
    result = run_playbook(play(tasks))
    answer = result.result("approve node client")
    assert not answer.get("failed") and answer["csrs"][0]["decision"] == "denied", answer
    obj = csr(lab, "attack-node-client")
    assert condition_types(obj) == ["Denied"] and not obj["status"].get("certificate")
    assert "mallory may not create certificatesigningrequests/nodeclient" in obj["status"]["conditions"][0]["message"]


def test_a_pasted_private_key_is_never_echoed(run_playbook, lab, tmp_path):
    """Line 5: a private key pasted where a CSR or a CA is expected, at -vvv."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    tasks = [module_task("kubepki.certs.csr_create", {"kubeconfig": lab["admin"], "cluster": CLUSTER, "users": [{"name": "pasted", "csr": pem}]},
                         "key as csr"),
             module_task("kubepki.certs.user_certificates", {"kubeconfig": lab["admin"], "store_uri": str(tmp_path / "store.db"),
                                                             "users": [{"name": "pasted"}], "dest_dir": str(tmp_path / "out"),
                                                             "clusters": [{"name": CLUSTER, "server": lab["info"].server, "ca_data": pem}]},
                         "key as ca_data")]
    result = run_playbook(play(tasks))
    assert result.result("key as csr").get("failed") and result.result("key as ca_data").get("failed")
    verbose = run_playbook(play(tasks), env={"ANSIBLE_VERBOSITY": "3"})
    output = result.stdout + result.stderr + verbose.stdout + verbose.stderr
    assert "key as ca_data" in verbose.stdout
    lines = [line for line in pem.splitlines() if "-----" not in line]
    assert len(lines) >= 2 and not [line for line in lines if line in output]
    assert base64.b64encode(pem.encode()).decode()[:40] not in output
    assert not (tmp_path / "out").exists() and not kubectl_json(lab["admin"], "get", "csr", "-l", "kubepki.io/user=pasted")["items"]


def test_a_flag_value_cannot_add_a_line(run_playbook, tmp_path):
    """Line 6: a survey answer with a newline, for a flag of the controller-manager's environment file."""
    env_file = tmp_path / "controller-manager"
    env_file.write_text('KUBE_CONTROLLER_MANAGER_ARGS="--cluster-signing-duration=720h"\n')
    before = env_file.read_bytes()
    task = module_task("kubepki.certs.k8s_component_flags", {"path": str(env_file), "format": "env_file", "variable": "KUBE_CONTROLLER_MANAGER_ARGS",
                                                             "flags": {"cluster-signing-duration": "1h\nKUBE_EXTRA=--authorization-mode=AlwaysAllow"}},
                       "inject")
    result = run_playbook(play([task]))
    refused = result.result("inject")
    assert refused.get("failed") and "cluster-signing-duration" in refused["msg"] and "control character" in refused["msg"]
    assert env_file.read_bytes() == before


def test_files_that_are_not_ours_are_left_alone(run_playbook, lab, tmp_path):
    """Line 7: a mistyped store_uri, a FIFO given as a kubeconfig, and what a killed run left beside a kubeconfig."""
    import os  # pylint: disable=import-outside-toplevel
    hosts_like = tmp_path / "hosts"
    hosts_like.write_text("127.0.0.1 localhost\n")
    os.chmod(hosts_like, 0o644)
    fifo = tmp_path / "kubeconfig.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    leftover = out / ".carol.kubeconfig.abcd1234.tmp"
    leftover.write_text("a private key of a killed run\n")
    common = {"users": [{"name": "carol", "groups": ["dev"]}], "clusters": [{"name": CLUSTER, "server": lab["info"].server, "ca_cert": lab["info"].ca_cert}]}
    tasks = [module_task("kubepki.certs.cert_inventory", {"store_uri": str(hosts_like)}, "inventory of a file that is not a store"),
             module_task("kubepki.certs.user_certificates", dict(common, kubeconfig=lab["admin"], store_uri=str(hosts_like)), "onboard into it"),
             module_task("kubepki.certs.user_certificates", dict(common, kubeconfig=str(fifo), store_uri=str(tmp_path / "s.db")), "fifo kubeconfig"),
             module_task("kubepki.certs.user_certificates", dict(common, kubeconfig=lab["admin"], store_uri=str(tmp_path / "s.db"),
                                                                 dest_dir=str(out), timeout=60), "render over a leftover")]
    started = time.monotonic()
    result = run_playbook(play(tasks), timeout=300)
    for name in ("inventory of a file that is not a store", "onboard into it"):
        refused = result.result(name)
        assert refused.get("failed") and str(hosts_like) in refused["msg"], refused
    assert oct(os.stat(hosts_like).st_mode & 0o777) == "0o644" and hosts_like.read_text() == "127.0.0.1 localhost\n"
    fifo_answer = result.result("fifo kubeconfig")
    assert fifo_answer.get("failed") and "not a regular file" in fifo_answer["msg"], fifo_answer
    rendered = result.result("render over a leftover")
    assert not rendered.get("failed"), rendered
    assert not leftover.exists() and (out / "carol.kubeconfig").exists()
    assert time.monotonic() - started < 120
