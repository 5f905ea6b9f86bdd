#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cert_inventory
short_description: Report every client key and certificate of the credential store and etcd, with its expiry and state
version_added: 0.1.0
description:
  - Reads the credential store (keys and certificate records) and, when etcd options are given, the certificate records
    under C(<etcd_prefix>/certs/) in etcd, and reports one entry per scope, user and cluster.
  - Each entry gives the certificate's serial, validity, days left, the state (see RV(inventory[].state)), the type and
    SHA-256 fingerprint of the stored key's public key, and where the record was found (store, etcd or both, and whether the
    two hold different certificates).
  - When the store and etcd hold different certificates, the entry reports the one that is valid longer and says which source
    holds it.
  - A key that no certificate uses is listed with the state V(missing_certificate), under cluster V('') for a shared key.
  - Private keys are never decrypted nor returned; only the public fingerprints kept beside them are read, so
    O(store_passphrase) is not needed.
  - The report can also be printed as a table or in the Prometheus text format, and written to O(dest), for example
    for node_exporter's textfile collector. Writing O(dest) is the only change this module ever makes.
author:
  - kubepki.certs contributors (@kubepki)
options:
  scope:
    description:
      - Only entries of this scope (logical cloud). All scopes when not set.
    type: str
  users:
    description:
      - Only entries of these users.
    type: list
    elements: str
    default: []
  clusters:
    description:
      - Only entries of these clusters.
      - Every listed cluster in which a user with a key (a shared key, or a per-cluster key of that cluster) has no
        certificate gets an entry with the state V(missing_certificate).
    type: list
    elements: str
    default: []
  warn_within:
    description:
      - A certificate that expires within this duration has the state V(expiring).
      - Seconds, or a duration such as V(720h), V(30d) or V(1d12h).
    type: str
    default: 720h
  format:
    description:
      - V(json) - the report is the RV(inventory) list as JSON (RV(report) is not returned unless O(dest) is set).
      - V(table) - a plain-text table, one line per entry, then a count by state.
      - V(prometheus) - the Prometheus text exposition format (gauges, with C(HELP) and C(TYPE) lines).
      - RV(inventory) is returned whatever the format.
    type: str
    choices: [json, table, prometheus]
    default: json
  dest:
    description:
      - Write the report to this file, mode C(0644), through a temporary file renamed over it.
      - The file is only written, and the task only C(changed), when its content differs. The report holds no secret.
      - Its directory must exist.
    type: path
extends_documentation_fragment:
  - kubepki.certs._store
  - kubepki.certs._etcd
  - kubepki.certs._requirements.STORE_ETCD
  - kubepki.certs._attributes
  - kubepki.certs._attributes.ACTIONGROUP_ETCD_STORE
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written; C(changed) says whether O(dest) would be.
      - A missing embedded store is read as empty and is not created.
  diff_mode:
    support: full
    details:
      - With O(dest), the diff shows the file's content before and after.
notes:
  - Without O(dest) the module only reads, and is never C(changed).
  - The report holds timestamps (C(not_after), C(expiry_timestamp)), never the time left, so a file written to O(dest) by a
    scheduled job changes only when a certificate, a key or a state does. Compute the time left when reading it (in
    Prometheus, C(kubepki_certificate_expiry_timestamp_seconds - time())). RV(inventory) still carries C(days_left).
seealso:
  - module: kubepki.certs.user_certificates
  - module: kubepki.certs.kubeconfig_render
"""

EXAMPLES = r"""
- name: Everything the store and the central etcd know
  kubepki.certs.cert_inventory:
    etcd_endpoints:
      - https://etcd.example.com:2379
    etcd_ca_cert: /etc/kubepki/etcd-ca.crt
  register: inventory

- name: Fail when a certificate of production expires within two weeks
  kubepki.certs.cert_inventory:
    scope: prod
    warn_within: 14d
  register: prod
  failed_when: prod.summary.expiring + prod.summary.expired > 0

- name: Show a table
  kubepki.certs.cert_inventory:
    format: table
  register: table

- name: Print it
  ansible.builtin.debug:
    var: table.report_lines

- name: Metrics for node_exporter's textfile collector
  kubepki.certs.cert_inventory:
    format: prometheus
    dest: /var/lib/node_exporter/textfile/kubepki.prom
