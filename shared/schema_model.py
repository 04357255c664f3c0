"""The parsed model of a collection schema (`schemas/<collection>.schema.json`).

A schema file is read once into an immutable `CollectionSchema`: its fields in file order, each
with a `ValueSchema` (types, nullable unions such as `["string", "null"]`, enum, const, string
/ number / list / map bounds, pattern, format, the element schema of a list, the value schema of
a map, `x-normalize: lowercase`). Record conversion, validation (`shared.schema_check`), the
read API's filters and the rules generator (`rules/`) all read this model; none of them reads
the JSON again.

The parser is strict: a keyword it does not know, a type it cannot name, a bound of the wrong
kind is a `SchemaError`, so that a schema can never say more than every reader of it enforces.
Extensions: `x-id-field` (the source field that holds the document id), per property
`x-firestore-type: timestamp` and `x-normalize: lowercase`. `createdAt` and `updatedAt` are
always fields (timestamps, written by the backend); a schema may declare them, as timestamps.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shared.errors import BadRequest
from shared.times import parse_timestamp

CREATED, UPDATED = "createdAt", "updatedAt"
STAMPS = (CREATED, UPDATED)
JSON_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
FORMATS = ("date-time", "date", "email")
TOP_KEYWORDS = frozenset({"$schema", "$id", "$comment", "title", "description", "type",
                          "x-id-field", "required", "properties", "additionalProperties"})
# Keywords a value schema may use, in the groups the rules generator reports on.
ENFORCED = frozenset({"type", "x-firestore-type", "enum", "const", "minLength", "maxLength",
                      "pattern", "x-normalize", "minimum", "maximum", "exclusiveMinimum",
                      "exclusiveMaximum", "minItems", "maxItems", "minProperties",
                      "maxProperties"})
NESTED = frozenset({"items", "additionalProperties", "uniqueItems", "propertyNames", "format"})
ANNOTATIONS = frozenset({"title", "description", "$comment", "default", "examples",
                         "deprecated", "readOnly", "writeOnly"})
# The keywords validation checks (in the order the file lists them, as JSON Schema reports).
VALIDATED = frozenset({"type", "enum", "const", "minLength", "maxLength", "pattern", "format",
                       "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems",
                       "maxItems", "uniqueItems", "items", "minProperties", "maxProperties",
                       "additionalProperties", "propertyNames"})
# The types the read API compares filter values as (`FIELD_TYPES`), by model type.
FIELD_TYPES = ("string", "number", "integer", "boolean", "timestamp", "array", "map")
_QUERY_TYPES = {"string": "string", "number": "number", "integer": "integer",
                "boolean": "boolean", "timestamp": "timestamp", "array": "array",
                "object": "map"}
_INTEGER = re.compile(r"^-?\d{1,19}$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_COUNTS = {"minLength": "min_length", "maxLength": "max_length", "minItems": "min_items",
           "maxItems": "max_items", "minProperties": "min_properties",
           "maxProperties": "max_properties"}
_NUMBERS = {"minimum": "minimum", "maximum": "maximum", "exclusiveMinimum": "exclusive_minimum",
            "exclusiveMaximum": "exclusive_maximum"}


class SchemaError(ValueError):
    """A schema file the model cannot represent exactly (the message names file and field)."""


@dataclass(frozen=True)
class ValueSchema:
    """What a schema says of one value: a field's, a list element's or a map value's.

    `types` are JSON Schema's type names, or `timestamp` (`x-firestore-type`), in the order the
    file gives them; `null` among them makes the value nullable. Absent keywords are None (or
    empty, or False). `keywords` lists the validated keywords in file order.
    """

    types: tuple[str, ...] = ()
    enum: tuple[Any, ...] | None = None
    has_const: bool = False
    const: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    lowercase: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    items: ValueSchema | bool | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    values: ValueSchema | bool | None = None
    key_names: ValueSchema | bool | None = None
    examples: tuple[Any, ...] = ()
    keywords: tuple[str, ...] = ()

    @property
    def nullable(self) -> bool:
        """True when null is one of the allowed types."""
        return "null" in self.types

    @property
    def main_type(self) -> str:
        """The first type that is not null (`timestamp` for a Firestore timestamp)."""
        return next(kind for kind in self.types if kind != "null")


@dataclass(frozen=True)
class Field:
    """One top-level field of a collection: its name, value schema and whether it is required."""

    name: str
    value: ValueSchema
    required: bool


@dataclass(frozen=True)
class CollectionSchema:
    """A collection's documents as its schema file describes them (fields in file order, then
    the stamps the file leaves out)."""

    name: str
    source: str
    id_field: str
    fields: tuple[Field, ...]
    required: tuple[str, ...]
    source_text: str

    @functools.cached_property
    def by_name(self) -> Mapping[str, Field]:
        """The fields by name."""
        return MappingProxyType({field.name: field for field in self.fields})

    @property
    def field_names(self) -> tuple[str, ...]:
        """Every field name, in file order."""
        return tuple(self.by_name)

    @functools.cached_property
    def field_types(self) -> Mapping[str, str]:
        """Each field's type as the read API compares it (one of `FIELD_TYPES`)."""
        return MappingProxyType({field.name: _QUERY_TYPES[field.value.main_type]
                                 for field in self.fields})

    @functools.cached_property
    def item_types(self) -> Mapping[str, str]:
        """The element type of each list field whose elements are typed."""
        return MappingProxyType({
            field.name: _QUERY_TYPES[field.value.items.main_type] for field in self.fields
            if isinstance(field.value.items, ValueSchema) and field.value.items.types})

    def field_type(self, field: str) -> str:
        """The type of a top-level field for the read API; `BadRequest` for an unknown field."""
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

    @property
    def json_schema(self) -> dict[str, Any]:
        """A copy of the file's JSON, for JSON Schema tools (the backend reads the model)."""
        return json.loads(self.source_text)

    @functools.cached_property
    def lowercase_fields(self) -> frozenset[str]:
        """The fields stored in lowercase (`x-normalize: lowercase`)."""
        return frozenset(f.name for f in self.fields if f.value.lowercase)

    @functools.cached_property
    def timestamp_fields(self) -> frozenset[str]:
        """The fields stored as Firestore timestamps."""
        return frozenset(f.name for f in self.fields if "timestamp" in f.value.types)


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


