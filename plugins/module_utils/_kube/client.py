# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Kubernetes API access: the auth options (names, K8S_AUTH_* variables and precedence as in kubernetes.core),
one client per module run, and a request wrapper that retries what is worth retrying.

Requests go through the kubernetes client's own transport (TLS, client certificates, proxy, bearer token,
exec and refresh hooks), but bodies and answers are plain dicts: the typed models of recent clients validate
and convert every field, which we neither need nor want for the few CSR calls made here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote, urlencode

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

from ansible_collections.kubepki.certs.plugins.module_utils import _secrets
from ansible_collections.kubepki.certs.plugins.module_utils._kube import transport as _kube_transport

try:
    import urllib3
except ImportError:  # pragma: no cover - reported by _deps.require()
    urllib3 = None


class ApiException(Exception):  # noqa: N818 pylint: disable=missing-class-docstring
    """Stands in for kubernetes.client.exceptions.ApiException until the library is imported."""
    status = 0
    body = None
    headers = None


class ConfigException(Exception):  # noqa: N818 pylint: disable=missing-class-docstring
    """Stands in for kubernetes.config.config_exception.ConfigException until the library is imported."""


# The kubernetes library is imported only when a configuration needs it (see _kube_transport): importing it
# costs one to two seconds per module run.
k8s_client = None
k8s_config = None


def import_kubernetes():
    """Import the kubernetes client library into this module's globals."""
    global k8s_client, k8s_config, ApiException, ConfigException  # pylint: disable=global-statement
    if k8s_client is None:
        from kubernetes import client as client_lib  # pylint: disable=import-outside-toplevel
        from kubernetes import config as config_lib  # pylint: disable=import-outside-toplevel
        from kubernetes.client.exceptions import ApiException as api_exception  # pylint: disable=import-outside-toplevel
        from kubernetes.config.config_exception import ConfigException as config_exception  # pylint: disable=import-outside-toplevel
        k8s_client, k8s_config, ApiException, ConfigException = client_lib, config_lib, api_exception, config_exception
    return k8s_client


AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "raw"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False},
    "proxy": {"type": "str"},
}

# option -> the name kubernetes-client's Configuration uses (also accepted as K8S_AUTH_<NAME>)
CLIENT_NAMES = {
    "kubeconfig": "kubeconfig",
    "context": "context",
    "host": "host",
    "api_key": "api_key",
    "validate_certs": "verify_ssl",
    "ca_cert": "ssl_ca_cert",
    "client_cert": "cert_file",
    "client_key": "key_file",
    "proxy": "proxy",
}

RETRY_STATUSES = (429, 500, 503)
DEFAULT_DEADLINE = 60.0
# connection errors (refused, reset, timed out) are retried for at most this long: long enough for an apiserver
# restart, short enough that an unreachable cluster is reported promptly
CONNECT_BUDGET = 15.0
USER_AGENT = "kubepki.certs"

_CLIENTS = {}


def _env_bool(text):
    return str(text).strip().lower() not in ("0", "false", "no")


def resolve_auth(params, environ=None):
    """The auth options after ``K8S_AUTH_*`` variables were applied late (an explicit option always wins)."""
    environ = os.environ if environ is None else environ
    auth = {}
    for option, spec in AUTH_ARG_SPEC.items():
        value = params.get(option)
        if value is None:
            for name in (option, CLIENT_NAMES[option]):
                text = environ.get("K8S_AUTH_%s" % name.upper())
                if text is not None and text != "":
                    value = _env_bool(text) if spec["type"] == "bool" else text
                    if spec["type"] == "path":
                        value = os.path.expanduser(value)
                    break
        auth[option] = value
    if isinstance(auth["kubeconfig"], str):
        auth["kubeconfig"] = os.path.expanduser(auth["kubeconfig"])
    if auth["host"]:
        auth["host"] = auth["host"].rstrip("/")
    return auth


def config_source(auth):
    """Which configuration source the precedence picks: 'explicit', 'kubeconfig', or 'default'.

    host plus credentials beats kubeconfig/context, which beats in-cluster, which beats the default
    kubeconfig ('default' tries in-cluster first).
    """
    if auth.get("host") and (auth.get("api_key") or (auth.get("client_cert") and auth.get("client_key"))):
        return "explicit"
    if auth.get("kubeconfig") or auth.get("context"):
        return "kubeconfig"
    return "default"


