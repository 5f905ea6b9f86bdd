"""Generic API behaviour: secrets' base64, RBAC escalation prevention, reviews, metadata-only reads,
list option validation, discovery."""

import time

from sandbox_helpers import CSR_BASE, Raw, api_client, csr_body, csr_pem, unique


def test_secret_data_base64(raw):
    ns_path = "/api/v1/namespaces/default/secrets"
    name = unique("s")
    status, obj = raw.call("POST", ns_path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                             "data": {"a": "YWJj\nZA=="}, "stringData": {"b": "plain"}})
    assert status == 201
    assert obj["data"] == {"a": "YWJjZA==", "b": "cGxhaW4="}
    assert "stringData" not in obj and obj["type"] == "Opaque"
    status, err = raw.call("POST", ns_path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": unique("s")},
                                             "data": {"a": "!!!!"}})
    assert status == 400
    assert err["message"] == ('Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input '
                              'byte 0')
    status, err = raw.call("POST", ns_path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": unique("s")},
                                             "data": {"bad key": "YQ=="}})
    assert status == 422 and err["details"]["causes"][0]["field"] == "data[bad key]"


def test_namespace_lifecycle(raw):
    status, err = raw.call("POST", "/api/v1/namespaces/nope-%s/configmaps" % unique("x"),
                           {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert status == 404 and err["details"]["kind"] == "namespaces"
    status, err = raw.call("DELETE", "/api/v1/namespaces/default")
    assert status == 403
    assert err["message"] == 'namespaces "default" is forbidden: this namespace may not be deleted'


def test_rbac_escalation_prevention(sandbox, c1, raw, tmp_path):
    user = unique("esc")
    kc = sandbox.user_kubeconfig(c1.name, str(tmp_path / "esc.kubeconfig"), user, ["devs"])
    manager = unique("rbac-manager")
    raw.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": manager},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "clusterrolebindings"],
                   "verbs": ["create"]}]})
    raw.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": manager},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": manager},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})
    ur = Raw(api_client(kc))
    role = unique("approver")
    status, err = ur.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["example.com/*"],
                   "verbs": ["approve"]}]})
    assert status == 403
    assert err["message"] == (
        'clusterroles.rbac.authorization.k8s.io "%s" is forbidden: user "%s" (groups=["devs" "system:authenticated"]) '
        'is attempting to grant RBAC permissions not currently held:\n{APIGroups:["certificates.k8s.io"], '
        'Resources:["signers"], ResourceNames:["example.com/*"], Verbs:["approve"]}' % (role, user))
    # binding to a role whose rules the user holds is fine
    status, _obj = ur.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:basic-user"},
        "subjects": [{"kind": "User", "name": "someone", "apiGroup": "rbac.authorization.k8s.io"}]})
    assert status == 201


def test_subject_access_review_reason(raw):
    status, obj = raw.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "x", "groups": ["system:authenticated"],
                 "resourceAttributes": {"group": "authorization.k8s.io", "resource": "selfsubjectaccessreviews",
                                        "verb": "create"}}})
    assert status == 201
    assert obj["status"] == {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding "system:basic-user" of '
                                                        'ClusterRole "system:basic-user" to Group '
                                                        '"system:authenticated"'}
    status, obj = raw.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "x", "resourceAttributes": {"group": "certificates.k8s.io", "resource": "signers",
                                                     "verb": "approve", "name": "example.com/x"}}})
    # Other tests of the session may have bound a missing ClusterRole; then, as on a real server, the reason
    # lists that lookup failure. Nothing may allow the request either way.
    assert obj["status"]["allowed"] is False
    assert set(obj["status"]) <= {"allowed", "reason"}
    assert "allowed by" not in obj["status"].get("reason", "")


def test_metadata_only_and_single_object_watch(raw, admin):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("m")))
    status, obj = raw.call("GET", CSR_BASE + "/" + name, headers={
        "Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"})
    assert status == 200 and obj["kind"] == "PartialObjectMetadata" and "spec" not in obj
    url = admin.configuration.host + CSR_BASE + "/" + name + "?watch=1&timeoutSeconds=1"
    data = admin.rest_client.pool_manager.request("GET", url).data
    lines = [line for line in data.splitlines() if line]
    assert len(lines) == 1 and name.encode() in lines[0]


def test_list_option_validation(raw):
    status, err = raw.call("GET", CSR_BASE, query={"resourceVersionMatch": "NotOlderThan"})
    assert status == 422
    assert err["message"] == ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                              'resourceVersionMatch is forbidden unless resourceVersion is provided')
    status, err = raw.call("GET", CSR_BASE, query={"fieldSelector": "metadata.name"})
    assert status == 400


def test_discovery(raw):
    status, groups = raw.call("GET", "/apis")
    assert status == 200
    names = [g["name"] for g in groups["groups"]]
    assert "certificates.k8s.io" in names and "rbac.authorization.k8s.io" in names
    status, resources = raw.call("GET", "/apis/certificates.k8s.io/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["certificatesigningrequests"]["shortNames"] == ["csr"]
    assert by_name["certificatesigningrequests"]["namespaced"] is False
    assert by_name["certificatesigningrequests/approval"]["verbs"] == ["get", "patch", "update"]
    status, _body = raw.call("GET", "/apis/example.com/v1")
    assert status == 404


def test_clusterrole_aggregation(raw):
    label = unique("agg")
    base = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    rule_a = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}
    rule_b = {"verbs": ["list"], "apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"]}
    for suffix, rule in (("a", rule_a), ("b", rule_b)):
        raw.call("POST", base, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                "metadata": {"name": "%s-%s" % (label, suffix), "labels": {"agg": label}},
                                "rules": [rule]})
    status, obj = raw.call("POST", base, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                          "metadata": {"name": label},
                                          "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": label}}]}})
    assert status == 201 and obj["rules"] is None
    import time  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        obj = raw.call("GET", base + "/" + label)[1]
        if obj["rules"]:
            break
        time.sleep(0.05)
    assert obj["rules"] == [rule_a, rule_b]


def test_network_delay_holds_api_requests_not_the_admin_endpoint(fresh_sandbox):
    """--network-delay: each API request is answered one delay later (a cluster farther than loopback)."""
    name = fresh_sandbox.names[0]
    raw = Raw(api_client(fresh_sandbox.cluster(name).kubeconfig))

    def timed_get():
        started = time.monotonic()
        status, _body = raw.call("GET", CSR_BASE)
        assert status == 200
        return time.monotonic() - started

    before = min(timed_get() for _attempt in range(3))
    started = time.monotonic()
    fresh_sandbox.set_options(name, network_delay="300ms")
    assert time.monotonic() - started < 0.25  # the admin endpoint is not held
    delayed = timed_get()
    assert delayed >= 0.3 and delayed - before >= 0.28, (before, delayed)
    fresh_sandbox.set_options(name, network_delay=0)
    assert timed_get() < 0.25
