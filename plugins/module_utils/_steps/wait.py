# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The csr_wait step: wait for a batch of CSRs with one watch and check what the signer issued."""

from __future__ import annotations

import os
import time

from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import options
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils import _etcd, _secrets, _store
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._csr import waiter as _waiter
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError, WaitTimeout

CLAMP_TOLERANCE = 360


def argument_spec():
    return options({
        "names": {"type": "list", "elements": "str", "default": []},
        "csrs": {"type": "list", "elements": "dict", "default": []},
        "cluster": {"type": "str", "required": True},
        "scope": {"type": "str", "default": "default"},
        "timeout": {"type": "int", "default": 300},
        "cluster_ca": {"type": "str"},
    }, _kube.AUTH_ARG_SPEC, _store.STORE_ARG_SPEC, _etcd.ETCD_ARG_SPEC)


def load_ca(value):
    if value is None:
        return None
    if "-----BEGIN" in value:
        return _crypto.ca_pem("cluster_ca", text=value)
    if not os.path.exists(value):
        # a file name is repeated; other text (a pasted key, base64 of one) is not, not even a part of it
        if len(value) <= 4096 and "\n" not in value and not _secrets.holds_private_key(value):
            raise KubePkiError("cluster_ca: %s is neither PEM text nor an existing file" % value)
        raise KubePkiError("cluster_ca is neither PEM text nor the path of an existing file")
    return _crypto.ca_pem("cluster_ca", path=value)


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
    check_timeout(params["timeout"])
    return list(found.items())


def check_timeout(timeout):
    """KubePkiError unless ``timeout`` (seconds to wait for the signer) is usable."""
    if timeout < 0:
        raise KubePkiError("timeout must not be negative, got %s" % timeout)


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
    if facts["common_name"] != request["common_name"] or not _csr.same_groups(facts["organizations"], request["organizations"]):
        raise KubePkiError("%s has CN %r O %s, but the request asked for CN %r O %s" % (
            what, facts["common_name"], facts["organizations"], request["common_name"], request["organizations"]), csr_name=name)
    if ca_pem:
        _crypto.verify_issued_by(pem, ca_pem, what=what)
    if _record.standing(facts) != "valid":
        raise KubePkiError("%s is not valid now (valid %s to %s)" % (what, facts["not_before"], facts["not_after"]), csr_name=name)
    requested = requested_expiration(obj)
    granted = facts["lifetime_seconds"]
    clamped = requested is not None and abs(granted - requested) > CLAMP_TOLERANCE
    user = annotations.get(_csr.ANN_USER) or user_hint or facts["common_name"]
    record = _record.of_certificate(facts, _crypto.split_pem_certificates(pem)[0], annotations.get(_csr.ANN_SCOPE) or params["scope"],
                                    params["cluster"], user, name, meta.get("uid"), (obj.get("spec") or {}).get("signerName"))
    return dict(record, requested_expiration_seconds=requested, granted_lifetime_seconds=granted, lifetime_clamped=clamped,
                source="cluster")


def known_record(params, user, csr_name, store, etcd):
    """A stored record for a CSR that is gone, or None."""
    for source, backend in (("store", store), ("etcd", etcd)):
        if backend is None:
            continue
        record = backend.get_cert(params["scope"], params["cluster"], user) if source == "store" else backend.get_record(
            params["scope"], params["cluster"], user)
        if record and record.get("csr_name") == csr_name:
            out = {field: record.get(field) for field in _record.FIELDS}
            facts = _crypto.certificate_facts(out["certificate"], what="the %s certificate of %s" % (source, user))
            out.update(requested_expiration_seconds=None, granted_lifetime_seconds=facts["lifetime_seconds"], lifetime_clamped=False,
                       source=source)
            return out
    return None


def run(ctx, params):
    wanted = targets(params)
    ca_pem = load_ca(params["cluster_ca"])
    if not wanted:
        # csr_create ran in check mode: nothing was created, nothing to wait for
        return {"changed": False, "certificates": [], "csrs": [], "wait_stats": {"seconds": 0}}
    client = _kube.get_client(params, ctx.secrets, deadline=max(min(params["timeout"], 60), 10))
    started = time.monotonic()
    # CSRs from csr_create carry our label: list and watch only those (a single name uses a field selector)
    ours = not params["names"]
    batch = ctx.batch is not None  # batch mode: one user's failure is reported and the others are waited for

    def fail(error):
        if not ctx.set_aside(users.get(error.details.get("csr_name")), error.msg, csr_name=error.details.get("csr_name")):
            raise error

    users = dict(wanted)
    waiter = _waiter.Waiter(client, [name for name, _user in wanted],
                            label_selector="%s=%s" % (_csr.MANAGED_BY, _csr.MANAGED_BY_VALUE) if ours else None,
                            stop_on_failure=not batch)
    waiter.prime()
    resolved, missing = {}, set()
    store = etcd = None
    try:
        for name, user in wanted:
            if name in waiter.objects:
                continue
            if user is not None:
                if store is None:  # opened once, for the first CSR that is gone
                    store = _store.open_store_from_params(params, create=not ctx.check_mode)
                    etcd = _etcd.transport_from_params(params)
                record = known_record(params, user, name, store, etcd)
                if record is not None:
                    resolved[name] = record
                    waiter.drop(name)
                    continue
            missing.add(name)
            waiter.drop(name)
            fail(KubePkiError("CertificateSigningRequest %s does not exist in cluster %s (%s)" % (name, params["cluster"], client.host),
                              csr_name=name))
    finally:
        for thing in (store, etcd):
            if thing is not None:
                thing.close()
    timed_out = None
    if ctx.check_mode:
        objects = waiter.objects
    else:
        try:
            objects = waiter.run(params["timeout"], listed=True)
        except WaitTimeout as error:
            if not batch:
                raise
            objects, timed_out = error.objects, error
    certificates, states = [], []
    for name, user in wanted:
        if name in resolved:
            certificates.append(resolved[name])
            states.append({"name": name, "state": "issued"})
            continue
        if name in missing:
            continue
        obj = objects.get(name)
        state = _waiter.state_of(obj)
        states.append({"name": name, "state": state})
        try:
            if state in ("denied", "failed"):
                # fail at once on Denied / Failed / deleted
                condition = _csr.conditions(obj)["Denied" if state == "denied" else "Failed"]
                raise KubePkiError("CertificateSigningRequest %s was %s: %s: %s" % (
                    name, state, condition.get("reason") or "(no reason)", condition.get("message") or "(no message)"),
                    csr_name=name, state=state, reason=condition.get("reason"), condition_message=condition.get("message"))
            if state == _waiter.DELETED:
                raise KubePkiError("CertificateSigningRequest %s was deleted before it was issued" % name, csr_name=name)
            if state == "issued":
                record = record_for(obj, params, ca_pem, user)
                if record["lifetime_clamped"]:
                    ctx.warn("CSR %s asked for %ss but was granted %ss: the signer ignored or clamped expirationSeconds" % (
                        name, record["requested_expiration_seconds"], record["granted_lifetime_seconds"]))
                certificates.append(record)
            elif timed_out is not None:
                raise KubePkiError("CertificateSigningRequest %s was not issued within %ss (last state: %s)" % (
                    name, params["timeout"], state or "never seen"), csr_name=name)
        except KubePkiError as error:
            fail(error)
    stats = dict(waiter.stats, seconds=round(time.monotonic() - started, 3))
    return {"changed": False, "certificates": certificates, "csrs": states, "wait_stats": stats}
