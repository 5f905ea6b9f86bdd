# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""URIs that may carry secrets (a store URI, an etcd endpoint, a proxy): their secrets found (for masking) and
masked (for messages and results). Standard library only: every module run reads its inputs with it, before the
dependency checks, whether it uses a store or not."""

from __future__ import annotations

import urllib.parse


def userinfo(uri):
    """``(userinfo, rest after it)`` of a URI with ``scheme://userinfo@hosts...``, else ``(None, None)``.

    The authority ends at the first ``/`` as pymongo reads it; when a (wrongly unescaped) ``/`` in the password
    hides the ``@`` from that reading, everything up to the last ``@`` is taken instead, so the secret is still found.
    """
    if not isinstance(uri, str):
        return None, None
    rest = uri.partition("://")[2]
    authority = rest.partition("/")[0]
    if "@" in authority:
        userinfo, _at, hosts = authority.rpartition("@")
        return userinfo, hosts + rest[len(authority):]
    if "@" in rest:
        userinfo, _at, tail = rest.rpartition("@")
        return userinfo, tail
    return None, None


# URI options whose values are secrets (pymongo: the password of an encrypted client key; AWS session tokens)
_SECRET_OPTIONS = ("tlscertificatekeyfilepassword",)
_SECRET_PROPERTIES = ("aws_session_token",)


def uri_secrets(uri):
    """The secret parts of a store URI, for ``module.no_log_values``: the password of its user information, as written
    and URL-decoded, and the values of secret options (``tlsCertificateKeyFilePassword``, ``AWS_SESSION_TOKEN`` in
    ``authMechanismProperties``). An embedded store URI has none. Returns a list of distinct non-empty strings."""
    if not isinstance(uri, str) or "://" not in uri:
        return []
    found = []
    given, tail = userinfo(uri)
    if given is not None and ":" in given:
        password = given.partition(":")[2]
        found += [password, urllib.parse.unquote(password)]
    query = (tail if tail is not None else uri).partition("?")[2]
    for part in query.split("&"):
        name, _eq, value = part.partition("=")
        name = name.lower()
        if name in _SECRET_OPTIONS:
            found += [value, urllib.parse.unquote(value)]
        elif name == "authmechanismproperties":
            for prop in urllib.parse.unquote(value).split(","):
                prop_name, _colon, prop_value = prop.partition(":")
                if prop_name.lower() in _SECRET_PROPERTIES:
                    found.append(prop_value)
    return [item for item in dict.fromkeys(found) if item]


def _mask_options(query):
    """A URI query string with the values of secret options masked."""
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if name.lower() in _SECRET_OPTIONS:
            value = "***"
        elif name.lower() == "authmechanismproperties":
            props = []
            for prop in urllib.parse.unquote(value).split(","):
                prop_name, colon, prop_value = prop.partition(":")
                props.append(prop_name + colon + ("***" if prop_name.lower() in _SECRET_PROPERTIES else prop_value))
            value = ",".join(props)
        parts.append(name + eq + value)
    return "&".join(parts)


def redact_uri(uri):
    """``uri`` with its secrets masked (``mongodb://user:***@host/db``), safe for messages and results."""
    if not isinstance(uri, str):
        return repr(uri)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    given, tail = userinfo(uri)
    if given is not None:
        user, colon, _password = given.partition(":")
        rest = (user + ":***" if colon else user) + "@" + tail
    head, question, query = rest.partition("?")
    return scheme + sep + head + question + _mask_options(query)


# a shorter password would mask every occurrence of a letter or two in a message: it is masked in the URI only
_MIN_SCRUB = 3


def scrub(text, uri):
    """``text`` (an error message) with every secret of ``uri`` masked."""
    text = str(text)
    given, _tail = userinfo(uri)
    if given and ":" in given:
        text = text.replace(given, given.partition(":")[0] + ":***")
    for secret in sorted(uri_secrets(uri), key=len, reverse=True):
        if len(secret) >= _MIN_SCRUB:
            text = text.replace(secret, "***")
    return text
