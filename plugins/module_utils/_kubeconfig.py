# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""kubeconfig for client-certificate users: pure rendering (the ``kind: Config`` mapping of csr-api-contract.md
section 10), validation, secrets (``secret_values()`` for no_log, ``redacted()`` for diffs), and a login check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube
from ansible_collections.kubepki.certs.plugins.module_utils._kube import transport as _kube_transport
from ansible_collections.kubepki.certs.plugins.module_utils._pki.crypto import b64
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

try:
    import yaml
    _RESOLVER = yaml.resolver.Resolver()
except ImportError:  # pragma: no cover - JSON is valid YAML, kubectl reads it as well
    yaml = None

SECRET_FIELDS = ("client-key-data", "token", "password")
REDACTED = "<redacted>"


def entry_names(user, cluster, context=None):
    """``(user entry name, context name)`` for one cluster: ``<user>@<cluster>`` unless a context is given."""
    context = context or "%s@%s" % (user, cluster)
    return "%s@%s" % (user, cluster), context


def render(entries, current_context=None):
    """The kubeconfig mapping for ``entries`` (one per cluster), in their order.

    Each entry: ``cluster`` (name), ``server``, ``ca_pem`` (or None), ``user`` (CN), ``certificate_pem``,
    ``private_key_pem`` (or ``private_key_path``: a key the user holds, referred to as ``client-key`` and
    never read), optional ``namespace`` and ``context``. ``current_context`` defaults to the first context.
    """
    if not entries:
        raise KubePkiError("clusters: give at least one cluster to render a kubeconfig for")
    clusters, users, contexts = [], [], []
    seen = set()
    for entry in entries:
        user_name, context_name = entry_names(entry["user"], entry["cluster"], entry.get("context"))
        if context_name in seen:
            raise KubePkiError("clusters: context name %r is used twice" % context_name)
        seen.add(context_name)
        cluster = {"server": entry["server"]}
        if entry.get("ca_pem"):
            cluster["certificate-authority-data"] = b64(entry["ca_pem"])
        clusters.append({"name": entry["cluster"], "cluster": cluster})
        user = {"client-certificate-data": b64(entry["certificate_pem"])}
        if entry.get("private_key_path"):
            user["client-key"] = entry["private_key_path"]
        else:
            user["client-key-data"] = b64(entry["private_key_pem"])
        users.append({"name": user_name, "user": user})
        context = {"cluster": entry["cluster"], "user": user_name}
        if entry.get("namespace"):
            context["namespace"] = entry["namespace"]
        contexts.append({"name": context_name, "context": context})
    if current_context is None:
        current_context = contexts[0]["name"]
    elif current_context not in seen:
        raise KubePkiError("current_context %r is none of the rendered contexts (%s)" % (current_context, ", ".join(sorted(seen))))
    return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": clusters, "users": users, "contexts": contexts,
            "current-context": current_context}


def _named(items):
    """``{name: value}`` of a kubeconfig list (``clusters``, ``users``); the first of a name wins."""
    found = {}
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in found:
            found[item["name"]] = item
    return found


def _context_of(item):
    """The ``context`` mapping of a kubeconfig ``contexts`` item ({} when it has none)."""
    value = item.get("context")
    return value if isinstance(value, dict) else {}


def _text(value):
    """``value`` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _pem_of(value, what):
    """The text of base64 ``value`` (a kubeconfig ``*-data`` field); KubePkiError naming ``what``."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (TypeError, ValueError, binascii.Error, UnicodeDecodeError):
        raise KubePkiError("its %s is not base64 PEM text" % what) from None


# the fields render() writes, and the only ones a context must have to be carried into the next rendering
_CLUSTER_FIELDS = {"server", "certificate-authority-data"}
_USER_FIELDS = {"client-certificate-data", "client-key-data", "client-key"}


