# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""ClusterTrustBundle objects (certificates.k8s.io): the PEM and naming rules the API server applies, checked
here before any request, the discovery of the API version a server serves, and the ensure/remove work of the
``cluster_trust_bundle`` module.

The rules follow the server's validation: the bundle holds only CERTIFICATE blocks, each an X.509 CA certificate
(basic constraints valid, CA bit set), at least one, no duplicates, at most 1 MiB. A bundle with a signer name is
named ``<signer name, '/' written ':'>:<suffix>`` (suffix a DNS subdomain); one without must have no ``:``.
"""

from __future__ import annotations

import base64
import binascii
import re

from urllib.parse import quote

from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
except ImportError:  # pragma: no cover - reported by _deps.require()
    pass

GROUP = "certificates.k8s.io"
RESOURCE = "clustertrustbundles"
VERSIONS = ("v1", "v1beta1", "v1alpha1")  # newest first: the order auto picks in
MAX_BUNDLE_SIZE = 1024 * 1024
NOT_SERVED_HINT = ("enable the ClusterTrustBundle feature gate (--feature-gates ClusterTrustBundle=true on kube-apiserver) "
                   "and the API (--runtime-config certificates.k8s.io/v1beta1/clustertrustbundles=true; "
                   "certificates.k8s.io/v1alpha1/clustertrustbundles=true before Kubernetes 1.33)")
CONFLICT_RETRIES = 3
LAST_KNOWN = (1, 36)  # the newest minor line whose ClusterTrustBundle API version this module knows

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


# ---------------------------------------------------------------- names

def check_name(name, signer_name=None):
    """Raise unless ``name`` is a valid object name for a bundle with (or without) ``signer_name``."""
    if not name:
        raise KubePkiError("name must not be empty")
    if signer_name:
        # a signer name the API takes (``example.com/path``): the CSRs' rule
        problem = _csr.signer_name_problem(signer_name, legacy_allowed=True)
        if problem:
            raise KubePkiError("signer_name %r %s" % (signer_name, problem))
        prefix = signer_name.replace("/", ":") + ":"
        if not name.startswith(prefix):
            raise KubePkiError("name %r: a ClusterTrustBundle with signer_name %s must be named %s<suffix>, for example %sv1"
                               % (name, signer_name, prefix, prefix))
        suffix = name[len(prefix):]
        error = _csr.dns_subdomain_problem(suffix)
        if error:
            raise KubePkiError("name %r: the part after %s %s" % (name, prefix, error))
        return
    if ":" in name:
        raise KubePkiError("name %r: a ClusterTrustBundle without signer_name must not have ':' in its name "
                           "(set signer_name for a signer's bundle)" % name)
    error = _csr.dns_subdomain_problem(name)
    if error:
        raise KubePkiError("name %r %s" % (name, error))


# ---------------------------------------------------------------- PEM

def _der_of(body, what, index):
    lines = [line.strip() for line in body.strip().splitlines()]
    if any(":" in line for line in lines):
        raise KubePkiError("%s: block %d has PEM headers, which the API refuses" % (what, index))
    try:
        return base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubePkiError("%s: block %d is not valid base64: %s" % (what, index, exc)) from exc


def parse_bundle(text, what):
    """The CA certificates of PEM ``text`` as a list of DER bytes, in order, duplicates dropped.

    Refuses anything the API would refuse, and any private key (without repeating any of it in the message)."""
    if not isinstance(text, str) or not text.strip():
        raise KubePkiError("%s is empty: give one or more PEM CA certificates" % what)
    blocks = _BLOCK.findall(text)
    if "PRIVATE KEY" in text or any("PRIVATE KEY" in kind for kind, _body in blocks):
        raise KubePkiError("%s holds a private key: a trust bundle is public, give only the CA certificate(s)" % what)
    if not blocks:
        raise KubePkiError("%s holds no PEM block: give one or more PEM CA certificates" % what)
    ders, seen = [], set()
    for index, (kind, body) in enumerate(blocks):
        if kind != "CERTIFICATE":
            raise KubePkiError("%s: block %d is a %s, only CERTIFICATE blocks (CA certificates) belong in a trust bundle" % (what, index, kind))
        der = _der_of(body, what, index)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise KubePkiError("%s: block %d does not parse as an X.509 certificate: %s" % (what, index, exc)) from exc
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise KubePkiError("%s: block %d (%s) is not a CA certificate (basic constraints with CA:TRUE required)"
                               % (what, index, cert.subject.rfc4514_string()))
        if der not in seen:
            seen.add(der)
            ders.append(der)
    return ders


def to_pem(ders):
    """The canonical bundle text: each certificate re-encoded as PEM, in order."""
    return "".join(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii") for der in ders)


def cert_summary(der):
    cert = x509.load_der_x509_certificate(der)
    return {"subject": cert.subject.rfc4514_string(), "serial": "%x" % cert.serial_number,
            "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": _crypto.rfc3339(cert.not_valid_after_utc)}


def server_set(text):
    """The set of DER certificates of a bundle read from the server; unreadable blocks count as their text."""
    found = set()
    for kind, body in _BLOCK.findall(text or ""):
        try:
            found.add(base64.b64decode("".join(line.strip() for line in body.strip().splitlines()), validate=True))
        except (binascii.Error, ValueError):
            found.add(("%s:%s" % (kind, body)).encode())
    return found


# ---------------------------------------------------------------- API

def collection_path(version):
    return "/apis/%s/%s/%s" % (GROUP, version, RESOURCE)


def object_path(version, name):
    return collection_path(version) + "/" + quote(name, safe="")


def served_version(client, wanted="auto"):
    """The version of certificates.k8s.io whose resources include clustertrustbundles: ``wanted``, or with
    ``auto`` the newest of v1, v1beta1, v1alpha1. None when the server serves none (or not ``wanted``)."""
    try:
        group = client.request("GET", "/apis/%s" % GROUP, what="API discovery of %s" % GROUP)
    except KubePkiError as error:
        if _kube.status_of(error) == 404:
            return None
        raise
    listed = [entry.get("version") for entry in group.get("versions") or [] if isinstance(entry, dict)]
    candidates = [v for v in VERSIONS if v in listed and (wanted == "auto" or v == wanted)]
    for version in candidates:
        try:
            resources = client.request("GET", "/apis/%s/%s" % (GROUP, version), what="API discovery of %s/%s" % (GROUP, version))
        except KubePkiError as error:
            if _kube.status_of(error) == 404:
                continue
            raise
        if any(isinstance(r, dict) and r.get("name") == RESOURCE for r in resources.get("resources") or []):
            return version
    return None


def server_version(client):
    """(major, minor, text) of the server's ``GET /version`` (``v1.30.14``), or None when it cannot be read."""
    try:
        info = client.request("GET", "/version", what="the server version", retry=False)
    except KubePkiError:
        return None
    if not isinstance(info, dict):
        return None
    text = info.get("gitVersion") or ""
    found = re.match(r"v?(\d+)\.(\d+)", text)
    if not found:
        # some distributions write the minor as "30+"
        found = re.match(r"(\d+)\D*\.(\d+)", "%s.%s" % (info.get("major") or "", info.get("minor") or ""))
        text = text or "%s.%s" % (info.get("major"), info.get("minor"))
    if not found:
        return None
    return int(found.group(1)), int(found.group(2)), text


