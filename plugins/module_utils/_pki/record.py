# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Certificate records (store rows, etcd values, certificate facts): the one rule for which of two is newer, and
the one rule for where a certificate stands in time.

Newer means issued later: the later ``not_before``, then the later ``not_after``. A renewal with a shorter
lifetime is newer than the certificate it replaces although it expires sooner.

Where it stands (``standing``): a certificate is valid from ``not_before`` (a few minutes early are forgiven: clocks
differ) until ``not_after``, and due for renewal once ``renew_before`` seconds are left.
"""

from __future__ import annotations

import datetime
import json

from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

_OLDEST = (datetime.datetime.min.replace(tzinfo=datetime.timezone.utc),) * 2
# how far this host's clock may be behind the signer's: a certificate that starts within it counts as started
CLOCK_SKEW = datetime.timedelta(minutes=5)


# The fields of a certificate record: an etcd value and a store record hold these (docs/internals.md).
FIELDS = (
    "scope", "cluster", "user", "common_name", "organizations", "certificate", "csr_name", "csr_uid",
    "signer_name", "serial", "not_before", "not_after", "public_key_sha256",
)


def of_certificate(facts, certificate, scope, cluster, user, csr_name=None, csr_uid=None, signer_name=None):
    """The record of the PEM ``certificate`` (``facts`` read from it) for (scope, cluster, user)."""
    return {"scope": scope, "cluster": cluster, "user": user, "common_name": facts["common_name"],
            "organizations": facts["organizations"], "certificate": certificate, "csr_name": csr_name, "csr_uid": csr_uid,
            "signer_name": signer_name, "serial": facts["serial"], "not_before": facts["not_before"],
            "not_after": facts["not_after"], "public_key_sha256": facts["public_key_sha256"]}


def dumps(record):
    """The byte-stable JSON text of a record, as etcd and the store keep it: the same record is always the same bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def checked_validity(record, what):
    """``(not_before, not_after)`` of a record about to be written, as aware datetimes; None when either is missing.
    A value that is not a timestamp is refused: KubePkiError naming ``what``."""
    values = []
    for field in ("not_before", "not_after"):
        text = record.get(field)
        if text is None or text == "":
            return None
        try:
            values.append(_crypto.parse_rfc3339(text))
        except KubePkiError:
            raise KubePkiError("%s: %s %r is not an RFC 3339 timestamp" % (what, field, text)) from None
    return tuple(values)


def settle(stored, wanted, lost=False):
    """What becomes of the stored record of an identity when ``wanted`` is written, in etcd and in the store alike:
    ``"write"`` (wanted holds a newer certificate, or the same one with other details), ``"newer"`` (stored holds a
    newer certificate: kept), ``"equal"`` (stored holds another certificate exactly as new, or, ``lost``, a
    concurrent writer has just put one as new: kept, so that two writers do not replace each other in turn); None
    when either has no readable validity."""
    verdict = order(stored, wanted)
    if verdict is None:
        return None
    if verdict > 0:
        return "newer"
    if verdict == 0 and (lost or stored.get("certificate") != wanted.get("certificate")):
        return "equal"
    return "write"


def replaces(stored_text, text, lost=False):
    """Whether the store writes the record ``text`` over ``stored_text``: never when equal, else as settle() says
    (``lost``: a concurrent writer has just changed the stored record); a record over a damaged or undated one, or
    an undated record, is written."""
    if stored_text == text:
        return False
    if stored_text is None:
        return True
    try:
        stored = json.loads(stored_text)
    except ValueError:
        return True
    return settle(stored, json.loads(text), lost) in (None, "write")


def validity(record):
    """``(not_before, not_after)`` of ``record`` as aware datetimes; None when either is missing or unreadable."""
    try:
        return (_crypto.parse_rfc3339(record["not_before"]), _crypto.parse_rfc3339(record["not_after"]))
    except (KeyError, TypeError, AttributeError, KubePkiError):
        return None


def sort_key(record):
    """A key ordering records from oldest to newest; a record without readable validity is the oldest."""
    return validity(record) or _OLDEST


def order(first, second):
    """1 when ``first`` holds the newer certificate, -1 when the older, 0 when equally new; None when either
    has no readable validity."""
    mine, theirs = validity(first), validity(second)
    if mine is None or theirs is None:
        return None
    return (mine > theirs) - (mine < theirs)


def newest(records):
    """The newest of ``records`` (None entries and records without readable validity left out), or None."""
    dated = [record for record in records if record and validity(record) is not None]
    return max(dated, key=sort_key) if dated else None


def standing(record, renew_before=None, at=None):
    """Where the certificate ``record`` stands at ``at`` (default now): ``unreadable`` (no readable validity),
    ``not_yet_valid`` (it starts more than CLOCK_SKEW later), ``expired`` (``not_after`` reached), ``due`` (it
    expires within ``renew_before`` seconds) or ``valid``."""
    window = validity(record)
    if window is None:
        return "unreadable"
    at = at or _crypto.utc_now()
    if window[0] > at + CLOCK_SKEW:
        return "not_yet_valid"
    if window[1] <= at:
        return "expired"
    if at + datetime.timedelta(seconds=renew_before or 0) >= window[1]:
        return "due"
    return "valid"


def is_due(record, renew_before):
    """Whether ``record`` must be replaced: anything but ``valid`` (renew_before None: only at expiry)."""
    return standing(record, renew_before) != "valid"


# a certificate watched without end is due at the latest once this fraction (1/WATCHED_SHARE) of its lifetime is left
WATCHED_SHARE = 3


def watched_window(record, renew_before):
    """The renew_before (seconds) that applies to ``record`` when something watches it without end (the Monitor's
    renewal): ``renew_before``, but never more than a third of the certificate's own lifetime. A signer that issues
    certificates shorter than renew_before (a cluster-signing duration, a clamped expirationSeconds) would otherwise
    make every renewal due again at once, at every reading. A scheduled run (user_certificates) takes renew_before as
    given: it means "renew what would expire before the next run", however short the certificates are."""
    window = validity(record)
    if window is None:
        return renew_before
    lifetime = (window[1] - window[0]).total_seconds()
    return max(min(renew_before, int(lifetime // WATCHED_SHARE)), 0)


def not_expired(record):
    """Whether ``record`` is a certificate that is or will be valid: what offboarding cannot take back."""
    return standing(record) in ("valid", "not_yet_valid")
