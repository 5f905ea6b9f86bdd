"""module_defaults with each action group of meta/runtime.yml, through the real ansible-playbook.

One play per group sets every option of the group's shared option set under
``module_defaults: {group/kubepki.certs.<group>: ...}`` and calls every member of the group in check mode against
the sandbox (real etcd, a store file in the test's directory). No member may reject the options ("Unsupported
parameters"), and each known member must either succeed or fail for the reason named below, which shows that the
group's values reached it (the cluster it listed, the store it looked in).
"""

import os
import re

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = "group-probe"

# module -> (arguments besides the group options, None when it must succeed or a regex its failure must match)
CALLS = {
    "csr_create": ({"cluster": "cluster-1", "users": [{"name": PROBE, "groups": ["probes"]}]}, None),
    "csr_approve": ({"cluster": "cluster-1", "users": [{"name": PROBE, "groups": ["probes"]}]}, None),
    "csr_info": ({}, None),
    "csr_wait": ({"cluster": "cluster-1", "names": ["kubepki-group-probe-00000000000000000000"]},
                 r"CertificateSigningRequest kubepki-group-probe-0+ does not exist in cluster cluster-1 \(https://127\.0\.0\.1:\d+"),
    "user_certificates": ({"users": [{"name": PROBE, "groups": ["probes"]}], "clusters": "CLUSTERS"}, None),
    "cert_to_etcd": ({"certificates": [], "cluster": "cluster-1"}, None),
    "kubeconfig_render": ({"users": [{"name": PROBE}], "clusters": "CLUSTERS"},
                          r"no private key for user 'group-probe' .* in the credential store .*STORE"),
    "cert_inventory": ({}, None),
}


def _groups():
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["action_groups"]
    existing = {name[:-3] for name in os.listdir(os.path.join(REPO, "plugins", "modules")) if name.endswith(".py")}
    return {group: [m for m in members if isinstance(m, str) and m in existing] for group, members in groups.items()}


def _group_options(sandbox, store_uri, prefix):
    """Every option of each group's shared set, with values that work against the sandbox."""
    c1 = sandbox.cluster("cluster-1")
    with open(c1.kubeconfig, encoding="utf-8") as handle:
        context = yaml.safe_load(handle)["current-context"]
    return {
        "k8s": {"kubeconfig": c1.kubeconfig, "context": context, "host": c1.server, "api_key": None, "validate_certs": True,
                "ca_cert": c1.ca_cert, "client_cert": c1.admin_cert, "client_key": c1.admin_key, "proxy": None},
        "etcd": {"etcd_endpoints": [sandbox.etcd_url], "etcd_prefix": prefix, "etcd_ca_cert": None, "etcd_client_cert": None,
                 "etcd_client_key": None, "etcd_username": None, "etcd_password": None, "etcd_timeout": 5},
        "store": {"store_uri": store_uri, "store_passphrase": "group-defaults-passphrase"},
    }


def test_every_group_member_takes_the_group_options(sandbox, run_playbook, tmp_path):
    groups = _groups()
    store_uri = str(tmp_path / "store.db")
    options = _group_options(sandbox, store_uri, "/group-defaults-%d" % os.getpid())
    c1 = sandbox.cluster("cluster-1")
    clusters = [{"name": "cluster-1", "server": c1.server, "ca_cert": c1.ca_cert}]
    # what a member gets from the other groups it is in, given as plain task arguments
    plain = {"k8s": {"kubeconfig": c1.kubeconfig}, "store": {"store_uri": store_uri}, "etcd": {}}
    plays, expected = [], {}
    for group in sorted(groups):
        tasks = []
        for module in groups[group]:
            args, failure = CALLS.get(module, ({}, "ANY"))
            args = dict(args)
            if args.get("clusters") == "CLUSTERS":
                args["clusters"] = clusters
            for other, values in plain.items():
                if other != group and module in groups.get(other, []):
                    args.update(values)
            name = "%s with group/kubepki.certs.%s" % (module, group)
            tasks.append({"name": name, "kubepki.certs.%s" % module: args, "ignore_errors": True})
            expected[name] = failure
        plays.append({"name": "group %s" % group, "hosts": "localhost", "gather_facts": False,
                      "module_defaults": {"group/kubepki.certs.%s" % group: options[group]}, "tasks": tasks})
    assert len(expected) >= sum(len(members) for members in groups.values()) > 0

    result = run_playbook(plays, check=True)
    assert result.rc == 0, result
    problems = {}
    for name, failure in expected.items():
        outcome = result.result(name)
        msg = str(outcome.get("msg", ""))
        if "Unsupported parameters" in msg or "unsupported parameter" in msg.lower():
            problems[name] = msg
        elif failure is None and outcome.get("failed"):
            problems[name] = "failed: %s" % msg
        elif failure not in (None, "ANY"):
            pattern = failure.replace("STORE", re.escape(store_uri))
            if not outcome.get("failed") or not re.search(pattern, msg):
                problems[name] = "expected a failure matching %r, got %s" % (pattern, msg or outcome)
    assert problems == {}, problems


@pytest.mark.parametrize("group", ["k8s", "store"])
def test_group_defaults_are_what_the_members_use(group, sandbox, run_playbook, tmp_path):
    """Without the group defaults the same calls cannot reach the cluster or the store the test chose."""
    c1 = sandbox.cluster("cluster-1")
    store_uri = str(tmp_path / "elsewhere" / "store.db")
    if group == "k8s":
        defaults = {"kubeconfig": c1.kubeconfig}
        call = {"kubepki.certs.csr_info": {}}
    else:
        defaults = {"store_uri": store_uri}
        call = {"kubepki.certs.kubeconfig_render": {"users": [{"name": PROBE}], "clusters": [{"name": "cluster-1", "server": c1.server}]}}
    book = [{"hosts": "localhost", "gather_facts": False, "module_defaults": {"group/kubepki.certs.%s" % group: defaults},
             "tasks": [dict(call, name="with defaults", ignore_errors=True)]},
            {"hosts": "localhost", "gather_facts": False, "tasks": [dict(call, name="without defaults", ignore_errors=True)]}]
    result = run_playbook(book, check=True, env={"HOME": str(tmp_path / "home"), "KUBEPKI_STORE_URI": ""})
    with_defaults, without = result.result("with defaults"), result.result("without defaults")
    if group == "k8s":
        assert not with_defaults.get("failed"), with_defaults
        assert without.get("failed"), without
    else:
        assert store_uri in with_defaults.get("msg", ""), with_defaults
        assert store_uri not in without.get("msg", ""), without
