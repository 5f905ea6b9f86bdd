# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Keys at rest: one key-encryption key (KEK) per store, derived from the passphrase with scrypt, and every
private key sealed under it with AES-256-GCM, bound to its row (docs/internals.md, "Credential store", tells the format)."""

from __future__ import annotations

import base64
import json
import os

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError:  # pragma: no cover - reported by _deps.require()
    pass

WRAP_FORMAT = "kubepki-aead-v1"
# scrypt at OWASP's first recommended setting (128 MiB, about a second on a slow core), paid once per run; recorded
# in the key_protection record, so a store keeps opening when a later release changes these, and store_rekey with
# the same passphrase moves a store to the defaults of its release
KDF_DEFAULTS = {"kdf": "scrypt", "n": 2 ** 17, "r": 8, "p": 1}
# what a stored record may ask for: a damaged or hostile record must not make a run allocate gigabytes
_KDF_LIMITS = {"n": (2 ** 10, 2 ** 20), "r": (1, 32), "p": (1, 16)}
_KDF_MAX_BYTES = 2 ** 30
_SALT_BYTES = 16
_NONCE_BYTES = 12
_CHECK_PLAINTEXT = b"kubepki key_protection check"
_KEK_CACHE = {}
_KEK_CACHE_SIZE = 8
LEGACY_FORMAT_WARNING = (
    "credential store %s keeps its private keys in the older at-rest format (encrypted PKCS#8, PBKDF2 with 2048 "
    "rounds, one KDF per key); it is still read and written, but run kubepki.certs.store_rekey with new_store_passphrase "
    "equal to store_passphrase to move it to scrypt and AES-256-GCM")


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


def is_sealed(text):
    """Whether a stored ``private_key_pem`` value is a key sealed under the store's KEK (the current format)."""
    return isinstance(text, str) and text.startswith(WRAP_FORMAT + ":")


def _aad(*parts):
    """Associated data: part of the format at rest, so its bytes never change (not the certificate record's JSON,
    which may)."""
    return json.dumps([WRAP_FORMAT] + list(parts), sort_keys=True, separators=(",", ":")).encode("utf-8")


def _key_aad(kid, scope, user, cluster):
    """The associated data of a sealed key: it binds the ciphertext to its row."""
    return _aad(kid, "key", scope, user, cluster)


def _check_aad(kid):
    return _aad(kid, "key_protection")


def _kdf_params(descriptor, where):
    """``(salt, n, r, p)`` of a KEK descriptor, checked; KubePkiError naming ``where`` for a damaged one."""
    try:
        params = tuple(int(descriptor[name]) for name in ("n", "r", "p"))
        salt = _unb64(descriptor["salt"])
        ok = descriptor.get("kdf") == "scrypt" and isinstance(descriptor.get("id"), str) and len(salt) >= _SALT_BYTES
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if ok:
        n, r = params[:2]
        ok = n & (n - 1) == 0 and 128 * n * r <= _KDF_MAX_BYTES and all(
            low <= value <= high for value, (low, high) in zip(params, (_KDF_LIMITS[k] for k in ("n", "r", "p"))))
    if not ok:
        raise KubePkiError("credential store %s holds a damaged key_protection record (its key-encryption key parameters are not usable); "
                           "nothing was written" % where)
    return (salt,) + params


def derive(passphrase, descriptor, where):
    """The AESGCM of ``descriptor``'s KEK for ``passphrase`` (one scrypt, then cached for the process)."""
    salt, n, r, p = _kdf_params(descriptor, where)
    cache_key = (passphrase, descriptor["id"], salt, n, r, p)
    aead = _KEK_CACHE.get(cache_key)
    if aead is None:
        kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
        aead = AESGCM(kek)
        while len(_KEK_CACHE) >= _KEK_CACHE_SIZE:
            _KEK_CACHE.pop(next(iter(_KEK_CACHE)))
        _KEK_CACHE[cache_key] = aead
    return aead


