# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""A light path to the Kubernetes API: kubeconfig, in-cluster and explicit credentials read here, requests
sent with urllib3.

Importing the kubernetes client costs one to two seconds in every module run (the package imports all its
models). For the credentials clusters usually hand out - client certificates, bearer tokens, basic auth,
CA data or files, insecure-skip-tls-verify, a proxy - nothing of it is needed. ``connection_for(auth)``
returns ``None`` for anything else (exec plugins, auth-provider, tls-server-name, several merged kubeconfig
files) and the caller then uses the kubernetes client as before, so behaviour never depends on which path
was taken.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file

try:
    import urllib3
except ImportError:  # pragma: no cover - reported by _deps.require()
    urllib3 = None

try:
    import yaml
except ImportError:  # pragma: no cover - kubernetes depends on PyYAML; without it the library path is used
    yaml = None

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_KUBECONFIG = "~/.kube/config"
# kubeconfig fields this path understands; any other user/cluster field sends the caller to the library
USER_FIELDS = {"client-certificate", "client-certificate-data", "client-key", "client-key-data", "token", "tokenFile",
               "username", "password"}
CLUSTER_FIELDS = {"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify", "proxy-url",
                  "extensions", "disable-compression"}


class Transport:
    """One API server: its URL, a TLS context, the auth headers and a urllib3 pool."""

    def __init__(self, host, ssl_context, auth_headers, verify_ssl=True, proxy=None):
        self.host = host.rstrip("/")
        self.auth_headers = auth_headers
        self.verify_ssl = verify_ssl
        kwargs = {"ssl_context": ssl_context, "maxsize": 4, "retries": False}
        if not verify_ssl:
            kwargs["assert_hostname"] = False
        self.pool = urllib3.ProxyManager(proxy, **kwargs) if proxy else urllib3.PoolManager(**kwargs)

    def request(self, method, url, headers, body, timeout, stream):
        """The urllib3 response of one exchange (not preloaded when ``stream``)."""
        if isinstance(timeout, tuple):
            timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        elif timeout is not None:
            timeout = urllib3.Timeout(connect=timeout, read=timeout)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        return self.pool.request(method, url, body=data, headers=headers, timeout=timeout, retries=False, redirect=False,
                                 preload_content=not stream)

    def close(self):
        self.pool.clear()


def connection_for(auth, source, environ=None):
    """A Transport for resolved ``auth`` options (see _kube.resolve_auth) and its config ``source``, or None
    when the configuration needs the kubernetes client library."""
    if urllib3 is None or yaml is None:
        return None
    environ = os.environ if environ is None else environ
    if source == "explicit":
        settings = {"server": auth["host"]}
    elif source == "kubeconfig":
        settings = kubeconfig_settings(auth["kubeconfig"], auth.get("context"))
    else:
        settings = _in_cluster(environ)
        if settings is None:
            paths = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
            if len(paths) > 1:
                return None  # several files are merged: the library knows the merge rules
            settings = kubeconfig_settings(os.path.expanduser(paths[0] if paths else DEFAULT_KUBECONFIG), None, default=True)
    if settings is None:
        return None
    return _build(settings, auth)


def _in_cluster(environ):
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if not host or not port or not os.path.isfile(token_file):
        return None
    if ":" in host:
        host = "[%s]" % host
    return {"server": "https://%s:%s" % (host, port), "ca_file": os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            "token_file": token_file, "file_fields": {"ca_file": "in-cluster service account CA", "token_file": "in-cluster service account token"}}


def _named(entries, name, kind, where):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(kind) or {}
    raise KubePkiError("%s: %s %r is not defined" % (where, kind, name))


def kubeconfig_settings(source, context, default=False):
    """Settings of ``context`` (or the current one) from a kubeconfig path or dict, or None when it uses
    what only the library handles. Inline data comes back decoded (``ca_data``, ``cert_data``, ``key_data``)."""
    if isinstance(source, dict):
        config, base, where = source, os.getcwd(), "kubeconfig"
    else:
        where = "kubeconfig %s" % source
        try:
            text = read_regular_file(source, "kubeconfig").decode("utf-8")
            config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except FileNotFoundError:
            if default:
                raise KubePkiError("no Kubernetes API server known: set host, kubeconfig or context (or K8S_AUTH_* variables); "
                                   "the default kubeconfig %s does not exist" % source) from None
            raise KubePkiError("kubeconfig %s does not exist" % source) from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise KubePkiError("%s cannot be read: %s" % (where, exc)) from None
        base = os.path.dirname(os.path.abspath(source))
    if not isinstance(config, dict):
        raise KubePkiError("%s is not a kubeconfig (not a mapping)" % where)
    name = context or config.get("current-context")
    if not name:
        raise KubePkiError("%s has no current-context; give context" % where)
    ctx = _named(config.get("contexts"), name, "context", where)
    cluster = _named(config.get("clusters"), ctx.get("cluster"), "cluster", where)
    user = _named(config.get("users"), ctx.get("user"), "user", where) if ctx.get("user") else {}

    def path(value):
        return value if os.path.isabs(value) else os.path.join(base, value)

    if set(user) - USER_FIELDS or set(cluster) - CLUSTER_FIELDS:
        # exec, auth-provider, tls-server-name, impersonation...: the library's job. The files it would read are
        # checked first: a FIFO among them would block the task until its timeout.
        for entry, field in ((cluster, "certificate-authority"), (user, "client-certificate"), (user, "client-key"), (user, "tokenFile")):
            if isinstance(entry.get(field), str) and entry[field] and os.path.lexists(path(entry[field])):
                read_credential(path(entry[field]), "%s: %s" % (where, field))
        return None

    settings = {"server": cluster.get("server"), "insecure": bool(cluster.get("insecure-skip-tls-verify")),
                "proxy": cluster.get("proxy-url"), "where": where, "file_fields": {}}
    if not settings["server"]:
        raise KubePkiError("%s: cluster %r has no server" % (where, ctx.get("cluster")))
    if cluster.get("certificate-authority-data"):
        settings["ca_data"] = _unb64(cluster["certificate-authority-data"], where, "certificate-authority-data")
    elif cluster.get("certificate-authority"):
        settings["ca_file"] = path(cluster["certificate-authority"])
        settings["file_fields"]["ca_file"] = "%s: certificate-authority" % where
    for field, key in (("client-certificate", "cert"), ("client-key", "key")):
        if user.get(field + "-data"):
            settings[key + "_data"] = _unb64(user[field + "-data"], where, field + "-data")
        elif user.get(field):
            settings[key + "_file"] = path(user[field])
            settings["file_fields"][key + "_file"] = "%s: %s" % (where, field)
    if user.get("token"):
        settings["token"] = user["token"]
    elif user.get("tokenFile"):
        settings["token_file"] = path(user["tokenFile"])
        settings["file_fields"]["token_file"] = "%s: tokenFile" % where
    if user.get("username") and user.get("password"):
        settings["basic"] = (user["username"], user["password"])
    return settings


