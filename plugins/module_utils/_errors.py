# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The one exception type of the collection; modules turn it into fail_json in one place."""

from __future__ import annotations

import json
import re

from ansible.module_utils import basic

from ansible_collections.kubepki.certs.plugins.module_utils import _secrets

# key material (PEM lines, base64 data, hex) is made of these; such a secret can only occur inside a run of them
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")


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


def mask_inputs(module, params=None):
    """Give Ansible every secret of the module's input (``params``, by default ``module.params``) that it cannot
    know from the argument spec's no_log: private key material pasted into any option (a key where a CSR,
    certificate or CA belongs), the credentials of an inline kubeconfig (also in ``clusters[].auth``), the password
    of a store URI, an etcd endpoint or a proxy, and the secrets read from the environment (see _secrets). Done
    first, on the raw parameters (AnsibleModule below) and again on the validated ones (_steps.context.run_module), so that they
    are masked in the echoed invocation, the error and the warnings even when a check fails before anything runs."""
    module.no_log_values.update(_secrets.input_secrets(module.params if params is None else params))


class AnsibleModule(basic.AnsibleModule):
    """The AnsibleModule of every module of the collection: it hands the secrets of its raw parameters to Ansible
    (``mask_inputs``) as soon as they are read, before the argument spec is validated. A validation failure (an
    unknown option, a wrong type, a value outside its choices) is reported by ``fail_json`` from inside
    ``__init__`` and echoes the invocation: without this the key pasted there, or an inline kubeconfig's client
    key, would be printed back. The dependency checks (``_deps.require``) come after ``__init__`` and are covered
    the same way."""

    def _load_params(self):
        super()._load_params()
        if isinstance(self.params, dict):
            mask_inputs(self, self.params)


def secrets_in(value, secrets):
    """The members of ``secrets`` that occur in ``value`` (anything JSON can dump), as Ansible would find them.

    Strings are compared in their JSON form, so a secret with line breaks (a PEM block) is found too. A secret made
    only of base64 characters is looked for in the runs of such characters ``value`` holds, not in all of its text:
    a result of megabytes holds far less of them, and a batch brings thousands of key lines to look for."""
    secrets = [secret for secret in secrets if isinstance(secret, str) and secret]
    if not secrets:
        return set()
    text = json.dumps(value, default=str)
    runs = "\n".join(set(_BASE64_RUN.findall(text)))

    def occurs(secret):
        if _BASE64_RUN.fullmatch(secret):
            return secret in runs
        longest = max(secret.splitlines() or [secret], key=len)
        if longest != secret and _BASE64_RUN.fullmatch(longest) and longest not in runs:
            return False  # a PEM block none of whose longest line is there
        return json.dumps(secret)[1:-1] in text

    return {secret for secret in secrets if occurs(secret)}
