# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The etcd transport: certificate records under ``<prefix>/certs/<scope>/<cluster>/<user>``.

Talks to etcd's grpc-gateway JSON API (``/v3``) through etcd3gw with a ``requests.Session`` we build
ourselves: ``trust_env`` is off, so ``REQUESTS_CA_BUNDLE`` and proxy variables cannot silently replace
``etcd_ca_cert``. Writes are transactions that compare the key's current mod revision (or its absence)
before they put, so an unchanged value is ``changed: false`` and a concurrent writer is detected
instead of overwritten.
"""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlsplit

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

# etcd3gw (and requests under it) is imported only when a transport is made: modules that talk to no etcd
# in a run do not pay its start-up cost.
requests = None
Etcd3Client = None
etcd_exceptions = None


def import_etcd3gw():
    """Import etcd3gw and requests into this module's globals; False when they are not installed."""
    global requests, Etcd3Client, etcd_exceptions  # pylint: disable=global-statement
    if Etcd3Client is None:
        try:
            import requests as requests_lib  # pylint: disable=import-outside-toplevel
            from etcd3gw.client import Etcd3Client as client_class  # pylint: disable=import-outside-toplevel
            from etcd3gw import exceptions as exceptions_lib  # pylint: disable=import-outside-toplevel
        except ImportError:
            return False
        requests, Etcd3Client, etcd_exceptions = requests_lib, client_class, exceptions_lib
    return True


ENV_ENDPOINTS = "KUBEPKI_ETCD_ENDPOINTS"
DEFAULT_PREFIX = "/kubepki"

# puts per transaction: below etcd's default --max-txn-ops (128)
TXN_CHUNK = 64

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


def endpoints_from_params(params):
    """``etcd_endpoints``, else ``KUBEPKI_ETCD_ENDPOINTS`` (comma-separated); an empty list when neither is set."""
    endpoints = params.get("etcd_endpoints")
    if not endpoints:
        endpoints = [item.strip() for item in os.environ.get(ENV_ENDPOINTS, "").split(",") if item.strip()]
    return list(endpoints or [])


def transport_from_params(params):
    """An ``EtcdTransport`` for a module's ``etcd_*`` options; ``None`` when no endpoint is configured."""
    endpoints = endpoints_from_params(params)
    if not endpoints:
        return None
    return EtcdTransport(
        endpoints, prefix=params.get("etcd_prefix") or DEFAULT_PREFIX,
        ca_cert=params.get("etcd_ca_cert"), client_cert=params.get("etcd_client_cert"),
        client_key=params.get("etcd_client_key"), username=params.get("etcd_username"),
        password=params.get("etcd_password"), timeout=params.get("etcd_timeout") or 5.0)


def _b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text or "")


