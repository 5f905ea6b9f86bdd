"""Known fields of the kinds the sandbox serves, in Go struct order.

A schema is a dict (a struct), a one-element list (a slice of that element), ``{"*": x}`` (a map of x)
or a leaf string: ``s`` string, ``i`` integer, ``b`` bool, ``t`` timestamp, ``B`` base64 bytes,
``any`` raw JSON, ``q`` quantity/int-or-string. A struct key starting with ``!`` is emitted even when
empty (Go fields without ``omitempty``). ``prune`` drops unknown fields (as the typed decoder does),
reports them for fieldValidation and re-orders fields the way the real server encodes them.
"""

import base64
import binascii


class DecodeError(Exception):
    """The body cannot be decoded into the kind (a 400 BadRequest)."""


OWNER_REF = {"!apiVersion": "s", "!kind": "s", "!name": "s", "!uid": "s", "controller": "b",
             "blockOwnerDeletion": "b"}
MANAGED = {"manager": "s", "operation": "s", "apiVersion": "s", "time": "t", "fieldsType": "s",
           "fieldsV1": "any", "subresource": "s"}
OBJECT_META = {
    "name": "s", "generateName": "s", "namespace": "s", "selfLink": "s", "uid": "s",
    "resourceVersion": "s", "generation": "i", "!creationTimestamp": "t", "deletionTimestamp": "t",
    "deletionGracePeriodSeconds": "i", "labels": {"*": "s"}, "annotations": {"*": "s"},
    "ownerReferences": [OWNER_REF], "finalizers": ["s"], "managedFields": [MANAGED],
}
LIST_META = {"selfLink": "s", "resourceVersion": "s", "continue": "s", "remainingItemCount": "i"}


def kind_schema(**fields):
    out = {"kind": "s", "apiVersion": "s", "!metadata": OBJECT_META}
    out.update(fields)
    return out


CSR = kind_schema(**{
    "!spec": {
        "!request": "B", "!signerName": "s", "expirationSeconds": "i32", "usages": ["s"],
        "username": "s", "uid": "s", "groups": ["s"], "extra": {"*": ["s"]},
    },
    "!status": {
        "conditions": [{"!type": "s", "!status": "s", "reason": "s", "message": "s",
                        "lastUpdateTime": "t", "lastTransitionTime": "t"}],
        "certificate": "B",
    },
})

NAMESPACE = kind_schema(**{
    "!spec": {"finalizers": ["s"]},
    "!status": {"phase": "s", "conditions": [{"!type": "s", "!status": "s", "lastTransitionTime": "t",
                                             "reason": "s", "message": "s"}]},
})
SECRET = kind_schema(immutable="b", data={"*": "B"}, stringData={"*": "s"}, type="s")
CONFIGMAP = kind_schema(immutable="b", data={"*": "s"}, binaryData={"*": "B"})
SERVICEACCOUNT = kind_schema(
    secrets=[{"kind": "s", "namespace": "s", "name": "s", "uid": "s", "apiVersion": "s",
              "resourceVersion": "s", "fieldPath": "s"}],
    imagePullSecrets=[{"name": "s"}], automountServiceAccountToken="b")
POLICY_RULE = {"!verbs": ["s"], "apiGroups": ["s"], "resources": ["s"], "resourceNames": ["s"],
               "nonResourceURLs": ["s"]}
SUBJECT = {"!kind": "s", "apiGroup": "s", "!name": "s", "namespace": "s"}
ROLE_REF = {"!apiGroup": "s", "!kind": "s", "!name": "s"}
ROLE = kind_schema(**{"!rules": [POLICY_RULE]})
CLUSTERROLE = kind_schema(**{"!rules": [POLICY_RULE], "aggregationRule": {"clusterRoleSelectors": ["any"]}})
ROLEBINDING = kind_schema(**{"subjects": [SUBJECT], "!roleRef": ROLE_REF})
OBJECT_REF = {"kind": "s", "namespace": "s", "name": "s", "uid": "s", "apiVersion": "s", "resourceVersion": "s",
              "fieldPath": "s"}
EVENT = kind_schema(**{
    "!involvedObject": OBJECT_REF, "reason": "s", "message": "s", "!source": {"component": "s", "host": "s"},
    "!firstTimestamp": "t", "!lastTimestamp": "t", "count": "i", "type": "s", "!eventTime": "t",
    "series": "any", "action": "s", "related": OBJECT_REF, "!reportingComponent": "s", "!reportingInstance": "s",
})
USER_INFO = {"username": "s", "uid": "s", "groups": ["s"], "extra": {"*": ["s"]}}
SELF_SUBJECT_REVIEW = kind_schema(**{"!status": {"userInfo": USER_INFO}})
RESOURCE_ATTRS = {"namespace": "s", "verb": "s", "group": "s", "version": "s", "resource": "s",
                  "subresource": "s", "name": "s", "fieldSelector": "any", "labelSelector": "any"}
NONRESOURCE_ATTRS = {"path": "s", "verb": "s"}
SAR_STATUS = {"!allowed": "b", "denied": "b", "reason": "s", "evaluationError": "s"}
SELF_SAR = kind_schema(**{
    "!spec": {"resourceAttributes": RESOURCE_ATTRS, "nonResourceAttributes": NONRESOURCE_ATTRS},
    "!status": SAR_STATUS})