def newest_for(major, minor):
    """The newest certificates.k8s.io version a Kubernetes ``major.minor`` can serve ClusterTrustBundles in (once
    turned on), or None when it has none (before 1.27) or this module does not know (after LAST_KNOWN)."""
    if (major, minor) < (1, 27) or (major, minor) > LAST_KNOWN:
        return None
    return "v1alpha1" if (major, minor) < (1, 33) else "v1beta1"


def enable_hint(version, api=None):
    """What turns ClusterTrustBundles on, in ``api`` (default: the newest there), for a server of ``version`` (a
    server_version() answer, or None when unknown)."""
    if version is None:
        return NOT_SERVED_HINT
    major, minor, text = version
    if (major, minor) < (1, 27):
        return "ClusterTrustBundles need Kubernetes 1.27 or later, and this server is %s" % text
    newest = newest_for(major, minor)
    if newest is None:
        return "this server is %s; %s" % (text, NOT_SERVED_HINT)
    api = api or newest
    stage = "alpha" if newest == "v1alpha1" else "beta"
    hint = ("this server is %s, where ClusterTrustBundles are %s (newest %s/%s) and off by default: turn on the "
            "ClusterTrustBundle feature gate and the API, kube-apiserver --feature-gates ClusterTrustBundle=true "
            "--runtime-config %s/%s/%s=true" % (text, stage, GROUP, newest, GROUP, api, RESOURCE))
    if newest == "v1alpha1":
        hint += " (or upgrade to Kubernetes 1.33 or later, where they are beta)"
    return hint


