# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The kubeconfig_render step: kubeconfigs from the stored key and the (lazily loaded) certificate."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubepki.certs.plugins.module_utils._steps.context import options
from ansible_collections.kubepki.certs.plugins.module_utils import _kubeconfig
from ansible_collections.kubepki.certs.plugins.module_utils._csr import objects as _csr
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._pki import record as _record
from ansible_collections.kubepki.certs.plugins.module_utils._files import (
    group_name, user_name, read_regular_file, remove_stale_temps, temp_names, write_atomically,
)
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._etcd import ETCD_ARG_SPEC, transport_from_params
from ansible_collections.kubepki.certs.plugins.module_utils._store import (
    STORE_ARG_SPEC, open_store_from_params,
)

CLUSTER_SPEC = dict(
    name=dict(type="str", required=True),
    server=dict(type="str", required=True),
    ca_cert=dict(type="path"),
    ca_data=dict(type="str"),
    namespace=dict(type="str"),
    context=dict(type="str"),
)

# Ansible's file options for the kubeconfigs written (dest, dest_dir); user_certificates takes the same.
FILE_ARG_SPEC = dict(
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="raw"),
)

DEFAULT_MODE = 0o600


def argument_spec():
    return options(STORE_ARG_SPEC, ETCD_ARG_SPEC, dict(
        user=dict(type="str"),
        users=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            groups=dict(type="list", elements="str"),
            clusters=dict(type="list", elements="str"),
            client_key_path=dict(type="str", no_log=False),
        )),
        dest_dir=dict(type="path"),
        clusters=dict(type="list", elements="dict", required=True, options=CLUSTER_SPEC,
                      mutually_exclusive=[("ca_cert", "ca_data")]),
        scope=dict(type="str", default="default"),
        key_scope=dict(type="str", default="shared", choices=["shared", "per_cluster"]),
        current_context=dict(type="str"),
        dest=dict(type="path"),
        verify=dict(type="bool", default=False),
        expected_groups=dict(type="list", elements="str"),
    ), FILE_ARG_SPEC)


# ------------------------------------------------------------ file options (owner, group, mode), as Ansible's

# chmod's symbolic form, clause by clause, as Ansible's file options take it (``u=rw,g+r,o-rwx``)
_SYMBOLIC = re.compile(r"\A[ugoa]*(?:[-+=][rwxXstugo]*)+\Z")


def _mode_of_text(text, what):
    try:
        return int(text, 8)
    except ValueError:
        pass
    try:
        if not all(_SYMBOLIC.match(clause) for clause in text.split(",")):
            raise ValueError(text)
        # applied by Ansible's own parser (the file module's) to a new regular file of the default mode
        new_file = os.stat_result((stat.S_IFREG | DEFAULT_MODE,) + (0,) * 9)
        return AnsibleModule._symbolic_mode_to_octal(new_file, text)  # pylint: disable=protected-access
    except ValueError:
        raise KubePkiError("%s %r is neither an octal mode (like '0640') nor a symbolic one (like 'u=rw,g=r')" % (what, text)) from None


def file_mode(value, what="mode"):
    """The numeric mode of the ``mode`` option: an integer as given, a string of octal digits (``0640``) or a symbolic
    mode (``u=rw,g=r``) applied to the default 0600. None gives 0600. A mode that lets others (neither the owner nor
    the group) read, write or search the file is refused: the kubeconfigs hold private keys."""
    if value is None:
        return DEFAULT_MODE
    if isinstance(value, bool):
        raise KubePkiError("%s %r is not a file mode" % (what, value))
    mode = value if isinstance(value, int) else _mode_of_text(str(value).strip(), what)
    if mode < 0 or mode > 0o7777:
        raise KubePkiError("%s %r is not a file mode (permission bits only, at most 07777)" % (what, value))
    if mode & 0o007:
        raise KubePkiError("%s %r (%04o) would give others (neither the owner nor the group) access to the kubeconfigs, which hold "
                           "private keys: give others no permission, like '0600' or '0640'" % (what, value, mode))
    return mode


