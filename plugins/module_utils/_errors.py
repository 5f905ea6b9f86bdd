# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The one exception type of the collection; modules turn it into fail_json in one place."""

from __future__ import annotations

import os


class KubePkiError(Exception):
    """A failure to report to the user.

    ``msg`` names the parameter or object at fault. ``details`` holds extra, non-secret facts
    (an API status, the last state seen) returned beside ``msg`` by ``fail_json``.
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class WaitTimeout(KubePkiError):
    """Waiting ended before the awaited state; ``details['last_state']`` says what was seen last."""


def fail_from(module, error):
    """Report ``error`` (a KubePkiError) through ``module.fail_json``."""
    module.fail_json(msg=error.msg, **error.details)


def mask_inputs(module):
    """Give Ansible the secrets hidden inside options it cannot mark no_log as a whole: the credentials of an
    inline kubeconfig (also in ``clusters[].auth``) and the password of a store URI. Done first, so that they
    are masked in the echoed invocation even when a check fails before any client is built."""
    from ansible_collections.kubepki.certs.plugins.module_utils import _kube, _store  # pylint: disable=import-outside-toplevel

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "kubeconfig" and isinstance(item, dict):
                    module.no_log_values.update(_kube.kubeconfig_secrets(item))
                elif key == "store_uri" and isinstance(item, str):
                    module.no_log_values.update(_store.uri_secrets(item))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(module.params)
    module.no_log_values.update(_store.uri_secrets(os.environ.get("KUBEPKI_STORE_URI") or ""))


def run_module(module, work):
    """A module's last step: ``module.exit_json(**work(module))``, or fail_json for a KubePkiError."""
    mask_inputs(module)
    try:
        result = work(module)
    except KubePkiError as error:
        fail_from(module, error)
        return
    module.exit_json(**result)