def not_served_error(client, wanted):
    """The failure for a server that does not serve ClusterTrustBundles in ``wanted`` (or in any version with auto),
    naming what it would take: the version it does serve them in, or the flags for its own Kubernetes version."""
    which = "%s/%s" % (GROUP, wanted) if wanted != "auto" else "any of %s" % ", ".join("%s/%s" % (GROUP, v) for v in VERSIONS)
    version = server_version(client)
    if wanted == "auto":
        hint = enable_hint(version)
    else:
        other = served_version(client, "auto")
        newest = newest_for(version[0], version[1]) if version else None
        if other is not None:
            hint = "it serves them in %s/%s: set api_version to auto or %s" % (GROUP, other, other)
        elif newest is not None and VERSIONS.index(wanted) < VERSIONS.index(newest):
            hint = ("Kubernetes %s has no %s/%s at all (its newest is %s): set api_version to auto or %s; %s"
                    % (version[2], GROUP, wanted, newest, newest, enable_hint(version)))
        else:
            hint = enable_hint(version, wanted)
    return KubePkiError("the API server at %s does not serve ClusterTrustBundles in %s: %s" % (client.host, which, hint),
                        api_host=client.host)


def get(client, version, name):
    """The object, or None when there is none."""
    try:
        return client.request("GET", object_path(version, name), what="ClusterTrustBundle %s" % name)
    except KubePkiError as error:
        if _kube.status_of(error) == 404:
            return None
        raise


def _explain(error, signer_name):
    """A 403 on a signer's bundle usually is the missing attest permission: say which."""
    if _kube.status_of(error) == 403 and signer_name:
        error.msg += ("; writing a ClusterTrustBundle with signerName needs the verb attest on resource signers, "
                      "resourceName %s (or %s/*), in API group %s" % (signer_name, signer_name.split("/")[0], GROUP))
        error.args = (error.msg,)
    return error


def build(version, name, signer_name, pem, existing=None):
    spec = {"trustBundle": pem}
    if signer_name:
        spec["signerName"] = signer_name
    if existing is not None:
        metadata, spec = _shown(existing).get("metadata") or {}, dict(existing.get("spec") or {}, **spec)
    else:
        metadata = {"name": name, "labels": {_csr.MANAGED_BY: _csr.MANAGED_BY_VALUE}}
    return {"apiVersion": "%s/%s" % (GROUP, version), "kind": "ClusterTrustBundle", "metadata": metadata, "spec": spec}


def _shown(obj):
    """The object for the result, without its managedFields (bookkeeping of the server, not of the bundle)."""
    if not isinstance(obj, dict):
        return obj
    shown = dict(obj)
    if isinstance(shown.get("metadata"), dict):
        shown["metadata"] = {k: v for k, v in shown["metadata"].items() if k != "managedFields"}
    return shown


def _diff_view(obj):
    if obj is None:
        return {}
    spec = obj.get("spec") or {}
    view = {"name": (obj.get("metadata") or {}).get("name"), "trustBundle": spec.get("trustBundle", "")}
    if spec.get("signerName"):
        view["signerName"] = spec["signerName"]
    return view