def client_contexts(config):
    """The contexts of an existing kubeconfig mapping (a file written before), in their order, each a dict with
    ``context`` (its name), ``cluster`` (the name of its cluster), ``server``, ``ca_pem`` (or None), ``namespace``,
    ``certificate_pem`` and ``problem``: None for a context of the kind render() writes (a server, inline CA data or
    none, an inline client certificate and an inline or referred-to key), else why it is not one (the other fields
    may then be None). A second context of the same cluster has a problem: the first one stands for the cluster."""
    clusters, users = _named(config.get("clusters")), _named(config.get("users"))
    found, seen = [], set()
    for item in config.get("contexts") or []:
        if not isinstance(item, dict):
            continue
        context = _context_of(item)
        entry = {"context": _text(item.get("name")), "cluster": _text(context.get("cluster")), "server": None, "ca_pem": None,
                 "namespace": _text(context.get("namespace")), "certificate_pem": None, "problem": None}
        found.append(entry)
        cluster = (clusters.get(entry["cluster"]) or {}).get("cluster")
        user = (users.get(_text(context.get("user"))) or {}).get("user")
        if entry["context"] is None or entry["cluster"] is None:
            entry["problem"] = "it has no name or no cluster"
        elif context.get("namespace") not in (None, "") and entry["namespace"] is None:
            entry["problem"] = "its namespace is not a string"
        elif entry["cluster"] in seen:
            entry["problem"] = "an earlier context of the file is for the same cluster"
        elif not isinstance(cluster, dict) or not isinstance(user, dict):
            entry["problem"] = "its cluster or user entry is missing"
        elif set(cluster) - _CLUSTER_FIELDS or set(user) - _USER_FIELDS or not user.get("client-certificate-data"):
            entry["problem"] = "it is not a client-certificate context of the kind this module writes"
        elif not isinstance(cluster.get("server"), str) or not cluster["server"]:
            entry["problem"] = "its cluster has no server"
        if entry["problem"] is None:
            seen.add(entry["cluster"])
            entry["server"] = cluster["server"]
            try:
                if cluster.get("certificate-authority-data"):
                    entry["ca_pem"] = _pem_of(cluster["certificate-authority-data"], "certificate-authority-data")
                entry["certificate_pem"] = _pem_of(user["client-certificate-data"], "client-certificate-data")
            except KubePkiError as exc:
                entry["problem"] = exc.msg
    return found


def without_clusters(config, names):
    """``(config without the contexts of the clusters ``names``, the names of the contexts removed)``.

    The cluster entries of ``names`` and the user entries only those contexts used go too; everything else stays as
    it was. A ``current-context`` removed becomes the first context left (None when none is left)."""
    names = set(names)
    contexts = [item for item in config.get("contexts") or [] if isinstance(item, dict)]
    removed = [item for item in contexts if _context_of(item).get("cluster") in names]
    if not removed:
        return config, []
    left = [item for item in contexts if _context_of(item).get("cluster") not in names]
    gone_users = {_context_of(item).get("user") for item in removed} - {_context_of(item).get("user") for item in left}
    pruned = dict(config)
    pruned["contexts"] = left
    pruned["clusters"] = [item for item in config.get("clusters") or [] if not (isinstance(item, dict) and item.get("name") in names)]
    pruned["users"] = [item for item in config.get("users") or [] if not (isinstance(item, dict) and item.get("name") in gone_users)]
    if pruned.get("current-context") not in [item.get("name") for item in left]:
        pruned["current-context"] = left[0].get("name") if left else None
    return pruned, [item.get("name") for item in removed]


# Scalars PyYAML writes plain (unquoted): no blank, no indicator at the start, no ": " or " #" inside; and only
# when its resolver reads them back as strings, not as numbers, booleans, null or dates (checked in _plain()).
_PLAIN = re.compile(r"[A-Za-z0-9_./+=~][A-Za-z0-9_./+=@~:-]*")
_STR_TAG = "tag:yaml.org,2002:str"


def _plain(value):
    if not (isinstance(value, str) and _PLAIN.fullmatch(value)) or value.endswith(":") or value.startswith("..."):
        return False
    return _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG


