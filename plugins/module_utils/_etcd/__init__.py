# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""etcd, where the certificate records are carried between clusters: ``options`` (the modules' etcd options, checked
without connecting) and ``transport`` (the client: records under ``<prefix>/certs/<scope>/<cluster>/<user>``)."""

from __future__ import annotations

from ansible_collections.kubepki.certs.plugins.module_utils._etcd.options import (  # noqa: F401 (the package's interface)
    ETCD_ARG_SPEC, connection_options, endpoints_from_params, endpoints_problem, key_segment_problem,
)
from ansible_collections.kubepki.certs.plugins.module_utils._etcd.transport import EtcdTransport, import_etcd3gw  # noqa: F401


def transport_from_params(params):
    """An ``EtcdTransport`` for a module's ``etcd_*`` options; ``None`` when no endpoint is configured."""
    endpoints = endpoints_from_params(params)
    return EtcdTransport(endpoints, **connection_options(params)) if endpoints else None


def check_reachable(params):
    """An etcd that is configured but down (or refuses the credentials) is found before any key, CSR or record is
    written: the job fails naming etcd_endpoints instead of leaving a new key or deleted CSRs behind."""
    transport = transport_from_params(params)
    if transport is not None:
        with transport:
            transport.check()
