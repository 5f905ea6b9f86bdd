# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""kubeconfig for client-certificate users: pure rendering, validation, secrets, and a login check.

``render()`` builds the ``kind: Config`` mapping of csr-api-contract.md section 10 (clusters with
``server`` and ``certificate-authority-data``, users with ``client-certificate-data`` and
``client-key-data``, one context per cluster, ``current-context``). ``validate()`` loads it back with the
kubernetes client's own loader. ``secret_values()`` lists what must go into ``no_log_values`` and
``redacted()`` is the non-secret structure for diffs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

from ansible_collections.kubepki.certs.plugins.module_utils import _kube, _kube_transport
from ansible_collections.kubepki.certs.plugins.module_utils._crypto import b64
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

try:
    import yaml
except ImportError:  # pragma: no cover - JSON is valid YAML, kubectl reads it as well
    yaml = None

# The kubernetes library (one to two seconds to import) is loaded only to validate a new rendering or to
# verify through credentials the light transport does not handle.
k8s_client = None
kube_config = None
ConfigException = None

SECRET_FIELDS = ("client-key-data",)
REDACTED = "<redacted>"


def entry_names(user, cluster, context=None):
    """``(user entry name, context name)`` for one cluster: ``<user>@<cluster>`` unless a context is given."""
    context = context or "%s@%s" % (user, cluster)
    return "%s@%s" % (user, cluster), context


def render(entries, current_context=None):
    """The kubeconfig mapping for ``entries`` (one per cluster), in their order.

    Each entry: ``cluster`` (name), ``server``, ``ca_pem`` (or None), ``user`` (CN), ``certificate_pem``,
    ``private_key_pem``, optional ``namespace`` and ``context``. ``current_context`` defaults to the first
    context.
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
        users.append({"name": user_name, "user": {
            "client-certificate-data": b64(entry["certificate_pem"]),
            "client-key-data": b64(entry["private_key_pem"]),
        }})
        context = {"cluster": entry["cluster"], "user": user_name}
        if entry.get("namespace"):
            context["namespace"] = entry["namespace"]
        contexts.append({"name": context_name, "context": context})
    if current_context is None:
        current_context = contexts[0]["name"]
    elif current_context not in seen:
        raise KubePkiError("current_context %r is none of the rendered contexts (%s)" % (current_context, ", ".join(sorted(seen))))
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current_context,
    }


def dump(config):
    """The kubeconfig as YAML text (JSON when PyYAML is missing); stable for equal input."""
    if yaml is not None:
        # libyaml's emitter when PyYAML has it: the pure-Python one dominated batch renders.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(config, Dumper=dumper, default_flow_style=False, sort_keys=False, width=1 << 16)
    return json.dumps(config, indent=2) + "\n"


def load(text, what="kubeconfig"):
    """The mapping of kubeconfig ``text`` (YAML or JSON); KubePkiError when it is not a mapping."""
    try:
        data = yaml.safe_load(text) if yaml is not None else json.loads(text)
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
    import base64  # pylint: disable=import-outside-toplevel
    found = []
    for user in config.get("users") or []:
        data = (user.get("user") or {})
        for field in SECRET_FIELDS + ("token", "password"):
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
            if field in SECRET_FIELDS or field in ("token", "password"):
                user[field] = REDACTED
            elif field.endswith("-data"):
                user[field] = _fingerprint(user[field])
    return copy


def _require_client():
    global k8s_client, kube_config, ConfigException  # pylint: disable=global-statement
    if kube_config is None:
        try:
            from kubernetes import client as client_lib  # pylint: disable=import-outside-toplevel
            from kubernetes.config import kube_config as loader_lib  # pylint: disable=import-outside-toplevel
            from kubernetes.config.config_exception import ConfigException as config_exception  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise KubePkiError("the kubernetes Python library is needed to validate or verify a kubeconfig") from None
        k8s_client, kube_config, ConfigException = client_lib, loader_lib, config_exception


def preload():
    """Import the kubernetes client now (in a background thread, while other work waits on the network)."""
    try:
        _require_client()
    except KubePkiError:
        pass  # validate() reports it when it is needed


@contextlib.contextmanager
def validation_dir():
    """A 0700 directory for the files the kubernetes loader writes (certificates, the key), removed afterwards.

    Pass it to validate() for a batch: the loader then writes each distinct CA file once for all kubeconfigs."""
    path = tempfile.mkdtemp(prefix="kubepki-kubeconfig-")
    try:
        yield path
    finally:
        cache = getattr(kube_config, "_temp_files", None)
        if isinstance(cache, dict):
            for content, name in list(cache.items()):
                if name.startswith(path + os.sep):
                    cache.pop(content, None)
        shutil.rmtree(path, ignore_errors=True)


def _load_context(config, context, temp_dir):
    configuration = k8s_client.Configuration()
    try:
        loader = kube_config.KubeConfigLoader(config_dict=config, active_context=context, temp_file_path=temp_dir)
        loader.load_and_set(configuration)
    except (ConfigException, KeyError, TypeError, ValueError) as exc:
        raise KubePkiError("the rendered kubeconfig does not load (context %r): %s" % (context, exc)) from None
    return configuration


def validate(config, temp_dir=None):
    """Load every context of ``config`` with the kubernetes client's loader; KubePkiError on any problem.

    ``temp_dir`` is a validation_dir() shared by a batch; without it the call makes and removes its own."""
    _require_client()
    if temp_dir is None:
        with validation_dir() as own:
            return validate(config, own)
    servers = {item["name"]: (item.get("cluster") or {}).get("server") for item in config.get("clusters") or []}
    for item in config.get("contexts") or []:
        configuration = _load_context(config, item["name"], temp_dir)
        expected = servers.get(item["context"]["cluster"])
        if configuration.host.rstrip("/") != (expected or "").rstrip("/"):
            raise KubePkiError("the rendered kubeconfig context %r resolves to %r, not %r" % (item["name"], configuration.host, expected))
        if not (configuration.cert_file and configuration.key_file):
            raise KubePkiError("the rendered kubeconfig context %r carries no client certificate and key" % item["name"])
    return True


def whoami(config, context):
    """Log in to the cluster of ``context`` with ``config`` and return the identity the cluster sees.

    SelfSubjectReview (authentication.k8s.io/v1, then v1beta1) gives ``username``/``groups``; a server
    without it gets an authenticated ``GET /api`` and only ``authenticated: true`` is reported.
    """
    transport = _kube_transport.connection_for({"kubeconfig": config, "context": context}, "kubeconfig")
    if transport is not None:
        return _whoami(_kube.KubeClient(None, deadline=15, transport=transport), context)
    _require_client()
    with validation_dir() as temp_dir:
        configuration = _load_context(config, context, temp_dir)
        configuration.retries = False
        return _whoami(_kube.KubeClient(k8s_client.ApiClient(configuration), deadline=15), context)


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
            return {
                "context": context, "server": host, "authenticated": True,
                "method": "SelfSubjectReview/%s" % version,
                "username": user_info.get("username"), "groups": list(user_info.get("groups") or []),
                "uid": user_info.get("uid"), "extra": user_info.get("extra") or {},
            }
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