def _block(node, indent, out):
    """``node`` (a mapping) as PyYAML's block style writes it (sequences not indented under their key); False
    when some scalar is not of the plain kind, which PyYAML alone then writes."""
    pad = " " * indent
    first = True
    for key, value in node.items():
        if not _plain(key) or len(key) >= 128:
            return False
        lead = out.pop() if first and out and out[-1].endswith("- ") else pad
        first = False
        if isinstance(value, dict) and value:
            out.append("%s%s:\n" % (lead, key))
            if not _block(value, indent + 2, out):
                return False
        elif isinstance(value, list) and value:
            out.append("%s%s:\n" % (lead, key))
            for item in value:
                if not (isinstance(item, dict) and item):
                    return False
                out.append(pad + "- ")
                if not _block(item, indent + 2, out):
                    return False
        elif isinstance(value, (dict, list)):
            out.append("%s%s: %s\n" % (lead, key, "{}" if isinstance(value, dict) else "[]"))
        elif _plain(value):
            out.append("%s%s: %s\n" % (lead, key, value))
        else:
            return False
    return True


def dump(config):
    """The kubeconfig as YAML text (JSON when PyYAML is missing); stable for equal input.

    A kubeconfig of plain scalars (names, URLs, base64 data: the usual case) is written here, as PyYAML would write
    it: a batch renders thousands, and PyYAML's representer takes milliseconds for each."""
    if yaml is not None:
        out = []
        if isinstance(config, dict) and config and _block(config, 0, out):
            return "".join(out)
        # libyaml's emitter when PyYAML has it: the pure-Python one dominated batch renders.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(config, Dumper=dumper, default_flow_style=False, sort_keys=False, width=1 << 16)
    return json.dumps(config, indent=2) + "\n"


def load(text, what="kubeconfig"):
    """The mapping of kubeconfig ``text`` (YAML or JSON); KubePkiError when it is not a mapping."""
    try:
        if yaml is not None:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        else:
            data = json.loads(text)
    except Exception as exc:  # pylint: disable=broad-except
        raise KubePkiError("%s cannot be parsed: %s" % (what, exc)) from None
    if not isinstance(data, dict):
        raise KubePkiError("%s is not a mapping" % what)
    return data


def secret_values(config, encoded=True):
    """Every secret string of ``config``: the key PEM, its lines, and (``encoded``) the base64 data itself.

    A module that returns the kubeconfig must pass ``encoded=False``: Ansible masks every no_log value in the
    result, so masking the base64 data would cut the key out of the returned kubeconfig.
    """
    found = []
    for user in config.get("users") or []:
        data = (user.get("user") or {})
        for field in SECRET_FIELDS:
            value = data.get(field)
            if not value:
                continue
            if encoded or not field.endswith("-data"):
                found.append(value)
            if field.endswith("-data"):
                try:
                    pem = base64.b64decode(value).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    continue
                found.append(pem)
                found.extend(line for line in pem.splitlines() if len(line) > 16 and "-----" not in line)
    return found


def _fingerprint(value):
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def redacted(config):
    """``config`` with key data replaced by a marker and certificate data by a short fingerprint (for diffs)."""
    if not config:
        return config
    copy = json.loads(json.dumps(config))
    for item in copy.get("clusters") or []:
        cluster = item.get("cluster") or {}
        if cluster.get("certificate-authority-data"):
            cluster["certificate-authority-data"] = _fingerprint(cluster["certificate-authority-data"])
    for item in copy.get("users") or []:
        user = item.get("user") or {}
        for field in list(user):
            if field in SECRET_FIELDS:
                user[field] = REDACTED
            elif field.endswith("-data"):
                user[field] = _fingerprint(user[field])
    return copy


