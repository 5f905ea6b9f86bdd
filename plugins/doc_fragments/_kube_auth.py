# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this doc fragment may change in any release.
# Mirrors plugins/module_utils/_kube/client.py AUTH_ARG_SPEC one to one.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig content as a dict.
      - When not set, the environment variable E(K8S_AUTH_KUBECONFIG) is used.
      - Secret values of an inline kubeconfig (keys, tokens, passwords) are hidden from logs.
      - Which configuration is used follows kubernetes.core; O(host) with O(api_key) or with O(client_cert) and
        O(client_key) beats O(kubeconfig) and O(context), which beat the in-cluster service account, which beats
        the default kubeconfig (E(KUBECONFIG) or C(~/.kube/config)).
    type: raw
    version_added: 0.1.0
  context:
    description:
      - The kubeconfig context to use. Defaults to the current context of the kubeconfig.
      - When not set, the environment variable E(K8S_AUTH_CONTEXT) is used.
    type: str
    version_added: 0.1.0
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://127.0.0.1:6443).
      - When not set, the environment variable E(K8S_AUTH_HOST) is used.
    type: str
    version_added: 0.1.0
  api_key:
    description:
      - Bearer token used to authenticate with the API server.
      - When not set, the environment variable E(K8S_AUTH_API_KEY) is used.
    type: str
    version_added: 0.1.0
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - When not set, the environment variable E(K8S_AUTH_VALIDATE_CERTS) or E(K8S_AUTH_VERIFY_SSL) is used; only
        V(0), V(false) and V(no) (in any case) mean false there.
    type: bool
    aliases: [verify_ssl]
    version_added: 0.1.0
  ca_cert:
    description:
      - Path to a CA bundle to verify the API server with.
      - When not set, the environment variable E(K8S_AUTH_CA_CERT) or E(K8S_AUTH_SSL_CA_CERT) is used.
    type: path
    aliases: [ssl_ca_cert]
    version_added: 0.1.0
  client_cert:
    description:
      - Path to a client certificate to authenticate with the API server.
      - When not set, the environment variable E(K8S_AUTH_CLIENT_CERT) or E(K8S_AUTH_CERT_FILE) is used.
    type: path
    aliases: [cert_file]
    version_added: 0.1.0
  client_key:
    description:
      - Path to the private key of O(client_cert).
      - When not set, the environment variable E(K8S_AUTH_CLIENT_KEY) or E(K8S_AUTH_KEY_FILE) is used.
    type: path
    aliases: [key_file]
    version_added: 0.1.0
  proxy:
    description:
      - URL of an HTTP(S) proxy to reach the API server through.
      - When not set, the environment variable E(K8S_AUTH_PROXY) is used.
    type: str
    version_added: 0.1.0
notes:
  - Explicit options always win over E(K8S_AUTH_*) environment variables, which are read on the host that runs the
    module (run these modules on C(localhost) or with C(delegate_to) in AWX).
  - Requests answered with 429 (honouring C(Retry-After)), 500 or 503, and connection errors, are retried within the
    module's time budget.
"""
