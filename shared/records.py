"""Turning a raw record (legacy JSON, a write request) into a Firestore document.

One conversion serves the migration and the write API: the collection's schema says which
field holds the id, which fields are timestamps (ISO 8601, `YYYY-MM-DD`, `MM/DD/YYYY` and
epoch milliseconds are accepted and stored as UTC timestamps) and which are normalised; then
the JSON Schema validates the result and every problem is reported, not just the first.

Reasons (`RecordError.reason`, stable codes for reports): `not_an_object`, `missing_id`,
`invalid_id` (Firestore's id rules: no `/`, not `.` or `..`, not `__.*__`, at most 1,500
bytes; ids are never rewritten), `too_large` (over 1 MiB once stored) and `schema` (the JSON
Schema, unparseable dates, and values Firestore cannot store: integers outside 64 bits, arrays
directly inside arrays, nesting deeper than 20, reserved or empty field names).

`same_value` compares a converted value with what Firestore returns, type for type, so that a
writer can tell an unchanged document from one that needs a write.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.schema import CollectionSchema
from shared.times import UTC, parse_timestamp

MAX_DOCUMENT_BYTES = 1_048_576
MAX_ID_BYTES = 1500
MAX_DEPTH = 20
_INT64 = (-(2**63), 2**63 - 1)
# What the writer adds to every document: `updatedAt` (and `createdAt` when the record has none).
_STAMP_BYTES = len("createdAt") + 1 + 8 + len("updatedAt") + 1 + 8
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_ISO_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")
# Epoch milliseconds between 1970 and 2200: anything else is more likely a typo than a date.
_EPOCH_MS_RANGE = (0, 7_258_118_400_000)


@dataclass(frozen=True)
class FieldProblem:
    """One reason a record cannot be stored as it is."""

    field: str | None
    message: str


class RecordError(ValueError):
    """A record that cannot become a document; `reason` is a stable code for reports."""

    def __init__(self, reason: str, message: str, problems: tuple[FieldProblem, ...] = ()):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.problems = problems


@dataclass(frozen=True)
class ConvertedRecord:
    """A record ready for Firestore: its id and its fields as Firestore values."""

    doc_id: str
    data: dict[str, Any] = field(default_factory=dict)
    size: int = 0  # Firestore's storage size of `data` under its name, stamps excluded


def id_problem(doc_id: str) -> str | None:
    """Why Firestore would refuse `doc_id` as a document id, or None when it is valid."""
    if not doc_id:
        return "is empty"
    if "/" in doc_id:
        return "contains '/'"
    if doc_id in (".", ".."):
        return "is '.' or '..'"
    if doc_id.startswith("__") and doc_id.endswith("__"):
        return "matches the reserved pattern __.*__"
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    return None


def parse_date_value(value: Any) -> dt.datetime:
    """A timestamp from ISO 8601, `YYYY-MM-DD`, `MM/DD/YYYY` or epoch milliseconds (UTC)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not _EPOCH_MS_RANGE[0] <= value <= _EPOCH_MS_RANGE[1]:
            raise ValueError(f"{value!r} is not a plausible epoch-milliseconds date")
        return dt.datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        match = _US_DATE.match(text)
        if match:
            month, day, year = (int(g) for g in match.groups())
            return dt.datetime(year, month, day, tzinfo=UTC)
        if _ISO_LOCAL.match(text):
            return dt.datetime.fromisoformat(text.replace(" ", "T")[:26]).replace(tzinfo=UTC)
        if text.isdigit():
            return parse_date_value(int(text))
        return parse_timestamp(text)
    raise ValueError(f"a {type(value).__name__} is not a date")


def record_id(record: Any, schema: CollectionSchema, *, key: str | None = None) -> str:
    """The document id of a raw record, checked by Firestore's rules; `RecordError` otherwise.

    The id is `key` when the record comes from an object keyed by id (a record that also
    carries the id field must agree with its key), else the schema's id field. Strings and
    integers are accepted; nothing is trimmed or rewritten.
    """
    if not isinstance(record, Mapping):
        raise RecordError("not_an_object", f"record is a {_kind(record)}, not an object")
    raw_id = record.get(schema.id_field, key) if key is not None else record.get(schema.id_field)
    if key is not None and raw_id is not None and str(raw_id) != key:
        raise RecordError("invalid_id", f"the key {key[:80]!r} and the record's "
                                        f"{schema.id_field!r} {str(raw_id)[:80]!r} differ")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise RecordError("missing_id", f"the id field {schema.id_field!r} is missing")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise RecordError("invalid_id", f"the id must be a string, got {_kind(raw_id)}")
    doc_id = str(raw_id)
    problem = id_problem(doc_id)
    if problem:
        raise RecordError("invalid_id", f"id {doc_id[:80]!r} {problem}")
    return doc_id