def validate(config, entries=None):
    """Read ``config`` (the mapping or its text) back as a client does; KubePkiError on any problem.

    Names must be unique, ``current-context`` must exist, and every context must resolve, through the
    reader the modules themselves log in with (``_kube_transport``), to a server and a client certificate
    and key. With ``entries`` (what render() was given), each context must give back exactly their server,
    CA, certificate and key.
    """
    if isinstance(config, str):
        config = load(config, what="the rendered kubeconfig")
    for kind in ("clusters", "users", "contexts"):
        seen = set()
        for item in config.get(kind) or []:
            name = item.get("name") if isinstance(item, dict) else None
            if not name or name in seen:
                raise KubePkiError("the rendered kubeconfig has %s %s" % (
                    kind[:-1], "%r twice" % name if name else "without a name"))
            seen.add(name)
    contexts = [item["name"] for item in config.get("contexts") or []]
    if config.get("current-context") not in contexts:
        raise KubePkiError("the rendered kubeconfig's current-context %r is none of its contexts" % config.get("current-context"))
    expected = {entry_names(entry["user"], entry["cluster"], entry.get("context"))[1]: entry for entry in entries or ()}
    if entries is not None and set(contexts) != set(expected):
        raise KubePkiError("the rendered kubeconfig has contexts %s, not %s" % (sorted(contexts), sorted(expected)))
    for name in contexts:
        try:
            settings = _kube_transport.kubeconfig_settings(config, name)
        except KubePkiError as exc:
            raise KubePkiError("the rendered kubeconfig does not load (context %r): %s" % (name, exc.msg)) from None
        if settings is None:
            raise KubePkiError("the rendered kubeconfig context %r uses fields only the kubernetes library reads" % name)
        if not (settings.get("cert_data") and (settings.get("key_data") or settings.get("key_file"))):
            raise KubePkiError("the rendered kubeconfig context %r carries no client certificate and key" % name)
        want = expected.get(name)
        if want is None:
            continue
        key = ("client-key", settings.get("key_file"), want["private_key_path"]) if want.get("private_key_path") else (
            "client-key-data", settings.get("key_data"), want["private_key_pem"])
        for field, got, wanted in (("server", settings["server"], want["server"]),
                                   ("certificate-authority-data", settings.get("ca_data"), want.get("ca_pem") or None),
                                   ("client-certificate-data", settings["cert_data"], want["certificate_pem"]), key):
            if got != wanted:
                raise KubePkiError("the rendered kubeconfig context %r gives back another %s than was rendered" % (name, field))
    return True


def whoami(config, context):
    """Log in to the cluster of ``context`` with ``config`` and return the identity the cluster sees.

    SelfSubjectReview (authentication.k8s.io/v1, then v1beta1) gives ``username``/``groups``; a server
    without it gets an authenticated ``GET /api`` and only ``authenticated: true`` is reported.
    """
    transport = _kube_transport.connection_for({"kubeconfig": config, "context": context}, "kubeconfig")
    if transport is None:  # only without urllib3 or PyYAML, which the kubernetes library needs as well
        raise KubePkiError("verify: logging in with the rendered kubeconfig needs the urllib3 and PyYAML libraries")
    return _whoami(_kube.KubeClient(None, deadline=15, transport=transport), context)


def _whoami(client, context):
    host = client.host
    try:
        for version in ("v1", "v1beta1"):
            body = {"apiVersion": "authentication.k8s.io/%s" % version, "kind": "SelfSubjectReview"}
            try:
                reply = client.request("POST", "/apis/authentication.k8s.io/%s/selfsubjectreviews" % version, body=body,
                                       what="SelfSubjectReview", timeout=15)
            except KubePkiError as exc:
                if _kube.status_of(exc) in (404, 405):
                    continue
                raise _login_error(context, host, exc) from None
            user_info = ((reply or {}).get("status") or {}).get("userInfo") or {}
            return {"context": context, "server": host, "authenticated": True, "method": "SelfSubjectReview/%s" % version,
                    "username": user_info.get("username"), "groups": list(user_info.get("groups") or []),
                    "uid": user_info.get("uid"), "extra": user_info.get("extra") or {}}
        try:
            client.request("GET", "/api", what="GET /api", timeout=15)
        except KubePkiError as exc:
            raise _login_error(context, host, exc) from None
        return {"context": context, "server": host, "authenticated": True, "method": "GET /api",
                "username": None, "groups": None, "uid": None, "extra": {}}
    finally:
        client.close()


def _login_error(context, host, exc):
    status = _kube.status_of(exc)
    if status == 401:
        return KubePkiError("verify: %s (context %r) rejected the rendered client certificate (401 Unauthorized)" % (host, context))
    if status is None:
        return KubePkiError("verify: cannot reach %s (context %r) with the rendered kubeconfig: %s" % (host, context, exc.msg))
    return KubePkiError("verify: %s (context %r) answered: %s" % (host, context, exc.msg))
