# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""What both backends of the credential store share: key records, encryption at rest, the public contract.
A backend defines the hooks listed at the end of CredentialStore."""

from __future__ import annotations

import contextlib
import json

from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._store import sealing as _sealing


class KeyConflict(KubePkiError):
    """``replace_key(..., expected_sha256=...)`` found another key than the one the caller read: another run rotated
    (or removed) it first, and it was not replaced again. ``current`` is the KeyRecord stored now (None when there is
    none); it is an attribute only, never part of ``details`` (which fail_json returns)."""

    def __init__(self, msg, current=None):
        super().__init__(msg)
        self.current = current


class _Changed(Exception):
    """Inside a rekey transaction: the keys differ from the ones the plan was made from."""


class _Rekey:
    """One rekey: the plan (every key opened, before anything is written), the target KEK and the record to store."""

    def __init__(self, store, new_passphrase, stored, target):
        self.store = store
        self.new_passphrase = new_passphrase
        self.stored = stored
        self.target = target
        self.aead = None
        self.protection = None
        self.rows, self.changes = store._rekey_plan(new_passphrase, self.target_kid)  # pylint: disable=protected-access

    @property
    def target_kid(self):
        return None if self.target is None else self.target["id"]

    def prepare(self):
        """The target KEK (a new one costs one KDF) and the key_protection record that goes with it."""
        if self.new_passphrase:
            if self.target is None:
                self.target, self.aead = _sealing.new_kek(self.new_passphrase, self.store.location)
            else:
                self.aead = _sealing.open_kek(self.target, self.new_passphrase, self.store.location)
        self.protection = _sealing.protection_record(self.target)

    def seal(self, row, pem):
        """``(stored text, encrypted)`` of a key under the target."""
        if self.aead is None:
            return pem, False
        return _sealing.seal_key(self.aead, self.target["id"], row["scope"], row["user"], row["cluster"], pem), True

    def replan(self):
        """The plan made again from what is stored now (the target KEK stays)."""
        self.stored = self.store._protection_now(fresh=True)  # pylint: disable=protected-access
        self.rows, self.changes = self.store._rekey_plan(self.new_passphrase, self.target_kid)  # pylint: disable=protected-access


PROTECTION_NAME = "key_protection"
REKEY_ROUNDS = 5
# A compare-and-replace of one certificate record is lost only when another writer's newer record won meanwhile, so
# a record loses at most once per concurrent writer: the bound is there against a livelock, not against contention.
CERT_WRITE_ROUNDS = 50

# the fields of a key row that list_keys hands out: everything but the private key
KEY_LISTING_FIELDS = ("scope", "user", "cluster", "key_type", "public_key_sha256", "created", "encrypted")


class CredentialStore:
    """The common part of both backends: key records, encryption at rest, the public contract."""

    kind = None
    location = None

    def __init__(self, passphrase=None):
        self._passphrase = passphrase or None
        self._protection_ok = False
        self._protection_pending = False
        # the key_protection record as last read (None: none stored), and the one this store's new keys follow
        self._protection = None
        self._protection_read = False
        self._governing = None
        self.warnings = []

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_identity(scope, user, cluster):
        for name, value in (("scope", scope), ("user", user)):
            if not isinstance(value, str) or not value:
                raise KubePkiError("%s must be a non-empty string to address the credential store, got %r" % (name, value))
        if not isinstance(cluster, str):
            raise KubePkiError("cluster must be a string to address the credential store, got %r" % (cluster,))

    @staticmethod
    def _what(row):
        return "the stored key of user %r (scope %r%s)" % (
            row["user"], row["scope"], ", cluster %r" % row["cluster"] if row["cluster"] else "")

    def _warn(self, message):
        """``message`` once per store object: in ``warnings``, and among the warnings of the module that runs."""
        if message not in self.warnings:
            self.warnings.append(message)
            ansible_warnings.warn(message)

    def _protection_now(self, fresh=False):
        """The stored key_protection record (None when there is none), read once per store object unless ``fresh``."""
        if fresh or not self._protection_read:
            self._protection = self._read_protection()
            self._protection_read = True
        return self._protection

    def _descriptor(self, kid):
        """The KEK descriptor ``kid`` of the key_protection record, read again once when it is not there (a rekey may
        have switched the record since it was read); None when the record does not name it."""
        for fresh in (False, True):
            for descriptor in _sealing.descriptors(self._protection_now(fresh)):
                if descriptor.get("id") == kid:
                    return descriptor
        return None

    def _new_key_row(self, scope, user, cluster, key_type):
        """``(row, PEM)``: a new key, its row stored the way the store's record says (after _before_key_write)."""
        key = _crypto.generate_private_key(key_type)
        pem = _crypto.private_key_to_pem(key)
        protection = self._governing or {}
        if not protection.get("encrypted"):
            text, encrypted = pem, False
        elif _sealing.is_legacy(protection):
            text, encrypted = _crypto.private_key_to_pem(key, self._passphrase), True
        else:
            descriptor = protection["kek"]
            aead = _sealing.open_kek(descriptor, self._passphrase, self.location)
            if aead is None:
                raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                                   "nothing was written" % self.location)
            text, encrypted = _sealing.seal_key(aead, descriptor["id"], scope, user, cluster, pem), True
        row = {
            "scope": scope, "user": user, "cluster": cluster, "key_type": key_type, "private_key_pem": text,
            "public_key_sha256": _crypto.public_key_sha256(key), "created": _crypto.rfc3339(_crypto.utc_now()),
            "encrypted": encrypted,
        }
        return row, pem

    @staticmethod
    def _record_of_new(row, pem):
        return dict(row, private_key_pem=pem, encrypted=bool(row["encrypted"]))

    def _open_key(self, row, passphrase, what):
        """The PEM of the encrypted key ``row`` opened with ``passphrase``; None when that is not its passphrase.
        A sealed key costs one AES-GCM open once the store's KEK is derived; an older PKCS#8 key its own KDF."""
        text = row["private_key_pem"]
        if _sealing.is_sealed(text):
            kid, nonce, sealed = _sealing.sealed_parts(text, what)
            descriptor = self._descriptor(kid)
            if descriptor is None:
                raise KubePkiError("%s is sealed under a key-encryption key (%s) that the key_protection record of credential "
                                   "store %s does not name: the record is damaged or was replaced" % (what, kid, self.location))
            aead = _sealing.open_kek(descriptor, passphrase, self.location)
            if aead is None:
                return None
            pem = _sealing.open_sealed(aead, kid, nonce, sealed, row["scope"], row["user"], row["cluster"])
            if pem is None:
                raise KubePkiError("%s does not open although store_passphrase is right: it is damaged, or it was moved "
                                   "from another row (a stored key is bound to its scope, user and cluster)" % what)
            return pem
        return self._open_pkcs8(text, passphrase)

    @staticmethod
    def _open_pkcs8(text, passphrase):
        """The PEM of an older encrypted PKCS#8 key (or verifier) opened with ``passphrase``; None when it does not open."""
        if not passphrase:
            return None
        try:
            return _crypto.private_key_to_pem(_crypto.load_private_key(text, passphrase))
        except KubePkiError:
            return None

    def _record_from_row(self, row):
        """The KeyRecord of a stored row: the private key decrypted, everything else as stored."""
        record = dict(row)
        record["encrypted"] = bool(record.get("encrypted"))
        what = self._what(record)
        if record["encrypted"]:
            if not self._passphrase:
                raise KubePkiError("%s is encrypted at rest: give store_passphrase (or KUBEPKI_STORE_PASSPHRASE)" % what)
            if not _sealing.is_sealed(record["private_key_pem"]):
                self._warn(_sealing.LEGACY_FORMAT_WARNING % self.location)
            pem = self._open_key(row, self._passphrase, what)
            if pem is None:
                raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase" % what)
            record["private_key_pem"] = pem
        return record

    # ------------------------------------------------------------------ key protection

    def _protection_for(self, passphrase, legacy=False):
        """A new key_protection record for ``passphrase`` (None: plaintext): a new KEK (one KDF). ``legacy``: of the
        older kind, for a store whose keys are older encrypted PKCS#8 keys (its verifier a throwaway EC key in that
        form), so that its keys stay one kind until store_rekey moves them all."""
        if not passphrase:
            return _sealing.protection_record(None)
        if legacy:
            return {"encrypted": True, "verifier": _crypto.private_key_to_pem(_crypto.generate_private_key("ec-p256"), passphrase)}
        return _sealing.protection_record(_sealing.new_kek(passphrase, self.location)[0])

    def _record_opens(self, protection, passphrase, any_kek=False):
        """Whether ``passphrase`` is the passphrase of an encrypted key_protection record (its current KEK; with
        ``any_kek`` also one a rekey left behind)."""
        if not passphrase:
            return False
        if _sealing.is_legacy(protection):
            return self._open_pkcs8(protection.get("verifier"), passphrase) is not None
        descriptors = _sealing.descriptors(protection)
        if not any_kek:
            descriptors = [protection["kek"]] if isinstance(protection.get("kek"), dict) else []
        return any(_sealing.open_kek(descriptor, passphrase, self.location) is not None for descriptor in descriptors)

    def _protection_from_keys(self):
        """The key_protection of a store written before the record existed, judged by its keys; None when it has none."""
        modes = self._key_modes()
        if not modes:
            return None
        if len(modes) > 1:
            raise KubePkiError(
                "credential store %s already holds both plaintext and encrypted private keys: bring them under one passphrase "
                "(or none) with kubepki.certs.store_rekey first; nothing was written" % self.location)
        if True in modes:
            sample = self._sample_encrypted_pem()
            if _sealing.is_sealed(sample):
                raise KubePkiError(
                    "credential store %s holds sealed private keys but no key_protection record, which holds the salt and KDF "
                    "parameters they need: restore the record (the meta table or collection) from a backup; nothing was "
                    "written" % self.location)
            return {"encrypted": True, "verifier": sample}
        return {"encrypted": False, "verifier": None}

    def _judge(self, protection):
        """KubePkiError unless this store's passphrase fits ``protection`` (None: an empty store, anything fits)."""
        if protection is None:
            return
        if protection.get("encrypted"):
            if not self._passphrase:
                raise KubePkiError(
                    "credential store %s keeps its private keys encrypted, but no store_passphrase (or KUBEPKI_STORE_PASSPHRASE) "
                    "is given: a key written now would be plaintext beside encrypted ones. Give the store's passphrase, or "
                    "decrypt the whole store with kubepki.certs.store_rekey; nothing was written" % self.location)
            if _sealing.is_legacy(protection):
                self._warn(_sealing.LEGACY_FORMAT_WARNING % self.location)
            if not self._record_opens(protection, self._passphrase):
                raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                                   "nothing was written" % self.location)
        elif self._passphrase:
            raise KubePkiError(
                "store_passphrase is set, but credential store %s keeps its private keys unencrypted: a key written now would "
                "be encrypted beside plaintext ones. Omit store_passphrase, or encrypt the whole store first with "
                "kubepki.certs.store_rekey (new_store_passphrase); nothing was written" % self.location)

    def check_passphrase(self):
        """Refuse (KubePkiError naming ``store_passphrase``) a passphrase that does not fit the store, writing nothing.

        An encrypted store needs its passphrase; a plaintext store takes none; an empty store takes either (its first
        key write fixes the mode). Costs one read and, for an encrypted store, the one KDF of this run (scrypt: its
        KEK is derived and kept for the keys) and the opening of the small check value. Every key write
        (ensure_key, ensure_keys, replace_key) runs it first; it is checked once per store object.
        Read-only: callers may run it in check mode too.
        """
        if self._protection_ok:
            return
        protection = self._protection_now(fresh=True)
        pending = protection is None
        if pending:
            protection = self._protection_from_keys()
        self._judge(protection)
        self._governing = protection
        self._protection_ok = True
        self._protection_pending = pending

    def _before_key_write(self):
        """check_passphrase, then the key_protection record stored if it is missing (the first write fixes the mode).
        Of two writers racing to store it, the loser checks against the winner's record and writes nothing."""
        self.check_passphrase()
        if not self._protection_pending:
            return
        judged_by_keys = self._governing
        record = self._protection_for(self._passphrase, legacy=bool(judged_by_keys and judged_by_keys.get("encrypted")))
        if not self._insert_protection_if_absent(record):
            self._protection_ok = False
            record = self._protection_now(fresh=True)
            self._judge(record)
            self._protection_ok = True
        self._protection, self._protection_read, self._governing = record, True, record
        self._protection_pending = False

    # ------------------------------------------------------------------ keys

    def get_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        return None if row is None else self._record_from_row(row)

    def ensure_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE):
        """``(KeyRecord, created)``; two concurrent callers end with one key (the loser returns the winner's).
        Before a key is created the passphrase is checked (check_passphrase)."""
        self._check_identity(scope, user, cluster)
        row = self._read_key(scope, user, cluster)
        if row is not None:
            return self._record_from_row(row), False
        _crypto.check_key_type(key_type)
        self._before_key_write()
        new_row, pem = self._new_key_row(scope, user, cluster, key_type)
        if self._insert_key_if_absent(new_row):
            return self._record_of_new(new_row, pem), True
        row = self._read_key(scope, user, cluster)
        if row is None:
            raise KubePkiError("credential store %s lost the key of user %r while creating it" % (self.location, user))
        return self._record_from_row(row), False

    def _batch(self):
        """What the writes of one ensure_keys or put_certs run in: one transaction where the backend has them (the
        embedded store: all or nothing), else nothing."""
        return contextlib.nullcontext()

    def ensure_keys(self, wanted):
        """``ensure_key`` for each ``(scope, user, cluster, key_type)`` of ``wanted``, in one _batch. Returns how many
        keys were created. Bad input (and a passphrase that does not fit the store) is refused before anything is
        written."""
        self._check_batch_keys(wanted)
        missing = [item for item in wanted if self._read_key(*item[:3]) is None]
        if not missing:
            return 0
        self._before_key_write()
        # keys are generated before the batch is opened; a key another writer stored meanwhile wins
        rows = [self._new_key_row(*item)[0] for item in missing]
        with self._batch():
            return sum(1 for row in rows if self._insert_key_if_absent(row))

    def _check_batch_keys(self, wanted):
        for scope, user, cluster, key_type in wanted:
            self._check_identity(scope, user, cluster)
            _crypto.check_key_type(key_type)

    def _check_batch_certs(self, records):
        """``(scope, cluster, user, canonical JSON)`` of each certificate record, all checked (identity, timestamps)
        before any is written."""
        rows = []
        for record in records:
            if not isinstance(record, dict):
                raise KubePkiError("a certificate record must be a dict, got %s" % type(record).__name__)
            self._check_identity(record.get("scope"), record.get("user"), record.get("cluster"))
            what = "the certificate record of user %r (scope %r, cluster %r)" % (record["user"], record["scope"], record["cluster"])
            _record.checked_validity(record, what)
            rows.append((record["scope"], record["cluster"], record["user"], _record.dumps(record)))
        return rows

    def replace_key(self, scope, user, cluster="", key_type=_crypto.DEFAULT_KEY_TYPE, expected_sha256=None):
        """Rotate a key: a new one of ``key_type`` replaces the stored one; returns the new KeyRecord.

        ``expected_sha256``: the ``public_key_sha256`` of the key the caller read and means to replace. The
        replacement is then one atomic compare-and-replace in both backends: it happens only while that key is still
        the stored one. Otherwise nothing is written and KeyConflict is raised, its ``current`` attribute holding the
        KeyRecord stored now (another run's rotation, or None when the key was deleted), so of two concurrent
        rotations exactly one replaces the key and the other can go on with the winner's key. Without
        ``expected_sha256`` the key is replaced (or created) unconditionally, as before; rotations should pass it.
        The passphrase is checked first (check_passphrase).
        """
        self._check_identity(scope, user, cluster)
        _crypto.check_key_type(key_type)
        if expected_sha256 is not None and (not isinstance(expected_sha256, str) or not expected_sha256):
            raise KubePkiError("expected_sha256 must be the public key SHA-256 (hex) of the key to replace, got %r" % (expected_sha256,))
        self._before_key_write()
        row, pem = self._new_key_row(scope, user, cluster, key_type)
        if expected_sha256 is None:
            self._upsert_key(row)
        elif not self._replace_key_if(row, expected_sha256.lower()):
            stored = self._read_key(scope, user, cluster)
            current = None if stored is None else self._record_from_row(stored)
            raise KeyConflict(
                "the key of user %r (scope %r%s) was not rotated: it is no longer the key this run read (public key SHA-256 "
                "%s), %s; run again to work with the stored key" % (
                    user, scope, ", cluster %r" % cluster if cluster else "", expected_sha256,
                    "another run removed it" if current is None else "another run replaced it with %s" % current["public_key_sha256"]),
                current=current)
        return self._record_of_new(row, pem)

    def delete_key(self, scope, user, cluster=""):
        self._check_identity(scope, user, cluster)
        return self._delete_key(scope, user, cluster)

    # ------------------------------------------------------------------ rekey

    def _open_for_rekey(self, row, new_passphrase, target_kid):
        """``(PEM, already as wanted)`` of a stored key row. An encrypted key opens with the current passphrase or,
        when a rekey stopped halfway (MongoDB), with the new one; KubePkiError when neither opens it. A key is as
        wanted when it is plaintext and no passphrase is wanted, or sealed under the target KEK ``target_kid``."""
        what = self._what(row)
        if not row.get("encrypted"):
            return _crypto.private_key_to_pem(_crypto.load_private_key(row["private_key_pem"], what=what)), not new_passphrase
        tries = [self._passphrase] if self._passphrase else []
        if new_passphrase and new_passphrase != self._passphrase:
            tries.append(new_passphrase)
        for passphrase in tries:
            pem = self._open_key(row, passphrase, what)
            if pem is not None:
                text = row["private_key_pem"]
                return pem, target_kid is not None and _sealing.is_sealed(text) and _sealing.sealed_parts(text, what)[0] == target_kid
        if not self._passphrase:
            raise KubePkiError("%s is encrypted: give its current passphrase as store_passphrase; nothing was rekeyed" % what)
        raise KubePkiError("store_passphrase does not decrypt %s: wrong passphrase; nothing was rekeyed" % what)

    def _rekey_plan(self, new_passphrase, target_kid):
        """``(rows, changes)``: every stored key row, and ``(old row, PEM)`` for each one not yet as wanted.
        Every key is opened here, before anything is written."""
        rows = self._list_key_rows()
        opened = [(row,) + self._open_for_rekey(row, new_passphrase, target_kid) for row in rows]
        return rows, [(row, pem) for row, pem, as_wanted in opened if not as_wanted]

    def _check_rekey_passphrase(self, stored, new_passphrase):
        """KubePkiError (nothing written) unless the current or the new passphrase opens an encrypted store's record."""
        if stored is None or not stored.get("encrypted"):
            return
        if self._record_opens(stored, self._passphrase, any_kek=True) or self._record_opens(stored, new_passphrase, any_kek=True):
            return
        if not self._passphrase:
            raise KubePkiError("credential store %s keeps its private keys encrypted: give their current passphrase as "
                               "store_passphrase; nothing was rekeyed" % self.location)
        raise KubePkiError("store_passphrase does not decrypt the keys of credential store %s: wrong passphrase; "
                           "nothing was rekeyed" % self.location)

    def _reusable_kek(self, stored, new_passphrase):
        """The stored current KEK when it is the new passphrase's and as strong as _sealing.KDF_DEFAULTS, else None (a new one)."""
        if not new_passphrase or not stored or not stored.get("encrypted") or _sealing.is_legacy(stored):
            return None
        descriptor = stored["kek"]
        if _sealing.kdf_is_current(descriptor) and _sealing.open_kek(descriptor, new_passphrase, self.location) is not None:
            return descriptor
        return None

    def rekey(self, new_passphrase=None, check=False):
        """Bring every key of the store under ``new_passphrase`` (None or '': plaintext), opening each with this store's
        passphrase (a plaintext key needs none). All or nothing: every key is decrypted before anything is written,
        and a key that does not open fails the whole rekey with nothing written. ``check``: only count.

        Keys end sealed under one KEK of ``new_passphrase`` (the current format): the store's KEK when it already is
        the new passphrase's and as strong as _sealing.KDF_DEFAULTS (then nothing changes), else a new one (new salt, one
        KDF). So the same passphrase moves an older store (PKCS#8 keys) or an older KDF setting to the current one.

        Returns ``{"keys": stored keys, "keys_changed": keys re-encrypted (or that would be), "changed": bool,
        "encrypted": bool (the mode afterwards)}``, never key material. See the backends for how the writes stay
        safe against concurrent writers. The store object keeps its old passphrase: open a new one to use the keys.
        """
        new_passphrase = new_passphrase or None
        stored = self._protection_now(fresh=True)
        job = _Rekey(self, new_passphrase, stored, self._reusable_kek(stored, new_passphrase))
        self._check_rekey_passphrase(stored, new_passphrase)
        if stored is None:
            record_changes = True
        elif not new_passphrase:
            record_changes = bool(stored.get("encrypted")) or bool(stored.get("previous"))
        else:
            record_changes = job.target is None or bool(stored.get("previous"))
        outcome = {"keys": len(job.rows), "keys_changed": len(job.changes), "changed": bool(job.changes) or record_changes,
                   "encrypted": bool(new_passphrase)}
        if not check and outcome["changed"]:
            job.prepare()
            self._apply_rekey(job)
            self._protection_ok = False
            self._protection_read = False
        return outcome

    # ------------------------------------------------------------------ certificates

    def get_cert(self, scope, cluster, user):
        self._check_identity(scope, user, cluster)
        text = self._read_cert(scope, cluster, user)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise KubePkiError("credential store %s holds a damaged certificate record for user %r, cluster %r" % (
                self.location, user, cluster)) from None

    def put_cert(self, record):
        """Store a certificate record; ``True`` when it was written. A record equal to the stored one, or older
        than it (``not_before``, then ``not_after``, compared as times), or another certificate exactly as new, is not
        written (``False``); the same certificate with other details is (_record.settle). A value that is not a
        timestamp is refused."""
        return self.put_certs([record]) == 1

    def put_certs(self, records):
        """``put_cert`` for each record, in one _batch. Returns how many were written (an older or equal record is
        skipped without failing the batch). Bad input is refused before anything is written."""
        rows = self._check_batch_certs(records)
        if not rows:
            return 0
        with self._batch():
            return sum(1 for row in rows if self._write_cert_now(*row))

    def delete_cert(self, scope, cluster, user):
        self._check_identity(scope, user, cluster)
        return self._delete_cert(scope, cluster, user)

    # ------------------------------------------------------------------ listings

    @staticmethod
    def _check_scope(scope):
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise KubePkiError("scope must be a non-empty string (or None for every scope) to list the credential store, got %r" % (scope,))

    def list_keys(self, scope=None):
        """Every stored key (of ``scope`` when given, else of every scope), sorted by (scope, user, cluster), as a dict
        of KEY_LISTING_FIELDS: ``scope, user, cluster, key_type, public_key_sha256, created, encrypted`` (a bool).

        ``private_key_pem`` is never read from the backend and nothing is decrypted, so no passphrase is needed (and
        none is checked). A document that is not a key row (a MongoDB document without a string identity or
        fingerprint) is left out. A missing embedded store opened with ``create=False`` lists nothing."""
        self._check_scope(scope)
        rows = [{field: row.get(field) for field in KEY_LISTING_FIELDS} for row in self._list_key_facts(scope)]
        keys = [dict(row, encrypted=bool(row["encrypted"])) for row in rows
                if all(isinstance(row[field], str) for field in ("scope", "user", "cluster", "public_key_sha256"))]
        return sorted(keys, key=lambda k: (k["scope"], k["user"], k["cluster"]))

    def list_certs(self, scope=None, damaged=None):
        """Every stored certificate record (of ``scope`` when given), as get_cert returns it, sorted by (scope, cluster,
        user). A stored record that is not a JSON object is refused like get_cert refuses it (KubePkiError naming its
        user and cluster), unless ``damaged`` is a list: its ``(scope, cluster, user)`` is then appended there and the
        record left out, so a report can name it and go on. A missing embedded store lists nothing."""
        self._check_scope(scope)
        records = []
        for item_scope, cluster, user, text in sorted(self._list_cert_texts(scope), key=lambda item: tuple(str(v) for v in item[:3])):
            try:
                record = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif damaged is not None:
                damaged.append((item_scope, cluster, user))
            else:
                raise KubePkiError("credential store %s holds a damaged certificate record for user %r, cluster %r (scope %r)" % (
                    self.location, user, cluster, item_scope))
        return records

    def close(self):
        """Release the connection; the store is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ backend hooks
    # What each backend (SqliteStore, MongoStore) defines; everything above is written on these alone.
    # keys:   _read_key(scope, user, cluster); _list_key_rows(); _list_key_facts(scope) (the rows of scope, None
    #         for all, with KEY_LISTING_FIELDS only: never the private key); _key_modes() (the set of ``encrypted``
    #         values stored); _sample_encrypted_pem(); _insert_key_if_absent(row); _upsert_key(row);
    #         _replace_key_if(row, expected_sha256); _delete_key(scope, user, cluster)
    # rekey:  _read_protection(); _insert_protection_if_absent(protection); _apply_rekey(job) (the changed keys of a
    #         prepared _Rekey and its key_protection record, together)
    # certs:  _list_cert_texts(scope) ([(scope, cluster, user, record text)] of scope, None for all);
    #         _read_cert(scope, cluster, user); _write_cert_now(scope, cluster, user, text) (inside _batch);
    #         _delete_cert(scope, cluster, user)
    # and, to make a batch one transaction, _batch()