"""

RETURN = r"""
inventory:
  description: One entry per scope, user and cluster, sorted by them.
  returned: always
  type: list
  elements: dict
  contains:
    scope:
      description: Scope (logical cloud).
      type: str
      returned: always
      sample: default
    user:
      description: User (certificate CN).
      type: str
      returned: always
      sample: alice
    cluster:
      description: Cluster of the certificate; V('') for a shared key that no certificate uses.
      type: str
      returned: always
      sample: prod-1
    state:
      description:
        - V(valid); V(expiring) (within O(warn_within)); V(expired); V(not_yet_valid);
        - V(missing_certificate) (a key, no certificate); V(missing_key) (a certificate, no key in the store);
        - V(key_mismatch) (the certificate's public key is not the stored key's);
        - V(invalid) (no record that holds a readable certificate).
      type: str
      returned: always
      sample: valid
    serial:
      description: Serial number (hex) of the certificate; null without one.
      type: str
      returned: always
      sample: 4f2a9c0e1d
    not_before:
      description: Start of validity (RFC 3339); null without a certificate.
      type: str
      returned: always
      sample: "2026-01-02T03:04:05Z"
    not_after:
      description: End of validity (RFC 3339); null without a certificate.
      type: str
      returned: always
      sample: "2027-01-02T03:04:05Z"
    expiry_timestamp:
      description: End of validity as Unix time (int seconds); null without a certificate.
      type: int
      returned: always
      sample: 1798858245
    days_left:
      description:
        - Days until the end of validity, a float rounded to two decimals, negative once expired; null without a certificate.
        - Only in this result, never in RV(report) or O(dest), which hold timestamps only.
      type: float
      returned: always
      sample: 29.73
    common_name:
      description: The certificate's common name.
      type: str
      returned: always
      sample: alice
    organizations:
      description: The certificate's organizations (groups).
      type: list
      elements: str
      returned: always
      sample: [developers]
    key_scope:
      description: V(shared) or V(per_cluster), which of the user's keys applies; null when the store has none.
      type: str
      returned: always
      sample: shared
    key_fingerprint:
      description: SHA-256 (hex) of the stored key's public key (DER SubjectPublicKeyInfo); null without a key.
      type: str
      returned: always
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    key_type:
      description: Type of the stored key (of the certificate's key when the store has none).
      type: str
      returned: always
      sample: ec-p256
    key_created:
      description: When the stored key was created (RFC 3339).
      type: str
      returned: always
      sample: "2026-01-02T03:04:05Z"
    key_encrypted:
      description: Whether the stored key is encrypted at rest.
      type: bool
      returned: always
      sample: false
    certificate_fingerprint:
      description: SHA-256 (hex) of the certificate's public key; equal to RV(inventory[].key_fingerprint) unless V(key_mismatch).
      type: str
      returned: always
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    found_in:
      description: V(store), V(etcd), V(both) or V(none) (a key without a certificate).
      type: str
      returned: always
      sample: both
    sources_differ:
      description: Whether the store and etcd hold different certificates (or one of them an unreadable record).
      type: bool
      returned: always
      sample: false
    newer_in:
      description: When they hold two different certificates, V(store) or V(etcd), the one valid longer, which this entry reports.
      type: str
      returned: always
      sample: etcd
    store:
      description: What the store holds (serial, not_before, not_after, key_matches, problem); null when it holds no record.
      type: dict
      returned: always
      sample: {"serial": "4f2a9c0e1d", "not_before": "2026-01-02T03:04:05Z", "not_after": "2027-01-02T03:04:05Z",
               "key_matches": true, "problem": null}
    etcd:
      description: What etcd holds (the same fields and its C(key)); null when etcd holds no record or was not read.
      type: dict
      returned: always
      sample: {"key": "/kubepki/certs/default/prod-1/alice", "serial": "4f2a9c0e1d", "not_before": "2026-01-02T03:04:05Z",
               "not_after": "2027-01-02T03:04:05Z", "key_matches": true, "problem": null}
    notes:
      description: Explanations (a damaged record, a key mismatch, which source is newer).
      type: list
      elements: str
      returned: always
      sample: ["etcd holds a newer certificate (serial 5b, not after 2027-03-01T00:00:00Z) than the store (serial 4f, not after 2027-01-02T03:04:05Z)"]
summary:
  description: How many entries are in each state, and C(total).
  returned: always
  type: dict
  sample: {"valid": 3, "expiring": 1, "expired": 0, "not_yet_valid": 0, "missing_certificate": 1, "missing_key": 0,
           "key_mismatch": 0, "invalid": 0, "total": 5}
report:
  description: The report as text, in O(format).
  returned: when O(format) is V(table) or V(prometheus), or O(dest) is set
  type: str
  sample: "# HELP kubepki_certificate_expiry_timestamp_seconds ...\n"
report_lines:
  description: RV(report) split into lines.
  returned: when RV(report) is
  type: list
  elements: str
  sample: ["SCOPE    USER   CLUSTER  STATE  DAYS LEFT ..."]
dest:
  description: The file written (or that would be).
  returned: when O(dest) is set
  type: str
  sample: /var/lib/node_exporter/textfile/kubepki.prom
store:
  description: The store read (its URI without credentials).
  returned: always
  type: str
  sample: sqlite:///home/ops/.kubepki/store.db
etcd_endpoint:
  description: The etcd endpoint that was read; null when etcd was not read.
  returned: always
  type: str
  sample: https://127.0.0.1:2379
"""

import os
import time

from ansible_collections.kubepki.certs.plugins.module_utils import _files
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._steps import inventory
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import module_main, options
from ansible_collections.kubepki.certs.plugins.module_utils._etcd import ETCD_ARG_SPEC, transport_from_params
from ansible_collections.kubepki.certs.plugins.module_utils._store import STORE_ARG_SPEC, open_store_from_params


def argument_spec():
    return options({
        "scope": {"type": "str"},
        "users": {"type": "list", "elements": "str", "default": []},
        "clusters": {"type": "list", "elements": "str", "default": []},
        "warn_within": {"type": "str", "default": inventory.DEFAULT_WARN_WITHIN},
        "format": {"type": "str", "choices": list(inventory.FORMATS), "default": "json"},
        "dest": {"type": "path"},
    }, STORE_ARG_SPEC, ETCD_ARG_SPEC)


def _check_names(params):
    """The filters follow the rule of scope, user and cluster names (_csr.segment_problem): a filter no name can
    match is a mistake, named."""
    named = [("scope", params["scope"])] if params["scope"] is not None else []
    named += [("%s[%d]" % (option, index), value) for option in ("users", "clusters") for index, value in enumerate(params[option])]
    for field, value in named:
        problem = _csr.segment_problem(value) if value else "must not be empty"
        if problem:
            raise KubePkiError("%s %r %s" % (field, value, problem))


def run(ctx, params):
    _check_names(params)
    warn_seconds = _csr.parse_duration(params["warn_within"], what="warn_within")
    if params["dest"]:
        inventory.check_dest(params["dest"])
    transport = transport_from_params(params)
    # read-only: a missing embedded store is read as empty, never created
    with open_store_from_params(params, create=False) as store:
        keys = store.list_keys(params["scope"])
        stored = inventory.store_certs(store, params["scope"])
        location = store.location
        if store.kind == "embedded" and not os.path.lexists(store.path):
            ctx.warn("the embedded store %s does not exist; it is read as empty" % store.path)
    in_etcd, endpoint = {}, None
    if transport is not None:
        with transport:
            in_etcd = inventory.etcd_certs(transport, params["scope"])
            endpoint = transport.endpoint
    rows = inventory.build(keys, stored, in_etcd, time.time(), warn_seconds, users=params["users"],
                           clusters=params["clusters"], etcd_used=transport is not None)
    result = {"changed": False, "inventory": rows, "summary": inventory.summary(rows), "store": location,
              "etcd_endpoint": endpoint}
    if params["format"] != "json" or params["dest"]:
        report = inventory.RENDERERS[params["format"]](rows)
        result["report"] = report
        result["report_lines"] = report.splitlines()
    if params["dest"]:
        before = inventory.read_text(params["dest"])
        result["dest"] = params["dest"]
        result["changed"] = before != result["report"]
        if result["changed"] and not ctx.check_mode:
            _files.write_atomically(params["dest"], result["report"], mode=0o644)  # a report, no secret in it
        if ctx.diff:
            result["diff"] = {"before": before or "", "after": result["report"],
                              "before_header": params["dest"], "after_header": params["dest"]}
    return result


def main():
    module_main(argument_spec(), run, ("cryptography",))


if __name__ == "__main__":
    main()