def _owner_id(value, what):
    """The uid (``what`` owner) or gid (``what`` group) of a name or a number; KubePkiError naming the option."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid if what == "owner" else grp.getgrnam(text).gr_gid
    except KeyError:
        raise KubePkiError("%s %r is not a %s on this host" % (what, value, "user" if what == "owner" else "group")) from None


def file_options(params):
    """``{"uid", "gid", "mode"}`` of the ``owner``, ``group`` and ``mode`` options, checked; uid and gid are None when
    not given (a file written is then owned by whoever runs the module, as any new file). KubePkiError naming the option."""
    given = [name for name in FILE_ARG_SPEC if params.get(name) not in (None, "")]
    if given and not (params.get("dest") or params.get("dest_dir")):
        raise KubePkiError("%s: only for the kubeconfig files written; give %s" % (
            ", ".join(given), "dest or dest_dir" if "dest" in params else "dest_dir"))
    uid, gid = (_owner_id(params[name], name) if name in given else None for name in ("owner", "group"))
    return {"uid": uid, "gid": gid, "mode": file_mode(params.get("mode"))}


def attribute_changes(current, files):
    """``(before, after)``: the attributes of an existing file (``current``, its ``os.stat``) that differ from
    ``files`` (file_options()), for the diff; both empty when none differs. Owner and group count only when given."""
    before, after = {}, {}
    if stat.S_IMODE(current.st_mode) != files["mode"]:
        before["mode"], after["mode"] = "%04o" % stat.S_IMODE(current.st_mode), "%04o" % files["mode"]
    if files["uid"] is not None and current.st_uid != files["uid"]:
        before["owner"], after["owner"] = user_name(current.st_uid), user_name(files["uid"])
    if files["gid"] is not None and current.st_gid != files["gid"]:
        before["group"], after["group"] = group_name(current.st_gid), group_name(files["gid"])
    return before, after


def write_file(path, text, files, what="dest"):
    """Write ``text`` to ``path`` whole or not at all, with the owner, group and mode of ``files`` (file_options())."""
    write_atomically(path, text, mode=files["mode"], what=what, uid=files["uid"], gid=files["gid"])


def read_ca(cluster):
    """The CA PEM of one ``clusters`` entry (or None), checked to hold at least one certificate."""
    where = "clusters[%s]" % cluster["name"]
    if cluster.get("ca_cert"):
        return _crypto.ca_pem("%s.ca_cert" % where, path=cluster["ca_cert"])
    return _crypto.ca_pem("%s.ca_data" % where, text=cluster.get("ca_data") or None)


def url_problem(url):
    """Why ``url`` is not an API server URL (http(s)://host[:port][/path]), or None."""
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "is not an http(s):// URL (it is empty or holds whitespace)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return "is not an http(s):// URL: %s" % exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "is not an http(s):// URL with a host"
    if port == 0:
        return "has port 0"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must not carry a query, a fragment or credentials"
    return None


def check_server(cluster):
    problem = url_problem(cluster["server"])
    if problem:
        raise KubePkiError("clusters[%s].server %r %s" % (cluster["name"], cluster["server"], problem))


def make_private_dirs(path):
    """``path`` and every missing parent made 0700 (the kubeconfigs in it hold private keys); an existing
    directory keeps its mode."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise KubePkiError("dest_dir %s cannot be created: %s" % (directory, exc.strerror or exc)) from None


def check_dest_dir(dest_dir):
    """dest_dir must be a writable directory, or creatable: its nearest existing parent a writable directory."""
    path = os.path.abspath(dest_dir)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise KubePkiError("dest_dir %s cannot be %s: %s is not a directory" % (dest_dir, "used" if probe == path else "created", probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise KubePkiError("dest_dir %s cannot be %s: %s is not writable" % (dest_dir, "written" if probe == path else "created", probe))


def usable(record, key, user, cluster, ca_pem):
    """``(facts, problem)`` of a certificate record: problem is None when it may be used now."""
    where = "the certificate of user %r for cluster %r" % (user, cluster)
    try:
        facts = _crypto.certificate_facts(record.get("certificate"), what=where)
    except KubePkiError as exc:
        return None, exc.msg
    if key["public_key_sha256"] is not None and facts["public_key_sha256"] != key["public_key_sha256"]:
        return facts, "%s (serial %s) does not match the stored private key of user %r (public key %s..., certificate %s...)" % (
            where, facts["serial"], user, key["public_key_sha256"][:16], facts["public_key_sha256"][:16])
    standing = _record.standing(facts)
    if standing == "expired":
        return facts, "%s (serial %s) expired at %s" % (where, facts["serial"], facts["not_after"])
    if standing == "not_yet_valid":
        return facts, "%s (serial %s) is not valid before %s" % (where, facts["serial"], facts["not_before"])
    if facts["common_name"] != user:
        return facts, "%s (serial %s) has CN %r, not %r" % (where, facts["serial"], facts["common_name"], user)
    if ca_pem:
        try:
            _crypto.verify_issued_by(record["certificate"], ca_pem, what="%s (serial %s)" % (where, facts["serial"]))
        except KubePkiError as exc:
            return facts, exc.msg
    return facts, None


def choose(stored, from_etcd, key, user, cluster, ca_pem, etcd_used):
    """``(record, facts, source)``: the store's certificate unless etcd has a newer usable one."""
    stored_facts = stored_problem = None
    if stored is not None:
        stored_facts, stored_problem = usable(stored, key, user, cluster, ca_pem)
        if from_etcd is not None and from_etcd.get("certificate") == stored.get("certificate"):
            from_etcd = None  # the same certificate: checked once, taken from the store
    if from_etcd is not None:
        etcd_facts, etcd_problem = usable(from_etcd, key, user, cluster, ca_pem)
        # a certificate as new as the store's is not taken: the store keeps its own then (_record.settle)
        newer = stored is None or stored_problem is not None or _record.order(etcd_facts, stored_facts) == 1
        if etcd_problem is None and newer:
            return from_etcd, etcd_facts, "etcd"
        if stored is None:
            raise KubePkiError(etcd_problem + " (found in etcd; the store has none)")
    if stored is None:
        raise KubePkiError("no certificate for user %r on cluster %r in the credential store%s: issue one with csr_create/csr_wait%s" % (
            user, cluster, " nor in etcd" if etcd_used else "",
            " and publish it with cert_to_etcd" if etcd_used else " (or configure etcd_endpoints to load it from etcd)"))
    if stored_problem is not None:
        raise KubePkiError(stored_problem)
    return stored, stored_facts, "store"


def store_record(record, facts, scope, cluster, user):
    """The store form of a certificate record: identity from the request, facts from the PEM."""
    return _record.of_certificate(facts, "".join(_crypto.split_pem_certificates(record["certificate"])), scope, cluster, user,
                                  record.get("csr_name"), record.get("csr_uid"), record.get("signer_name"))


def held(store, transport, etcd_records, scope, cluster, user):
    """``(the store's record, etcd's record)`` of the certificate of ``user`` for ``cluster``, each None when there is none;
    etcd's from ``etcd_records`` when the batch listed them."""
    stored = store.get_cert(scope, cluster, user)
    if etcd_records is not None:
        return stored, etcd_records.get((cluster, user))
    return stored, transport.get_record(scope, cluster, user) if transport is not None else None


def read_existing(dest):
    if not os.path.exists(dest):
        return None
    if not os.path.isfile(dest):
        raise KubePkiError("dest %s exists and is not a regular file" % dest)
    try:
        return read_regular_file(dest, "dest").decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KubePkiError("dest %s cannot be read: %s" % (dest, getattr(exc, "strerror", None) or exc)) from None


def check_clusters(clusters):
    """At least one cluster, and no name twice."""
    if not clusters:
        raise KubePkiError("clusters: give at least one cluster")
    names = [cluster["name"] for cluster in clusters]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KubePkiError("clusters: %s listed more than once" % ", ".join(duplicates))


def validate_params(params):
    if params["user"] is not None and not params["user"]:
        raise KubePkiError("user must not be empty")
    if params["users"] is not None:
        names = [entry["name"] for entry in params["users"]]
        if not names or not all(names):
            raise KubePkiError("users: give at least one user, each with a non-empty name")
        if len(set(names)) != len(names):
            raise KubePkiError("users: %s listed more than once" % ", ".join(sorted({n for n in names if names.count(n) > 1})))
        bad = [name for name in names if _csr.segment_problem(name)]
        if params["dest_dir"] and bad:
            raise KubePkiError("users: %s cannot be a file name in dest_dir" % ", ".join(repr(name) for name in bad))
        if params["dest_dir"] and os.path.exists(params["dest_dir"]) and not os.path.isdir(params["dest_dir"]):
            raise KubePkiError("dest_dir %s exists and is not a directory" % params["dest_dir"])
        if params["expected_groups"] is not None:
            raise KubePkiError("expected_groups applies to user; with users, give each user's groups instead")
        known = {cluster["name"] for cluster in params["clusters"]}
        for entry in params["users"]:
            unknown = sorted(set(entry["clusters"] or []) - known)
            if unknown:
                raise KubePkiError("users[%s].clusters: %s not in clusters" % (entry["name"], ", ".join(unknown)))
            if entry["clusters"] == []:
                raise KubePkiError("users[%s].clusters is empty: leave it out for every cluster" % entry["name"])
            path = entry["client_key_path"]
            if path is not None and not os.path.isabs(path):
                raise KubePkiError("users[%s].client_key_path %r must be an absolute path (clients resolve relative ones "
                                   "against the kubeconfig's own directory)" % (entry["name"], path))
            if path is not None and params["verify"]:
                raise KubePkiError("users[%s].client_key_path: verify=true needs the key, which this module does not hold" % entry["name"])
    check_clusters(params["clusters"])
    if params["dest"]:
        directory = os.path.dirname(os.path.abspath(params["dest"]))
        if not os.path.isdir(directory):
            raise KubePkiError("dest %s: the directory %s does not exist" % (params["dest"], directory))
    if params["expected_groups"] and not params["verify"]:
        raise KubePkiError("expected_groups needs verify=true")


def check_groups(ctx, identity, facts, expected):
    expected = list(expected)
    if identity["groups"] is None:
        ctx.warn("%s serves no SelfSubjectReview: expected_groups checked against the certificate's O values only" % identity["server"])
        seen = list(facts["organizations"])
    else:
        seen = [group for group in identity["groups"] if group != "system:authenticated"]
    if sorted(set(seen)) != sorted(set(expected)):
        raise KubePkiError("expected_groups: %s (context %r) sees user %r in groups %s, expected %s" % (
            identity["server"], identity["context"], identity.get("username") or facts["common_name"], seen, expected))


def user_key(store, scope, user, cluster, key_scope, key_path):
    """The key record to render ``user`` with for ``cluster``: the stored one, or, for a key the user holds
    (``key_path``), a record that carries only the public key SHA-256 of the certificate to be checked."""
    if key_path:
        return {"private_key_pem": None, "public_key_sha256": None, "path": key_path}
    key_cluster = cluster if key_scope == "per_cluster" else ""
    key = store.get_key(scope, user, key_cluster)
    if key is None:
        raise KubePkiError("no private key for user %r (scope %r%s) in the credential store %s: run csr_create first%s" % (
            user, scope, ", cluster %r" % cluster if key_cluster else "", store.location,
            "" if key_cluster else " (or set key_scope=per_cluster if the keys are per cluster)"))
    return key


class Dropped(Exception):
    """A context of the existing kubeconfig that is not carried into the new one, and why (its text)."""


def _judged(call, *args):
    """``call(*args)``, its KubePkiError (a judgement on a certificate or key, not a failure to reach the store or
    etcd) turned into Dropped."""
    try:
        return call(*args)
    except KubePkiError as exc:
        raise Dropped(exc.msg) from None


def kept_entry(store, transport, etcd_records, params, user, item, key_path):
    """A context of the existing kubeconfig (``item``, of _kubeconfig.client_contexts()) for a cluster this run does not
    render for ``user``: ``(render entry, facts, source, record loaded from etcd or None)``, or Dropped when the user
    holds no certificate there that is valid now. The certificate is the one the store or etcd hold for (scope,
    cluster, user), chosen as for the clusters of the run. When neither holds one: with etcd configured, none is held
    (etcd records what was issued, offboarding deletes it); without etcd, the file's own is judged. The certificate
    must be valid now, have the user's CN, match the user's key (the stored one) and chain to the CA of the file's cluster.
    Server, CA, namespace and context name come from the file: nothing else knows them. A store or etcd that cannot
    be read fails the task (KubePkiError), it drops nothing."""
    scope, name = params["scope"], item["cluster"]
    problem = url_problem(item["server"])
    if problem:
        raise Dropped("its server URL %s" % problem)  # not echoed: it could carry credentials
    if key_path:
        key = {"private_key_pem": None, "public_key_sha256": None, "path": key_path}
    else:
        key = store.get_key(scope, user, name if params["key_scope"] == "per_cluster" else "")
        if key is None:
            raise Dropped("the credential store holds no key of user %r for it (key_scope=%s)" % (user, params["key_scope"]))
    stored, from_etcd = held(store, transport, etcd_records, scope, name, user)
    loaded = None
    if stored is not None or from_etcd is not None:
        record, facts, source = _judged(choose, stored, from_etcd, key, user, name, item["ca_pem"], transport is not None)
        if source == "etcd":
            record = loaded = store_record(record, facts, scope, name, user)
    elif transport is not None:
        # etcd is where the certificates issued are recorded (and offboarding deletes them): none there, none held
        raise Dropped("neither the credential store nor etcd holds a certificate of user %r for cluster %r" % (user, name))
    else:
        record, source = {"certificate": item["certificate_pem"]}, "kubeconfig"
        facts, problem = _judged(usable, record, key, user, name, item["ca_pem"])
        if problem:
            raise Dropped("%s (the kubeconfig's own; the credential store holds none and no etcd is configured)" % problem)
    return ({"cluster": name, "server": item["server"], "ca_pem": item["ca_pem"], "user": user,
             "certificate_pem": record["certificate"], "private_key_pem": key["private_key_pem"], "private_key_path": key.get("path"),
             "namespace": item["namespace"], "context": item["context"]}, facts, source, loaded)


def carry_over(ctx, params, store, transport, etcd_records, user, dest, existing, entries, run_names, key_path):
    """What a user's kubeconfig holds: every cluster of the scope where the user holds a valid certificate.

    ``entries`` are the render entries of this run's clusters for ``user``; ``existing`` is the text of the file at
    ``dest``. Returns ``(entries in order, current context of the file or None, kept, dropped, loads)``: the
    contexts of the file keep their places (those of this run's clusters rendered anew, the others kept when
    kept_entry() allows it), this run's new contexts follow in the order of ``clusters``. ``kept`` and ``dropped`` are
    for the result, ``loads`` the records kept_entry() loaded from etcd."""
    kept, dropped, loads = [], [], []
    try:
        previous = _kubeconfig.load(existing, what="dest %s" % dest)
    except KubePkiError as exc:
        ctx.warn("user %s: %s; it is replaced by this run's clusters only" % (user, exc.msg))
        return entries, None, kept, dropped, loads
    rendered = {entry["cluster"]: entry for entry in entries}
    taken = {_kubeconfig.entry_names(user, entry["cluster"], entry.get("context"))[1]: entry["cluster"] for entry in entries}
    ordered, placed = [], set()
    for item in _kubeconfig.client_contexts(previous):
        name = item["cluster"]
        if name in run_names:
            # this run's cluster: rendered anew, here (or left out when this run found no usable certificate for it)
            if name in rendered and name not in placed:
                ordered.append(rendered[name])
                placed.add(name)
            continue
        try:
            if item["problem"]:
                raise Dropped(item["problem"])
            if item["context"] in taken:
                raise Dropped("its name is that of the context of cluster %s in this run" % taken[item["context"]])
            one, facts, source, loaded = kept_entry(store, transport, etcd_records, params, user, item, key_path)
        except Dropped as why:
            dropped.append({"name": name, "context": item["context"], "reason": str(why)})
            ctx.warn("user %s: the context %r (cluster %s) of %s is dropped: %s" % (user, item["context"], name, dest, why))
            continue
        taken[item["context"]] = name
        if one["private_key_pem"]:
            ctx.secrets.add(one["private_key_pem"])
        ordered.append(one)
        if loaded is not None:
            loads.append(loaded)
        kept.append({"name": name, "context": item["context"], "server": item["server"], "serial": facts["serial"],
                     "not_after": facts["not_after"], "organizations": facts["organizations"], "source": source,
                     "loaded_from_etcd": loaded is not None})
    ordered.extend(entry for entry in entries if entry["cluster"] not in placed)
    current = previous.get("current-context")
    names = {_kubeconfig.entry_names(user, entry["cluster"], entry.get("context"))[1] for entry in ordered}
    return ordered, current if current in names else None, kept, dropped, loads


def file_diff(dest, existing, text, config, attributes):
    """The diff of a kubeconfig file: its content (key redacted, certificates as fingerprints) when it changes, and its
    attributes (``attributes``: before and after of attribute_changes()) when they do; one dict, or a list of both."""
    diffs = []
    if existing != text:
        before = None
        if existing is not None:
            try:
                before = _kubeconfig.redacted(_kubeconfig.load(existing, what="dest %s" % dest))
            except KubePkiError:
                before = {"unparsable": True}
        diffs.append({"before": _kubeconfig.dump(before) if before else "", "after": _kubeconfig.dump(_kubeconfig.redacted(config)),
                      "before_header": dest, "after_header": dest})
    if attributes[1]:
        diffs.append({"before": dict(attributes[0], path=dest), "after": dict(attributes[1], path=dest)})
    return diffs[0] if len(diffs) == 1 else diffs


def render_user(ctx, params, store, transport, user, dest, expected_groups, ca_pems, store_later, etcd_records=None, entry=None, files=None,
                temps=None):
    """Render, check, write (or return) and optionally verify the kubeconfig of one user.

    Certificates loaded from etcd are appended to ``store_later``, for the caller to save in one batch. In batch
    mode (``ctx.batch``) a cluster without a usable certificate for the user is left out of the
    kubeconfig and reported there; with no cluster left the user gets no kubeconfig and None is returned. An
    existing ``dest`` keeps the contexts of the clusters not in this run where the user still holds a valid
    certificate (carry_over()); ``files`` are its owner, group and mode (file_options())."""
    scope = params["scope"]
    entry = entry or {}
    files = files or file_options(params)
    result = {}
    entries, used, loads = [], [], []
    run_names = set()
    for cluster in params["clusters"]:
        name = cluster["name"]
        if entry.get("clusters") is not None and name not in entry["clusters"]:
            continue
        run_names.add(name)
        try:
            key = user_key(store, scope, user, name, params["key_scope"], entry.get("client_key_path"))
            if key["private_key_pem"]:
                ctx.secrets.add(key["private_key_pem"])
            stored, from_etcd = held(store, transport, etcd_records, scope, name, user)
            record, facts, source = choose(stored, from_etcd, key, user, name, ca_pems[name], transport is not None)
        except KubePkiError as error:
            if not ctx.set_aside(user, error.msg, cluster=name):
                raise
            continue
        if source == "etcd":
            record = store_record(record, facts, scope, name, user)
            loads.append(record)
        entries.append({
            "cluster": name, "server": cluster["server"], "ca_pem": ca_pems[name], "user": user,
            "certificate_pem": record["certificate"], "private_key_pem": key["private_key_pem"], "private_key_path": key.get("path"),
            "namespace": cluster.get("namespace"), "context": cluster.get("context"),
        })
        used.append({
            "name": name, "context": _kubeconfig.entry_names(user, name, cluster.get("context"))[1],
            "server": cluster["server"], "serial": facts["serial"], "not_after": facts["not_after"],
            "organizations": facts["organizations"], "source": source, "loaded_from_etcd": source == "etcd",
            "_facts": facts,
        })

    if not entries and ctx.batch is not None:
        return None
    existing = read_existing(dest) if dest else None
    kept, dropped = [], []
    wanted, config, text = params["current_context"], None, None
    if wanted is None or wanted in {item["context"] for item in used}:
        config = _kubeconfig.render(entries, wanted)
        text = _kubeconfig.dump(config)
    if existing is not None and text != existing:
        # the file holds more (or other) than this run's clusters: what of it is still the user's (parsing it only
        # then keeps a re-run of thousands of unchanged kubeconfigs as cheap as it was)
        entries, current, kept, dropped, kept_loads = carry_over(
            ctx, params, store, transport, etcd_records, user, dest, existing, entries, run_names, entry.get("client_key_path"))
        loads.extend(kept_loads)
        config = _kubeconfig.render(entries, wanted or current)
        text = _kubeconfig.dump(config)
    elif config is None:
        config = _kubeconfig.render(entries, wanted)  # fails: current_context is none of the contexts
    # The raw key PEM is always masked; the base64 key data only when the kubeconfig is not returned, since
    # Ansible would otherwise mask it inside RV(kubeconfig) too and make the returned kubeconfig useless.
    ctx.secrets.update(_kubeconfig.secret_values(config, encoded=bool(dest)))
    if text != existing:
        # A file equal to the rendering was checked when it was written; anything new is read back first.
        _kubeconfig.validate(text, entries)

    # a certificate is loaded from etcd only when it differs from the stored one (see choose())
    changed = bool(loads)
    if not ctx.check_mode:
        store_later.extend(loads)

    if dest:
        # what a run killed while writing this kubeconfig left beside it (holding the key) goes first
        stale = remove_stale_temps(dest, check=ctx.check_mode, listed=temps)
        if stale:
            ctx.warn("%s %d temporary file%s left beside %s by an interrupted run (they may hold the private key of user %s): %s" % (
                "would remove" if ctx.check_mode else "removed", len(stale), "" if len(stale) == 1 else "s", dest, user,
                ", ".join(stale)))
        attributes = attribute_changes(os.stat(dest), files) if existing is not None else ({}, {})
        file_changed = existing != text or bool(attributes[1])
        if file_changed and not ctx.check_mode:
            write_file(dest, text, files)
        changed = changed or file_changed or bool(stale)
        result.update(dest=dest, kept=kept, dropped=dropped)
        if ctx.diff and file_changed:
            result["diff"] = file_diff(dest, existing, text, config, attributes)
    else:
        result["kubeconfig"] = text

    if params["verify"]:
        identities = []
        for item in used:
            identity = _kubeconfig.whoami(config, item["context"])
            if expected_groups is not None:
                check_groups(ctx, identity, item["_facts"], expected_groups)
            identities.append({k: identity[k] for k in ("context", "server", "authenticated", "method", "username", "groups")})
        result["identities"] = identities

    for item in used:
        item.pop("_facts")
    result.update(changed=changed, clusters=used, current_context=config["current-context"])
    return result


def drop_clusters(path, clusters, files, check=False):
    """Offboarding from ``clusters`` (names): their contexts (with their cluster and user entries) taken out of the
    kubeconfig at ``path``, every other context left as it is; the file is deleted when no context is left.
    ``(removed context names, deleted)``; with ``check`` nothing is written. A file that is not a kubeconfig is left
    alone. ``files``: the owner, group and mode of the file written (file_options())."""
    existing = read_existing(path)
    if existing is None:
        return [], False
    try:
        config = _kubeconfig.load(existing, what=path)
    except KubePkiError:
        return [], False
    pruned, removed = _kubeconfig.without_clusters(config, clusters)
    if not removed:
        return [], False
    deleted = not pruned["contexts"]
    if not check:
        if deleted:
            os.unlink(path)
        else:
            write_file(path, _kubeconfig.dump(pruned), files, what="dest_dir")
    return removed, deleted


def run(ctx, params):
    validate_params(params)
    files = file_options(params)
    ca_pems = {}
    for cluster in params["clusters"]:
        check_server(cluster)
        ca_pems[cluster["name"]] = read_ca(cluster)

    store = open_store_from_params(params, create=not ctx.check_mode)
    transport = None
    try:
        transport = transport_from_params(params)
        if params["dest_dir"] and not ctx.check_mode:
            make_private_dirs(params["dest_dir"])
        loaded = []
        if params["user"]:
            result = render_user(ctx, params, store, transport, params["user"], params["dest"], params["expected_groups"], ca_pems, loaded,
                                 files=files)
        else:
            results = []
            etcd_records = None
            if transport is not None and len(params["users"]) > 1:
                # One range read for the whole batch instead of one read per user and cluster.
                etcd_records = {transport.identity_of(key)[1:]: record for key, record in transport.list_records(params["scope"])}
            # and one listing of dest_dir for what killed runs left there, instead of one per user
            temps = temp_names(params["dest_dir"]) if params["dest_dir"] else None
            for entry in params["users"]:
                dest = os.path.join(params["dest_dir"], "%s.kubeconfig" % entry["name"]) if params["dest_dir"] else None
                expected = entry["groups"] if params["verify"] and entry["groups"] is not None else None
                one = render_user(ctx, params, store, transport, entry["name"], dest, expected, ca_pems, loaded, etcd_records, entry, files,
                                  temps)
                if one is not None:
                    results.append(dict(one, user=entry["name"]))
            result = {"changed": any(item["changed"] for item in results), "users": results}
            diffs = []
            for item in results:
                diff = item.pop("diff", None)
                diffs.extend(diff if isinstance(diff, list) else [diff] if diff else [])
            if diffs:
                result["diff"] = diffs
        # One batch for the certificates loaded from etcd. A failure above leaves them unsaved: etcd still holds
        # them, and the next run loads them again.
        store.put_certs(loaded)
        result["store"] = store.location
        return result
    finally:
        if transport is not None:
            transport.close()
        store.close()
