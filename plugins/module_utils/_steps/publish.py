# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The cert_to_etcd step: certificate records into (or out of) the central etcd."""

from __future__ import annotations


from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import options
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._etcd import (
    ETCD_ARG_SPEC, endpoints_problem, key_segment_problem, transport_from_params,
)

PASSED_THROUGH = ("csr_name", "csr_uid", "signer_name")
CHECKED_FACTS = ("serial", "not_before", "not_after", "public_key_sha256", "common_name")


def argument_spec():
    return options(ETCD_ARG_SPEC, dict(
        certificates=dict(type="list", elements="dict", required=True),
        scope=dict(type="str", default="default"),
        cluster=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ))


def _text(entry, field, where):
    value = entry.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KubePkiError("%s.%s must be a string, got %s" % (where, field, type(value).__name__))
    return value


def _segment(entry, field, where, params):
    """``entry[field]``, else the option of the same name (None when neither is set); refused when it cannot be
    one segment of the etcd key, naming the entry's field or the option it came from."""
    value = _text(entry, field, where)
    name = "%s.%s" % (where, field)
    if value is None and field in params:
        value, name = params[field], field
    if value not in (None, ""):
        problem = key_segment_problem(value, name)
        if problem:
            raise KubePkiError(problem)
    return value or None


def normalise(entry, index, params):
    """The canonical certificate record of one input entry (facts recomputed from the PEM)."""
    where = "certificates[%d]" % index
    if not isinstance(entry, dict):
        raise KubePkiError("%s must be a dict, got %s" % (where, type(entry).__name__))
    scope = _segment(entry, "scope", where, params)
    cluster = _segment(entry, "cluster", where, params)
    user = _segment(entry, "user", where, {})
    pem = _text(entry, "certificate", where)
    if not scope:
        raise KubePkiError("%s has no scope and the scope option is empty" % where)
    if not cluster:
        raise KubePkiError("%s has no cluster and the cluster option is not set" % where)
    if params["state"] == "absent" and pem is None:
        if not user:
            raise KubePkiError("%s needs user (or certificate) to name the record to remove" % where)
        return {"scope": scope, "cluster": cluster, "user": user}
    if pem is None:
        raise KubePkiError("%s has no certificate (PEM)" % where)
    facts = _crypto.certificate_facts(pem, what="%s.certificate" % where)
    for field in CHECKED_FACTS:
        given = entry.get(field)
        if given not in (None, "") and str(given).lower() != str(facts[field]).lower():
            raise KubePkiError("%s.%s is %r but the certificate says %r; the record does not describe its certificate" % (
                where, field, given, facts[field]))
    if user is None:
        user = facts["common_name"]
    if not user:
        raise KubePkiError("%s has no user and its certificate has no CN" % where)
    problem = key_segment_problem(user, "%s.user (the certificate CN)" % where)
    if problem:
        raise KubePkiError(problem)
    if user != facts["common_name"]:
        raise KubePkiError("%s.user is %r but the certificate CN is %r" % (where, user, facts["common_name"]))
    given_orgs = entry.get("organizations")
    if given_orgs not in (None, []) and not _csr.same_groups(given_orgs, facts["organizations"]):
        raise KubePkiError("%s.organizations is %r but the certificate carries %r" % (where, given_orgs, facts["organizations"]))
    return _record.of_certificate(facts, "".join(_crypto.split_pem_certificates(pem)), scope, cluster, user,
                                  *(_text(entry, field, where) for field in PASSED_THROUGH))


def summary(record):
    """The non-PEM part of a record, for diffs."""
    return None if record is None else {k: v for k, v in sorted(record.items()) if k != "certificate"}


def check_options(params):
    """KubePkiError for the first bad etcd option or scope/cluster option; nothing is connected to."""
    problem = endpoints_problem(params, required=True)
    for field in ("scope", "cluster"):
        if problem is None and params.get(field) not in (None, ""):
            problem = key_segment_problem(params[field], field)
    if problem:
        raise KubePkiError(problem)


def run(ctx, params):
    """cert_to_etcd's work: its result dict. A failure carries the records handled so far.

    Every option and every entry is checked before etcd is contacted. Each record's ``action`` says what was done:
    ``created``, ``updated``, ``unchanged`` (etcd already holds exactly this record), ``kept_newer`` (etcd holds a
    newer certificate for the key, left in place), ``kept_equal`` (etcd holds another certificate just as new),
    ``deleted``.
    """
    results, before, after = [], {}, {}
    transport = None
    try:
        check_options(params)
        records = [normalise(entry, index, params) for index, entry in enumerate(params["certificates"])]
        transport = transport_from_params(params)
        identities = [(record["scope"], record["cluster"], record["user"]) for record in records]
        seen = {}
        for index, identity in enumerate(identities):
            key = transport.key_for(*identity)
            if key in seen:
                raise KubePkiError("certificates[%d] and certificates[%d] both address %s" % (seen[key], index, key))
            seen[key] = index
        if ctx.diff:
            before = {transport.key_for(*identity): summary(transport.get_record(*identity)) for identity in identities}
        if params["state"] == "present":
            # one read and a transaction per chunk for the whole batch
            outcomes = transport.put_records(records, check_mode=ctx.check_mode)
        else:
            outcomes = transport.delete_records(identities, check_mode=ctx.check_mode)
        for record, (changed, key, action) in zip(records, outcomes):
            after[key] = summary(record) if params["state"] == "present" else None
            item = {"key": key, "scope": record["scope"], "cluster": record["cluster"], "user": record["user"], "changed": changed,
                    "action": action}
            if params["state"] == "present":
                item.update(serial=record["serial"], not_after=record["not_after"])
            results.append(item)
        endpoint = transport.endpoint
    except KubePkiError as error:
        error.details.setdefault("records", results)
        raise
    finally:
        if transport is not None:
            transport.close()
    result = {"changed": any(item["changed"] for item in results), "records": results, "etcd_endpoint": endpoint}
    if ctx.diff:
        changed_keys = [item["key"] for item in results if item["changed"]]
        result["diff"] = {"before": {key: before.get(key) for key in changed_keys}, "after": {key: after.get(key) for key in changed_keys}}
    return result