def convert_record(record: Any, schema: CollectionSchema, *, doc_id: str | None = None,
                   partial: bool = False) -> ConvertedRecord:
    """Validate and convert one record; raise `RecordError` with every problem found.

    The id comes from `doc_id` or the schema's id field. With `partial`, required fields may be
    absent (a PATCH). `createdAt`/`updatedAt` are left to the writer.
    """
    if not isinstance(record, Mapping):
        raise RecordError("not_an_object", f"record is a {_kind(record)}, not an object")
    if doc_id is None:
        doc_id = record_id(record, schema)
    problem = id_problem(doc_id)
    if problem:
        raise RecordError("invalid_id", f"id {doc_id[:80]!r} {problem}")

    data: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    lowercase = _lowercase_fields(schema)
    for name, value in record.items():
        if name == schema.id_field:
            continue
        kind = schema.field_types.get(name)
        if kind == "timestamp" and value is not None:
            try:
                value = parse_date_value(value)
            except ValueError as exc:
                problems.append(FieldProblem(name, f"not a date: {exc}"))
                continue
        elif name in lowercase and isinstance(value, str):
            value = value.strip().lower()
        data[name] = value
    stored_size = document_size(f"{schema.name}/{doc_id}", data)
    size = stored_size + _STAMP_BYTES
    if size > MAX_DOCUMENT_BYTES:
        raise RecordError("too_large", f"the document would take {size} bytes, over Firestore's "
                                       f"limit of {MAX_DOCUMENT_BYTES}")
    problems.extend(_firestore_problems(data))
    problems.extend(_schema_problems(data, schema, partial=partial))
    if problems:
        summary = "; ".join(f"{p.field or 'record'}: {p.message}" for p in problems[:5])
        raise RecordError("schema", summary, tuple(problems))
    return ConvertedRecord(doc_id, data, stored_size)


_lowercase: dict[str, frozenset[str]] = {}


