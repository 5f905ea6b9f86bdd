# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_etcd.py ETCD_ARG_SPEC one to one.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  etcd_endpoints:
    description:
      - Client URLs of the etcd cluster holding the certificate records, for example V(https://10.0.0.5:2379).
      - They are tried in order; the first one that answers is used for the whole task.
      - When not set, the environment variable E(KUBEPKI_ETCD_ENDPOINTS) (comma-separated) is used.
      - Each one must be C(http://host[:port]) or C(https://host[:port]) (default port 2379), without path, query or
        credentials. With O(etcd_ca_cert) or O(etcd_client_cert) every endpoint must be C(https://).
      - The records live under C(<etcd_prefix>/certs/<scope>/<cluster>/<user>).
    type: list
    elements: str
    version_added: 0.1.0
  etcd_prefix:
    description:
      - Key prefix of this collection's records in etcd. Must start with C(/) and must not contain empty
        segments (C(//)), C(.) or C(..) segments.
    type: str
    default: /kubepki
    version_added: 0.1.0
  etcd_ca_cert:
    description:
      - CA bundle (PEM) that verifies the etcd server certificate for C(https) endpoints.
      - When not set, the system trust store is used. E(REQUESTS_CA_BUNDLE) and proxy variables are ignored.
    type: path
    version_added: 0.1.0
  etcd_client_cert:
    description:
      - Client certificate presented to etcd (PEM file). Requires O(etcd_client_key).
    type: path
    version_added: 0.1.0
  etcd_client_key:
    description:
      - Private key of O(etcd_client_cert) (PEM file).
    type: path
    version_added: 0.1.0
  etcd_username:
    description:
      - User name for etcd's own authentication. Requires O(etcd_password).
    type: str
    version_added: 0.1.0
  etcd_password:
    description:
      - Password of O(etcd_username).
    type: str
    version_added: 0.1.0
  etcd_timeout:
    description:
      - Timeout in seconds of each request to etcd, connecting included.
    type: float
    default: 5.0
    version_added: 0.1.0
"""