def _unb64(text, where, field):
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise KubePkiError("%s: %s is not base64 of PEM text" % (where, field)) from None


def read_credential(path_, option):
    """The text of a credential file (CA, client certificate or key, token): a regular file only, so that a FIFO or
    device never blocks the task. KubePkiError naming ``option`` and the path otherwise."""
    try:
        return read_regular_file(path_, option).decode("utf-8")
    except FileNotFoundError:
        raise KubePkiError("%s: file %s does not exist" % (option, path_)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KubePkiError("%s: cannot read %s: %s" % (option, path_, getattr(exc, "strerror", None) or exc)) from None


def _build(settings, auth):
    """Apply the explicit options over ``settings`` and make the Transport."""
    host = auth.get("host") or settings["server"]
    verify = not settings.get("insecure")
    if auth.get("validate_certs") is not None:
        verify = auth["validate_certs"]
    fields = settings.get("file_fields") or {}
    ca_file, ca_data = settings.get("ca_file"), settings.get("ca_data")
    ca_option = fields.get("ca_file", "certificate-authority")
    if auth.get("ca_cert"):
        ca_file, ca_data, ca_option = auth["ca_cert"], None, "ca_cert"
    cert = (auth.get("client_cert"), None) if auth.get("client_cert") else (settings.get("cert_file"), settings.get("cert_data"))
    key = (auth.get("client_key"), None) if auth.get("client_key") else (settings.get("key_file"), settings.get("key_data"))
    cert_option = "client_cert" if auth.get("client_cert") else fields.get("cert_file", "client-certificate")
    key_option = "client_key" if auth.get("client_key") else fields.get("key_file", "client-key")
    # every credential file is read here, as a regular file (ssl would block on a FIFO): the CA goes to ssl as data,
    # the client pair is checked and then handed to ssl by path (it reads only files)
    if ca_file:
        ca_data = read_credential(ca_file, ca_option)
    for file_, option in ((cert[0], cert_option), (key[0], key_option)):
        if file_:
            read_credential(file_, option)

    headers = {}
    token = auth.get("api_key") or settings.get("token")
    if not token and settings.get("token_file"):
        token = read_credential(settings["token_file"], fields.get("token_file", "tokenFile")).strip()
    if token:
        headers["authorization"] = "Bearer %s" % token
    elif settings.get("basic"):
        pair = "%s:%s" % settings["basic"]
        headers["authorization"] = "Basic %s" % base64.b64encode(pair.encode("utf-8")).decode("ascii")

    try:
        context = ssl.create_default_context(cadata=ca_data)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KubePkiError("the cluster CA (%s) cannot be loaded: %s" % (ca_file or "certificate-authority-data", exc)) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert[0] or cert[1]:
        if not (key[0] or key[1]):
            raise KubePkiError("a client certificate is configured without its key (client_key / client-key)")
        _load_client_pair(context, cert, key)
    return Transport(host, context, headers, verify_ssl=verify, proxy=auth.get("proxy") or settings.get("proxy"))


def _load_client_pair(context, cert, key):
    """Load a client certificate and key given as (file, data) pairs; inline data passes through a private
    temporary directory that is removed at once (ssl reads only files)."""
    directory = None
    try:
        files = []
        for (file_, data), name in ((cert, "client.crt"), (key, "client.key")):
            if data:
                if directory is None:
                    directory = tempfile.mkdtemp(prefix="kubepki-tls-")
                file_ = os.path.join(directory, name)
                descriptor = os.open(file_, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(data)
            files.append(file_)
        context.load_cert_chain(files[0], files[1])
    except (ssl.SSLError, OSError) as exc:
        raise KubePkiError("the client certificate and key cannot be loaded: %s" % exc) from None
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
