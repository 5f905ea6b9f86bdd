# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The etcd options of the modules, checked without connecting: endpoints, prefix, TLS files, credentials,
timeout. ``endpoints_problem(params)`` and ``key_segment_problem(value, field)`` let callers refuse bad input
before anything is written."""

from __future__ import annotations

import math
import os
from urllib.parse import urlsplit

from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import NotRegularFile, read_regular_file
from ansible_collections.kubepki.certs.plugins.module_utils._uri import redact_uri

ENV_ENDPOINTS = "KUBEPKI_ETCD_ENDPOINTS"
DEFAULT_PREFIX = "/kubepki"

ETCD_ARG_SPEC = {
    "etcd_endpoints": {"type": "list", "elements": "str"},
    "etcd_prefix": {"type": "str", "default": DEFAULT_PREFIX},
    "etcd_ca_cert": {"type": "path"},
    "etcd_client_cert": {"type": "path"},
    "etcd_client_key": {"type": "path"},
    "etcd_username": {"type": "str"},
    "etcd_password": {"type": "str", "no_log": True},
    "etcd_timeout": {"type": "float", "default": 5.0},
}


def split_endpoints(text):
    """The endpoints of a comma-separated list (``KUBEPKI_ETCD_ENDPOINTS``, or etcd_endpoints given as one string)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def endpoints_from_params(params):
    """``etcd_endpoints``, else ``KUBEPKI_ETCD_ENDPOINTS`` (comma-separated); an empty list when neither is set."""
    return list(params.get("etcd_endpoints") or split_endpoints(os.environ.get(ENV_ENDPOINTS, "")))


def connection_options(params):
    """The keyword arguments of options_problem and EtcdTransport (all but the endpoints) from a module's ``etcd_*``
    options. Only an unset option takes its default: an empty prefix or a zero timeout is refused, not replaced."""
    prefix, timeout = params.get("etcd_prefix"), params.get("etcd_timeout")
    options = {name: params.get("etcd_" + name) for name in ("ca_cert", "client_cert", "client_key", "username", "password")}
    return dict(options, prefix=DEFAULT_PREFIX if prefix is None else prefix, timeout=5.0 if timeout is None else timeout)


