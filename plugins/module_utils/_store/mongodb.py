# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The credential store on MongoDB, through pymongo."""

from __future__ import annotations

import os
import random
import time

from ansible_collections.kubepki.certs.plugins.module_utils import _deps
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._store import sealing as _sealing
from ansible_collections.kubepki.certs.plugins.module_utils._store.base import (
    CERT_WRITE_ROUNDS, KEY_LISTING_FIELDS, PROTECTION_NAME, REKEY_ROUNDS, CredentialStore,
)
from ansible_collections.kubepki.certs.plugins.module_utils._uri import redact_uri, scrub, userinfo

DEFAULT_DATABASE = "kubepki"
TIMEOUT_MS = 3000

# pymongo is imported only when a MongoDB store is opened: it costs close to a second of start-up that
# the embedded store does not need.
pymongo = _deps.Lazy(lib="pymongo", errors="pymongo.errors", reads="pymongo.read_concern", writes="pymongo.write_concern")


def import_pymongo():
    """Whether pymongo can be imported (it is, from then on)."""
    return pymongo.ready()


# the unique indexes of the MongoDB store: (collection attribute, key pattern, name)
MONGO_INDEXES = (
    ("_keys", (("scope", 1), ("user", 1), ("cluster", 1)), "kubepki_key_identity"),
    ("_certs", (("scope", 1), ("cluster", 1), ("user", 1)), "kubepki_cert_identity"),
)