def load_schema_file(path: Path) -> CollectionSchema:
    """The model of one `<collection>.schema.json`; `SchemaError` when it is not usable and
    `FileNotFoundError` when it does not exist."""
    text = path.read_text(encoding="utf-8")
    return parse_schema(path.name.removesuffix(".schema.json"), text, source=path.name)


def load_schemas(directory: Path) -> dict[str, CollectionSchema]:
    """Every `*.schema.json` of `directory` by collection name, sorted (empty when there is none).

    A pure function of the directory: whoever owns an instance's state calls it once.
    """
    return {schema.name: schema for schema in
            (load_schema_file(path) for path in sorted(directory.glob("*.schema.json")))}


def parse_schema(name: str, text: str, *, source: str) -> CollectionSchema:
    """The model of a collection schema given as JSON text; `SchemaError` names what is wrong."""
    if not _COLLECTION_NAME.match(name):
        raise SchemaError(f"{source}: invalid collection name {name!r}")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"{source}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SchemaError(f"{source}: a schema must be a JSON object")
    unknown = set(raw) - TOP_KEYWORDS
    if unknown:
        raise SchemaError(f"{source}: keywords the schema model does not know: "
                          f"{sorted(unknown)}")
    if raw.get("type") != "object" or raw.get("additionalProperties") is not False:
        raise SchemaError(f"{source}: a collection schema must be a closed object "
                          '("type": "object", "additionalProperties": false)')
    properties = raw.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise SchemaError(f"{source}: no properties")
    required = raw.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{source}: required must be a list of field names")
    missing = [field for field in required if field not in properties]
    if missing:
        raise SchemaError(f"{source}: required fields without a property: {missing}")
    fields = [Field(field, parse_value(prop, where=f"{source}: {field}"), field in required)
              for field, prop in properties.items()]
    for stamp in STAMPS:
        if stamp not in properties:
            fields.append(Field(stamp, ValueSchema(types=("timestamp",)), False))
        elif next(f for f in fields if f.name == stamp).value.types != ("timestamp",):
            raise SchemaError(f"{source}: {stamp} must be a timestamp")
    id_field = raw.get("x-id-field", "id")
    if not isinstance(id_field, str) or not id_field:
        raise SchemaError(f"{source}: x-id-field must name a field")
    return CollectionSchema(name=name, source=source, id_field=id_field, fields=tuple(fields),
                            required=tuple(required), source_text=text)


