"""CSR create/update rules of the contract, driven by the kubernetes Python client and raw HTTP."""

import base64
import time

import pytest
from kubernetes import client

from sandbox_helpers import CSR_BASE, csr_body, csr_pem, unique


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met within %ss" % timeout)


def test_create_fills_identity_and_clears_status(raw):
    name = unique()
    body = csr_body(name, csr_pem("alice", ["dev"]))
    body["spec"].update({"username": "mallory", "uid": "x", "groups": ["system:masters"]})
    body["status"] = {"certificate": base64.b64encode(b"junk").decode(),
                      "conditions": [{"type": "Approved", "status": "True"}]}
    body["metadata"]["namespace"] = "default"
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 201
    assert obj["status"] == {}
    assert obj["spec"]["username"] == "kubernetes-admin"
    assert obj["spec"]["groups"] == ["system:masters", "system:authenticated"]
    assert "uid" not in obj["spec"]
    assert "namespace" not in obj["metadata"]
    assert obj["metadata"]["resourceVersion"].isdigit()


def test_create_invalid_collects_all_errors(raw):
    name = unique()
    body = csr_body(name, b"not a pem", signer="", usages=())
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 422
    assert obj["reason"] == "Invalid"
    assert obj["details"]["kind"] == "CertificateSigningRequest"
    assert obj["details"]["group"] == "certificates.k8s.io"
    fields = [(c["field"], c["reason"]) for c in obj["details"]["causes"]]
    assert fields == [("spec.request", "FieldValueInvalid"), ("spec.usages", "FieldValueRequired"),
                      ("spec.signerName", "FieldValueRequired")]
    assert obj["message"].startswith('CertificateSigningRequest.certificates.k8s.io "%s" is invalid: [' % name)
    assert "spec.usages: Required value: usages must be provided" in obj["message"]
    assert "spec.signerName: Required value: signerName must be provided" in obj["message"]
    assert "PEM block type must be CERTIFICATE REQUEST" in obj["message"]


@pytest.mark.parametrize("signer,fragment,reason", [
    ("kubernetes.io/legacy-unknown", "the legacy signerName is not allowed via this API version", "FieldValueInvalid"),
    ("example.com", "must be a fully qualified domain and path of the form 'example.com/signer-name'",
     "FieldValueInvalid"),
    ("example/foo", "should be a domain with at least two segments separated by dots", "FieldValueInvalid"),
    ("Example.com/foo", 'validating label "Example"', "FieldValueInvalid"),
])
def test_signer_name_rules(raw, signer, fragment, reason):
    status, obj = raw.call("POST", CSR_BASE, csr_body(unique(), csr_pem("a"), signer=signer))
    assert status == 422
    assert fragment in obj["message"]
    assert obj["details"]["causes"][0]["reason"] == reason
    assert obj["details"]["causes"][0]["field"] == "spec.signerName"


def test_usage_rules_and_expiration(raw):
    body = csr_body(unique(), csr_pem("a"), usages=["client auth", "bogus", "client auth"], expiration=599)
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 422
    causes = {(c["field"], c["reason"]) for c in obj["details"]["causes"]}
    assert ("spec.usages[1]", "FieldValueNotSupported") in causes
    assert ("spec.usages[2]", "FieldValueDuplicate") in causes
    assert ("spec.expirationSeconds", "FieldValueInvalid") in causes
    assert 'spec.usages[1]: Unsupported value: "bogus": supported values: "any", "cert sign"' in obj["message"]
    assert "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds " \
           "(10 minutes)" in obj["message"]


