"""Decode ``application/vnd.kubernetes.protobuf`` request bodies (what kubectl's typed clients send) into
the JSON form, for the kinds served. Field numbers follow the upstream generated.proto files."""

import base64
import datetime
import struct

MAGIC = b"k8s\x00"


class ProtoError(Exception):
    pass


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """(number, wiretype, value) for each field of a message."""
    pos = 0
    out = []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos:pos + length]
            pos += length
        elif wire == 1:
            value = struct.unpack("<q", data[pos:pos + 8])[0]
            pos += 8
        elif wire == 5:
            value = struct.unpack("<i", data[pos:pos + 4])[0]
            pos += 4
        else:
            raise ProtoError("unsupported wire type %d" % wire)
        out.append((number, wire, value))
    return out


def _signed(value, bits=64):
    if value >= 1 << (bits - 1):
        value -= 1 << 64 if value >= 1 << 63 else 1 << bits
    return value


TIME = "time"
STR, BYTES, INT, BOOL = "str", "bytes", "int", "bool"

OWNER_REF = {5: ("apiVersion", STR), 1: ("kind", STR), 3: ("name", STR), 4: ("uid", STR), 6: ("controller", BOOL),
             7: ("blockOwnerDeletion", BOOL)}
MANAGED = {1: ("manager", STR), 2: ("operation", STR), 3: ("apiVersion", STR), 4: ("time", TIME),
           6: ("fieldsType", STR), 7: ("fieldsV1", "fieldsv1"), 8: ("subresource", STR)}
META = {1: ("name", STR), 2: ("generateName", STR), 3: ("namespace", STR), 4: ("selfLink", STR), 5: ("uid", STR),
        6: ("resourceVersion", STR), 7: ("generation", INT), 8: ("creationTimestamp", TIME),
        9: ("deletionTimestamp", TIME), 10: ("deletionGracePeriodSeconds", INT), 11: ("labels", ("map", STR)),
        12: ("annotations", ("map", STR)), 13: ("ownerReferences", [OWNER_REF]), 14: ("finalizers", [STR]),
        17: ("managedFields", [MANAGED])}
CONDITION = {1: ("type", STR), 6: ("status", STR), 2: ("reason", STR), 3: ("message", STR),
             4: ("lastUpdateTime", TIME), 5: ("lastTransitionTime", TIME)}
EXTRA = ("map", {1: ("items", [STR])})
CSR = {1: ("metadata", META),
       2: ("spec", {1: ("request", BYTES), 7: ("signerName", STR), 8: ("expirationSeconds", INT),
                    5: ("usages", [STR]), 2: ("username", STR), 3: ("uid", STR), 4: ("groups", [STR]),
                    6: ("extra", EXTRA)}),
       3: ("status", {1: ("conditions", [CONDITION]), 2: ("certificate", BYTES)})}
RES_ATTRS = {1: ("namespace", STR), 2: ("verb", STR), 3: ("group", STR), 4: ("version", STR), 5: ("resource", STR),
             6: ("subresource", STR), 7: ("name", STR)}
NONRES_ATTRS = {1: ("path", STR), 2: ("verb", STR)}
POLICY_RULE = {1: ("verbs", [STR]), 2: ("apiGroups", [STR]), 3: ("resources", [STR]), 4: ("resourceNames", [STR]),
               5: ("nonResourceURLs", [STR])}
SUBJECT = {1: ("kind", STR), 2: ("apiGroup", STR), 3: ("name", STR), 4: ("namespace", STR)}
ROLE_REF = {1: ("apiGroup", STR), 2: ("kind", STR), 3: ("name", STR)}
OBJECT_REF = {1: ("kind", STR), 2: ("namespace", STR), 3: ("name", STR), 4: ("uid", STR), 5: ("apiVersion", STR),
              6: ("resourceVersion", STR), 7: ("fieldPath", STR)}

