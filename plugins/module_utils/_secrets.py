# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""What is secret in a module's input, for ``module.no_log_values``: one place that knows it.

- private key material in any string: a PEM ``-----BEGIN ... PRIVATE KEY-----`` block of any kind (PKCS#8,
  encrypted PKCS#8, RSA, EC, DSA, OPENSSH, PGP ``PRIVATE KEY BLOCK``), also when its line breaks were escaped
  (``\\n``) or its END line is missing, and base64 of text holding one (Kubernetes objects and kubeconfigs carry
  base64), line-wrapped or not, nested up to three times;
- the credentials of an inline kubeconfig (``_kube.kubeconfig_secrets``);
- the password and secret options of a URI (``_uri.uri_secrets``): ``store_uri``, an etcd endpoint or a proxy
  with ``user:password@``, and the same from ``KUBEPKI_STORE_URI`` and ``KUBEPKI_ETCD_ENDPOINTS``;
- secrets the collection reads from the environment: ``KUBEPKI_STORE_PASSPHRASE``, ``K8S_AUTH_API_KEY``.

For a key, what is handed to Ansible is the block as it was given, each line of its body (so that a message
quoting the value with ``%r``, where line breaks become ``\\n``, is masked line by line), a last line too short
to mask alone together with its END line, and the base64 text as given. Ansible then masks each of them wherever
it occurs in the result, a warning, an error or the echoed invocation.

Stdlib only, no import of another module_utils at load: it runs before the dependency checks, and the modules
that use it import it from anywhere.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")
# a line of a key body (base64, or the hex of a DEK-Info header); shorter pieces are not masked alone: they
# would mask innocent text everywhere in the result
_BODY_LINE = re.compile(r"[A-Za-z0-9+/=]{16,}")
# text that may be base64 of a PEM block: the shortest, an Ed25519 key in PKCS#8, is 160 characters
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{100,}={0,2}")
_WRAPPED_B64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_B64_BEGIN = "LS0tLS1CRUdJTi"  # base64 of "-----BEGIN" at the start of the encoded text
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://\S+\s*")
_MAX_DEPTH = 3

ENV_URIS = ("KUBEPKI_STORE_URI",)
ENV_URI_LISTS = ("KUBEPKI_ETCD_ENDPOINTS",)
ENV_SECRETS = ("KUBEPKI_STORE_PASSPHRASE", "K8S_AUTH_API_KEY")


def _block_secrets(text, begin):
    """The secrets of the key block whose BEGIN line is the match ``begin`` in ``text``; its END index."""
    label = begin.group(1) + "PRIVATE KEY" + (begin.group(2) or "")
    end_line = "-----END %s-----" % label
    end = text.find(end_line, begin.end())
    stop = len(text) if end < 0 else end + len(end_line)
    found = {text[begin.start():stop]}
    body = text[begin.end():stop if end < 0 else end].replace("\\r", "\n").replace("\\n", "\n")
    lines = _BODY_LINE.findall(body)
    found.update(lines)
    pieces = [piece for piece in re.split(r"\s+", body) if piece]
    if pieces and len(pieces[-1]) < 16 and re.fullmatch(r"[A-Za-z0-9+/=]+", pieces[-1]):
        # the last line, too short to mask alone, is masked beside the END line it comes with
        found.update({pieces[-1] + "\n" + end_line, pieces[-1] + "\\n" + end_line, pieces[-1] + "\r\n" + end_line})
    return found, stop


def _b64_text(candidate):
    """``candidate`` decoded as base64 to text, or None."""
    try:
        return base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def key_secrets(text, _depth=0):
    """The strings to mask for the private key material in ``text`` (a set, empty when it holds none)."""
    found = set()
    if not isinstance(text, str) or len(text) < 16:
        return found
    begin = _BEGIN.search(text) if "PRIVATE KEY" in text else None
    while begin is not None:
        secrets, position = _block_secrets(text, begin)
        found.update(secrets)
        begin = _BEGIN.search(text, position)
    if _depth >= _MAX_DEPTH:
        return found
    candidates = {}
    for run in _B64_RUN.findall(text):
        candidates[run] = []
        start = run.find(_B64_BEGIN, 1)
        if start > 0:  # base64 of a PEM block glued to other base64 characters ("dir/LS0t...")
            candidates[run[start:]] = []
    if _WRAPPED_B64.fullmatch(text) and re.search(r"\S\s+\S", text):
        pieces = text.split()
        candidates.setdefault("".join(pieces), pieces)
    for candidate, pieces in candidates.items():
        decoded = _b64_text(candidate)
        inner = key_secrets(decoded, _depth + 1) if decoded else None
        if inner:
            found.update(inner)
            found.add(candidate)
            found.update(piece for piece in pieces if len(piece) >= 16)
    return found


def holds_private_key(text):
    """Whether ``text`` holds private key material (as PEM, or base64 of PEM)."""
    return bool(key_secrets(text))


def input_secrets(params, environ=None):
    """Every secret of a module's parameters (raw or validated) and of the environment the modules read, as a
    set of strings for ``module.no_log_values``. Walks every string, dict key and list item."""
    # imported here: both modules import _errors, which uses this module
    from ansible_collections.kubepki.certs.plugins.module_utils import _uri  # pylint: disable=import-outside-toplevel
    from ansible_collections.kubepki.certs.plugins.module_utils._kube import client as _kube  # pylint: disable=import-outside-toplevel

    environ = os.environ if environ is None else environ
    found = set()

    def text_secrets(text):
        found.update(key_secrets(text))
        if "://" in text and _URL.fullmatch(text):  # a URL, not free text that mentions one
            found.update(_uri.uri_secrets(text.strip()))

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    text_secrets(key)
                if key == "kubeconfig" and isinstance(item, dict):
                    found.update(_kube.kubeconfig_secrets(item))
                elif key == "store_uri" and isinstance(item, str):
                    found.update(_uri.uri_secrets(item))  # whatever its form: it is read as a URI
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            text_secrets(value)

    walk(params)
    for name in ENV_URIS:
        found.update(_uri.uri_secrets(environ.get(name) or ""))
    for name in ENV_URI_LISTS:
        for item in (environ.get(name) or "").split(","):
            found.update(_uri.uri_secrets(item.strip()))
    for name in ENV_SECRETS:
        if environ.get(name):
            found.add(environ[name])
    found.discard("")
    return found