def test_name_rules(raw):
    status, obj = raw.call("POST", CSR_BASE, {"apiVersion": "certificates.k8s.io/v1",
                                              "kind": "CertificateSigningRequest", "metadata": {},
                                              "spec": csr_body("x", csr_pem("a"))["spec"]})
    assert status == 422
    assert obj["details"]["causes"][0] == {"reason": "FieldValueRequired", "message":
                                           "Required value: name or generateName is required",
                                           "field": "metadata.name"}
    # any name without / or % is valid for CSRs
    status, obj = raw.call("POST", CSR_BASE, csr_body("My CSR:%s" % unique(), csr_pem("a")))
    assert status == 201
    body = csr_body("x", csr_pem("a"))
    body["metadata"] = {"generateName": "csr-"}
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 201
    assert obj["metadata"]["name"].startswith("csr-") and len(obj["metadata"]["name"]) == 9
    assert set(obj["metadata"]["name"][4:]) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_bad_base64_is_400(raw):
    body = csr_body(unique(), csr_pem("a"))
    body["spec"]["request"] = "%%%notbase64"
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 400
    assert obj["reason"] == "BadRequest"
    assert "cannot be handled as a CertificateSigningRequest" in obj["message"]
    assert "illegal base64 data" in obj["message"]


def test_subject_restriction_admission(raw):
    name = unique()
    status, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("root", ["system:masters"])))
    assert status == 403
    assert obj["message"] == ('certificatesigningrequests.certificates.k8s.io "%s" is forbidden: use of '
                              'kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed'
                              % name)
    # other signers are not restricted
    status, _obj = raw.call("POST", CSR_BASE, csr_body(unique(), csr_pem("root", ["system:masters"]),
                                                       signer="example.com/custom"))
    assert status == 201


def test_already_exists_and_not_found(raw):
    name = unique()
    assert raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a")))[0] == 201
    status, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a")))
    assert status == 409 and obj["reason"] == "AlreadyExists"
    assert obj["message"] == 'certificatesigningrequests.certificates.k8s.io "%s" already exists' % name
    assert obj["details"] == {"name": name, "group": "certificates.k8s.io", "kind": "certificatesigningrequests"}
    status, obj = raw.call("GET", CSR_BASE + "/missing-" + name)
    assert status == 404
    assert obj == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": 'certificatesigningrequests.certificates.k8s.io "missing-%s" not found' % name,
                   "reason": "NotFound", "details": {"name": "missing-" + name, "group": "certificates.k8s.io",
                                                     "kind": "certificatesigningrequests"}, "code": 404}


def test_create_with_resource_version_is_500(raw):
    body = csr_body(unique(), csr_pem("a"))
    body["metadata"]["resourceVersion"] = "12"
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 500
    assert obj["message"] == "resourceVersion should not be set on objects to be created"
    assert "reason" not in obj


def test_dry_run_create_is_not_persisted(raw):
    name = unique()
    status, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a")), query={"dryRun": "All"})
    assert status == 201 and obj["metadata"]["name"] == name
    assert raw.call("GET", CSR_BASE + "/" + name)[0] == 404


def test_main_update_keeps_spec_and_status(raw):
    name = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a")))
    obj["spec"]["usages"] = ["server auth"]
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    obj["metadata"]["labels"] = {"team": "x"}
    status, new = raw.call("PUT", CSR_BASE + "/" + name, obj)
    assert status == 200
    assert new["spec"]["usages"] == ["client auth"]
    assert new["status"] == {}
    assert new["metadata"]["labels"] == {"team": "x"}
    # stale resourceVersion
    status, err = raw.call("PUT", CSR_BASE + "/" + name, obj)
    assert status == 409 and err["reason"] == "Conflict"
    assert err["message"] == ('Operation cannot be fulfilled on certificatesigningrequests.certificates.k8s.io '
                              '"%s": the object has been modified; please apply your changes to the latest version '
                              'and try again' % name)
    # name mismatch
    new["metadata"]["name"] = "other"
    status, err = raw.call("PUT", CSR_BASE + "/" + name, new)
    assert status == 400
    assert err["message"] == "the name of the object (other) does not match the name on the URL (%s)" % name


def test_put_missing_and_uid_precondition(raw):
    name = unique()
    body = csr_body(name, csr_pem("a"))
    assert raw.call("PUT", CSR_BASE + "/" + name, body)[0] == 404
    body["metadata"]["uid"] = "6b2b4b9e-0000-0000-0000-000000000000"
    status, err = raw.call("PUT", CSR_BASE + "/" + name, body)
    assert status == 409
    assert "Precondition failed: UID in precondition" in err["message"]