KINDS = {
    "CertificateSigningRequest": CSR,
    "SelfSubjectReview": {1: ("metadata", META)},
    "SelfSubjectAccessReview": {1: ("metadata", META), 2: ("spec", {
        1: ("resourceAttributes", RES_ATTRS), 2: ("nonResourceAttributes", NONRES_ATTRS)})},
    "SelfSubjectRulesReview": {1: ("metadata", META), 2: ("spec", {1: ("namespace", STR)})},
    "SubjectAccessReview": {1: ("metadata", META), 2: ("spec", {
        1: ("resourceAttributes", RES_ATTRS), 2: ("nonResourceAttributes", NONRES_ATTRS), 3: ("user", STR),
        4: ("groups", [STR]), 5: ("extra", EXTRA), 6: ("uid", STR)})},
    "Namespace": {1: ("metadata", META), 2: ("spec", {1: ("finalizers", [STR])}), 3: ("status", {1: ("phase", STR)})},
    "Secret": {1: ("metadata", META), 5: ("immutable", BOOL), 2: ("data", ("map", BYTES)),
               4: ("stringData", ("map", STR)), 3: ("type", STR)},
    "ConfigMap": {1: ("metadata", META), 4: ("immutable", BOOL), 2: ("data", ("map", STR)),
                  3: ("binaryData", ("map", BYTES))},
    "ServiceAccount": {1: ("metadata", META), 2: ("secrets", [OBJECT_REF]), 3: ("imagePullSecrets", [{1: ("name", STR)}]),
                       4: ("automountServiceAccountToken", BOOL)},
    "Role": {1: ("metadata", META), 2: ("rules", [POLICY_RULE])},
    "ClusterRole": {1: ("metadata", META), 2: ("rules", [POLICY_RULE])},
    "RoleBinding": {1: ("metadata", META), 2: ("subjects", [SUBJECT]), 3: ("roleRef", ROLE_REF)},
    "ClusterRoleBinding": {1: ("metadata", META), 2: ("subjects", [SUBJECT]), 3: ("roleRef", ROLE_REF)},
    "DeleteOptions": {1: ("gracePeriodSeconds", INT), 2: ("preconditions", {1: ("uid", STR), 2: ("resourceVersion", STR)}),
                      3: ("orphanDependents", BOOL), 4: ("propagationPolicy", STR), 5: ("dryRun", [STR])},
}


def _scalar(kind, wire, value):
    if kind == STR:
        return value.decode("utf-8")
    if kind == BYTES:
        return base64.b64encode(value).decode()
    if kind == INT:
        return _signed(value)
    if kind == BOOL:
        return bool(value)
    if kind == TIME:
        secs = 0
        for number, _w, val in fields(value):
            if number == 1:
                secs = _signed(val)
        if secs <= -62135596800:
            return None
        stamp = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "fieldsv1":
        for number, _w, val in fields(value):
            if number == 1:
                import json  # pylint: disable=import-outside-toplevel
                return json.loads(val)
        return {}
    if isinstance(kind, dict):
        return message(kind, value)
    del wire
    return value


def message(schema, data):
    out = {}
    for number, wire, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, list):
            elem = kind[0]
            if elem in (INT, BOOL) and wire == 2:
                pos, items = 0, []
                while pos < len(value):
                    item, pos = _varint(value, pos)
                    items.append(_scalar(elem, 0, item))
                out.setdefault(name, []).extend(items)
            else:
                out.setdefault(name, []).append(_scalar(elem, wire, value))
        elif isinstance(kind, tuple) and kind[0] == "map":
            key, val = "", None
            for enum, ewire, evalue in fields(value):
                if enum == 1:
                    key = evalue.decode("utf-8")
                elif enum == 2:
                    val = _scalar(kind[1], ewire, evalue)
            if isinstance(kind[1], dict):
                val = (val or {}).get("items", [])
            elif val is None:
                val = "" if kind[1] in (STR, BYTES) else None
            out.setdefault(name, {})[key] = val
        else:
            scalar = _scalar(kind, wire, value)
            if scalar is not None:
                out[name] = scalar
    return out


def decode(body):
    """The JSON form of a protobuf-encoded request object."""
    if not body.startswith(MAGIC):
        raise ProtoError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
    type_meta, raw = {}, b""
    for number, _wire, value in fields(body[len(MAGIC):]):
        if number == 1:
            for tnum, _tw, tval in fields(value):
                type_meta["apiVersion" if tnum == 1 else "kind"] = tval.decode("utf-8")
        elif number == 2:
            raw = value
    kind = type_meta.get("kind", "")
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtoError('no kind "%s" is registered for protobuf decoding' % kind)
    obj = {"kind": kind, "apiVersion": type_meta.get("apiVersion", "")}
    obj.update(message(schema, raw))
    return obj