def _lowercase_fields(schema: CollectionSchema) -> frozenset[str]:
    """The fields the schema marks `x-normalize: lowercase` (read once per collection)."""
    fields = _lowercase.get(schema.name)
    if fields is None:
        properties = schema.json_schema.get("properties", {})
        fields = frozenset(name for name, prop in properties.items()
                           if isinstance(prop, Mapping) and prop.get("x-normalize") == "lowercase")
        _lowercase[schema.name] = fields
    return fields


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _firestore_problems(data: Mapping[str, Any]) -> list[FieldProblem]:
    """Values Firestore itself refuses, whatever the schema says."""
    found: list[FieldProblem] = []

    def visit(value: Any, top: str, depth: int, in_array: bool) -> None:
        if depth > MAX_DEPTH:
            found.append(FieldProblem(top, f"nests deeper than {MAX_DEPTH} levels"))
            return
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                found.append(FieldProblem(top, "is an integer outside Firestore's 64-bit range"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name_problem = field_name_problem(str(key))
                if name_problem:
                    found.append(FieldProblem(top, f"has a field name that {name_problem}"))
                visit(item, top, depth + 1, False)
        elif isinstance(value, (list, tuple)):
            if in_array:
                found.append(FieldProblem(top, "holds an array directly inside an array, "
                                               "which Firestore cannot store"))
                return
            for item in value:
                visit(item, top, depth + 1, True)

    for name, value in data.items():
        name_problem = field_name_problem(str(name))
        if name_problem:
            found.append(FieldProblem(str(name), f"field name {name_problem}"))
        visit(value, str(name), 1, False)
    return found


def field_name_problem(name: str) -> str | None:
    """Why Firestore would refuse a field name, or None (empty, `__.*__`, over 1,500 bytes)."""
    if not name:
        return "is empty"
    if name.startswith("__") and name.endswith("__"):
        return "matches the reserved pattern __.*__"
    if len(name.encode("utf-8")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    return None


def same_value(new: Any, stored: Any) -> bool:
    """True when writing `new` over `stored` (as the client reads it back) changes nothing.

    Types count: `1`, `1.0` and `True` are three different Firestore values. Timestamps are
    compared as instants.
    """
    if new is None:
        return stored is None
    if isinstance(new, bool) or isinstance(stored, bool):
        return type(new) is type(stored) and new == stored
    if isinstance(new, int):
        return isinstance(stored, int) and new == stored
    if isinstance(new, float):
        if not isinstance(stored, float):
            return False
        return new == stored or (math.isnan(new) and math.isnan(stored))
    if isinstance(new, str):
        return isinstance(stored, str) and new == stored
    if isinstance(new, dt.datetime):
        return isinstance(stored, dt.datetime) and parse_date_value(new) == parse_date_value(
            stored)
    if isinstance(new, Mapping):
        return (isinstance(stored, Mapping) and set(new) == set(stored)
                and all(same_value(value, stored[key]) for key, value in new.items()))
    if isinstance(new, (list, tuple)):
        return (isinstance(stored, (list, tuple)) and len(new) == len(stored)
                and all(same_value(a, b) for a, b in zip(new, stored, strict=True)))
    return bool(new == stored)


def _schema_problems(data: Mapping[str, Any], schema: CollectionSchema, *,
                     partial: bool) -> list[FieldProblem]:
    quick = _quick_check(schema, partial=partial)
    if quick is not None and quick(data):
        return []
    validator = _validator(schema)
    found = []
    for error in sorted(validator.iter_errors(dict(data)), key=lambda e: list(e.path)):
        if partial and error.validator == "required":
            continue
        field_name = str(error.path[0]) if error.path else None
        if error.validator == "required":
            field_name = error.message.split("'")[1] if "'" in error.message else None
        if error.validator == "additionalProperties" and not error.path:
            extra = sorted(set(data) - set(schema.json_schema.get("properties", {})))
            found.extend(FieldProblem(name, "is not a field of this collection") for name in extra)
            continue
        found.append(FieldProblem(field_name, _short(schema_message(error))))
    return found


_JSON_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (Mapping, "an object"), ((list, tuple), "an array"), (type(None), "null"))
_SCHEMA_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
                 "boolean": "a boolean", "object": "an object", "array": "an array",
                 "null": "null"}


def _json_kind(value: Any) -> str:
    return next((name for kinds, name in _JSON_KINDS if isinstance(value, kinds)), "a value")


def schema_message(error: Any) -> str:
    """A schema error said in JSON's terms, without echoing the value (jsonschema writes its repr).

    The message names where inside the field the problem is (`item 2`, `key "x"`) and what the
    schema asks; the offending value itself is never repeated back (it may be large, or hold
    what its sender should not see reflected), only its JSON kind.
    """
    keyword, expected, value = error.validator, error.validator_value, error.instance
    inside = "".join(f" item {part}" if isinstance(part, int) else f" key {_quoted(part)}"
                     for part in list(error.path)[1:])
    where = f"at{inside}: " if inside else ""
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_SCHEMA_TYPES.get(kind, kind) for kind in kinds)
        said = f"must be {wanted}, not {_json_kind(value)}"
    elif keyword == "enum":
        said = "must be one of " + ", ".join(_quoted(option) for option in expected)
    elif keyword in ("minLength", "maxLength"):
        bound = "at least" if keyword == "minLength" else "at most"
        said = f"must be {bound} {expected} character{'s' if expected != 1 else ''} long"
    elif keyword in ("minItems", "maxItems", "minProperties", "maxProperties"):
        bound = "at least" if keyword.startswith("min") else "at most"
        unit = "item" if keyword.endswith("Items") else "key"
        said = f"must have {bound} {expected} {unit}{'s' if expected != 1 else ''}"
    elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                 "exclusiveMaximum": "less than"}[keyword]
        said = f"must be {bound} {expected}"
    elif keyword == "pattern":
        said = f"must match the pattern {expected}"
    elif keyword == "required":
        said = "is required"
    elif keyword == "additionalProperties":
        said = "has a key this field does not allow"
    else:
        said = f"does not satisfy the schema's {keyword}"
    return where + said


def _quoted(text: Any) -> str:
    return json.dumps(text, ensure_ascii=False)


_validators: dict[str, Any] = {}
_quick_checks: dict[tuple[str, bool], Any] = {}

# Keywords the quick check implements exactly as jsonschema's Draft 2020-12 validator does;
# annotations are ignored (as jsonschema does without a format checker).
_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default",
                "format", "deprecated", "readOnly", "writeOnly"}
_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class _Unsupported(Exception):
    """The schema uses something the quick check does not implement: use jsonschema alone."""