def kubeconfig_secrets(kubeconfig):
    """Secret leaf values of an inline kubeconfig dict, for ``module.no_log_values``."""
    found = set()
    secret_keys = ("client-key-data", "token", "password", "client-certificate-data", "id-token", "refresh-token",
                   "access-token", "client-secret")

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in secret_keys and isinstance(value, str) and value:
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(kubeconfig)
    return found


def _digest(auth):
    text = json.dumps(auth, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _build_configuration(auth):
    import_kubernetes()
    source = config_source(auth)
    configuration = type.__call__(k8s_client.Configuration)
    try:
        if source == "kubeconfig":
            if isinstance(auth["kubeconfig"], dict):
                k8s_config.load_kube_config_from_dict(auth["kubeconfig"], context=auth["context"], client_configuration=configuration,
                                                      persist_config=False)
            else:
                _kube_transport.read_credential(auth["kubeconfig"], "kubeconfig")  # a regular file, never a FIFO
                k8s_config.load_kube_config(config_file=auth["kubeconfig"], context=auth["context"], client_configuration=configuration,
                                            persist_config=False)
        elif source == "default":
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                configuration = type.__call__(k8s_client.Configuration)
                paths = [path for path in os.environ.get("KUBECONFIG", "").split(os.pathsep) if path] or [_kube_transport.DEFAULT_KUBECONFIG]
                for path in (os.path.expanduser(path) for path in paths):
                    if os.path.lexists(path):
                        _kube_transport.read_credential(path, "KUBECONFIG")  # a regular file, never a FIFO
                k8s_config.load_kube_config(client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        where = "kubeconfig" if source == "kubeconfig" else "the default kubeconfig (or in-cluster config)"
        if source == "kubeconfig" and auth.get("context") and "context" in str(exc).lower():
            where = "context %r" % auth["context"]
        raise KubePkiError("cannot load Kubernetes credentials from %s: %s" % (where, exc)) from exc
    if auth.get("host"):
        configuration.host = auth["host"]
    if auth.get("api_key"):
        configuration.api_key = {"authorization": "Bearer %s" % auth["api_key"]}
        configuration.api_key_prefix = {}
    if auth.get("validate_certs") is not None:
        configuration.verify_ssl = auth["validate_certs"]
    for option in ("ca_cert", "client_cert", "client_key"):
        if auth.get(option):
            _kube_transport.read_credential(auth[option], option)  # exists, and is a regular file
            setattr(configuration, CLIENT_NAMES[option], auth[option])
    if auth.get("proxy"):
        configuration.proxy = auth["proxy"]
    if not configuration.host or configuration.host == "http://localhost":
        raise KubePkiError("no Kubernetes API server known: set host, kubeconfig or context (or K8S_AUTH_* variables)")
    # we retry ourselves, with a deadline; urllib3 must not retry on its own
    configuration.retries = False
    return configuration


IN_FLIGHT = 4  # requests a step keeps open at once against one API server (the size of a transport's pool)
PROBE = 3  # items timed one after the other before in_flight() decides
PARALLEL_FROM = 0.010  # seconds an item takes from which in_flight() sends the rest together


def in_flight(work, items, limit=IN_FLIGHT):
    """``[work(item) for item in items]``, each item an API request or a few, in the order of ``items``.

    Items run one after the other while they are quick. Once the last PROBE of them took PARALLEL_FROM or
    more each (a cluster a round trip away rather than on loopback), the rest run ``limit`` at a time: the
    waiting then overlaps. On a near server that would only add thread switches to work the processor is
    already busy with. An exception stops the items not yet started; of those in flight, the first one in
    order is raised once all have finished."""
    items = list(items)
    results, timings = [], []
    index = 0
    while index < len(items):
        recent = sorted(timings[-PROBE:])
        if limit > 1 and len(recent) == PROBE and recent[PROBE // 2] >= PARALLEL_FROM:
            break
        started = time.monotonic()
        results.append(work(items[index]))
        timings.append(time.monotonic() - started)
        index += 1
    rest = items[index:]
    if rest:
        with ThreadPoolExecutor(max_workers=min(limit, len(rest))) as pool:
            futures = [pool.submit(work, item) for item in rest]
        results.extend(future.result() for future in futures)
    return results


class KubeClient:
    """One connection to one API server; ``request()`` retries 429/500/503 and connection errors."""

    def __init__(self, api_client, deadline=DEFAULT_DEADLINE, sleep=time.sleep, clock=time.monotonic, transport=None):
        self.api_client = api_client
        self.transport = transport
        if transport is not None:
            self.configuration = transport
        else:
            self.configuration = api_client.configuration if api_client is not None else None
        self.host = self.configuration.host if self.configuration is not None else "(none)"
        self.deadline = deadline
        self.sleep = sleep
        self.clock = clock
        self.retries = 0
        self.identity = None  # who this client authenticates as (own_identity), asked at most once

    # -------------------------------------------------------------- transport (patched in unit tests)

    def _headers(self, body):
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.transport is not None:
            headers.update(self.transport.auth_headers)
            return headers
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def _send(self, method, path, query, body, timeout, stream):
        """One HTTP exchange: (status, headers, data bytes or the open response when ``stream``)."""
        url = self.host + path
        if query:
            url += "?" + urlencode(query)
        if self.transport is not None:
            response = self.transport.request(method, url, self._headers(body), body, timeout, stream)
            if stream and 200 <= response.status <= 299:
                return response.status, dict(response.headers or {}), response
            data = response.read() if stream else response.data
            return response.status, dict(response.headers or {}), data
        response = self.api_client.rest_client.request(method, url, headers=self._headers(body), body=body, _request_timeout=timeout)
        raw = getattr(response, "response", response)
        if stream and 200 <= response.status <= 299:
            return response.status, dict(raw.headers or {}), raw
        data = response.read() if hasattr(response, "read") else response.data
        if data is None:
            data = getattr(response, "data", b"")
        return response.status, dict(response.getheaders() or {}), data

    # -------------------------------------------------------------- the wrapper

    def request(self, method, path, query=None, body=None, what=None, timeout=30, stream=False, deadline=None, retry=True):
        """Send a request, retrying 429 (Retry-After), 500, 503 and connection errors until a monotonic deadline.

        Returns the decoded JSON answer (or the open response with ``stream``). Errors become KubePkiError
        carrying the API Status message, its code and ``what`` (the object named).
        """
        if carries_private_key(path, query, body):
            # a key pasted where a CSR name or a request belongs: the API server would log it, and answer with it
            error = KubePkiError("a request to the Kubernetes API at %s was not sent: it would carry private key material "
                                 "(a private key given where a CSR name, a request or a certificate belongs)" % self.host)
            error.status = 400  # refused as the server refuses a bad request: asking again cannot help
            raise error
        what = what or "%s %s" % (method, path)
        budget = self.deadline if deadline is None else deadline
        end = self.clock() + max(budget, 0)
        connect_end = self.clock() + min(max(budget, 0), CONNECT_BUDGET)
        attempt = 0
        while True:
            attempt += 1
            remaining = end - self.clock()
            try:
                status, headers, data = self._send(method, path, query, body, _timeout(timeout, remaining), stream)
            except ApiException as exc:
                if getattr(exc, "status", 0) in (None, 0):
                    raise KubePkiError("cannot talk to the Kubernetes API at %s (%s): %s" % (self.host, what, exc.reason or exc),
                                       host=self.host) from exc
                status, headers, data = exc.status, dict(exc.headers or {}), exc.body or b""
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if retry and self._pause(attempt, connect_end, None):
                    continue
                raise KubePkiError("cannot reach the Kubernetes API at %s (%s): %s" % (self.host, what, _short(exc)), host=self.host) from exc
            if 200 <= status <= 299:
                if stream:
                    return data
                return _decode(data)
            if retry and status in RETRY_STATUSES and self._pause(attempt, end, _retry_after(headers)):
                continue
            raise api_error(status, data, what, self.host)

    def close(self):
        """Release the connections of this client."""
        if self.transport is not None:
            self.transport.close()
        elif self.api_client is not None:
            self.api_client.close()

    def _pause(self, attempt, end, retry_after):
        """Sleep before the next attempt; False when the deadline does not allow one."""
        wait = retry_after if retry_after is not None else backoff(attempt - 1, 0.1, 2.0)
        if self.clock() + wait >= end:
            return False
        self.retries += 1
        self.sleep(wait)
        return True


def backoff(attempt, first, cap):
    """The pause before attempt ``attempt + 1``: ``first`` doubled at each attempt, at most ``cap`` seconds (the
    exponent is bounded, so a wait of hours never overflows)."""
    return min(first * 2 ** min(attempt, 32), cap)


def _timeout(timeout, remaining):
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return timeout
    return max(min(timeout, remaining), 1)


def _short(exc):
    text = str(exc)
    reason = getattr(exc, "reason", None)
    if reason is not None and str(reason):
        text = str(reason)
    return text[:300]


def _retry_after(headers):
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def _decode(data):
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return {"raw": data[:500]}


def api_error(status, data, what, host=None):
    """KubePkiError for a non-2xx API answer: the Status message, code, reason and the object at fault."""
    body = _decode(data) if not isinstance(data, dict) else data
    message = body.get("message") if isinstance(body, dict) else None
    reason = body.get("reason") if isinstance(body, dict) else None
    if not message:
        message = (body.get("raw") if isinstance(body, dict) else None) or "HTTP %s" % status
    text = "%s failed: %s (HTTP %s%s)" % (what, message, status, ", %s" % reason if reason else "")
    details = {"status": status, "reason": reason or ""}
    if isinstance(body, dict) and isinstance(body.get("details"), dict) and body["details"].get("causes"):
        details["causes"] = body["details"]["causes"]
    if host:
        details["api_host"] = host
    error = KubePkiError(text, **details)
    error.status = status
    return error


def status_of(error):
    """The HTTP status carried by a KubePkiError from ``request()`` (None for transport failures)."""
    return getattr(error, "status", None)


def get_client(params, secrets, deadline=DEFAULT_DEADLINE):
    """The KubeClient for the auth options in ``params``, built once per run (cached by config digest); the
    credentials of an inline kubeconfig go into ``secrets``, the values to mask."""
    if isinstance(params.get("kubeconfig"), dict):
        secrets.update(kubeconfig_secrets(params["kubeconfig"]))
    elif params.get("kubeconfig") is not None and not isinstance(params["kubeconfig"], str):
        raise KubePkiError("kubeconfig must be a path or a dict, not %s" % type(params["kubeconfig"]).__name__)
    auth = resolve_auth(params)
    return client_for(auth, deadline)


def client_for(auth, deadline=DEFAULT_DEADLINE):
    key = _digest(auth)
    cached = _CLIENTS.get(key)
    if cached is None:
        transport = _kube_transport.connection_for(auth, config_source(auth))
        if transport is not None:
            cached = KubeClient(None, deadline=deadline, transport=transport)
        else:
            configuration = _build_configuration(auth)
            cached = KubeClient(k8s_client.ApiClient(configuration=configuration), deadline=deadline)
        _CLIENTS[key] = cached
    cached.deadline = deadline
    return cached


def carries_private_key(path, query=None, body=None):
    """Whether a request's path (as sent: percent-encoded segments), query values or JSON body hold private key material."""
    if any(_secrets.holds_private_key(unquote(segment)) for segment in (path or "").split("/")):
        return True
    if any(_secrets.holds_private_key(str(value)) for value in (query or {}).values()):
        return True
    return body is not None and _secrets.holds_private_key(json.dumps(body, default=str))


def path_for(name=None, subresource=None):
    """The REST path of the CSR collection, one CSR, or a subresource of it."""
    path = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    if name is not None:
        path += "/" + quote(name, safe="")
        if subresource:
            path += "/" + subresource
    return path


# ---------------------------------------------------------------- who is asking

def own_identity(client):
    """``{"username", "groups", "uid"}`` of the identity ``client`` authenticates as, from a SelfSubjectReview
    (authentication.k8s.io/v1, GA since Kubernetes 1.28); asked once per client. A CSR this identity created
    carries it as its requester, which is how the approver tells the collection's own requests from others'."""
    found = client.identity
    if found is None:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            answer = client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review,
                                    what="SelfSubjectReview (who this task authenticates as)")
        except KubePkiError as error:
            raise KubePkiError("cannot learn which identity this task authenticates as at %s: %s (the approval policy compares it "
                               "with each request's requester; SelfSubjectReview is served from Kubernetes 1.28)" % (client.host, error.msg),
                               **error.details) from None
        info = (answer.get("status") or {}).get("userInfo") or {}
        found = {"username": info.get("username") or "", "groups": list(info.get("groups") or []), "uid": info.get("uid") or ""}
        client.identity = found
    return found


def may_requester(client, spec, subresource):
    """Whether the requester of a CSR (its ``spec``: username, uid, groups, extra) may ``create``
    ``certificatesigningrequests/<subresource>``, asked with a SubjectAccessReview as kube-controller-manager's
    approver asks it: ``(allowed, reason)``."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": spec.get("username") or "",
            "uid": spec.get("uid") or "",
            "groups": list(spec.get("groups") or []),
            "extra": {key: list(value) for key, value in (spec.get("extra") or {}).items()},
            "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests", "verb": "create",
                                   "subresource": subresource, "version": "*"},
        },
    }
    answer = client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review,
                            what="SubjectAccessReview for requester %s" % (spec.get("username") or "(none)"))
    status = answer.get("status") or {}
    return bool(status.get("allowed")), status.get("reason") or status.get("evaluationError") or ""
