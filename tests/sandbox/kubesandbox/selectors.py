"""Label and field selectors with the syntax and matching rules of apimachinery."""

import re


class SelectorError(Exception):
    pass


_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9](/([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$|^[A-Za-z0-9]$")


def _split_top(text):
    parts, depth, cur = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(char)
    parts.append("".join(cur))
    return parts


def parse_labels(text):
    """A list of (key, op, values); op in exists, !, =, !=, in, notin, gt, lt."""
    reqs = []
    if text is None or not text.strip():
        return reqs
    for raw in _split_top(text):
        term = raw.strip()
        if not term:
            raise SelectorError("found '', expected: !, identifier, or 'end of string'")
        match = re.match(r"^(\S+?)\s+(in|notin)\s*\((.*)\)$", term)
        if match:
            key, op, vals = match.group(1), match.group(2), [v.strip() for v in match.group(3).split(",")]
            if vals == [""]:
                vals = []
            reqs.append(_req(key, op, vals))
            continue
        if term.startswith("!"):
            reqs.append(_req(term[1:].strip(), "!", []))
            continue
        match = re.match(r"^([^=!<>\s]+)\s*(==|!=|=|>|<)\s*(.*)$", term)
        if match:
            op = {"==": "=", "=": "=", "!=": "!=", ">": "gt", "<": "lt"}[match.group(2)]
            value = match.group(3).strip()
            if op in ("gt", "lt") and not re.match(r"^-?\d+$", value):
                raise SelectorError("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
            reqs.append(_req(match.group(1), op, [value]))
            continue
        if re.match(r"^[^=!<>\s(),]+$", term):
            reqs.append(_req(term, "exists", []))
            continue
        raise SelectorError("unable to parse requirement: found '%s', expected: in, notin, =, ==, !=, gt, lt" % term)
    return reqs


def _req(key, op, values):
    if not _valid_key(key):
        raise SelectorError("unable to parse requirement: <nil>: Invalid value: %s: name part must consist of "
                            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                            "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')" % _go_quote(key))
    for value in values:
        if value and not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value) or len(value) > 63:
            raise SelectorError("unable to parse requirement: <nil>: Invalid value: %s: a valid label must be an empty "
                                "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                                "with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
                                "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')" % _go_quote(value))
    return (key, op, values)


def _go_quote(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def _valid_key(key):
    if not key:
        return False
    name = key.rsplit("/", 1)[-1]
    return len(name) <= 63 and re.match(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$", name) is not None


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, values in reqs:
        has = key in labels
        value = labels.get(key)
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op == "=" and (not has or value != values[0]):
            return False
        if op == "!=" and has and value == values[0]:
            return False
        if op == "in" and (not has or value not in values):
            return False
        if op == "notin" and has and value in values:
            return False
        if op in ("gt", "lt"):
            try:
                number = int(value) if has else None
            except ValueError:
                return False
            if number is None or (op == "gt" and number <= int(values[0])) or (
                    op == "lt" and number >= int(values[0])):
                return False
    return True


def parse_fields(text):
    """A list of (field, op, value) with op '=' or '!='."""
    terms = []
    if text is None or not text.strip():
        return terms
    parts, cur, escaped = [], [], False
    for char in text:
        if escaped:
            cur.append(char)
            escaped = False
        elif char == "\\":
            cur.append(char)
            escaped = True
        elif char == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(char)
    parts.append("".join(cur))
    for part in parts:
        match = re.match(r"^(.*?)(!=|==|=)(.*)$", part)
        if not match or not match.group(1):
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        value = re.sub(r"\\(.)", r"\1", match.group(3))
        terms.append((match.group(1), "!=" if match.group(2) == "!=" else "=", value))
    return terms


def fields_match(terms, fields):
    for field, op, value in terms:
        actual = fields.get(field, "")
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
    return True