def endpoint_problem(url, option="etcd_endpoints"):
    """Why ``url`` is not a usable etcd endpoint (``http[s]://host[:port]``), or None. The URL in the message
    never shows credentials: they are refused, and the message must not repeat them."""
    if not isinstance(url, str) or not url.strip():
        return "%s: %r is not a URL" % (option, url)
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None or "@" in url:
        return ("%s: %r must be scheme://host:port only: give etcd credentials as etcd_username and etcd_password "
                "(or etcd_client_cert and etcd_client_key), not in the URL" % (option, redact_uri(url.strip())))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "%s: %r is not an http:// or https:// URL with a host" % (option, url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "%s: %r must be scheme://host:port only (no path, query or credentials)" % (option, url)
    try:
        valid_port = parts.port != 0
    except ValueError:
        valid_port = False
    return None if valid_port else "%s: %r has an invalid port" % (option, url)


def parse_endpoint(url):
    """``(protocol, host, port)`` of one endpoint URL; KubePkiError naming ``etcd_endpoints`` otherwise."""
    problem = endpoint_problem(url)
    if problem:
        raise KubePkiError(problem)
    parts = urlsplit(url.strip())
    return parts.scheme, parts.hostname, parts.port or 2379


def prefix_problem(prefix, option="etcd_prefix"):
    """Why ``prefix`` is not a well-formed key prefix (``/`` then non-empty segments, no ``.``/``..``), or None.

    One trailing ``/`` is allowed (it is dropped), and ``/`` alone is the root.
    """
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix != prefix.strip():
        return "%s must start with '/', got %r" % (option, prefix)
    body = prefix[1:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix[1:]
    if not body:
        return None
    for segment in body.split("/"):
        if segment == "":
            return "%s %r has an empty segment ('//')" % (option, prefix)
        if segment in (".", ".."):
            return "%s %r must not contain a %r segment" % (option, prefix, segment)
        if _has_control(segment):
            return "%s %r must not contain control characters" % (option, prefix)
    return None


def key_segment_problem(value, field="name"):
    """Why ``value`` cannot be one segment of an etcd key (a scope, cluster or user name), or None.

    Refused: anything but a non-empty string, '/' anywhere, '.' and '..' (both make keys that read as
    paths to other records), control characters. ``field`` names the parameter in the message.
    """
    if not isinstance(value, str) or not value:
        return "%s must be a non-empty string to build the etcd key, got %r" % (field, value)
    problem = _csr.segment_problem(value)
    return None if problem is None else "%s %r %s" % (field, value, problem)


def _has_control(text):
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def _file_problem(option, path, marker, what):
    """Why the PEM file ``path`` given as ``option`` cannot be used, or None. Only a marker is looked for;
    nothing read is kept or reported."""
    if not isinstance(path, str) or not path:
        return "%s must be a file path, got %r" % (option, path)
    try:
        content = read_regular_file(path, option, limit=1024 * 1024)  # a FIFO or device is refused, not opened
    except NotRegularFile as exc:
        return "%s: %s is not a readable file: it is %s, not a regular file" % (option, path, exc.kind)
    except OSError as exc:
        return "%s: %s is not a readable file (%s)" % (option, path, exc.strerror or type(exc).__name__)
    if marker not in content:
        return "%s: %s holds no PEM %s" % (option, path, what)
    return None


def options_problem(endpoints, prefix=DEFAULT_PREFIX, ca_cert=None, client_cert=None, client_key=None,
                    username=None, password=None, timeout=5.0, source="etcd_endpoints"):
    """The first problem of a set of etcd options (messages name the option), or None. Connects to nothing."""
    problem = next(filter(None, (endpoint_problem(url, source) for url in endpoints)), None) or prefix_problem(prefix)
    if problem:
        return problem
    if bool(client_cert) != bool(client_key):
        return "etcd_client_cert and etcd_client_key must be given together"
    if bool(username) != bool(password):
        return "etcd_username and etcd_password must be given together"
    for option, path, marker, what in (("etcd_ca_cert", ca_cert, b"-----BEGIN CERTIFICATE-----", "certificate"),
                                       ("etcd_client_cert", client_cert, b"-----BEGIN CERTIFICATE-----", "certificate"),
                                       ("etcd_client_key", client_key, b"PRIVATE KEY-----", "private key")):
        if path is not None:
            problem = _file_problem(option, path, marker, what)
            if problem:
                return problem
    tls_options = [option for option, value in (("etcd_ca_cert", ca_cert), ("etcd_client_cert", client_cert)) if value]
    if tls_options:
        for url in endpoints:
            if urlsplit(url.strip()).scheme != "https":
                return "%s: %r is plain http but %s is given (TLS files only apply to https:// endpoints)" % (
                    source, url, " and ".join(tls_options))
    if isinstance(timeout, bool):
        return "etcd_timeout must be a number of seconds, got %r" % (timeout,)
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        return "etcd_timeout must be a number of seconds, got %r" % (timeout,)
    if not math.isfinite(seconds) or seconds <= 0:
        return "etcd_timeout must be positive, got %r" % (timeout,)
    return None


def endpoints_problem(params, required=False):
    """The first problem of a module's ``etcd_*`` options (a message naming the option), or None.

    Pure: reads ``params`` (and ``KUBEPKI_ETCD_ENDPOINTS`` when ``etcd_endpoints`` is unset) and the named
    TLS files, connects to nothing. With no endpoint configured etcd is not used and nothing else is checked,
    unless ``required``. Checks: each endpoint an http(s)://host[:port] URL, https:// when etcd_ca_cert or
    etcd_client_cert is given, etcd_prefix well formed, etcd_client_cert with etcd_client_key and
    etcd_username with etcd_password, TLS files readable PEM, etcd_timeout positive.
    """
    given = params.get("etcd_endpoints")
    if isinstance(given, str):
        given = split_endpoints(given)
    if given is not None and not isinstance(given, (list, tuple)):
        return "etcd_endpoints must be a list of URLs, got %s" % type(given).__name__
    endpoints = endpoints_from_params(dict(params, etcd_endpoints=given))
    if not endpoints:
        if required:
            return "etcd_endpoints: no etcd endpoint given (set etcd_endpoints or KUBEPKI_ETCD_ENDPOINTS)"
        return None
    return options_problem(endpoints, source="etcd_endpoints" if given else "etcd_endpoints (from %s)" % ENV_ENDPOINTS,
                           **connection_options(params))