def test_approval_rules(raw):
    name = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/none"))
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "m"}],
                     "certificate": base64.b64encode(b"x").decode()}
    status, approved = raw.call("PUT", CSR_BASE + "/" + name + "/approval", obj)
    assert status == 200
    cond = approved["status"]["conditions"][0]
    assert cond["lastUpdateTime"] and cond["lastTransitionTime"]
    assert "certificate" not in approved["status"]
    # both Approved and Denied
    approved["status"]["conditions"].append({"type": "Denied", "status": "True"})
    status, err = raw.call("PUT", CSR_BASE + "/" + name + "/approval", approved)
    assert status == 422
    assert "Approved and Denied conditions are mutually exclusive" in err["message"]
    assert err["details"]["causes"][0]["field"].startswith("status.conditions")
    # removing Approved
    approved["status"]["conditions"] = []
    status, err = raw.call("PUT", CSR_BASE + "/" + name + "/approval", approved)
    assert status == 422
    assert err["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "status.conditions",
                                         "message": 'Forbidden: updates may not remove a condition of type '
                                                    '"Approved"'}]
    # status other than True
    _s, cur = raw.call("GET", CSR_BASE + "/" + name)
    cur["status"]["conditions"].append({"type": "Failed", "status": "False"})
    status, err = raw.call("PUT", CSR_BASE + "/" + name + "/approval", cur)
    assert status == 422
    assert 'status.conditions[1].status: Unsupported value: "False": supported values: "True"' in err["message"]


def test_status_rules(raw):
    name = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/none"))
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    status, err = raw.call("PUT", CSR_BASE + "/" + name + "/status", obj)
    assert status == 422
    assert 'updates may not add a condition of type "Approved"' in err["message"]
    # the API server does not require approval before a certificate is set
    cert_pem = open(raw.api.configuration.ssl_ca_cert, "rb").read()
    obj["status"] = {"certificate": base64.b64encode(cert_pem).decode()}
    status, issued = raw.call("PUT", CSR_BASE + "/" + name + "/status", obj)
    assert status == 200 and issued["status"]["certificate"]
    issued["status"]["certificate"] = base64.b64encode(cert_pem + cert_pem).decode()
    status, err = raw.call("PUT", CSR_BASE + "/" + name + "/status", issued)
    assert status == 422
    assert err["details"]["causes"][0]["message"] == "Forbidden: updates may not modify existing certificate content"


def test_status_certificate_pem_rules(raw):
    name = unique()
    _s, obj = raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/none"))
    for data, message in ((b"garbage", "must contain at least one CERTIFICATE PEM block"),
                          (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                           'only CERTIFICATE PEM blocks are allowed, found "PRIVATE KEY"')):
        obj["status"] = {"certificate": base64.b64encode(data).decode()}
        status, err = raw.call("PUT", CSR_BASE + "/" + name + "/status", obj)
        assert status == 422
        assert err["message"].endswith("status.certificate: Invalid value: \"<certificate data>\": " + message) or \
            message in err["message"]


