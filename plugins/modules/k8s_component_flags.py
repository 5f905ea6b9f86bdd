#!/usr/bin/python
# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_component_flags
short_description: Set command-line flags of a Kubernetes component in a static pod manifest or an environment file
version_added: 0.1.0
description:
  - Edits the flags of a Kubernetes control-plane component or kubelet as data, never by line or regular-expression edits.
  - With O(format=static_pod) the manifest is loaded as YAML, the C(command) list of one container (its C(args) list
    when the container has one) is changed and the document is written back. The file is only rewritten when the
    parsed content changes, so a manifest that already carries the wanted flags is left untouched, formatting included.
  - With O(format=env_file) the arguments held in one variable of a systemd C(EnvironmentFile) (for example
    C(KUBE_CONTROLLER_MANAGER_ARGS) or C(KUBELET_EXTRA_ARGS)) are parsed, changed and written back as one double-quoted
    value. Other lines of the file are kept.
  - With O(format=yaml) the file is a YAML mapping such as a kubelet C(KubeletConfiguration) and O(settings) are merged
    into it recursively.
  - The file is replaced whole or not at all, through a hidden temporary file next to it (a kubelet watching a manifest
    directory never picks it up). It keeps its mode and SELinux context, and when run as root its owner and group (other
    extended attributes, such as POSIX ACLs, are not carried over); a new file is C(0600) unless O(mode) says otherwise.
author:
  - kubepki.certs contributors (@kubepki)
options:
  path:
    description:
      - The file to edit.
    type: path
    required: true
  format:
    description:
      - What kind of file O(path) is.
    type: str
    choices: [static_pod, env_file, yaml]
    default: static_pod
  container:
    description:
      - With O(format=static_pod), the name of the container whose C(command) is edited.
      - When not set the pod must have exactly one container.
    type: str
  variable:
    description:
      - With O(format=env_file), the variable holding the arguments. Required for that format.
    type: str
  flags:
    description:
      - Flags to set, as a mapping of flag name (without the leading C(--)) to value.
      - Booleans become V(true) or V(false); other values are converted to strings; V(null) writes the bare flag
        C(--name) without a value.
      - A flag already present keeps its position and gets the new value; a new flag is appended.
    type: dict
    default: {}
  merge_lists:
    description:
      - Comma-separated list flags to extend, as a mapping of flag name to the list of items that must be present.
      - Items already present keep their order; missing items are appended; duplicates are never added.
      - When the flag is absent it is created with the given items.
      - An item V(*) stands for the component's defaults, what an absent flag means (kube-controller-manager's
        C(--controllers)). It is written when the flag is created, and never added to a list that is already there
        without it, so an explicit list of controllers stays explicit.
      - A wanted item replaces its negation C(-item) (C(-csrsigning) disables that controller).
    type: dict
    default: {}
  absent:
    description:
      - Names of flags (without the leading C(--)) to remove wherever they appear.
    type: list
    elements: str
    default: []
  settings:
    description:
      - With O(format=yaml), a mapping merged recursively into the document. Lists and scalars replace what is there.
    type: dict
    default: {}
  create:
    description:
      - With O(format=env_file) or O(format=yaml), create the file when it does not exist.
      - A static pod manifest must always exist.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.files
  - kubepki.certs._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Flag names and values (in O(flags), O(merge_lists) and O(absent)) must not hold control characters (a line
    break, carriage return, NUL, any other character below 0x20, 0x7f to 0x9f) nor the Unicode line and paragraph
    separators, which would start a new line in the file. Such a task fails before anything is read or written; the
    message names the option and the flag, never the value.
  - Flag values must not hold whitespace, quotes or backslashes with O(format=env_file), because systemd splits the
    expanded variable on whitespace.
  - The kubelet restarts a static pod by itself when its manifest changes; components run by systemd need a restart.
requirements:
  - PyYAML on the managed node for O(format=static_pod) and O(format=yaml).