SAR = kind_schema(**{
    "!spec": {"resourceAttributes": RESOURCE_ATTRS, "nonResourceAttributes": NONRESOURCE_ATTRS,
              "user": "s", "groups": ["s"], "extra": {"*": ["s"]}, "uid": "s"},
    "!status": SAR_STATUS})
SELF_SRR = kind_schema(**{
    "!spec": {"namespace": "s"},
    "!status": {"!resourceRules": [{"!verbs": ["s"], "apiGroups": ["s"], "resources": ["s"], "resourceNames": ["s"]}],
                "!nonResourceRules": [{"!verbs": ["s"], "nonResourceURLs": ["s"]}],
                "!incomplete": "b", "evaluationError": "s"}})
DELETE_OPTIONS = {"kind": "s", "apiVersion": "s", "gracePeriodSeconds": "i",
                  "preconditions": {"uid": "s", "resourceVersion": "s"}, "orphanDependents": "b",
                  "propagationPolicy": "s", "dryRun": ["s"], "ignoreStoreReadErrorWithClusterBreakingPotential": "b"}

GO_TYPES = {"s": "string", "i": "int64", "i32": "int32", "b": "bool", "t": "v1.Time", "B": "[]uint8", "q": "intstr"}


def _json_type(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _go_type(schema):
    if isinstance(schema, list):
        return "[]" + _go_type(schema[0])
    if isinstance(schema, dict):
        if "*" in schema:
            return "map[string]" + _go_type(schema["*"])
        return "struct"
    return GO_TYPES.get(schema, "interface {}")


def _is_empty(value):
    return value is None or value == "" or value == [] or value == {} or value is False or value == 0


def _bad(value, schema, path):
    raise DecodeError("json: cannot unmarshal %s into Go struct field %s of type %s" % (
        _json_type(value), path.lstrip(".") or ".", _go_type(schema)))


def prune(schema, value, path="", unknown=None):
    """Return ``value`` reduced to ``schema``; unknown field paths are appended to ``unknown``."""
    if unknown is None:
        unknown = []
    if value is None:
        return None
    if isinstance(schema, dict) and "*" in schema:
        if not isinstance(value, dict):
            _bad(value, schema, path)
        return {k: prune(schema["*"], v, "%s[%s]" % (path, k), unknown) for k, v in value.items()}
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            _bad(value, schema, path)
        out = {}
        known = set()
        for key, sub in schema.items():
            always = key.startswith("!")
            name = key[1:] if always else key
            known.add(name)
            child = "%s.%s" % (path, name) if path else name
            if name in value and value[name] is not None:
                pruned = prune(sub, value[name], child, unknown)
                if not always and _is_empty(pruned):
                    if not (sub in ("b", "i", "i32") and _keeps_zero(name)):
                        continue
                out[name] = pruned
            elif always:
                out[name] = _zero(sub)
        for name in value:
            if name not in known:
                unknown.append("%s.%s" % (path, name) if path else name)
        return out
    if isinstance(schema, list):
        if not isinstance(value, list):
            _bad(value, schema, path)
        return [prune(schema[0], item, "%s[%d]" % (path, i), unknown) for i, item in enumerate(value)]
    if schema == "any":
        return value
    if schema in ("s", "t"):
        if not isinstance(value, str):
            _bad(value, schema, path)
        return value
    if schema == "B":
        if not isinstance(value, str):
            _bad(value, schema, path)
        # Go's decoder skips CR and LF; the value is re-encoded canonically, as after a real round trip
        stripped = value.replace("\r", "").replace("\n", "")
        try:
            return base64.b64encode(base64.b64decode(stripped.encode("ascii"), validate=True)).decode()
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise DecodeError("illegal base64 data at input byte %d" % _bad_b64_offset(value)) from exc
    if schema in ("i", "i32"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            _bad(value, schema, path)
        if schema == "i32" and not -2 ** 31 <= value < 2 ** 31:
            raise DecodeError("json: cannot unmarshal number %s into Go struct field %s of type int32" % (
                value, path))
        return int(value)
    if schema == "b":
        if not isinstance(value, bool):
            _bad(value, schema, path)
        return value
    return value


def _keeps_zero(name):
    # pointer fields in the kinds we serve: they keep an explicit false/0
    return name in ("expirationSeconds", "immutable", "automountServiceAccountToken", "controller", "blockOwnerDeletion",
                    "gracePeriodSeconds", "deletionGracePeriodSeconds", "orphanDependents", "allowed",
                    "incomplete", "denied")


def _zero(schema):
    if isinstance(schema, dict) and "*" not in schema:
        return prune(schema, {})
    if isinstance(schema, (list, dict)) or schema in ("t", "any"):
        return None
    if schema == "s":
        return ""
    if schema in ("i", "i32"):
        return 0
    if schema == "b":
        return False
    return None


def _bad_b64_offset(value):
    """The byte offset Go's base64 decoder reports for a bad input (close approximation)."""
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    data = value.encode("utf-8", "replace")
    for index, char in enumerate(data):
        if char == ord("="):
            if len(data) % 4 or index < len(data) - 2:
                return index
            continue
        if char not in alphabet:
            return index
    if len(data) % 4:
        return len(data) - len(data) % 4
    return len(data)


def strict_messages(unknown):
    return ['unknown field "%s"' % path for path in unknown]
