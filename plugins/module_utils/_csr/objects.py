# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""CertificateSigningRequest objects: names, labels, building, state, comparison, approval.

Objects are plain dicts in the API's JSON form (camelCase, ``spec.request`` as base64 of PEM).
"""

from __future__ import annotations

import base64
import hashlib
import re

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._kube.client import path_for, status_of

API_VERSION = "certificates.k8s.io/v1"
KIND = "CertificateSigningRequest"

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kubepki.certs"
LABEL_USER = "kubepki.io/user"
LABEL_SCOPE = "kubepki.io/scope"
LABEL_CLUSTER = "kubepki.io/cluster"
ANN_USER = "kubepki.io/user"
ANN_SCOPE = "kubepki.io/scope"
ANN_CLUSTER = "kubepki.io/cluster"
ANN_KEY_SHA = "kubepki.io/public-key-sha256"
ANN_EXPIRATION = "kubepki.io/requested-expiration-seconds"
ANN_RENEWS = "kubepki.io/renews-serial"

USAGES = (
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment",
    "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth", "client auth", "code signing",
    "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
)

SIGNER_CLIENT = "kubernetes.io/kube-apiserver-client"
SIGNER_KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNER_KUBELET_SERVING = "kubernetes.io/kubelet-serving"
SIGNER_LEGACY = "kubernetes.io/legacy-unknown"

# contract section 5: the usage sets each built-in signer accepts (None: any set holding these)
_KUBELET_CLIENT_SETS = (frozenset(["digital signature", "client auth"]), frozenset(["digital signature", "key encipherment", "client auth"]))
_KUBELET_SERVING_SETS = (frozenset(["digital signature", "server auth"]), frozenset(["digital signature", "key encipherment", "server auth"]))

STATES = ("pending", "approved", "issued", "denied", "failed")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ---------------------------------------------------------------- signers and usages

def dns_subdomain_problem(text):
    """Why ``text`` is not a lowercase RFC 1123 subdomain (object names: dot-separated labels, at most 253
    characters), or None."""
    if not text:
        return "must not be empty"
    if len(text) > 253:
        return "must be at most 253 characters"
    if not _DNS_SUBDOMAIN.match(text):
        return "must consist of lower case letters, digits, '-' and '.', each part starting and ending with a letter or digit"
    return None


def signer_name_problem(signer, legacy_allowed=False):
    """Why ``signer`` is not a valid signerName (contract section 2.1), or None. A v1 CSR may not name the legacy
    signer; a ClusterTrustBundle may (``legacy_allowed``)."""
    if not signer:
        return "signerName must be provided"
    if signer == SIGNER_LEGACY and not legacy_allowed:
        return "the legacy signerName is not allowed via this API version"
    if signer.count("/") != 1:
        return "must be a fully qualified domain and path of the form 'example.com/signer-name'"
    domain, path = signer.split("/")
    if len(signer) > 571:
        return "must be no more than 571 characters"
    if len(domain) > 253:
        return "the domain must be no more than 253 characters"
    labels = domain.split(".")
    for label in labels:
        if len(label) > 63 or not _DNS_LABEL.match(label):
            return "validating label %r: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'" % label
    if len(labels) < 2:
        return "should be a domain with at least two segments separated by dots"
    if not path:
        return "the path part after '/' must not be empty"
    for part in path.split("."):
        if not part or not _DNS_SUBDOMAIN.match(part):
            return "the path part %r is not a lowercase RFC 1123 subdomain" % path
    return None


def default_usages(signer, key_type):
    """Usages sent when none are given: what the built-in signers accept on every release since v1.19."""
    if signer == SIGNER_KUBELET_SERVING:
        return ["digital signature", "key encipherment", "server auth"]
    if signer == SIGNER_KUBELET_CLIENT or key_type.startswith("rsa"):
        return ["digital signature", "key encipherment", "client auth"]
    return ["digital signature", "client auth"]


def usages_problem(signer, usages):
    """Why the signer (or the API) would refuse ``usages``, or None."""
    if not usages:
        return "at least one usage is required"
    unknown = [u for u in usages if u not in USAGES]
    if unknown:
        return "unsupported usage %s; supported values: %s" % (", ".join(repr(u) for u in unknown), ", ".join(sorted(USAGES)))
    repeated = next((usage for index, usage in enumerate(usages) if usage in usages[:index]), None)
    if repeated is not None:
        return "usage %r is repeated" % repeated
    wanted = frozenset(usages)
    if signer == SIGNER_CLIENT:
        extra = sorted(wanted - {"client auth", "digital signature", "key encipherment"})
        if extra:
            return "invalid usage for client certificate: %s (signer %s allows client auth, digital signature, key encipherment)" % (
                ", ".join(extra), signer)
        if "client auth" not in wanted:
            return "missing required usage for client certificate: client auth (signer %s)" % signer
    elif signer == SIGNER_KUBELET_CLIENT and wanted not in _KUBELET_CLIENT_SETS:
        return "signer %s needs exactly [digital signature, client auth] or [digital signature, key encipherment, client auth]" % signer
    elif signer == SIGNER_KUBELET_SERVING and wanted not in _KUBELET_SERVING_SETS:
        return "signer %s needs exactly [digital signature, server auth] or [digital signature, key encipherment, server auth]" % signer
    return None


# ---------------------------------------------------------------- names and labels

def slug(text, limit=40):
    """A label-value-safe form of ``text``: lowercase [a-z0-9.-_], starting and ending alphanumeric, at most ``limit``."""
    value = re.sub(r"[^a-z0-9._-]+", "-", str(text).lower())
    value = value.strip("-._")[:limit].strip("-._")
    if value != str(text).lower() or not value:
        # keep distinct users apart even when their slugs would collide
        tail = hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:6]
        value = ("%s-%s" % (value[:limit - 7], tail)).strip("-._") if value else tail
    return value


def csr_name(user, public_key_sha256, common_name, organizations, signer, usages, expiration_seconds=None,
             dns_names=(), ip_addresses=(), renews_serial=""):
    """The deterministic CSR name: ``kubepki-<user slug>-<20 hex>``; a renewal (``renews_serial``) gets a new one."""
    parts = [
        public_key_sha256, common_name, "\x1f".join(sorted(organizations)), signer, "\x1f".join(sorted(usages)),
        "" if expiration_seconds is None else str(int(expiration_seconds)),
        "\x1f".join(sorted(dns_names)), "\x1f".join(sorted(ip_addresses)), renews_serial or "",
    ]
    digest = hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()[:20]
    return "kubepki-%s-%s" % (slug(user, 30), digest)


def labels_for(user, scope, cluster=None):
    labels = {MANAGED_BY: MANAGED_BY_VALUE, LABEL_USER: slug(user), LABEL_SCOPE: slug(scope)}
    if cluster:
        labels[LABEL_CLUSTER] = slug(cluster)
    return labels


def annotations_for(user, scope, cluster=None, public_key_sha256=None, expiration_seconds=None, renews_serial=None):
    annotations = {ANN_USER: user, ANN_SCOPE: scope}
    if cluster:
        annotations[ANN_CLUSTER] = cluster
    if public_key_sha256:
        annotations[ANN_KEY_SHA] = public_key_sha256
    if expiration_seconds is not None:
        annotations[ANN_EXPIRATION] = str(int(expiration_seconds))
    if renews_serial:
        annotations[ANN_RENEWS] = renews_serial
    return annotations


def selector(user=None, scope=None, cluster=None):
    """A label selector for the CSRs this collection made, optionally for one user/scope/cluster."""
    named = ((LABEL_USER, user), (LABEL_SCOPE, scope), (LABEL_CLUSTER, cluster))
    return ",".join(["%s=%s" % (MANAGED_BY, MANAGED_BY_VALUE)] + ["%s=%s" % (label, slug(value)) for label, value in named if value is not None])


def build_object(name, request_pem, signer, usages, expiration_seconds=None, labels=None, annotations=None):
    """The CSR object to POST. ``expirationSeconds`` is only present when asked for (servers before v1.22 drop it)."""
    spec = {"request": _crypto.b64(request_pem), "signerName": signer, "usages": list(usages)}
    if expiration_seconds is not None:
        spec["expirationSeconds"] = int(expiration_seconds)
    return {"apiVersion": API_VERSION, "kind": KIND, "spec": spec,
            "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}}


# ---------------------------------------------------------------- state

def conditions(obj):
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("status", "True") == "True"}


def csr_state(obj):
    """pending, approved, issued, denied or failed (Denied and Failed win over a certificate)."""
    found = conditions(obj)
    if "Denied" in found:
        return "denied"
    if "Failed" in found:
        return "failed"
    if ((obj or {}).get("status") or {}).get("certificate"):
        return "issued"
    if "Approved" in found:
        return "approved"
    return "pending"


def certificate_pem(obj):
    """The PEM text of ``status.certificate`` (None when not issued)."""
    value = ((obj or {}).get("status") or {}).get("certificate")
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubePkiError("status.certificate of CSR %s is not base64 of PEM: %s" % ((obj.get("metadata") or {}).get("name"), exc)) from exc


def request_pem(obj):
    return _crypto.csr_pem_from_api(((obj or {}).get("spec") or {}).get("request") or "")


def describe(obj):
    """Non-secret summary of a CSR object, as modules return it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {
        "name": meta.get("name"), "uid": meta.get("uid"), "state": csr_state(obj), "signer_name": spec.get("signerName"),
        "usages": spec.get("usages") or [], "requester": spec.get("username"), "expiration_seconds": spec.get("expirationSeconds"),
        "created": meta.get("creationTimestamp"),
        "conditions": [{k: c.get(k) for k in ("type", "reason", "message", "lastUpdateTime")} for c in conditions(obj).values()],
    }