def _quick_check(schema: CollectionSchema, *, partial: bool) -> Any:
    """A compiled validity test equivalent to jsonschema's for the keywords our schemas use
    (jsonschema costs about a millisecond a record, the compiled test a few microseconds).
    None when the schema uses anything else. Only a pass is trusted: a record it refuses is
    validated again by jsonschema, whose messages are the ones reported."""
    key = (schema.name, partial)
    if key not in _quick_checks:
        raw = dict(schema.json_schema)
        if partial:
            raw.pop("required", None)
        try:
            _quick_checks[key] = _compile(raw)
        except _Unsupported:
            _quick_checks[key] = None
    return _quick_checks[key]


def _compile(node: Any) -> Any:
    """One schema node as a predicate; `_Unsupported` for any keyword outside the subset."""
    if node is True or node == {}:
        return lambda value: True
    if node is False:
        return lambda value: False
    if not isinstance(node, Mapping):
        raise _Unsupported(repr(node))
    checks: list[Any] = []
    for keyword, arg in node.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        checks.append(_keyword(keyword, arg, node))
    if len(checks) == 1:
        return checks[0]

    def every(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return every


def _keyword(keyword: str, arg: Any, node: Mapping[str, Any]) -> Any:
    """The predicate of one keyword (it passes values of the types it does not apply to)."""
    number = _JSON_TYPES["number"]
    if keyword == "type":
        names = [arg] if isinstance(arg, str) else list(arg)
        if not names or any(name not in _JSON_TYPES for name in names):
            raise _Unsupported(keyword)
        tests = [_JSON_TYPES[name] for name in names]
        return lambda v: any(test(v) for test in tests)
    if keyword in ("minLength", "maxLength") and _count(arg):
        low = keyword == "minLength"
        return lambda v: not isinstance(v, str) or (len(v) >= arg if low else len(v) <= arg)
    if keyword in ("minItems", "maxItems") and _count(arg):
        low = keyword == "minItems"
        return lambda v: not isinstance(v, list) or (len(v) >= arg if low else len(v) <= arg)
    if keyword in ("minProperties", "maxProperties") and _count(arg):
        low = keyword == "minProperties"
        return lambda v: not isinstance(v, dict) or (len(v) >= arg if low else len(v) <= arg)
    if keyword in ("minimum", "maximum") and number(arg):
        low = keyword == "minimum"
        return lambda v: not number(v) or (v >= arg if low else v <= arg)
    if keyword == "enum" and isinstance(arg, list) and all(isinstance(a, str) for a in arg):
        allowed = frozenset(arg)
        return lambda v: isinstance(v, str) and v in allowed
    if keyword == "pattern" and isinstance(arg, str):
        compiled = re.compile(arg)
        return lambda v: not isinstance(v, str) or compiled.search(v) is not None
    if keyword == "required" and isinstance(arg, list):
        names = tuple(arg)
        return lambda v: not isinstance(v, dict) or all(name in v for name in names)
    if keyword == "items" and "prefixItems" not in node:
        item = _compile(arg)
        return lambda v: not isinstance(v, list) or all(item(x) for x in v)
    if keyword == "properties" and isinstance(arg, Mapping):
        props = {name: _compile(sub) for name, sub in arg.items()}
        return lambda v: not isinstance(v, dict) or all(
            props[name](value) for name, value in v.items() if name in props)
    if keyword == "additionalProperties" and "patternProperties" not in node:
        known = frozenset(node.get("properties") or ())
        extra = _compile(arg)
        return lambda v: not isinstance(v, dict) or all(
            extra(value) for name, value in v.items() if name not in known)
    raise _Unsupported(keyword)


def _count(arg: Any) -> bool:
    return isinstance(arg, int) and not isinstance(arg, bool) and arg >= 0


def _validator(schema: CollectionSchema) -> Any:
    validator = _validators.get(schema.name)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(dict(schema.json_schema))
        _validators[schema.name] = validator
    return validator


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def document_size(path: str, data: Mapping[str, Any]) -> int:
    """Firestore's storage size of a document (name + fields + 32 bytes), per its sizing rules."""
    name_size = sum(len(part.encode("utf-8")) + 1 for part in path.split("/")) + 16
    return name_size + _map_size(data) + 32


def _map_size(data: Mapping[str, Any]) -> int:
    return sum(len(str(key).encode("utf-8")) + 1 + _value_size(value)
               for key, value in data.items())


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, float, dt.datetime)):
        return 8
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return _map_size(value)
    if isinstance(value, (list, tuple)):
        return sum(_value_size(item) for item in value)
    return 16
