# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""The kubeconfig_render step: kubeconfigs from the stored key and the (lazily loaded) certificate."""

from __future__ import annotations

import copy
import os
from urllib.parse import urlsplit

from ansible_collections.kubepki.certs.plugins.module_utils import _crypto, _kubeconfig, _record
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file, remove_stale_temps, write_atomically
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


def argument_spec():
    spec = copy.deepcopy(STORE_ARG_SPEC)
    spec.update(copy.deepcopy(ETCD_ARG_SPEC))
    spec.update(
        user=dict(type="str"),
        users=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            groups=dict(type="list", elements="str"),
            clusters=dict(type="list", elements="str"),
            client_key_path=dict(type="str", no_log=False),
        )),
        dest_dir=dict(type="path"),
        clusters=dict(type="list", elements="dict", required=True, options=copy.deepcopy(CLUSTER_SPEC),
                      mutually_exclusive=[("ca_cert", "ca_data")]),
        scope=dict(type="str", default="default"),
        key_scope=dict(type="str", default="shared", choices=["shared", "per_cluster"]),
        current_context=dict(type="str"),
        dest=dict(type="path"),
        verify=dict(type="bool", default=False),
        expected_groups=dict(type="list", elements="str"),
    )
    return spec


def read_ca(cluster):
    """The CA PEM of one ``clusters`` entry (or None), checked to hold at least one certificate."""
    where = "clusters[%s]" % cluster["name"]
    if cluster.get("ca_cert"):
        try:
            pem = read_regular_file(cluster["ca_cert"], "%s.ca_cert" % where).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KubePkiError("%s.ca_cert: cannot read %s: %s" % (where, cluster["ca_cert"], getattr(exc, "strerror", None) or exc)) from None
        what = "%s.ca_cert (%s)" % (where, cluster["ca_cert"])
    elif cluster.get("ca_data"):
        pem, what = cluster["ca_data"], "%s.ca_data" % where
    else:
        return None
    blocks = _crypto.split_pem_certificates(pem)
    if not blocks:
        raise KubePkiError("%s holds no PEM CERTIFICATE" % what)
    for block in blocks:
        _crypto.load_certificate(block, what=what)
    return "".join(blocks)


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
    now = _crypto.utc_now()
    if _crypto.parse_rfc3339(facts["not_after"]) <= now:
        return facts, "%s (serial %s) expired at %s" % (where, facts["serial"], facts["not_after"])
    if _crypto.parse_rfc3339(facts["not_before"]) > now:
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
        newer = (stored is None or stored_problem is not None
                 or (etcd_facts["serial"] != stored_facts["serial"] and (_record.order(etcd_facts, stored_facts) or 0) >= 0))
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
    fresh = {field: record.get(field) for field in ("csr_name", "csr_uid", "signer_name")}
    fresh.update({
        "scope": scope, "cluster": cluster, "user": user,
        "common_name": facts["common_name"], "organizations": facts["organizations"],
        "certificate": "".join(_crypto.split_pem_certificates(record["certificate"])),
        "serial": facts["serial"], "not_before": facts["not_before"], "not_after": facts["not_after"],
        "public_key_sha256": facts["public_key_sha256"],
    })
    return fresh


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
        bad = [name for name in names if "/" in name or name in (".", "..")]
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


def check_groups(module, identity, facts, expected):
    expected = list(expected)
    if identity["groups"] is None:
        module.warn("%s serves no SelfSubjectReview: expected_groups checked against the certificate's O values only" % identity["server"])
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


