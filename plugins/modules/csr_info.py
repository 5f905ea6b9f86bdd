#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: csr_info
short_description: List CertificateSigningRequests with their state, requester, signer, age and certificate expiry
version_added: 0.1.0
description:
  - Read-only listing of the CSRs of a cluster, one list call (label and field selectors are passed to the API).
  - Each CSR is reported with its state (pending, approved, issued, denied, failed), the requester, the signer, the
    subject it asks for, its age and, when issued, the certificate's serial and expiry. Never returns key material.
author:
  - kubepki.certs contributors (@kubepki)
options:
  names:
    description:
      - Only these CSR names.
    type: list
    elements: str
    default: []
  users:
    description:
      - Only CSRs whose user (the C(kubepki.io/user) annotation, else the request's common name) is one of these.
    type: list
    elements: str
    default: []
  signer_name:
    description:
      - Only CSRs for this signer (passed to the API as field selector C(spec.signerName)).
    type: str
  label_selector:
    description:
      - A label selector, for example V(app.kubernetes.io/managed-by=kubepki.certs).
    type: str
  managed_only:
    description:
      - Only CSRs made by this collection (adds the C(app.kubernetes.io/managed-by=kubepki.certs) label selector).
    type: bool
    default: false
  state:
    description:
      - Only CSRs in these states.
    type: list
    elements: str
    choices: [pending, approved, issued, denied, failed]
    default: []
extends_documentation_fragment:
  - kubepki.certs._kube_auth
  - kubepki.certs._requirements
  - kubepki.certs._attributes
  - kubepki.certs._attributes.INFO_MODULE
  - kubepki.certs._attributes.ACTIONGROUP_K8S
"""

EXAMPLES = r"""
- name: Pending requests of this collection
  kubepki.certs.csr_info:
    managed_only: true
    state: [pending]
  register: pending

- name: Everything about two users' requests
  kubepki.certs.csr_info:
    users: [alice, bob]
"""

RETURN = r"""
csrs:
  description: The matching CSRs, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The CSR name.
      type: str
      sample: kubepki-alice-5d0c3b0e5c7f1a2b3c4d
    uid:
      description: The CSR uid.
      type: str
      sample: 3b1f2c9a-8d6e-4c1b-9f0a-1e2d3c4b5a69
    state:
      description: pending, approved, issued, denied or failed.
      type: str
      sample: issued
    requester:
      description: The user who created the CSR (C(spec.username)).
      type: str
      sample: kubernetes-admin
    signer_name:
      description: The signer.
      type: str
      sample: kubernetes.io/kube-apiserver-client
    usages:
      description: The usages asked for.
      type: list
      elements: str
      sample: [digital signature, client auth]
    user:
      description: The user the CSR is for (annotation or common name).
      type: str
      sample: alice
    common_name:
      description: The common name of the request.
      type: str
      sample: alice
    organizations:
      description: The organizations (groups) of the request.
      type: list
      elements: str
      sample: [developers]
    expiration_seconds:
      description: C(spec.expirationSeconds), when set.
      type: int
      sample: 3600
    created:
      description: Creation time, RFC 3339.
      type: str
      sample: "2026-01-02T03:04:05Z"
    age_seconds:
      description: Seconds since creation.
      type: int
      sample: 42
    conditions:
      description: The conditions (type, reason, message, lastUpdateTime).
      type: list
      elements: dict
      sample: [{"type": "Approved", "reason": "KubepkiApproved", "message": "ok", "lastUpdateTime": "2026-01-02T03:04:05Z"}]
    certificate_serial:
      description: Serial (hex) of the issued certificate; null when not issued.
      type: str
      sample: 5f3a
    certificate_not_after:
      description: Expiry of the issued certificate; null when not issued.
      type: str
      sample: "2027-01-02T03:04:05Z"
    labels:
      description: The CSR's labels.
      type: dict
      sample: {"app.kubernetes.io/managed-by": "kubepki.certs"}
"""


from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main, options


def argument_spec():
    return options({
        "names": {"type": "list", "elements": "str", "default": []},
        "users": {"type": "list", "elements": "str", "default": []},
        "signer_name": {"type": "str"},
        "label_selector": {"type": "str"},
        "managed_only": {"type": "bool", "default": False},
        "state": {"type": "list", "elements": "str", "choices": list(_csr.STATES), "default": []},
    }, _kube.AUTH_ARG_SPEC)


def summarize(obj, now):
    entry = _csr.describe(obj)
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    entry["labels"] = meta.get("labels") or {}
    try:
        facts = _crypto.csr_facts(_csr.request_pem(obj), what="spec.request of CSR %s" % meta.get("name"))
    except KubePkiError:
        facts = {"common_name": None, "organizations": []}
    entry["common_name"] = facts["common_name"]
    entry["organizations"] = facts["organizations"]
    entry["user"] = annotations.get(_csr.ANN_USER) or facts["common_name"]
    entry["age_seconds"] = None
    if entry["created"]:
        try:
            entry["age_seconds"] = int((now - _crypto.parse_rfc3339(entry["created"])).total_seconds())
        except KubePkiError:
            pass
    entry["certificate_serial"] = entry["certificate_not_after"] = None
    try:
        pem = _csr.certificate_pem(obj)
        if pem:
            cert = _crypto.certificate_facts(pem, what="the certificate of CSR %s" % meta.get("name"))
            entry["certificate_serial"] = cert["serial"]
            entry["certificate_not_after"] = cert["not_after"]
    except KubePkiError:
        pass
    return entry


def run(ctx, params):
    selectors = []
    if params["managed_only"]:
        selectors.append("%s=%s" % (_csr.MANAGED_BY, _csr.MANAGED_BY_VALUE))
    if params["label_selector"]:
        selectors.append(params["label_selector"])
    field = None
    if params["signer_name"]:
        field = "spec.signerName=%s" % params["signer_name"]
    if len(params["names"]) == 1:
        field = ",".join(filter(None, [field, "metadata.name=%s" % params["names"][0]]))
    client = _kube.get_client(params, ctx.secrets)
    items, _version = _csr.list_objects(client, label_selector=",".join(selectors) or None, field_selector=field)
    now = _crypto.utc_now()
    found = []
    for obj in items:
        name = (obj.get("metadata") or {}).get("name")
        if params["names"] and name not in params["names"]:
            continue
        entry = summarize(obj, now)
        if params["users"] and entry["user"] not in params["users"]:
            continue
        if params["state"] and entry["state"] not in params["state"]:
            continue
        found.append(entry)
    found.sort(key=lambda e: (e["created"] or "", e["name"] or ""))
    return {"changed": False, "csrs": found}


def main():
    module_main(argument_spec(), run, ("kubernetes", "cryptography"))


if __name__ == "__main__":
    main()
