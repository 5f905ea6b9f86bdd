# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Certificate records (store rows, etcd values, certificate facts): the one rule for which of two is newer.

Newer means issued later: the later ``not_before``, then the later ``not_after``. A renewal with a shorter
lifetime is newer than the certificate it replaces although it expires sooner.
"""

from __future__ import annotations

import datetime

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

_OLDEST = (datetime.datetime.min.replace(tzinfo=datetime.timezone.utc),) * 2


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