def compare(existing, request_facts, signer, usages, expiration_seconds):
    """Differences between an existing CSR and the wanted one (specs are immutable), as a list of strings.

    The request is compared by its facts (key, subject, SANs), not its bytes: an ECDSA signature differs on
    every signing. A server that predates expirationSeconds (before v1.22) drops it; that is not a difference.
    """
    spec = existing.get("spec") or {}
    diffs = []
    if spec.get("signerName") != signer:
        diffs.append("signerName %r != %r" % (spec.get("signerName"), signer))
    if sorted(spec.get("usages") or []) != sorted(usages):
        diffs.append("usages %s != %s" % (sorted(spec.get("usages") or []), sorted(usages)))
    have_exp = spec.get("expirationSeconds")
    if have_exp is not None and expiration_seconds is not None and int(have_exp) != int(expiration_seconds):
        diffs.append("expirationSeconds %s != %s" % (have_exp, expiration_seconds))
    elif have_exp is not None and expiration_seconds is None:
        diffs.append("expirationSeconds %s != (none)" % have_exp)
    try:
        facts = _crypto.csr_facts(request_pem(existing), what="spec.request of CSR %s" % (existing.get("metadata") or {}).get("name"))
    except KubePkiError as exc:
        return diffs + [exc.msg]
    for key in ("public_key_sha256", "common_name", "organizations", "dns_names", "ip_addresses"):
        have, want = facts.get(key), request_facts.get(key)
        if key in ("dns_names", "ip_addresses"):
            have, want = sorted(have or []), sorted(want or [])
        if have != want:
            diffs.append("%s %r != %r" % (key, have, want))
    return diffs