def _prefix_end(prefix):
    """The etcd ``range_end`` covering every key that starts with ``prefix``."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def parse_endpoint(url):
    """``(protocol, host, port)`` of one endpoint URL; KubePkiError naming ``etcd_endpoints`` otherwise."""
    if not isinstance(url, str):
        raise KubePkiError("etcd_endpoints: %r is not a URL" % (url,))
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KubePkiError("etcd_endpoints: %r is not an http:// or https:// URL with a host" % url)
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise KubePkiError("etcd_endpoints: %r must be scheme://host:port only (no path, query or credentials)" % url)
    try:
        port = parts.port or 2379
    except ValueError:
        raise KubePkiError("etcd_endpoints: %r has an invalid port" % url) from None
    return parts.scheme, parts.hostname, port


class EtcdTransport:
    """One etcd client for a whole batch: get / compare-before-put / delete / list of certificate records."""

    def __init__(self, endpoints, prefix=DEFAULT_PREFIX, ca_cert=None, client_cert=None, client_key=None,
                 username=None, password=None, timeout=5.0):
        if not import_etcd3gw():
            raise KubePkiError("the etcd3gw library is not installed on the host that runs this module")
        if isinstance(endpoints, str):
            endpoints = [item for item in endpoints.split(",") if item.strip()]
        if not endpoints:
            raise KubePkiError("etcd_endpoints: give at least one etcd URL (or set KUBEPKI_ETCD_ENDPOINTS)")
        self.endpoints = [url.strip().rstrip("/") for url in endpoints]
        self._parsed = [parse_endpoint(url) for url in self.endpoints]
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix != prefix.strip():
            raise KubePkiError("etcd_prefix must start with '/', got %r" % (prefix,))
        self.prefix = prefix.rstrip("/")
        for option, path in (("etcd_ca_cert", ca_cert), ("etcd_client_cert", client_cert), ("etcd_client_key", client_key)):
            if path is not None and not os.path.isfile(path):
                raise KubePkiError("%s: %s is not a readable file" % (option, path))
        if bool(client_cert) != bool(client_key):
            raise KubePkiError("etcd_client_cert and etcd_client_key must be given together")
        if bool(username) != bool(password):
            raise KubePkiError("etcd_username and etcd_password must be given together")
        try:
            self.timeout = float(timeout)
        except (TypeError, ValueError):
            raise KubePkiError("etcd_timeout must be a number of seconds, got %r" % (timeout,)) from None
        if self.timeout <= 0:
            raise KubePkiError("etcd_timeout must be positive, got %r" % (timeout,))
        self._ca_cert = ca_cert
        self._client_cert = client_cert
        self._client_key = client_key
        self._username = username
        self._password = password
        self._session = None
        self._client = None
        self.endpoint = None

    # ------------------------------------------------------------------ connection

    def _new_session(self):
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE / proxies must not override our TLS settings
        session.verify = self._ca_cert if self._ca_cert else True
        if self._client_cert:
            session.cert = (self._client_cert, self._client_key)
        return session

    def _connect(self):
        if self._client is not None:
            return self._client
        errors = []
        for url, (protocol, host, port) in zip(self.endpoints, self._parsed):
            session = self._new_session()
            client = Etcd3Client(host=host, port=port, protocol=protocol, timeout=self.timeout, session=session, api_path=None)
            try:
                client.api_path  # pylint: disable=pointless-statement  # GET /version: reachability and API path
                if self._username:
                    self._authenticate(client, session, url)
            except KubePkiError:
                session.close()
                raise
            except Exception as exc:  # pylint: disable=broad-except
                session.close()
                errors.append("%s: %s" % (url, _short(exc)))
                continue
            self._session, self._client, self.endpoint = session, client, url
            return client
        raise KubePkiError("etcd_endpoints: no etcd endpoint answered (tried %s)" % "; ".join(errors),
                           etcd_endpoints=self.endpoints)

    def _authenticate(self, client, session, url):
        try:
            reply = client.post(client.get_url("/auth/authenticate"), json={"name": self._username, "password": self._password})
        except etcd_exceptions.Etcd3Exception as exc:
            if isinstance(exc, (etcd_exceptions.ConnectionFailedError, etcd_exceptions.ConnectionTimeoutError)):
                raise
            raise KubePkiError("etcd_username: etcd at %s refused the credentials of %r: %s" % (url, self._username, _short(exc))) from None
        token = reply.get("token")
        if not token:
            raise KubePkiError("etcd_username: etcd at %s returned no token for %r" % (url, self._username))
        session.headers["Authorization"] = token

    def _post(self, path, payload):
        client = self._connect()
        try:
            return client.post(client.get_url(path), json=payload)
        except Exception as exc:  # pylint: disable=broad-except
            raise KubePkiError("etcd at %s failed on %s: %s" % (self.endpoint, path, _short(exc)), etcd_endpoint=self.endpoint) from None

    def close(self):
        if self._session is not None:
            self._session.close()
        self._session = self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ keys

    def key_for(self, scope, cluster, user):
        """``<prefix>/certs/<scope>/<cluster>/<user>``; each part non-empty and free of '/'."""
        for name, value in (("scope", scope), ("cluster", cluster), ("user", user)):
            if not isinstance(value, str) or not value:
                raise KubePkiError("%s must be a non-empty string to build the etcd key, got %r" % (name, value))
            if "/" in value:
                raise KubePkiError("%s %r must not contain '/' (it is one segment of the etcd key)" % (name, value))
        return "%s/certs/%s/%s/%s" % (self.prefix, scope, cluster, user)

    def get(self, key):
        """``(value bytes or None, mod_revision int or 0)`` of one key."""
        reply = self._post("/kv/range", {"key": _b64(key)})
        for item in reply.get("kvs") or []:
            return _unb64(item.get("value")), int(item.get("mod_revision", 0))
        return None, 0

    def put_if_changed(self, key, value, check_mode=False):
        """Put ``value`` unless it is already there, byte for byte. Returns ``changed``.

        The put is a transaction guarded by the mod revision read just before (or by the key's absence);
        when another writer got in between, nothing is written and KubePkiError says so.
        """
        data = value.encode("utf-8") if isinstance(value, str) else value
        current, revision = self.get(key)
        if current == data:
            return False
        if check_mode:
            return True
        if current is None:
            compare = {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
        else:
            compare = {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)}
        reply = self._post("/kv/txn", {
            "compare": [compare],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(data)}}],
            "failure": [],
        })
        if not reply.get("succeeded"):
            raise KubePkiError("etcd key %s was changed by another writer while this run updated it; nothing was written, run again" % key)
        return True

    def put_many(self, items, check_mode=False):
        """Put each ``(key, value)`` of ``items`` unless it is already there; ``[changed]`` in order.

        The batch form of put_if_changed: one range read per key prefix (the part before the last '/'), then one
        transaction per TXN_CHUNK changed keys, each guarded by the revisions that read saw. When another writer got
        in between, that transaction writes nothing and KubePkiError names its keys; earlier chunks stay written.
        """
        current = {}
        for prefix in sorted({key.rsplit("/", 1)[0] + "/" for key, _value in items}):
            current.update(self.range_with_revisions(prefix))
        changed, writes = [], []
        for key, value in items:
            data = value.encode("utf-8") if isinstance(value, str) else value
            before, revision = current.get(key, (None, 0))
            changed.append(before != data)
            if before != data:
                writes.append((key, data, revision if before is not None else None))
        if check_mode:
            return changed
        for start in range(0, len(writes), TXN_CHUNK):
            chunk = writes[start:start + TXN_CHUNK]
            compares = []
            for key, _data, revision in chunk:
                if revision is None:
                    compares.append({"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
                else:
                    compares.append({"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)})
            reply = self._post("/kv/txn", {
                "compare": compares,
                "success": [{"request_put": {"key": _b64(key), "value": _b64(data)}} for key, data, _revision in chunk],
                "failure": [],
            })
            if not reply.get("succeeded"):
                raise KubePkiError("etcd keys %s ... %s (%d keys) were changed by another writer while this run updated them; "
                                   "none of them was written, run again" % (chunk[0][0], chunk[-1][0], len(chunk)))
        return changed

    def range_with_revisions(self, prefix):
        """``{key: (value bytes, mod_revision)}`` of every key starting with ``prefix``."""
        reply = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return {_unb64(item.get("key")).decode("utf-8"): (_unb64(item.get("value")), int(item.get("mod_revision", 0)))
                for item in reply.get("kvs") or []}

    def delete_if_present(self, key, check_mode=False):
        """Delete ``key`` when it exists (guarded by its mod revision). Returns ``changed``."""
        current, revision = self.get(key)
        if current is None:
            return False
        if check_mode:
            return True
        reply = self._post("/kv/txn", {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(revision)}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
            "failure": [],
        })
        if not reply.get("succeeded"):
            raise KubePkiError("etcd key %s was changed by another writer while this run deleted it; nothing was deleted, run again" % key)
        return True

    def list_prefix(self, prefix):
        """``[(key str, value bytes)]`` of every key starting with ``prefix``, sorted by key."""
        reply = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "sort_order": "ASCEND", "sort_target": "KEY"})
        return [(_unb64(item.get("key")).decode("utf-8"), _unb64(item.get("value"))) for item in reply.get("kvs") or []]

    # ------------------------------------------------------------------ certificate records

    def get_record(self, scope, cluster, user):
        """The certificate record stored for (scope, cluster, user), or None."""
        key = self.key_for(scope, cluster, user)
        value, _revision = self.get(key)
        if value is None:
            return None
        try:
            record = json.loads(value.decode("utf-8"))
        except ValueError:
            raise KubePkiError("etcd key %s does not hold a JSON certificate record" % key) from None
        if not isinstance(record, dict):
            raise KubePkiError("etcd key %s does not hold a JSON object" % key)
        return record

    def put_record(self, record, check_mode=False):
        """``(changed, key)`` after putting ``record`` under its key (compare-before-put)."""
        key = self.key_for(record.get("scope"), record.get("cluster"), record.get("user"))
        value = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return self.put_if_changed(key, value, check_mode=check_mode), key

    def put_records(self, records, check_mode=False):
        """``[(changed, key)]`` after putting every record (put_many: one read per prefix, few transactions)."""
        items = [(self.key_for(r.get("scope"), r.get("cluster"), r.get("user")), json.dumps(r, sort_keys=True, separators=(",", ":")))
                 for r in records]
        return list(zip(self.put_many(items, check_mode=check_mode), [key for key, _value in items]))

    def delete_record(self, scope, cluster, user, check_mode=False):
        """``(changed, key)`` after removing the record of (scope, cluster, user)."""
        key = self.key_for(scope, cluster, user)
        return self.delete_if_present(key, check_mode=check_mode), key

    def list_records(self, scope=None, cluster=None):
        """``[(key, record)]`` under ``<prefix>/certs/[<scope>/[<cluster>/]]``; values that are not JSON are skipped."""
        prefix = self.prefix + "/certs/"
        if scope:
            prefix += scope + "/"
            if cluster:
                prefix += cluster + "/"
        found = []
        for key, value in self.list_prefix(prefix):
            try:
                record = json.loads(value.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append((key, record))
        return found


def _short(exc):
    """A one-line description of a connection or API error."""
    text = " ".join(str(exc).split())
    if etcd_exceptions is not None and isinstance(exc, etcd_exceptions.Etcd3Exception):
        text = " ".join(str(getattr(exc, "detail_text", "") or exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