def desired_pem(params, no_log_values=None):
    """The canonical PEM and its certificates from ``ca_file`` or ``ca_data``."""
    if params.get("ca_file"):
        what = "ca_file %s" % params["ca_file"]
        try:
            text = read_regular_file(params["ca_file"], "ca_file", limit=MAX_BUNDLE_SIZE * 4 + 1).decode("utf-8", "replace")
        except OSError as exc:
            raise KubePkiError("ca_file: cannot read %s: %s" % (params["ca_file"], exc.strerror or exc)) from exc
    else:
        what, text = "ca_data", params.get("ca_data")
    if isinstance(text, str) and "PRIVATE KEY" in text and no_log_values is not None:
        no_log_values.add(text)  # refused below; keep the key out of the echoed invocation
    ders = parse_bundle(text, what)
    pem = to_pem(ders)
    if len(pem) > MAX_BUNDLE_SIZE:
        raise KubePkiError("%s is %d bytes as PEM, more than the API's limit of %d" % (what, len(pem), MAX_BUNDLE_SIZE))
    return ders, pem


def run(ctx, params):
    """Ensure the bundle named ``name`` is present with exactly the given certificates, or absent."""
    name, signer_name, state, wanted = params["name"], params.get("signer_name") or None, params["state"], params["api_version"]
    if state == "absent" and not signer_name:
        # deleting needs no signer_name: a signer's bundle is found by its name alone
        check_name(name.rsplit(":", 1)[-1] if ":" in name else name)
    else:
        check_name(name, signer_name)
    ders = pem = None
    if state == "present":
        if not params.get("ca_file") and not params.get("ca_data"):
            raise KubePkiError("state=present needs ca_file or ca_data (the CA certificate(s) to publish)")
        ders, pem = desired_pem(params, ctx.secrets)
    client = _kube.get_client(params, ctx.secrets)
    version = served_version(client, wanted)
    result = {"changed": False, "name": name, "signer_name": signer_name, "api_version": None, "certificates": [], "bundle": None,
              "served": version is not None}
    if version is None:
        if state == "absent":
            ctx.warn("the API server serves no ClusterTrustBundle API, so there is no ClusterTrustBundle %s to delete" % name)
            return result
        if params.get("if_served"):
            return result  # asked to publish only where the server serves the API
        raise not_served_error(client, wanted)
    result["api_version"] = "%s/%s" % (GROUP, version)
    dry = {"dryRun": "All"} if ctx.check_mode else None
    existing = get(client, version, name)
    if state == "absent":
        if existing is not None:
            try:
                client.request("DELETE", object_path(version, name), query=dry, what="delete ClusterTrustBundle %s" % name)
            except KubePkiError as error:
                if _kube.status_of(error) != 404:
                    raise _explain(error, (existing.get("spec") or {}).get("signerName"))
            result["changed"] = True
        if ctx.diff:
            result["diff"] = {"before": _diff_view(existing), "after": {}}
        return result
    result["certificates"] = [cert_summary(der) for der in ders]
    for _attempt in range(CONFLICT_RETRIES + 1):
        if existing is not None:
            current_signer = (existing.get("spec") or {}).get("signerName") or None
            if current_signer != signer_name:
                raise KubePkiError("ClusterTrustBundle %s exists with signerName %s; signer_name %s differs and signerName cannot be changed: "
                                   "delete it first (state=absent)" % (name, current_signer or "(none)", signer_name or "(none)"))
            if server_set((existing.get("spec") or {}).get("trustBundle")) == set(ders):
                result["bundle"] = _shown(existing)
                if ctx.diff:
                    result["diff"] = {"before": _diff_view(existing), "after": _diff_view(existing)}
                return result
            body = build(version, name, signer_name, pem, existing)
            method, path = "PUT", object_path(version, name)
        else:
            body = build(version, name, signer_name, pem)
            method, path = "POST", collection_path(version)
        try:
            answer = client.request(method, path, query=dry, body=body, what="%s ClusterTrustBundle %s" % ("update" if existing else "create", name))
        except KubePkiError as error:
            status = _kube.status_of(error)
            if status in (409, 404) and _attempt < CONFLICT_RETRIES:
                # someone else created, changed or deleted it in between: look again
                existing = get(client, version, name)
                continue
            raise _explain(error, signer_name)
        result["changed"] = True
        result["bundle"] = _shown(answer)
        if ctx.diff:
            result["diff"] = {"before": _diff_view(existing), "after": _diff_view(answer if answer.get("spec") else body)}
        return result
    raise KubePkiError("ClusterTrustBundle %s kept changing while it was written (%d attempts)" % (name, CONFLICT_RETRIES + 1))
