"""apiserver_auth against kubeadm and systemd node trees."""

import csv
import os

import pytest

from roles_support import assert_ok, env_args, file_mode, manifest_command, snapshot, task_result

ROLE = "apiserver_auth"
APISERVER = "etc/kubernetes/manifests/kube-apiserver.yaml"
TOKENS = [
    {"token": "tok-kubelet-0001", "user": "kubelet-bootstrap", "uid": "10001", "groups": ["system:bootstrappers"]},
    {"token": "tok-ops-0002", "user": "ops, admin", "uid": 'u"2', "groups": ["dev", "ops"]},
    {"token": "tok-bob-0003", "user": "bob", "uid": "3"},
]


def read_token_file(path):
    """Rows as kube-apiserver's tokenfile reader sees them (CSV, variable field count)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_kubeadm_manifest_and_token_file(node_tree, run_role):
    root = node_tree("kubeadm")
    manifest = os.path.join(root, APISERVER)
    original = manifest_command(manifest)
    before = snapshot(root)
    variables = {"apiserver_auth_root": root, "apiserver_auth_tokens": TOKENS}

    check = assert_ok(run_role(ROLE, variables, check=True, diff=True))
    assert check.changed > 0
    assert snapshot(root) == before
    assert "tok-ops-0002" not in check.stdout + check.stderr

    first = assert_ok(run_role(ROLE, variables, diff=True))
    for row in TOKENS:
        assert row["token"] not in first.stdout + first.stderr
    # kubeadm already has client CA, bootstrap tokens and Node,RBAC: only the token file flag is added.
    assert manifest_command(manifest) == original + ["--token-auth-file=/etc/kubernetes/pki/known-tokens.csv"]
    assert file_mode(manifest) == 0o600

    token_file = os.path.join(root, "etc/kubernetes/pki/known-tokens.csv")
    assert file_mode(token_file) == 0o600
    with open(token_file, encoding="utf-8") as handle:
        assert handle.read() == (
            "tok-kubelet-0001,kubelet-bootstrap,10001,system:bootstrappers\n"
            'tok-ops-0002,"ops, admin","u""2","dev,ops"\n'
            "tok-bob-0003,bob,3\n")
    assert read_token_file(token_file) == [
        ["tok-kubelet-0001", "kubelet-bootstrap", "10001", "system:bootstrappers"],
        ["tok-ops-0002", "ops, admin", 'u"2', "dev,ops"],
        ["tok-bob-0003", "bob", "3"],
    ]

    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


def test_systemd_env_file_merges_authorization_modes(node_tree, run_role):
    root = node_tree("systemd")
    path = os.path.join(root, "etc/kubernetes/apiserver")
    variables = {
        "apiserver_auth_root": root,
        "apiserver_auth_install_style": "systemd",
        "apiserver_auth_restart": False,
        "apiserver_auth_client_ca_file": "/etc/kubernetes/ssl/clients-ca.pem",
        "apiserver_auth_client_ca_content": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    }
    # The ssl directory, the CA file and the environment file.
    assert assert_ok(run_role(ROLE, variables)).changed == 3
    assert env_args(path, "KUBE_API_ARGS") == [
        "--secure-port=6443",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--authorization-mode=Webhook,RBAC,Node",
        "--service-cluster-ip-range=10.254.0.0/16",
        "--client-ca-file=/etc/kubernetes/ssl/clients-ca.pem",
        "--enable-bootstrap-token-auth=true",
    ]
    assert env_args(path, "KUBE_API_ADDRESS") == ["--bind-address=0.0.0.0"]
    assert file_mode(path) == 0o644
    assert file_mode(os.path.join(root, "etc/kubernetes/ssl/clients-ca.pem")) == 0o644
    assert not os.path.exists(os.path.join(root, "etc/kubernetes/pki/known-tokens.csv"))
    assert assert_ok(run_role(ROLE, variables)).changed == 0
    assert assert_ok(run_role(ROLE, variables, check=True)).changed == 0


@pytest.mark.parametrize("rows, message", [
    ([{"token": "", "user": "a", "uid": "1"}], "apiserver_auth_tokens[0] (user a): the token is empty"),
    ([{"token": "t1", "user": "a", "uid": " "}], "apiserver_auth_tokens[0] (user a): uid is empty"),
    ([{"token": "t 1", "user": "a", "uid": "1"}], "the token holds whitespace, a comma or a quote"),
    ([{"token": "t1", "user": "a", "uid": "1"}, {"token": "t1", "user": "b", "uid": "2"}],
     "apiserver_auth_tokens[1] (user b): the token is used by an earlier row"),
    ([{"token": "t1", "user": "a", "uid": "1", "groups": ["x,y"]}], 'group "x,y" is empty or holds a comma'),
], ids=["empty-token", "empty-uid", "token-space", "duplicate", "group-comma"])
def test_refuses_bad_token_rows(node_tree, run_role, rows, message):
    root = node_tree("kubeadm")
    before = snapshot(root)
    result = run_role(ROLE, {"apiserver_auth_root": root, "apiserver_auth_tokens": rows})
    assert result.rc != 0
    assert message in task_result(result, "Check the static token rows")["msg"]
    assert snapshot(root) == before


def test_refuses_rows_with_fewer_than_three_columns(node_tree, run_role):
    root = node_tree("kubeadm")
    result = run_role(ROLE, {"apiserver_auth_root": root, "apiserver_auth_tokens": [{"token": "secret-t1", "user": "a"}]})
    assert result.rc != 0
    assert "missing required arguments: uid" in result.stdout
    assert "secret-t1" not in result.stdout + result.stderr
