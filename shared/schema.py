"""Per-collection schemas (`schemas/<collection>.schema.json`, JSON Schema 2020-12).

One file per collection is the single description of its documents: the read API types
filter values with it, the migration and the write API validate with it, and the Firestore
rules are checked against it. Extensions: `x-id-field` (the source field that holds the
document id) and per property `x-firestore-type: timestamp` and `x-normalize: lowercase`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import BadRequest, ConfigError
from shared.times import parse_timestamp

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

FIELD_TYPES = ("string", "number", "integer", "boolean", "timestamp", "array", "map")
_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer",
               "boolean": "boolean", "array": "array", "object": "map"}
_INTEGER = re.compile(r"^-?\d{1,19}$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class CollectionSchema:
    """What the backend knows of one collection's documents."""

    name: str
    id_field: str
    field_types: Mapping[str, str]
    item_types: Mapping[str, str]
    required: tuple[str, ...]
    json_schema: Mapping[str, Any]

    def field_type(self, field: str) -> str:
        """The declared type of a top-level field; `BadRequest` for an unknown field."""
        try:
            return self.field_types[field]
        except KeyError:
            raise BadRequest(f"unknown field {field!r} for collection {self.name}",
                             code="unknown_field") from None

    def parse_value(self, field: str, raw: str, *, element: bool = False) -> Any:
        """Type a filter value from the query string by the field's declared type."""
        kind = self.item_types.get(field, "string") if element else self.field_type(field)
        try:
            return _parse_scalar(kind, raw)
        except ValueError as exc:
            raise BadRequest(f"invalid value for {field}: {exc}", code="invalid_value") from None


def _parse_scalar(kind: str, raw: str) -> Any:
    if kind == "string":
        return raw
    if kind == "integer":
        if not _INTEGER.match(raw):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw)
    if kind == "number":
        if _INTEGER.match(raw):
            return int(raw)
        if not _NUMBER.match(raw):
            raise ValueError(f"expected a number, got {raw!r}")
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return number
    if kind == "boolean":
        if raw in ("true", "false"):
            return raw == "true"
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind == "timestamp":
        return parse_timestamp(raw)
    raise ValueError(f"fields of type {kind} cannot be compared to a value")


def _field_type(prop: Mapping[str, Any]) -> str:
    if prop.get("x-firestore-type") == "timestamp":
        return "timestamp"
    kind = prop.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    raise ValueError(f"property needs a 'type' or 'x-firestore-type': {prop!r}")


@functools.cache
def load_schema(collection: str) -> CollectionSchema:
    """The schema of a collection, read once from `schemas/`; `ConfigError` when unusable."""
    path = SCHEMA_DIR / f"{collection}.schema.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        properties = raw["properties"]
        field_types = {name: _field_type(prop) for name, prop in properties.items()}
        item_types = {
            name: _field_type(prop["items"])
            for name, prop in properties.items()
            if prop.get("type") == "array" and isinstance(prop.get("items"), dict)
        }
    except FileNotFoundError:
        raise ConfigError(f"collection {collection!r} has no schema file {path.name}",
                          code="missing_schema") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"schema {path.name} is invalid: {exc}", code="invalid_schema") from None
    for timestamp_field in ("createdAt", "updatedAt"):
        field_types.setdefault(timestamp_field, "timestamp")
    return CollectionSchema(
        name=collection,
        id_field=str(raw.get("x-id-field", "id")),
        field_types=field_types,
        item_types=item_types,
        required=tuple(raw.get("required", ())),
        json_schema=raw,
    )
