"""The collection schemas as the rules generator reads them: the backend's parsed model
(`shared.schema_model`) plus what only rules need.

Rules add three demands to the model's: every pattern they test is RE2 (no lookaround, no
backreferences), each collection's name makes a distinct rules function, and both stamps
(`createdAt`, `updatedAt`) are required in a stored document (the backend adds them itself, so
its schema does not require them). A schema error is a `GeneratorError` naming schema and field.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.schema_model import (
    ANNOTATIONS,
    ENFORCED,
    NESTED,
    STAMPS,
    CollectionSchema,
    Field,
    SchemaError,
    ValueSchema,
    load_schemas,
)

__all__ = ["ANNOTATIONS", "BACKEND_ONLY", "ENFORCED", "NESTED", "STAMPS", "GeneratorError",
           "function_name", "load_collections", "required", "required_names", "where"]

# Keywords rules cannot express (they have no loops), left to the backend's validation; the
# README (Security) says so. The model knows exactly these (`NESTED`) besides ENFORCED and
# ANNOTATIONS.
BACKEND_ONLY = {
    "items": "the type and size of each list element",
    "additionalProperties": "the type and size of each map value",
    "uniqueItems": "that list elements are distinct",
    "propertyNames": "the key names of a map",
    "format": "string formats",
}

_NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")


class GeneratorError(SchemaError):
    """A schema the rules cannot be generated from (the message names schema and field)."""


def load_collections(schema_dir: Path) -> list[CollectionSchema]:
    """Every `<name>.schema.json` in `schema_dir`, parsed and checked for rules, sorted by name."""
    try:
        collections = list(load_schemas(schema_dir).values())
    except SchemaError as exc:
        raise GeneratorError(str(exc)) from None
    if not collections:
        raise GeneratorError(f"no *.schema.json in {schema_dir}")
    for collection in collections:
        for field in collection.fields:
            _check_patterns(field.value, where(collection, field))
    functions = [function_name(collection) for collection in collections]
    if len(set(functions)) != len(functions):
        raise GeneratorError(f"collection names collide as rules functions: {functions}")
    return collections


def _check_patterns(value: ValueSchema, place: str) -> None:
    """Refuse a non-RE2 pattern in a field or in its elements (the cases test them all)."""
    if value.pattern is not None and _NOT_RE2.search(value.pattern):
        raise GeneratorError(f"{place}: pattern {value.pattern!r} is not RE2 (no lookaround, "
                             "no backreferences)")
    for sub in (value.items, value.values):
        if isinstance(sub, ValueSchema):
            _check_patterns(sub, f"{place} (element)")


def function_name(collection: CollectionSchema) -> str:
    """The name of the collection's validation function in the rules (`validUsersDoc`)."""
    words = re.split(r"[^A-Za-z0-9]+", collection.name)
    return "valid" + "".join(word[:1].upper() + word[1:] for word in words if word) + "Doc"


def required(field: Field) -> bool:
    """Whether a stored document must hold the field (the schema's required and the stamps)."""
    return field.required or field.name in STAMPS


def required_names(collection: CollectionSchema) -> list[str]:
    """The fields a stored document must hold, in file order."""
    return [field.name for field in collection.fields if required(field)]


def where(collection: CollectionSchema, field: Field) -> str:
    """`file: field`, for messages."""
    return f"{collection.source}: {field.name}"