"""

EXAMPLES = r"""
- name: Make kube-controller-manager sign with the cluster CA
  kubepki.certs.k8s_component_flags:
    path: /etc/kubernetes/manifests/kube-controller-manager.yaml
    container: kube-controller-manager
    flags:
      cluster-signing-cert-file: /etc/kubernetes/pki/ca.crt
      cluster-signing-key-file: /etc/kubernetes/pki/ca.key
      cluster-signing-duration: 8760h
    merge_lists:
      controllers: ['*', csrapproving, csrsigning, csrcleaner, tokencleaner, bootstrapsigner]
    absent:
      - experimental-cluster-signing-duration
    mode: '0600'

- name: Same for a controller-manager started by systemd
  kubepki.certs.k8s_component_flags:
    path: /etc/kubernetes/controller-manager
    format: env_file
    variable: KUBE_CONTROLLER_MANAGER_ARGS
    flags:
      cluster-signing-duration: 8760h

- name: Turn on certificate rotation in the KubeletConfiguration
  kubepki.certs.k8s_component_flags:
    path: /var/lib/kubelet/config.yaml
    format: yaml
    settings:
      rotateCertificates: true
"""

RETURN = r"""
flags:
  description:
    - The resulting argument list (static pod C(command) followed by C(args), or the arguments of the environment
      variable).
  returned: success and O(format) is V(static_pod) or V(env_file)
  type: list
  elements: str
  sample: ["kube-controller-manager", "--cluster-signing-duration=8760h"]
settings:
  description: The resulting YAML document.
  returned: success and O(format=yaml)
  type: dict
  sample: {"kind": "KubeletConfiguration", "rotateCertificates": true}
path:
  description: The edited file.
  returned: always
  type: str
  sample: /etc/kubernetes/manifests/kube-apiserver.yaml