class MongoStore(CredentialStore):
    """MongoDB through pymongo: collections ``keys`` and ``certificates``, unique indexes on their identity, and
    ``meta`` (the key_protection record, ``_id: key_protection``).

    Keys and the key_protection record are written and read with majority concerns whatever the URI says; indexes
    are made once in the life of the store, before its first write; no multi-document transaction is used, so every
    write that must not overwrite another writer's is a single-document compare, and a rekey keeps the old KEK under
    ``previous`` until its sweep ends (docs/internals.md, "Credential store", MongoDB).
    """

    kind = "mongodb"

    def __init__(self, uri, passphrase=None, client_factory=None, timeout_ms=None):
        super().__init__(passphrase)
        self._timeout_ms = timeout_ms = TIMEOUT_MS if timeout_ms is None else timeout_ms
        self.location = redact_uri(uri)
        self._uri = uri
        self._client = None
        self._database_name = DEFAULT_DATABASE
        self._indexed = set()
        self._reached = False
        have_pymongo = import_pymongo()
        if client_factory is None:
            if not have_pymongo:
                raise KubePkiError("store_uri selects MongoDB, but the pymongo library is not installed on the host that runs this module")
            client_factory = pymongo.lib.MongoClient
        try:
            self._client = client_factory(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        except Exception as exc:  # pymongo raises InvalidURI, ConfigurationError, ValueError, TypeError here
            raise KubePkiError("store_uri %s is not a usable MongoDB URI: %s" % (self.location, scrub(exc, uri))) from None
        try:
            database = self._client.get_default_database(default=DEFAULT_DATABASE)
        except Exception as exc:  # pylint: disable=broad-except
            self._client.close()
            raise KubePkiError("store_uri %s names no usable database: %s" % (self.location, scrub(exc, uri))) from None
        self._database_name = database.name
        pinned = {}
        if pymongo.loaded:
            pinned = {"write_concern": pymongo.writes.WriteConcern(w="majority", j=True), "read_concern": pymongo.reads.ReadConcern("majority")}
        self._keys = database.get_collection("keys", **pinned)
        self._certs = database["certificates"]
        self._meta = database.get_collection("meta", **pinned)
        try:
            self._guard(self._client.admin.command, "ping")
        except KubePkiError:
            self.close()
            raise
        self._reached = True

    def _ensure_index(self, attribute):
        """The unique identity index of one collection (``_keys``/``_certs``), created when ``listIndexes`` shows
        none with its key pattern; looked for once per store object, before its first write there."""
        if attribute in self._indexed:
            return
        pattern, index_name = next((list(fields), name) for item, fields, name in MONGO_INDEXES if item == attribute)
        collection = getattr(self, attribute)

        def present():
            return any(index.get("unique") and list(dict(index.get("key") or {}).items()) == pattern for index in collection.list_indexes())

        if not self._guard(present):
            self._guard(lambda: collection.create_index(pattern, unique=True, name=index_name))
        self._indexed.add(attribute)

    def _public_uri(self):
        """The store URI without its user information (no user, no password), for messages."""
        scheme, _sep, rest = self._uri.partition("://")
        return "%s://%s/%s" % (scheme, self._hosts(), rest.partition("/")[2].partition("?")[0] or self._database_name)

    def _hosts(self):
        _given, tail = userinfo(self._uri)
        rest = self._uri.partition("://")[2] if tail is None else tail
        return rest.partition("/")[0].partition("?")[0] or "localhost"

    def _guard(self, func, *args):
        try:
            return func(*args)
        except KubePkiError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if pymongo.loaded and isinstance(exc, pymongo.errors.ServerSelectionTimeoutError) and not self._reached:
                raise KubePkiError("store_uri: MongoDB at %s is unreachable (no server answered within %.1fs; store %s)" % (
                    self._hosts(), self._timeout_ms / 1000.0, self._public_uri()), store=self.location) from None
            if pymongo.loaded and isinstance(exc, pymongo.errors.ServerSelectionTimeoutError):
                raise KubePkiError("store_uri: the connection to MongoDB at %s was lost (no server answered within %.1fs any more; "
                                   "store %s): what was written before is kept, run again" % (
                                       self._hosts(), self._timeout_ms / 1000.0, self._public_uri()), store=self.location) from None
            if pymongo.loaded and isinstance(exc, pymongo.errors.ConnectionFailure):
                raise KubePkiError("store_uri: the connection to MongoDB at %s was lost (%s; store %s): what was written before "
                                   "is kept, run again" % (self._hosts(), scrub(exc, self._uri), self._public_uri()), store=self.location) from None
            if pymongo.loaded and isinstance(exc, pymongo.errors.OperationFailure):
                raise KubePkiError("store_uri: MongoDB at %s refused the operation: %s" % (self._hosts(), scrub(exc, self._uri))) from None
            raise KubePkiError("store_uri: MongoDB at %s failed: %s" % (self._hosts(), scrub(exc, self._uri))) from None

    @staticmethod
    def _strip(document):
        return None if document is None else {name: value for name, value in document.items() if name != "_id"}

    def _read_key(self, scope, user, cluster):
        return self._strip(self._guard(self._keys.find_one, {"scope": scope, "user": user, "cluster": cluster}))

    def _list_key_rows(self):
        return self._guard(lambda: [self._strip(doc) for doc in self._keys.find({}).sort([("scope", 1), ("user", 1), ("cluster", 1)])])

    def _list_key_facts(self, scope):
        query = {} if scope is None else {"scope": scope}
        projection = dict(dict.fromkeys(KEY_LISTING_FIELDS, 1), _id=0)
        return self._guard(lambda: [dict(doc) for doc in self._keys.find(query, projection)])

    def _list_cert_texts(self, scope):
        query = {} if scope is None else {"scope": scope}
        projection = {"_id": 0, "scope": 1, "cluster": 1, "user": 1, "record": 1}
        return self._guard(lambda: [(doc.get("scope"), doc.get("cluster"), doc.get("user"), doc.get("record"))
                                    for doc in self._certs.find(query, projection)])

    def _key_modes(self):
        return {mode for mode in (True, False) if self._guard(self._keys.find_one, {"encrypted": mode}) is not None}

    def _sample_encrypted_pem(self):
        document = self._guard(self._keys.find_one, {"encrypted": True})
        return None if document is None else document.get("private_key_pem")

    def _read_protection(self):
        document = self._strip(self._guard(self._meta.find_one, {"_id": PROTECTION_NAME}))
        if document is None:
            return None
        document["encrypted"] = bool(document.get("encrypted"))
        document.setdefault("verifier", None)
        return document

    @staticmethod
    def _protection_filter(stored):
        """The filter that matches the key_protection record ``stored`` only while it is unchanged."""
        return {"_id": PROTECTION_NAME, "encrypted": stored.get("encrypted"), "verifier": stored.get("verifier"), "rev": stored.get("rev")}

    def _replace_protection(self, stored, protection):
        return self._guard(self._meta.replace_one, self._protection_filter(stored), dict(protection)).matched_count == 1

    def _insert_new(self, collection, document):
        """Insert ``document``; False when the collection holds one with the same unique key already."""
        def insert():
            try:
                collection.insert_one(document)
            except pymongo.errors.DuplicateKeyError:
                return False
            return True
        return self._guard(insert)

    def _insert_protection_if_absent(self, protection):
        return self._insert_new(self._meta, dict(protection, _id=PROTECTION_NAME))

    def _replace_key_if(self, row, expected_sha256):
        identity = {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"], "public_key_sha256": expected_sha256}
        return self._guard(self._keys.replace_one, identity, dict(row)).matched_count == 1

    def _apply_rekey(self, job):
        """See the class docstring: record switched (old KEKs kept as ``previous``), keys replaced under a compare,
        swept again, then ``previous`` dropped."""
        stored, protection = job.stored, job.protection
        switching = stored is None or bool(stored.get("encrypted")) != protection["encrypted"] or \
            (stored.get("kek") or {}).get("id") != (protection.get("kek") or {}).get("id")
        current = stored
        if switching:
            kept = [item for item in _sealing.descriptors(stored) if item.get("id") != job.target_kid]
            if kept:
                protection = dict(protection, previous=kept)
            switched = self._insert_protection_if_absent(protection) if stored is None else self._replace_protection(stored, protection)
            if not switched:
                raise KubePkiError("credential store %s: its key_protection record changed while it was rekeyed (another "
                                   "store_rekey?); nothing was rekeyed, run again" % self.location)
            current = protection
        for _round in range(REKEY_ROUNDS):
            for old, pem in job.changes:
                text, encrypted = job.seal(old, pem)
                identity = {"scope": old["scope"], "user": old["user"], "cluster": old["cluster"], "private_key_pem": old["private_key_pem"]}
                self._guard(self._keys.update_one, identity, {"$set": {"private_key_pem": text, "encrypted": encrypted}})
            job.replan()
            if not job.changes:
                if current.get("previous") and not self._replace_protection(current, dict(current, previous=[], rev=os.urandom(8).hex())):
                    raise KubePkiError("credential store %s: its key_protection record changed while it was rekeyed (another "
                                       "store_rekey?); every key opens with the old or the new passphrase: run the same "
                                       "store_rekey again to finish" % self.location)
                return
        raise KubePkiError("credential store %s: keys kept changing while they were rekeyed; every key opens with the old or "
                           "the new passphrase: run the same store_rekey again to finish" % self.location)

    def _insert_key_if_absent(self, row):
        self._ensure_index("_keys")
        return self._insert_new(self._keys, dict(row))

    def _upsert_key(self, row):
        self._ensure_index("_keys")
        self._guard(self._keys.replace_one, {"scope": row["scope"], "user": row["user"], "cluster": row["cluster"]}, dict(row), True)

    def _delete_key(self, scope, user, cluster):
        return self._guard(self._keys.delete_one, {"scope": scope, "user": user, "cluster": cluster}).deleted_count > 0

    def _read_cert(self, scope, cluster, user):
        document = self._guard(self._certs.find_one, {"scope": scope, "cluster": cluster, "user": user})
        return None if document is None else document.get("record")

    def _write_cert_now(self, scope, cluster, user, text):
        """Compare, then replace only while the stored record is the one compared (a changed one is compared again)."""
        self._ensure_index("_certs")
        identity = {"scope": scope, "cluster": cluster, "user": user}
        for attempt in range(CERT_WRITE_ROUNDS):
            stored = self._read_cert(scope, cluster, user)
            if not _record.replaces(stored, text, lost=attempt > 0):
                return False
            if stored is None:
                if self._insert_new(self._certs, dict(identity, record=text)):
                    return True
            elif self._guard(self._certs.replace_one, dict(identity, record=stored), dict(identity, record=text)).matched_count == 1:
                return True
            # another writer replaced the record in between: let it finish before comparing again
            time.sleep(random.uniform(0.001, 0.005) * min(attempt + 1, 10))
        raise KubePkiError("credential store %s: the certificate record of user %r, cluster %r kept changing while it was "
                           "written (%d attempts); run again" % (self.location, user, cluster, CERT_WRITE_ROUNDS))

    def _delete_cert(self, scope, cluster, user):
        return self._guard(self._certs.delete_one, {"scope": scope, "cluster": cluster, "user": user}).deleted_count > 0

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None