def new_kek(passphrase, where=""):
    """A new KEK descriptor for ``passphrase`` (random salt and id, KDF_DEFAULTS) and its AESGCM."""
    descriptor = dict(KDF_DEFAULTS, id=os.urandom(6).hex(), salt=_b64(os.urandom(_SALT_BYTES)), aead="AES-256-GCM")
    aead = derive(passphrase, descriptor, where)
    nonce = os.urandom(_NONCE_BYTES)
    descriptor["check"] = _b64(nonce + aead.encrypt(nonce, _CHECK_PLAINTEXT, _check_aad(descriptor["id"])))
    return descriptor, aead


def open_kek(descriptor, passphrase, where):
    """The AESGCM of a stored KEK descriptor when ``passphrase`` is its passphrase (its check value opens), else None."""
    if not passphrase:
        return None
    aead = derive(passphrase, descriptor, where)
    try:
        sealed = _unb64(descriptor["check"])
        if aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _check_aad(descriptor["id"])) == _CHECK_PLAINTEXT:
            return aead
    except (InvalidTag, KeyError, TypeError, ValueError):
        pass
    return None


def kdf_is_current(descriptor):
    """Whether a stored KEK costs at least what KDF_DEFAULTS costs (else store_rekey renews it)."""
    try:
        cost = int(descriptor["n"]) * int(descriptor["r"]) * int(descriptor["p"])
    except (KeyError, TypeError, ValueError):
        return False
    return descriptor.get("kdf") == KDF_DEFAULTS["kdf"] and cost >= KDF_DEFAULTS["n"] * KDF_DEFAULTS["r"] * KDF_DEFAULTS["p"]


def seal_key(aead, kid, scope, user, cluster, pem):
    """The stored text of a private key PEM sealed under a KEK, bound to its row."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = aead.encrypt(nonce, pem.encode("ascii"), _key_aad(kid, scope, user, cluster))
    return "%s:%s:%s:%s" % (WRAP_FORMAT, kid, _b64(nonce), _b64(sealed))


def open_sealed(aead, kid, nonce, sealed, scope, user, cluster):
    """The PEM of a sealed key (see sealed_parts) opened under ``aead`` for its row; None when it does not open."""
    try:
        return aead.decrypt(nonce, sealed, _key_aad(kid, scope, user, cluster)).decode("ascii")
    except InvalidTag:
        return None


def sealed_parts(text, what):
    """``(kid, nonce, ciphertext)`` of a sealed key's stored text."""
    parts = text.split(":")
    try:
        if len(parts) == 4 and parts[1]:
            nonce, sealed = _unb64(parts[2]), _unb64(parts[3])
            if len(nonce) == _NONCE_BYTES:
                return parts[1], nonce, sealed
    except ValueError:
        pass
    raise KubePkiError("%s is damaged (not a sealed key)" % what)


def protection_record(descriptor):
    """A key_protection record: encrypted under ``descriptor`` (None: plaintext). Its ``previous`` (KEK descriptors
    keys may still be sealed under while a MongoDB rekey sweeps them) starts empty: see MongoStore._apply_rekey."""
    record = {"encrypted": descriptor is not None, "verifier": None, "rev": os.urandom(8).hex()}
    if descriptor is not None:
        record.update(format=WRAP_FORMAT, kek=descriptor, previous=[])
    return record


def is_legacy(protection):
    """Whether a key_protection record is of the older kind (an encrypted store with a PKCS#8 verifier)."""
    return bool(protection) and bool(protection.get("encrypted")) and not protection.get("kek")


def descriptors(protection):
    """The KEK descriptors a record names: the current one first (an encrypted record's), then those of an unfinished
    rekey (a MongoDB rekey to plaintext too leaves the old one there until its sweep ends)."""
    if not protection:
        return []
    current = [protection["kek"]] if isinstance(protection.get("kek"), dict) else []
    return current + [item for item in protection.get("previous") or () if isinstance(item, dict)]