"""

import copy
import os
import re
import shlex
import stat
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native, to_text

from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file, write_atomically

YAML_IMPORT_ERROR = None
try:
    import yaml
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_YAML = True


class FlagError(Exception):
    """A request that cannot be applied to the file."""


def flag_value(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return to_text(value)


def parse_flag(arg):
    """Return (name, value) for ``--name=value`` / ``--name``; None for anything that is not a flag."""
    if not arg.startswith("--") or len(arg) == 2:
        return None
    name, sep, value = arg[2:].partition("=")
    return name, (value if sep else None)


def render_flag(name, value):
    return "--%s" % name if value is None else "--%s=%s" % (name, value)


def edit_args(args, flags, merge_lists, absent):
    """Apply the requested changes to a list of arguments and return the new list."""
    result = list(args)

    def positions(name):
        return [i for i, arg in enumerate(result) if (parse_flag(arg) or (None,))[0] == name]

    def set_flag(name, value):
        found = positions(name)
        if not found:
            result.append(render_flag(name, value))
            return
        result[found[0]] = render_flag(name, value)
        for index in reversed(found[1:]):
            del result[index]

    for name in absent:
        for index in reversed(positions(name)):
            del result[index]

    for name, value in flags.items():
        set_flag(name, flag_value(value))

    for name, wanted in merge_lists.items():
        if not isinstance(wanted, list):
            wanted = [wanted]
        present = bool(positions(name))
        current = []
        for index in positions(name):
            value = parse_flag(result[index])[1]
            current.extend(item for item in (value or "").split(",") if item)
        wanted = [flag_value(item) for item in wanted]
        # a wanted item wins over its negation (kube-controller-manager's -name disables a controller)
        merged = []
        for item in current:
            if not (item.startswith("-") and item[1:] in wanted) and item not in merged:
                merged.append(item)
        for item in wanted:
            if item == "*" and present and "*" not in current:
                continue  # "*" stands for the defaults an absent flag meant; an explicit list stays explicit
            if item not in merged:
                merged.append(item)
        set_flag(name, ",".join(merged))
    return result


# Characters that would end or break a line of the file written, or of the component's command line: the C0
# controls (newline, carriage return, NUL...), DEL, the C1 controls and the Unicode line and paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_TEXT = "a control character (a line break, NUL, another character below 0x20, or 0x7f to 0x9f)"
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def requested_values(module):
    """``(option, flag name, value text)`` of every value the task asks to write (V(null) values left out)."""
    found = [("flags", name, flag_value(value)) for name, value in module.params["flags"].items() if value is not None]
    for name, items in module.params["merge_lists"].items():
        for item in items if isinstance(items, list) else [items]:
            if item is not None:
                found.append(("merge_lists", name, flag_value(item)))
    return found


def check_names(module):
    """Refuse, before anything is read or written, flag names and values that are not plain text on one line (they
    would become a new line of an environment file or manifest), names that are not flag names, and overlaps. A
    message names the option and the flag, never the value (it may be a secret)."""
    for option in ("flags", "merge_lists", "absent"):
        for name in module.params[option]:
            if not isinstance(name, str):
                name = to_text(name)
            if CONTROL.search(name):
                raise FlagError("%s: the flag name %r holds %s; nothing was written" % (option, name, CONTROL_TEXT))
            if option != "absent" and not NAME.match(name):
                raise FlagError("%s: %r is not a flag name (give it without the leading dashes)" % (option, name))
    for option, name, value in requested_values(module):
        if CONTROL.search(value):
            raise FlagError("%s: the value of flag %r holds %s; nothing was written" % (option, name, CONTROL_TEXT))
    overlap = set(module.params["flags"]) & set(module.params["merge_lists"])
    overlap |= (set(module.params["flags"]) | set(module.params["merge_lists"])) & set(module.params["absent"])
    if overlap:
        raise FlagError("flags named in more than one of flags, merge_lists and absent: %s" % ", ".join(sorted(overlap)))


def read_text(path):
    return to_text(read_regular_file(path, "path"), errors="surrogate_or_strict")


def pick_container(document, name, path):
    try:
        containers = document["spec"]["containers"]
    except (KeyError, TypeError):
        containers = None
    if not isinstance(containers, list) or not containers:
        raise FlagError("%s is not a pod manifest with spec.containers" % path)
    if name is None:
        if len(containers) != 1:
            raise FlagError("%s has %d containers: set container" % (path, len(containers)))
        return containers[0]
    for container in containers:
        if isinstance(container, dict) and container.get("name") == name:
            return container
    raise FlagError("%s has no container named %r" % (path, name))


def dump_yaml(document):
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False)


def load_yaml(text, path):
    try:
        document = yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise FlagError("%s is not valid YAML: %s" % (path, exc))
    return document


def do_static_pod(module, path, before_text):
    document = load_yaml(before_text, path)
    if not isinstance(document, dict):
        raise FlagError("%s is not a pod manifest" % path)
    edited = copy.deepcopy(document)
    container = pick_container(edited, module.params["container"], path)
    # Flags live in "args" when the manifest has that list (command is then the binary), else in "command".
    field = "args" if isinstance(container.get("args"), list) else "command"
    current = container.get(field)
    if not isinstance(current, list) or not all(isinstance(item, str) for item in current):
        raise FlagError("%s: the container has no command list of strings" % path)
    container[field] = edit_args(current, module.params["flags"], module.params["merge_lists"], module.params["absent"])
    changed = edited != document
    after_text = dump_yaml(edited) if changed else before_text
    return changed, after_text, dict(flags=list(container.get("command") or []) + (container["args"] if field == "args" else []))


ENV_LINE = r"^(\s*(?:export\s+)?%s\s*=)(.*)$"


def split_env_value(raw, path):
    try:
        words = shlex.split(raw, comments=True)
    except ValueError as exc:
        raise FlagError("%s: cannot parse %r: %s" % (path, raw, exc))
    return " ".join(words).split()


def do_env_file(module, path, before_text):
    variable = module.params["variable"]
    if not variable or not re.match(r"\A[A-Za-z_][A-Za-z0-9_]*\Z", variable):
        raise FlagError("variable must be set to an environment variable name with format=env_file")
    for option, name, value in requested_values(module):
        if re.search(r"[\s\"'\\]", value):
            raise FlagError("%s: the value of flag %r holds whitespace, a quote or a backslash, which an environment file cannot carry" % (
                option, name))
    lines = before_text.splitlines()
    pattern = re.compile(ENV_LINE % re.escape(variable))
    found = [i for i, line in enumerate(lines) if pattern.match(line)]
    current = split_env_value(pattern.match(lines[found[-1]]).group(2), path) if found else []
    args = edit_args(current, module.params["flags"], module.params["merge_lists"], module.params["absent"])
    changed = (args != current) or not found
    if not changed:
        return False, before_text, dict(flags=args)
    new_line = '%s="%s"' % (variable, " ".join(args))
    if found:
        lines[found[-1]] = new_line
        for index in reversed(found[:-1]):
            del lines[index]
    else:
        lines.append(new_line)
    return True, "\n".join(lines) + "\n", dict(flags=args)


def merge_settings(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_settings(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def do_yaml(module, path, before_text):
    document = load_yaml(before_text, path)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise FlagError("%s does not hold a YAML mapping" % path)
    edited = copy.deepcopy(document)
    merge_settings(edited, module.params["settings"])
    changed = edited != document or not before_text
    after_text = dump_yaml(edited) if changed else before_text
    return changed, after_text, dict(settings=edited)


def write_file(module, path, text):
    """``text`` to ``path`` through the collection's atomic writer. The file keeps its mode, its SELinux context, and as
    root its owner and group; a new file is 0600 until the mode, owner and group options say otherwise."""
    try:
        seen = os.stat(path)
    except FileNotFoundError:
        seen = None
    keep = seen is not None and os.geteuid() == 0
    context = module.selinux_context(path) if seen is not None and module.selinux_enabled() else None
    write_atomically(path, text, mode=0o600 if seen is None else stat.S_IMODE(seen.st_mode), what="path",
                     uid=seen.st_uid if keep else None, gid=seen.st_gid if keep else None)
    if context is not None:
        module.set_context_if_different(path, context, False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            format=dict(type="str", default="static_pod", choices=["static_pod", "env_file", "yaml"]),
            container=dict(type="str"),
            variable=dict(type="str"),
            flags=dict(type="dict", default={}),
            merge_lists=dict(type="dict", default={}),
            absent=dict(type="list", elements="str", default=[]),
            settings=dict(type="dict", default={}),
            create=dict(type="bool", default=True),
        ),
        required_if=[("format", "env_file", ["variable"])],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    fmt = params["format"]
    if fmt in ("static_pod", "yaml") and not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)

    try:
        if fmt == "yaml":
            if params["flags"] or params["merge_lists"] or params["absent"]:
                raise FlagError("flags, merge_lists and absent do not apply to format=yaml: use settings")
        else:
            if params["settings"]:
                raise FlagError("settings only applies to format=yaml")
            check_names(module)

        exists = os.path.exists(path)
        if not exists and (fmt == "static_pod" or not params["create"]):
            raise FlagError("%s does not exist" % path)
        if exists and not os.path.isfile(path):
            raise FlagError("%s is not a regular file" % path)
        before_text = read_text(path) if exists else ""

        handler = {"static_pod": do_static_pod, "env_file": do_env_file, "yaml": do_yaml}[fmt]
        changed, after_text, facts = handler(module, path, before_text)
        if changed and not module.check_mode:
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                raise FlagError("directory %s does not exist" % parent)
            write_file(module, path, after_text)
    except (FlagError, KubePkiError, OSError) as exc:
        module.fail_json(msg=to_native(exc), path=path)

    result = dict(changed=changed, path=path, **facts)
    if module._diff:
        result["diff"] = dict(before=before_text, after=after_text, before_header=path, after_header=path)

    if exists or not module.check_mode:
        file_args = module.load_file_common_arguments(params)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"], diff=None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
