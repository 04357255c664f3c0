"""Turning a raw record (legacy JSON, a write request) into a Firestore document.

One conversion serves the migration and the write API: the collection's schema says which
field holds the id, which fields are timestamps (ISO 8601, `YYYY-MM-DD`, `MM/DD/YYYY` and
epoch milliseconds are accepted and stored as UTC timestamps) and which are normalised; then
the schema model validates the result (`shared.schema_check`) and every problem is reported,
not just the first.

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
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.schema_check import is_valid, schema_message, violations
from shared.schema_model import CollectionSchema
from shared.times import UTC, parse_timestamp

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_BYTES", "MAX_ID_BYTES", "ConvertedRecord", "FieldProblem",
           "RecordError", "convert_record", "document_size", "field_name_problem", "id_problem",
           "parse_date_value", "record_id", "same_value", "schema_message"]

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
    lowercase = schema.lowercase_fields
    timestamps = schema.timestamp_fields
    for name, value in record.items():
        if name == schema.id_field:
            continue
        if name in timestamps and value is not None:
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
    if is_valid(schema, data, partial=partial):
        return []
    found = []
    for violation in violations(schema, data, partial=partial):
        if violation.validator == "additionalProperties" and not violation.path:
            extra = sorted(set(data) - set(schema.by_name))
            found.extend(FieldProblem(name, "is not a field of this collection") for name in extra)
            continue
        field_name = violation.missing if violation.validator == "required" else (
            str(violation.path[0]) if violation.path else None)
        found.append(FieldProblem(field_name, _short(schema_message(violation))))
    return found


def _quick_check(schema: CollectionSchema, *, partial: bool) -> Any:
    """The validity test of the schema model, as a predicate of a document's fields."""
    return functools.partial(is_valid, schema, partial=partial)


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
