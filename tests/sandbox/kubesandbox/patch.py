"""JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch for the kinds served."""

import copy


class PatchError(Exception):
    pass


# list fields merged by key in strategic merge patch; everything else is replaced
MERGE_KEYS = {
    "ownerReferences": "uid",
    "managedFields": None,
    "secrets": "name",
    "imagePullSecrets": "name",
}
PRIMITIVE_MERGE = {"finalizers"}


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("invalid JSON pointer: %s" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                raise PatchError("doc is missing path: \"/%s\": missing value" % "/".join(parts))
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError) as exc:
                raise PatchError("doc is missing path: \"/%s\"" % "/".join(parts)) from exc
        else:
            raise PatchError("doc is missing path: \"/%s\"" % "/".join(parts))
    return cur


def _add(doc, parts, value, replace=False):
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict):
        if replace and key not in parent:
            raise PatchError("replace operation does not apply: doc is missing key: /%s: missing value" % "/".join(parts))
        parent[key] = value
    elif isinstance(parent, list):
        if key == "-":
            parent.append(value)
        else:
            try:
                index = int(key)
            except ValueError as exc:
                raise PatchError("invalid array index %s" % key) from exc
            if replace:
                if index >= len(parent) or index < 0:
                    raise PatchError("replace operation does not apply: doc is missing path")
                parent[index] = value
            else:
                if index > len(parent) or index < 0:
                    raise PatchError("add operation does not apply: doc is missing path: \"/%s\"" % "/".join(parts))
                parent.insert(index, value)
    else:
        raise PatchError("doc is missing path: \"/%s\"" % "/".join(parts))
    return doc


def _remove(doc, parts):
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict):
        if key not in parent:
            raise PatchError("remove operation does not apply: doc is missing path: \"/%s\"" % "/".join(parts))
        return parent.pop(key)
    if isinstance(parent, list):
        try:
            return parent.pop(int(key))
        except (ValueError, IndexError) as exc:
            raise PatchError("remove operation does not apply: doc is missing path: \"/%s\"" % "/".join(parts)) from exc
    raise PatchError("doc is missing path")


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("invalid operation")
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "move":
            value = _remove(doc, _pointer(op.get("from", "")))
            doc = _add(doc, parts, value)
        elif kind == "copy":
            value = copy.deepcopy(_walk(doc, _pointer(op.get("from", ""))))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError("testing value %s failed: test failed" % op.get("path"))
        else:
            raise PatchError("Unexpected kind: %s" % kind)
    return doc


def merge_patch(doc, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge(doc, patch):
    if not isinstance(patch, dict):
        raise PatchError("unable to find api field in struct for the patch")
    return _smp_map(doc if isinstance(doc, dict) else {}, patch)


def _smp_map(doc, patch):
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = copy.deepcopy(doc)
    deletes = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletes[key.split("/", 1)[1]] = value
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(out.get(key) if isinstance(out.get(key), dict) else {}, value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list) and key in PRIMITIVE_MERGE and isinstance(out.get(key), list):
            merged = list(out[key])
            for item in value:
                if item not in merged:
                    merged.append(item)
            out[key] = merged
        elif isinstance(value, list) and MERGE_KEYS.get(key) and isinstance(out.get(key), list):
            out[key] = _smp_list(out[key], value, MERGE_KEYS[key])
        else:
            out[key] = copy.deepcopy(value)
    for key, values in deletes.items():
        if isinstance(out.get(key), list):
            out[key] = [v for v in out[key] if v not in values]
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"]) | {k for k in patch if not k.startswith("$")}
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _smp_list(current, patch, key):
    out = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict):
            out.append(copy.deepcopy(item))
            continue
        index = next((i for i, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            out[index] = _smp_map(out[index], item)
    return out
