#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_wait
short_description: Wait until CertificateSigningRequests are issued and return their certificates
version_added: 0.1.0
description:
  - Waits, with one watch for the whole batch, until every CSR of O(names) / O(csrs) has a certificate.
  - Lists the CSRs, then watches from that resourceVersion; a dropped stream is resumed from the last version seen,
    a 410 Expired relists. Polling is only a last resort, for a server that does not watch.
  - Fails at once when a CSR is Denied or Failed (naming the CSR and the condition's reason and message), or is deleted
    before it was issued; fails after O(timeout) seconds with the last state seen of each CSR.
  - Checks each certificate - its public key is the request's, CN and O are as requested, it is valid now and, when
    O(cluster_ca) is given, it is signed by that CA.
  - Returns, for each CSR, a certificate record with the fields C(cert_to_etcd) stores, plus lifetime facts.
  - A CSR that no longer exists (the controller-manager deletes issued CSRs after about an hour) is answered from the
    credential store or etcd when an entry of O(csrs) names its user and a record with that CSR name is known.
    Any other CSR that does not exist when the wait starts fails the task at once, naming it.
author:
  - kubepki.certs contributors (@kubepki)
options:
  names:
    description:
      - CSR names to wait for.
    type: list
    elements: str
    default: []
  csrs:
    description:
      - The RV(kubepki.certs.csr_create#module:csrs) list returned by M(kubepki.certs.csr_create); each entry needs
        C(csr_name) and C(name) (the user).
      - Entries without C(csr_name) (check mode) are skipped.
    type: list
    elements: dict
    default: []
  cluster:
    description:
      - Name of the cluster, copied into the certificate records.
    type: str
    required: true
  scope:
    description:
      - Scope copied into the certificate records when a CSR does not carry the C(kubepki.io/scope) annotation.
    type: str
    default: default
  timeout:
    description:
      - How long to wait, in seconds, for the whole batch.
    type: int
    default: 300
  cluster_ca:
    description:
      - The cluster signing CA, as a path or PEM text; each certificate must be signed by it.
    type: str
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.INFO_MODULE
  - kubepki.certs._attributes.ACTIONGROUP_K8S
notes:
  - In check mode nothing is waited for; CSRs that are already issued are returned.
"""

EXAMPLES = r"""
- name: Create, approve and wait
  kubepki.certs.csr_create:
    cluster: prod-1
    users: [{name: alice, groups: [developers]}]
  register: created

- name: Approve under the default policy
  kubepki.certs.csr_approve:
    cluster: prod-1
    csrs: "{{ created.csrs }}"

- name: Wait for the certificates
  kubepki.certs.csr_wait:
    cluster: prod-1
    csrs: "{{ created.csrs }}"
    cluster_ca: /etc/kubernetes/pki/ca.crt
    timeout: 120
  register: issued

- name: Show the expiry of each certificate
  ansible.builtin.debug:
    msg: "{{ issued.certificates | map(attribute='not_after') }}"
"""

RETURN = r"""
certificates:
  description:
    - One record per issued CSR, in the order asked for.
    - The fields of the certificate record (see docs/internals.md) plus the lifetime facts.
  returned: always
  type: list
  elements: dict
  contains:
    scope:
      description: Scope of the user.
      type: str
      sample: default
    cluster:
      description: The cluster name.
      type: str
      sample: prod-1
    user:
      description: The user.
      type: str
      sample: alice
    common_name:
      description: CN of the certificate.
      type: str
      sample: alice
    organizations:
      description: O values of the certificate.
      type: list
      elements: str
      sample: [developers]
    certificate:
      description: The certificate, PEM (leaf first).
      type: str
      sample: "-----BEGIN CERTIFICATE-----\n..."
    csr_name:
      description: The CSR name.
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    csr_uid:
      description: The CSR uid.
      type: str
      sample: 3b1f2c9a-8d6e-4c1b-9f0a-1e2d3c4b5a69
    signer_name:
      description: The signer.
      type: str
      sample: kubernetes.io/kube-apiserver-client
    serial:
      description: Serial number, lowercase hex.
      type: str
      sample: 5f3a
    not_before:
      description: Start of validity, RFC 3339.
      type: str
      sample: "2026-01-02T03:04:05Z"
    not_after:
      description: End of validity, RFC 3339.
      type: str
      sample: "2027-01-02T03:04:05Z"
    public_key_sha256:
      description: SHA-256 of the public key.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    requested_expiration_seconds:
      description: The lifetime asked for (C(spec.expirationSeconds) or the creator's annotation); null when none.
      type: int
      sample: 3600
    granted_lifetime_seconds:
      description: Lifetime of the certificate (not_after - not_before).
      type: int
      sample: 3900
    lifetime_clamped:
      description: Whether the signer ignored or clamped the requested lifetime.
      type: bool
      sample: false
    source:
      description: Where the record came from - V(cluster), or V(store) / V(etcd) when the CSR is gone.
      type: str
      sample: cluster
csrs:
  description: The last state seen of each CSR.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "kubepki-alice-5d0c3b0e5c7f1a2b3c4d", "state": "issued"}]
wait_stats:
  description: How the wait went (list calls, watches, resumes, relists, events, polls, seconds).
  returned: always
  type: dict
  sample: {"lists": 1, "watches": 1, "resumes": 0, "relists": 0, "events": 3, "polls": 0, "seconds": 0.4}
"""

import copy
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _csr, _deps
from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _kube, _store, _waiter
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, fail_from

CLAMP_TOLERANCE = 360


def argument_spec():
    spec = {
        "names": {"type": "list", "elements": "str", "default": []},
        "csrs": {"type": "list", "elements": "dict", "default": []},
        "cluster": {"type": "str", "required": True},
        "scope": {"type": "str", "default": "default"},
        "timeout": {"type": "int", "default": 300},
        "cluster_ca": {"type": "str"},
    }
    spec.update(copy.deepcopy(_kube.AUTH_ARG_SPEC))
    spec.update(copy.deepcopy(_store.STORE_ARG_SPEC))
    spec.update(copy.deepcopy(_etcd.ETCD_ARG_SPEC))
    return spec


def load_ca(value):
    if value is None:
        return None
    if "-----BEGIN" in value:
        text = value
    else:
        if not os.path.isfile(value):
            raise KubePkiError("cluster_ca: %s is neither PEM text nor an existing file" % value)
        with open(value, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    if not _crypto.split_pem_certificates(text):
        raise KubePkiError("cluster_ca holds no PEM CERTIFICATE")
    try:
        _crypto.load_certificate(text, what="cluster_ca")
    except KubePkiError as exc:
        raise KubePkiError("cluster_ca: %s" % exc.msg) from None
    return text


def targets(params):
    """[(csr_name, user or None)] in order, without duplicates."""
    found = {}
    for name in params["names"]:
        if not name:
            raise KubePkiError("names: an empty CSR name was given")
        found.setdefault(name, None)
    for index, entry in enumerate(params["csrs"]):
        if not isinstance(entry, dict):
            raise KubePkiError("csrs[%d] is not a dict (pass the csrs list returned by csr_create)" % index)
        name = entry.get("csr_name")
        if not name:
            continue
        found[name] = entry.get("name") or found.get(name)
    if not found and not params["csrs"]:
        raise KubePkiError("nothing to wait for: give names or csrs (entries with csr_name)")
    if params["timeout"] < 0:
        raise KubePkiError("timeout must not be negative, got %s" % params["timeout"])
    return list(found.items())


def requested_expiration(obj):
    spec = obj.get("spec") or {}
    if spec.get("expirationSeconds") is not None:
        return int(spec["expirationSeconds"])
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(_csr.ANN_EXPIRATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def record_for(obj, params, ca_pem, user_hint=None):
    """The checked certificate record of an issued CSR object."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    annotations = meta.get("annotations") or {}
    pem = _csr.certificate_pem(obj)
    what = "the certificate of CSR %s" % name
    facts = _crypto.certificate_facts(pem, what=what)
    request = _crypto.csr_facts(_csr.request_pem(obj), what="spec.request of CSR %s" % name)
    if facts["public_key_sha256"] != request["public_key_sha256"]:
        raise KubePkiError("%s does not carry the request's public key" % what, csr_name=name)
    if facts["common_name"] != request["common_name"] or facts["organizations"] != request["organizations"]:
        raise KubePkiError("%s has CN %r O %s, but the request asked for CN %r O %s" % (
            what, facts["common_name"], facts["organizations"], request["common_name"], request["organizations"]), csr_name=name)
    if ca_pem:
        _crypto.verify_issued_by(pem, ca_pem, what=what)
    if not _crypto.certificate_is_valid_now(facts):
        raise KubePkiError("%s is not valid now (valid %s to %s)" % (what, facts["not_before"], facts["not_after"]), csr_name=name)
    requested = requested_expiration(obj)
    granted = facts["lifetime_seconds"]
    clamped = requested is not None and abs(granted - requested) > CLAMP_TOLERANCE
    user = annotations.get(_csr.ANN_USER) or user_hint or facts["common_name"]
    leaf = _crypto.split_pem_certificates(pem)[0]
    return {
        "scope": annotations.get(_csr.ANN_SCOPE) or params["scope"],
        "cluster": params["cluster"],
        "user": user,
        "common_name": facts["common_name"],
        "organizations": facts["organizations"],
        "certificate": leaf,
        "csr_name": name,
        "csr_uid": meta.get("uid"),
        "signer_name": (obj.get("spec") or {}).get("signerName"),
        "serial": facts["serial"],
        "not_before": facts["not_before"],
        "not_after": facts["not_after"],
        "public_key_sha256": facts["public_key_sha256"],
        "requested_expiration_seconds": requested,
        "granted_lifetime_seconds": granted,
        "lifetime_clamped": clamped,
        "source": "cluster",
    }


def known_record(params, user, csr_name, store, etcd):
    """A stored record for a CSR that is gone, or None."""
    for source, backend in (("store", store), ("etcd", etcd)):
        if backend is None:
            continue
        record = backend.get_cert(params["scope"], params["cluster"], user) if source == "store" else backend.get_record(
            params["scope"], params["cluster"], user)
        if record and record.get("csr_name") == csr_name:
            out = {field: record.get(field) for field in _store.CERT_FIELDS}
            facts = _crypto.certificate_facts(out["certificate"], what="the %s certificate of %s" % (source, user))
            out.update(requested_expiration_seconds=None, granted_lifetime_seconds=facts["lifetime_seconds"], lifetime_clamped=False,
                       source=source)
            return out
    return None


def run(module):
    params = module.params
    wanted = targets(params)
    ca_pem = load_ca(params["cluster_ca"])
    if not wanted:
        # csr_create ran in check mode: nothing was created, nothing to wait for
        return {"changed": False, "certificates": [], "csrs": [], "wait_stats": {"seconds": 0}}
    client = _kube.get_client(module, deadline=max(min(params["timeout"], 60), 10))
    started = time.monotonic()
    # CSRs from csr_create carry our label: list and watch only those (a single name uses a field selector)
    ours = not params["names"]
    waiter = _waiter.Waiter(client, [name for name, _user in wanted],
                            label_selector="%s=%s" % (_csr.MANAGED_BY, _csr.MANAGED_BY_VALUE) if ours else None)
    waiter.prime()
    resolved = {}
    store = etcd = None
    try:
        for name, user in wanted:
            if name in waiter.objects:
                continue
            if user is not None:
                if store is None:
                    store = _store.open_store_from_params(params)
                if etcd is None:
                    etcd = _etcd.transport_from_params(params)
                record = known_record(params, user, name, store, etcd)
                if record is not None:
                    resolved[name] = record
                    waiter.drop(name)
                    continue
            raise KubePkiError("CertificateSigningRequest %s does not exist in cluster %s (%s)" % (name, params["cluster"], client.host),
                               csr_name=name)
    finally:
        for thing in (store, etcd):
            if thing is not None:
                thing.close()
    if module.check_mode:
        objects = waiter.objects
    else:
        objects = waiter.run(params["timeout"], listed=True)
    # fail at once on Denied / Failed / deleted
    for name, _user in wanted:
        if name in resolved:
            continue
        obj = objects.get(name)
        state = _waiter.state_of(obj)
        if state in ("denied", "failed"):
            condition = _csr.conditions(obj)["Denied" if state == "denied" else "Failed"]
            raise KubePkiError("CertificateSigningRequest %s was %s: %s: %s" % (
                name, state, condition.get("reason") or "(no reason)", condition.get("message") or "(no message)"),
                csr_name=name, state=state, reason=condition.get("reason"), condition_message=condition.get("message"))
        if state == _waiter.DELETED:
            raise KubePkiError("CertificateSigningRequest %s was deleted before it was issued" % name, csr_name=name)
    certificates, states = [], []
    for name, user in wanted:
        if name in resolved:
            certificates.append(resolved[name])
            states.append({"name": name, "state": "issued"})
            continue
        obj = objects.get(name)
        state = _waiter.state_of(obj)
        states.append({"name": name, "state": state})
        if state == "issued":
            record = record_for(obj, params, ca_pem, user)
            if record["lifetime_clamped"]:
                module.warn("CSR %s asked for %ss but was granted %ss: the signer ignored or clamped expirationSeconds" % (
                    name, record["requested_expiration_seconds"], record["granted_lifetime_seconds"]))
            certificates.append(record)
    stats = dict(waiter.stats, seconds=round(time.monotonic() - started, 3))
    return {"changed": False, "certificates": certificates, "csrs": states, "wait_stats": stats}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _deps.require(module, "kubernetes", "cryptography")
    try:
        result = run(module)
    except KubePkiError as error:
        fail_from(module, error)
        return
    module.exit_json(**result)


if __name__ == "__main__":
    main()