def test_patch_types(raw, certs):
    name = unique()
    raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/none"))
    status, obj = raw.call("PATCH", CSR_BASE + "/" + name, {"metadata": {"labels": {"a": "1"}}},
                           content_type="application/merge-patch+json")
    assert status == 200 and obj["metadata"]["labels"] == {"a": "1"}
    status, obj = raw.call("PATCH", CSR_BASE + "/" + name, [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                           content_type="application/json-patch+json")
    assert status == 200 and obj["metadata"]["labels"] == {"a": "1", "b": "2"}
    patched = certs.patch_certificate_signing_request_approval(name, {"status": {"conditions": [
        {"type": "Denied", "status": "True", "reason": "No", "message": "denied by test"}]}})
    assert patched.status.conditions[0].type == "Denied"
    status, err = raw.call("PATCH", CSR_BASE + "/nope-" + name, {"metadata": {}},
                           content_type="application/merge-patch+json")
    assert status == 404


def test_delete_and_deletecollection(raw, certs):
    label = unique("set")
    names = [unique() for _i in range(3)]
    for name in names:
        raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), labels={"set": label}))
    status, body = raw.call("DELETE", CSR_BASE + "/" + names[0])
    assert status == 200
    assert body["status"] == "Success"
    assert body["details"]["name"] == names[0] and body["details"]["kind"] == "certificatesigningrequests"
    assert body["details"]["uid"]
    status, body = raw.call("DELETE", CSR_BASE, query={"labelSelector": "set=" + label})
    assert status == 200
    assert body["kind"] == "CertificateSigningRequestList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == sorted(names[1:])
    assert certs.list_certificate_signing_request(label_selector="set=" + label).items == []


def test_list_selectors_and_pagination(raw, certs):
    label = unique("page")
    names = sorted(unique() for _i in range(5))
    for name in names:
        raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/page", labels={"page": label}))
    found = certs.list_certificate_signing_request(label_selector="page=%s" % label,
                                                   field_selector="spec.signerName=example.com/page")
    assert [i.metadata.name for i in found.items] == names
    first = certs.list_certificate_signing_request(label_selector="page=%s" % label, limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = certs.list_certificate_signing_request(label_selector="page=%s" % label, limit=10,
                                                  _continue=first.metadata._continue)
    assert [i.metadata.name for i in first.items + rest.items] == names
    assert certs.list_certificate_signing_request(field_selector="metadata.name!=%s,metadata.name=%s"
                                                  % (names[0], names[1])).items[0].metadata.name == names[1]
    with pytest.raises(client.ApiException) as info:
        certs.list_certificate_signing_request(field_selector="spec.username=bob")
    assert info.value.status == 400
    assert "field label not supported: spec.username" in info.value.body


def test_unknown_fields_strict_and_warn(raw):
    body = csr_body(unique(), csr_pem("a"))
    body["spec"]["bogus"] = 1
    status, err = raw.call("POST", CSR_BASE, body, query={"fieldValidation": "Strict"})
    assert status == 400
    assert 'strict decoding error: unknown field "spec.bogus"' in err["message"]
    status, obj = raw.call("POST", CSR_BASE, body)
    assert status == 201 and "bogus" not in obj["spec"]


def test_pagination_is_a_consistent_snapshot(raw):
    label = unique("snap")
    names = sorted(unique() for _i in range(4))
    for name in names:
        raw.call("POST", CSR_BASE, csr_body(name, csr_pem("a"), signer="example.com/snap", labels={"snap": label}))
    _s, first = raw.call("GET", CSR_BASE, query={"labelSelector": "snap=" + label, "limit": "2"})
    rv = first["metadata"]["resourceVersion"]
    # changes after the first page do not show up in the following pages
    raw.call("DELETE", CSR_BASE + "/" + names[3])
    raw.call("POST", CSR_BASE, csr_body(names[2] + "z", csr_pem("a"), labels={"snap": label}))
    _s, rest = raw.call("GET", CSR_BASE, query={"labelSelector": "snap=" + label, "limit": "10",
                                                "continue": first["metadata"]["continue"]})
    assert rest["metadata"]["resourceVersion"] == rv
    assert [i["metadata"]["name"] for i in first["items"] + rest["items"]] == names
    # an exact list at the first page's version sees the same set
    _s, exact = raw.call("GET", CSR_BASE, query={"labelSelector": "snap=" + label, "resourceVersion": rv,
                                                 "resourceVersionMatch": "Exact"})
    assert [i["metadata"]["name"] for i in exact["items"]] == names
    status, err = raw.call("GET", CSR_BASE, query={"resourceVersion": str(int(rv) + 100000),
                                                   "resourceVersionMatch": "Exact"})
    assert status == 504 and err["reason"] == "Timeout"
