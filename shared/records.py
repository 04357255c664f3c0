"""Turning a raw record (legacy JSON, a write request) into a Firestore document.

One conversion serves the migration and the write API: the collection's schema says which
field holds the id, which fields are timestamps (ISO 8601, `YYYY-MM-DD`, `MM/DD/YYYY` and
epoch milliseconds are accepted and stored as UTC timestamps) and which are normalised; then
the JSON Schema validates the result and every problem is reported, not just the first.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.encoding import UTC, parse_timestamp
from shared.schema import CollectionSchema

MAX_DOCUMENT_BYTES = 1_048_576
MAX_ID_BYTES = 1500
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


def convert_record(record: Any, schema: CollectionSchema, *, doc_id: str | None = None,
                   partial: bool = False) -> ConvertedRecord:
    """Validate and convert one record; raise `RecordError` with every problem found.

    The id comes from `doc_id` or the schema's id field. With `partial`, required fields may be
    absent (a PATCH). `createdAt`/`updatedAt` are left to the writer.
    """
    if not isinstance(record, Mapping):
        raise RecordError("not_an_object", f"record is a {type(record).__name__}, not an object")
    if doc_id is None:
        raw_id = record.get(schema.id_field)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raise RecordError("missing_id", f"the id field {schema.id_field!r} is missing")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise RecordError("invalid_id", f"the id must be a string, got {type(raw_id).__name__}")
        doc_id = str(raw_id)
    problem = id_problem(doc_id)
    if problem:
        raise RecordError("invalid_id", f"id {doc_id[:80]!r} {problem}")

    data: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name, value in record.items():
        if name == schema.id_field:
            continue
        kind = schema.field_types.get(name)
        prop = schema.json_schema.get("properties", {}).get(name, {})
        if kind == "timestamp" and value is not None:
            try:
                value = parse_date_value(value)
            except ValueError as exc:
                problems.append(FieldProblem(name, f"not a date: {exc}"))
                continue
        elif prop.get("x-normalize") == "lowercase" and isinstance(value, str):
            value = value.strip().lower()
        data[name] = value
    size = document_size(f"{schema.name}/{doc_id}", data)
    if size > MAX_DOCUMENT_BYTES:
        raise RecordError("too_large", f"the document would take {size} bytes, over Firestore's "
                                       f"limit of {MAX_DOCUMENT_BYTES}")
    problems.extend(_schema_problems(data, schema, partial=partial))
    if problems:
        summary = "; ".join(f"{p.field or 'record'}: {p.message}" for p in problems[:5])
        raise RecordError("schema", summary, tuple(problems))
    return ConvertedRecord(doc_id, data)


def _schema_problems(data: Mapping[str, Any], schema: CollectionSchema, *,
                     partial: bool) -> list[FieldProblem]:
    validator = _validator(schema)
    found = []
    for error in sorted(validator.iter_errors(dict(data)), key=lambda e: list(e.path)):
        if partial and error.validator == "required":
            continue
        field_name = str(error.path[0]) if error.path else None
        if error.validator == "required":
            field_name = error.message.split("'")[1] if "'" in error.message else None
        if error.validator == "additionalProperties":
            extra = sorted(set(data) - set(schema.json_schema.get("properties", {})))
            found.extend(FieldProblem(name, "is not a field of this collection") for name in extra)
            continue
        found.append(FieldProblem(field_name, _short(error.message)))
    return found


_validators: dict[str, Any] = {}


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