def render_user(module, store, transport, user, dest, expected_groups, ca_pems, store_later, etcd_records=None, entry=None):
    """Render, check, write (or return) and optionally verify the kubeconfig of one user.

    Certificates loaded from etcd are appended to ``store_later``, for the caller to save in one batch. In batch
    mode (``module.failures`` is a list) a cluster without a usable certificate for the user is left out of the
    kubeconfig and reported there; with no cluster left the user gets no kubeconfig and None is returned."""
    params = module.params
    scope = params["scope"]
    entry = entry or {}
    failures = getattr(module, "failures", None)
    result = {}
    entries, used, loads = [], [], []
    for cluster in params["clusters"]:
        name = cluster["name"]
        if entry.get("clusters") is not None and name not in entry["clusters"]:
            continue
        try:
            key = user_key(store, scope, user, name, params["key_scope"], entry.get("client_key_path"))
            if key["private_key_pem"]:
                module.no_log_values.add(key["private_key_pem"])
            stored = store.get_cert(scope, name, user)
            if etcd_records is not None:
                from_etcd = etcd_records.get((name, user))
            else:
                from_etcd = transport.get_record(scope, name, user) if transport is not None else None
            record, facts, source = choose(stored, from_etcd, key, user, name, ca_pems[name], transport is not None)
        except KubePkiError as error:
            if failures is None:
                raise
            failures.append({"user": user, "cluster": name, "msg": error.msg})
            continue
        loaded = False
        if source == "etcd":
            fresh = store_record(record, facts, scope, name, user)
            loaded = True
            loads.append(fresh)
            record = fresh
        entries.append({
            "cluster": name, "server": cluster["server"], "ca_pem": ca_pems[name], "user": user,
            "certificate_pem": record["certificate"], "private_key_pem": key["private_key_pem"], "private_key_path": key.get("path"),
            "namespace": cluster.get("namespace"), "context": cluster.get("context"),
        })
        used.append({
            "name": name, "context": _kubeconfig.entry_names(user, name, cluster.get("context"))[1],
            "server": cluster["server"], "serial": facts["serial"], "not_after": facts["not_after"],
            "organizations": facts["organizations"], "source": source, "loaded_from_etcd": loaded,
            "_facts": facts,
        })

    if not entries and failures is not None:
        return None
    config = _kubeconfig.render(entries, params["current_context"])
    # The raw key PEM is always masked; the base64 key data only when the kubeconfig is not returned, since
    # Ansible would otherwise mask it inside RV(kubeconfig) too and make the returned kubeconfig useless.
    for value in _kubeconfig.secret_values(config, encoded=bool(dest)):
        module.no_log_values.add(value)
    text = _kubeconfig.dump(config)
    existing = read_existing(dest) if dest else None
    if text != existing:
        # A file equal to the rendering was checked when it was written; anything new is read back first.
        _kubeconfig.validate(text, entries)

    # a certificate is loaded from etcd only when it differs from the stored one (see choose())
    changed = bool(loads)
    if not module.check_mode:
        store_later.extend(loads)

    if dest:
        # what a run killed while writing this kubeconfig left beside it (holding the key) goes first
        stale = remove_stale_temps(dest, check=module.check_mode)
        if stale:
            module.warn("%s %d temporary file%s left beside %s by an interrupted run (they may hold the private key of user %s): %s" % (
                "would remove" if module.check_mode else "removed", len(stale), "" if len(stale) == 1 else "s", dest, user,
                ", ".join(stale)))
        file_changed = existing != text
        if not file_changed and existing is not None and (os.stat(dest).st_mode & 0o777) != 0o600:
            file_changed = True
        if file_changed and not module.check_mode:
            write_atomically(dest, text)
        changed = changed or file_changed or bool(stale)
        result["dest"] = dest
        if module._diff and file_changed:
            before = None
            if existing is not None:
                try:
                    before = _kubeconfig.redacted(_kubeconfig.load(existing, what="dest %s" % dest))
                except KubePkiError:
                    before = {"unparsable": True}
            result["diff"] = {"before": _kubeconfig.dump(before) if before else "",
                              "after": _kubeconfig.dump(_kubeconfig.redacted(config)),
                              "before_header": dest, "after_header": dest}
    else:
        result["kubeconfig"] = text

    if params["verify"]:
        identities = []
        for item in used:
            identity = _kubeconfig.whoami(config, item["context"])
            if expected_groups is not None:
                check_groups(module, identity, item["_facts"], expected_groups)
            identities.append({k: identity[k] for k in ("context", "server", "authenticated", "method", "username", "groups")})
        result["identities"] = identities

    for item in used:
        item.pop("_facts")
    result.update(changed=changed, clusters=used, current_context=config["current-context"])
    return result


def run(module):
    params = module.params
    validate_params(params)
    ca_pems = {}
    for cluster in params["clusters"]:
        check_server(cluster)
        ca_pems[cluster["name"]] = read_ca(cluster)

    store = open_store_from_params(params, create=not module.check_mode)
    transport = None
    try:
        transport = transport_from_params(params)
        if params["dest_dir"] and not module.check_mode:
            make_private_dirs(params["dest_dir"])
        loaded = []
        if params["user"]:
            result = render_user(module, store, transport, params["user"], params["dest"], params["expected_groups"], ca_pems, loaded)
        else:
            results = []
            etcd_records = None
            if transport is not None and len(params["users"]) > 1:
                # One range read for the whole batch instead of one read per user and cluster.
                etcd_records = {}
                for key, record in transport.list_records(params["scope"]):
                    cluster_name, user_name = key.rsplit("/", 2)[1:]
                    etcd_records[(cluster_name, user_name)] = record
            for entry in params["users"]:
                dest = os.path.join(params["dest_dir"], "%s.kubeconfig" % entry["name"]) if params["dest_dir"] else None
                expected = entry["groups"] if params["verify"] and entry["groups"] is not None else None
                one = render_user(module, store, transport, entry["name"], dest, expected, ca_pems, loaded, etcd_records, entry)
                if one is None:
                    continue
                one["user"] = entry["name"]
                results.append(one)
            result = {"changed": any(item["changed"] for item in results), "users": results}
            diffs = [item.pop("diff") for item in results if "diff" in item]
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