# ---------------------------------------------------------------- API calls

def get(client, name):
    """The CSR object named ``name``, or None when there is none."""
    try:
        return client.request("GET", path_for(name), what="CertificateSigningRequest %s" % name)
    except KubePkiError as exc:
        if status_of(exc) == 404:
            return None
        raise


def list_objects(client, label_selector=None, field_selector=None, **options):
    """(items, resourceVersion) of a list call, following ``continue`` pages; ``options`` go to client.request."""
    items, query, version = [], {}, None
    if label_selector:
        query["labelSelector"] = label_selector
    if field_selector:
        query["fieldSelector"] = field_selector
    while True:
        answer = client.request("GET", path_for(), query=dict(query, limit=500), what="list CertificateSigningRequests", **options)
        items.extend(answer.get("items") or [])
        meta = answer.get("metadata") or {}
        version = meta.get("resourceVersion") or version
        if not meta.get("continue"):
            return items, version
        query["continue"] = meta["continue"]


def create(client, obj, dry_run=False):
    query = {"dryRun": "All"} if dry_run else None
    return client.request("POST", path_for(), query=query, body=obj, what="create CertificateSigningRequest %s" % obj["metadata"]["name"])


def delete(client, name, dry_run=False):
    """Delete a CSR; True when it existed."""
    query = {"dryRun": "All"} if dry_run else None
    try:
        client.request("DELETE", path_for(name), query=query, what="delete CertificateSigningRequest %s" % name)
    except KubePkiError as exc:
        if status_of(exc) == 404:
            return False
        raise
    return True