def parse_value(prop: Any, *, where: str, typed: bool = True) -> ValueSchema:
    """The model of one value schema (`typed=False`: a type is optional, as for key names)."""
    if not isinstance(prop, dict):
        raise SchemaError(f"{where}: a property must be an object")
    unknown = set(prop) - ENFORCED - NESTED - ANNOTATIONS
    if unknown:
        raise SchemaError(f"{where}: keywords the schema model does not know: "
                          f"{sorted(unknown)}")
    found: dict[str, Any] = {"types": _types(prop, where, typed=typed),
                             "keywords": tuple(k for k in prop if k in VALIDATED)}
    for keyword, attribute in _COUNTS.items():
        if keyword in prop:
            found[attribute] = _count(prop[keyword], f"{where}: {keyword}")
    for keyword, attribute in _NUMBERS.items():
        if keyword in prop:
            found[attribute] = _number(prop[keyword], f"{where}: {keyword}")
    if "enum" in prop:
        if not isinstance(prop["enum"], list) or not prop["enum"]:
            raise SchemaError(f"{where}: enum must be a non-empty list")
        found["enum"] = tuple(prop["enum"])
    if "const" in prop:
        found["has_const"], found["const"] = True, prop["const"]
    if "pattern" in prop:
        found["pattern"] = _pattern(prop["pattern"], where)
    if "format" in prop:
        if prop["format"] not in FORMATS:
            raise SchemaError(f"{where}: format {prop['format']!r} is not one the backend "
                              f"checks ({', '.join(FORMATS)})")
        found["format"] = prop["format"]
    if "x-normalize" in prop:
        if prop["x-normalize"] != "lowercase":
            raise SchemaError(f"{where}: unknown x-normalize {prop['x-normalize']!r}")
        found["lowercase"] = True
    if "uniqueItems" in prop:
        if not isinstance(prop["uniqueItems"], bool):
            raise SchemaError(f"{where}: uniqueItems must be true or false")
        found["unique_items"] = prop["uniqueItems"]
    if "examples" in prop:
        if not isinstance(prop["examples"], list):
            raise SchemaError(f"{where}: examples must be a list")
        found["examples"] = tuple(prop["examples"])
    for keyword, attribute, typed_sub in (("items", "items", True),
                                          ("additionalProperties", "values", True),
                                          ("propertyNames", "key_names", False)):
        if keyword in prop:
            sub = prop[keyword]
            found[attribute] = sub if isinstance(sub, bool) else parse_value(
                sub, where=f"{where} ({keyword})", typed=typed_sub)
    return ValueSchema(**found)


def _types(prop: Mapping[str, Any], where: str, *, typed: bool) -> tuple[str, ...]:
    declared = prop.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    if "x-firestore-type" in prop:
        if prop["x-firestore-type"] != "timestamp":
            raise SchemaError(f"{where}: unknown x-firestore-type {prop['x-firestore-type']!r}")
        if kinds:
            raise SchemaError(f"{where}: x-firestore-type together with a JSON type")
        kinds = ["timestamp"]
    if not kinds and not typed:
        return ()
    if not kinds or any(not isinstance(kind, str) or kind not in (*JSON_TYPES, "timestamp")
                        for kind in kinds) or all(kind == "null" for kind in kinds):
        names = sorted(set(JSON_TYPES) - {"null"} | {"timestamp"})
        raise SchemaError(f"{where}: needs a type among {names} (or x-firestore-type: timestamp)")
    return tuple(dict.fromkeys(kinds))


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{where} must be a non-negative integer")
    return value


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{where} must be a number")
    return value


def _pattern(pattern: Any, where: str) -> str:
    if not isinstance(pattern, str):
        raise SchemaError(f"{where}: pattern must be a string")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SchemaError(f"{where}: pattern {pattern!r} does not compile: {exc}") from None
    return pattern
