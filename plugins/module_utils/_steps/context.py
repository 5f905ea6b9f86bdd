# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""How a step runs: ``step.run(ctx, params)``.

``params`` are the step's own parameters, validated against its argument spec: by AnsibleModule when a single
module runs the step, by ``validated()`` (ansible-core's ArgumentSpecValidator) when user_certificates composes
steps, so the composite and the single modules accept exactly the same things. ``ctx`` is everything else a step
may use, stated rather than found on whatever object happens to call it.
"""

from __future__ import annotations

import copy

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.kubepki.certs.plugins.module_utils import _deps
from ansible_collections.kubepki.certs.plugins.module_utils._errors import AnsibleModule, KubePkiError, fail_from, mask_inputs


class ClusterSession:
    """What the steps for one cluster share inside a composed run.

    ``csrs``: the CSR objects an earlier step got from the API, by name (the approve step does not fetch them
    again). ``listed``: the cluster's CSR list and etcd records, read by the create step for the first part of a
    batch and used by its later parts."""

    def __init__(self):
        self.csrs = {}
        self.listed = {}


class StepContext:
    """The run a step belongs to.

    ``warn`` takes a warning; ``secrets`` is the set of values to mask (a module's ``no_log_values``, or one set
    for a whole composed run, checked against its result once). ``batch`` is None when a single module runs the
    step, so that any failure stops it; in a composed run it is a list, and a user the step cannot finish is set
    aside there (``set_aside``) while the others go on. ``session`` is the cluster's ClusterSession, or None."""

    def __init__(self, check_mode=False, diff=False, warn=None, secrets=None, batch=None, session=None):
        self.check_mode = check_mode
        self.diff = diff
        self.warn = warn if warn is not None else (lambda message: None)
        self.secrets = set() if secrets is None else secrets
        self.batch = batch
        self.session = session

    @classmethod
    def of_module(cls, module):
        return cls(check_mode=module.check_mode, diff=module._diff, warn=module.warn, secrets=module.no_log_values)

    def set_aside(self, user, msg, **where):
        """In a batch: note that ``user`` could not be finished, why, and where (``csr_name`` or ``cluster``), and
        return True so the step goes on with the others. Alone (no batch): False, and the step raises."""
        if self.batch is None:
            return False
        self.batch.append(dict(where, user=user, msg=msg))
        return True

    def remember(self, obj):
        """A CSR as the API returned it, for the cluster's next step (nothing to do outside a session)."""
        if self.session is not None:
            self.session.csrs[(obj.get("metadata") or {}).get("name")] = obj

    def seen(self):
        return self.session.csrs if self.session is not None else None


def validated(spec, given, step):
    """``given`` checked and completed (types, choices, defaults, required and nested options) exactly as an
    AnsibleModule with ``spec`` would (an option set to None counts as not given); a KubePkiError names every problem. Values the spec marks no_log are
    returned as the second item, to be masked."""
    result = ArgumentSpecValidator(spec).validate(_given(given))
    if result.error_messages:
        problems = ["unsupported parameters: %s" % error.msg if isinstance(error, UnsupportedError) else error.msg for error in result.errors.errors]
        raise KubePkiError("the %s step's parameters are not valid: %s" % (step, "; ".join(problems)))
    return result.validated_parameters, result._no_log_values  # pylint: disable=protected-access


def failure_message(failures, users, clusters):
    """One line naming every (cluster, user) that could not be finished, and the step and reason."""
    lines = []
    for failure in failures:
        who = "cluster %s" % failure["cluster"] if failure.get("cluster") else "all clusters"
        if failure.get("user"):
            who += ", user %s" % failure["user"]
        lines.append("%s (%s): %s" % (who, failure.get("step", "?"), failure["msg"]))
    stopped = sorted({f["cluster"] for f in failures if f.get("user") is None and f.get("cluster")})
    left = sorted({(f.get("cluster"), f["user"]) for f in failures if f.get("user")})
    head = "%d of %d clusters stopped, %d (cluster, user) pairs of %d users x %d clusters not finished; the rest were finished: " % (
        len(stopped), clusters, len(left), users, clusters)
    return head + " | ".join(lines)


def _given(value):
    """``value`` with the options set to None left out: a composed step gets an option it was not given as a task
    would leave it out, so that the step's own default applies."""
    if isinstance(value, dict):
        return {name: _given(item) for name, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_given(item) for item in value]
    return value


def run_module(module, step):
    """A module's last line: ``step(ctx, module.params)`` for the module's context, then exit_json with its result,
    or fail_json for a KubePkiError."""
    mask_inputs(module)
    try:
        result = step(StepContext.of_module(module), module.params)
    except KubePkiError as error:
        fail_from(module, error)
        return
    module.exit_json(**result)


def module_main(argument_spec, step, libraries, **module_options):
    """A module's main(): its AnsibleModule (check mode supported, ``module_options`` such as mutually_exclusive),
    the libraries it needs checked, then run_module."""
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_options)
    _deps.require(module, *libraries)
    run_module(module, step)


def options(*specs):
    """One argument spec: ``specs`` merged in order, each copied (the shared specs are never changed)."""
    return {name: copy.deepcopy(value) for one in specs for name, value in one.items()}
