"""API errors and the Status bodies the real server sends for them."""

import json


class FieldError:
    """One field.Error: ``reason`` is the CauseReason (FieldValueInvalid, ...)."""

    TYPES = {
        "FieldValueRequired": "Required value", "FieldValueInvalid": "Invalid value",
        "FieldValueNotSupported": "Unsupported value", "FieldValueDuplicate": "Duplicate value",
        "FieldValueForbidden": "Forbidden", "FieldValueTooLong": "Too long", "FieldValueNotFound": "Not found",
        "FieldValueTooMany": "Too many", "InternalError": "Internal error",
    }

    def __init__(self, reason, field, value, detail, raw=None):
        self.reason = reason
        self.field = field
        self.value = value
        self.detail = detail
        self.raw = raw

    def body(self):
        text = self.TYPES[self.reason]
        if self.reason not in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"):
            if self.raw is not None:
                shown = self.raw
            elif self.value is None:
                shown = "null"
            elif isinstance(self.value, bool):
                shown = "true" if self.value else "false"
            elif isinstance(self.value, (int, float)):
                shown = str(self.value)
            else:
                shown = json.dumps(self.value, ensure_ascii=False)
            text = "%s: %s" % (text, shown)
        if self.detail:
            text += ": " + self.detail
        return text

    def __str__(self):
        return "%s: %s" % (self.field, self.body())


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(res, name=None, kind=None):
    details = {}
    if name is not None:
        details["name"] = name
    if res.group:
        details["group"] = res.group
    details["kind"] = kind or res.plural
    return details


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name), _details(res, name))


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.qualified, name), _details(res, name))


def conflict(res, name, why=None):
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (res.qualified, name, why),
                    _details(res, name))


def forbidden(res, name, why):
    if name:
        msg = '%s "%s" is forbidden: %s' % (res.qualified, name, why)
    else:
        msg = "%s is forbidden: %s" % (res.qualified, why)
    return ApiError(403, "Forbidden", msg, _details(res, name or None))


def invalid(res, name, errs):
    causes = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errs]
    messages = []
    for err in errs:
        text = str(err)
        if text not in messages:
            messages.append(text)
    head = '%s "%s" is invalid' % (res.kind + ("." + res.group if res.group else ""), name)
    if len(messages) == 1:
        msg = head + ": " + messages[0]
    else:
        msg = head + ": [" + ", ".join(messages) + "]"
    details = {"name": name} if name else {}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.kind
    details["causes"] = causes
    return ApiError(422, "Invalid", msg, details)


def bad_request(message):
    return ApiError(400, "BadRequest", message)
