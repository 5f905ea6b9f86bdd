"""metadata.managedFields bookkeeping (an approximation of the apiserver's field manager for Update
operations: each write records, under its manager, the fields it set or changed)."""

import json

KEYED_LISTS = {"conditions": "type", "ownerReferences": "uid"}
SKIP_META = {"name", "namespace", "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
             "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generateName"}


def field_paths(obj, prefix=(), top=True):
    """The set of field paths (tuples of fieldsV1 keys) an object sets."""
    out = set()
    for key, value in obj.items():
        if top and key in ("kind", "apiVersion"):
            continue
        if top and key == "metadata":
            for mkey, mval in value.items():
                if mkey in SKIP_META:
                    continue
                out |= _value_paths(("f:metadata", "f:" + mkey), mkey, mval)
            continue
        out |= _value_paths(prefix + ("f:" + key,), key, value)
    return out


def _value_paths(path, key, value):
    out = set()
    if isinstance(value, dict):
        if key in ("labels", "annotations", "data", "binaryData", "stringData", "extra"):
            out.add(path + (".",))
            for sub in value:
                out.add(path + ("f:" + sub,))
        else:
            for sub, subval in value.items():
                out |= _value_paths(path + ("f:" + sub,), sub, subval)
            if not value:
                out.add(path)
        return out
    if isinstance(value, list) and key in KEYED_LISTS and all(isinstance(v, dict) for v in value):
        out.add(path + (".",))
        for item in value:
            ident = "k:" + json.dumps({KEYED_LISTS[key]: item.get(KEYED_LISTS[key])}, separators=(",", ":"))
            out.add(path + (ident, "."))
            for sub in item:
                out.add(path + (ident, "f:" + sub))
        return out
    out.add(path)
    return out


def to_fields_v1(paths):
    root = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return root


def from_fields_v1(tree, prefix=()):
    out = set()
    for key, sub in tree.items():
        if sub:
            out |= from_fields_v1(sub, prefix + (key,))
        else:
            out.add(prefix + (key,))
    return out


def _flat(obj):
    """path -> JSON value for comparison."""
    return {p: None for p in field_paths(obj)}


def update(old, new, manager, api_version, stamp, subresource="", create=False, operation="Update"):
    """Set new["metadata"]["managedFields"] for a write by ``manager``."""
    entries = [] if create else [dict(e) for e in (old or {}).get("metadata", {}).get("managedFields") or []]
    new_paths = field_paths(new)
    if create or old is None:
        changed = new_paths
    else:
        old_paths = field_paths(old)
        changed = set()
        for path in new_paths:
            if path not in old_paths or _lookup(new, path) != _lookup(old, path):
                changed.add(path)
        removed = old_paths - new_paths
        for entry in entries:
            owned = from_fields_v1(entry.get("fieldsV1") or {}) - removed
            entry["fieldsV1"] = to_fields_v1(owned)
    if changed:
        for entry in entries:
            if entry.get("manager") == manager and entry.get("operation") == operation and \
                    entry.get("subresource", "") == subresource:
                continue
            owned = from_fields_v1(entry.get("fieldsV1") or {}) - changed
            entry["fieldsV1"] = to_fields_v1(owned)
    mine = None
    for entry in entries:
        if entry.get("manager") == manager and entry.get("operation") == operation and \
                entry.get("subresource", "") == subresource:
            mine = entry
    if changed:
        if mine is None:
            mine = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": stamp,
                    "fieldsType": "FieldsV1", "fieldsV1": {}}
            if subresource:
                mine["subresource"] = subresource
            entries.append(mine)
        owned = from_fields_v1(mine.get("fieldsV1") or {}) | changed
        mine["fieldsV1"] = to_fields_v1(owned)
        mine["time"] = stamp
        mine["apiVersion"] = api_version
    entries = [e for e in entries if e.get("fieldsV1")]
    if entries:
        new["metadata"]["managedFields"] = entries
    else:
        new["metadata"].pop("managedFields", None)


def _lookup(obj, path):
    node = obj
    for part in path:
        if part == ".":
            return json.dumps(node, sort_keys=True)
        if part.startswith("f:"):
            name = part[2:]
            if path[0] == "f:metadata" and node is obj:
                node = obj.get("metadata", {})
                continue
            if not isinstance(node, dict):
                return None
            node = node.get(name)
        elif part.startswith("k:"):
            ident = json.loads(part[2:])
            key, value = next(iter(ident.items()))
            node = next((i for i in node or [] if isinstance(i, dict) and i.get(key) == value), None)
    return json.dumps(node, sort_keys=True)


def manager_name(query_manager, user_agent):
    if query_manager:
        return query_manager
    agent = user_agent or ""
    return agent.split("/", 1)[0] if agent else ""