def decide(client, name, decision, reason, message, obj=None, dry_run=False, attempts=5):
    """Approve (``decision='Approved'``) or deny (``'Denied'``) through the /approval subresource.

    Appends the condition to the fetched object and PUTs it; a 409 (the object changed under us) refetches
    and tries again. Returns (changed, object). Already carrying the same decision: (False, object). The
    opposite decision already present: KubePkiError (conditions cannot be removed).
    """
    if decision not in ("Approved", "Denied"):
        raise KubePkiError("decision must be Approved or Denied, not %r" % decision)
    other = "Denied" if decision == "Approved" else "Approved"
    for attempt in range(attempts):
        if obj is None or attempt:
            obj = get(client, name)
            if obj is None:
                raise KubePkiError("CertificateSigningRequest %s does not exist" % name)
        found = conditions(obj)
        if decision in found:
            return False, obj
        if other in found:
            raise KubePkiError("CertificateSigningRequest %s is already %s (%s); a decision cannot be taken back" % (
                name, other, found[other].get("reason") or "no reason"))
        if "Failed" in found:
            raise KubePkiError("CertificateSigningRequest %s has Failed (%s: %s)" % (
                name, found["Failed"].get("reason"), found["Failed"].get("message")))
        if dry_run:
            return True, obj
        condition = {"type": decision, "status": "True", "reason": reason, "message": message, "lastUpdateTime": _crypto.rfc3339(_crypto.utc_now())}
        status = dict(obj.get("status") or {})
        status["conditions"] = list(status.get("conditions") or []) + [condition]
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": obj.get("metadata") or {"name": name}, "spec": obj.get("spec") or {},
                "status": status}
        try:
            updated = client.request("PUT", path_for(name, "approval"), body=body,
                                     what="%s CertificateSigningRequest %s" % ("approve" if decision == "Approved" else "deny", name))
        except KubePkiError as exc:
            if status_of(exc) == 409 and attempt + 1 < attempts:
                continue
            raise
        return True, updated
    raise KubePkiError("CertificateSigningRequest %s kept changing; gave up after %d attempts" % (name, attempts))


# ---------------------------------------------------------------- input checks shared by the modules

MAX_DURATION = 100 * 365 * 86400  # longer than any certificate lives; keeps datetime arithmetic in range
_DURATION = re.compile(r"^\s*(?:(\d+)w)?\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")


def parse_duration(value, what="renew_before"):
    """Seconds of ``value``: an int, or text such as ``720h``, ``30d``, ``1d12h``, ``90m``, ``3600`` or ``3600s``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise KubePkiError("%s: %r is not a duration" % (what, value))
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise KubePkiError("%s: %r is not a duration; write seconds or a value like 720h, 30d, 1d12h" % (what, value))
        weeks, days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds < 0:
        raise KubePkiError("%s: %r is negative" % (what, value))
    if seconds > MAX_DURATION:
        raise KubePkiError("%s: %r is longer than %d days, more than any certificate lives" % (what, value, MAX_DURATION // 86400))
    return seconds


def same_groups(first, second):
    """Whether two group (O) lists name the same groups. Order carries no meaning: the signer puts every
    organization into one RDN, a DER SET, which sorts them, so a certificate never keeps the requested order."""
    return sorted(set(first or [])) == sorted(set(second or []))


def segment_problem(name):
    """Why ``name`` cannot be one segment of an etcd key or a file name (user, cluster or scope), or None: the one
    rule every such name follows (etcd keys, kubeconfig file names, CSR labels are built from it)."""
    if "/" in name or "\\" in name:
        return "must not contain '/' or '\\' (it becomes one segment of etcd keys and file names)"
    if name in (".", ".."):
        return "is not a usable name: '.' and '..' read as paths in etcd keys and file names"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "must not contain control characters (it becomes one segment of etcd keys and file names)"
    return None


def name_problem(name):
    """Why ``name`` cannot be a certificate common name (user name), or None."""
    if not isinstance(name, str) or not name.strip():
        return "must not be empty"
    if name != name.strip():
        return "must not start or end with whitespace"
    bad = [ch for ch in name if ord(ch) < 32 or ord(ch) == 127]
    if bad:
        return "must not contain control characters (found %r)" % "".join(bad)
    if len(name) > 64:
        return "is longer than 64 characters (the X.509 limit for a common name)"
    return segment_problem(name)


def group_problem(group):
    """Why ``group`` cannot be an organization (group) value, or None."""
    if not isinstance(group, str) or not group.strip():
        return "must not be empty"
    if "," in group:
        return "must not contain a comma (token files split groups on commas; O values with commas confuse tools)"
    if group != group.strip():
        return "must not start or end with whitespace"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in group):
        return "must not contain control characters"
    if len(group) > 64:
        return "is longer than 64 characters (the X.509 limit for an organization)"
    return None
