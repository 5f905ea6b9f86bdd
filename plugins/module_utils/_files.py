# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Files the modules write: whole or not at all."""

from __future__ import annotations

import os
import tempfile

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError


def write_atomically(path, text, mode=0o600, what="dest"):
    """Write ``text`` to ``path`` through a temporary file in the same directory, given ``mode`` before anything
    is written into it, fsynced, then renamed over ``path``. KubePkiError naming ``what`` on failure."""
    path = os.path.abspath(path)
    try:
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path), suffix=".tmp")
    except OSError as exc:
        raise KubePkiError("%s %s cannot be written: %s" % (what, path, exc.strerror or exc)) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise KubePkiError("%s %s cannot be written: %s" % (what, path, exc.strerror or exc)) from None
