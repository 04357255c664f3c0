"""Per-collection schemas (`schemas/<collection>.schema.json`, JSON Schema 2020-12), loaded.

One file per collection is the single description of its documents, parsed once into the model
of `shared.schema_model` (`CollectionSchema`): the read API types filter values with it, the
migration and the write API convert and validate with it (`shared.records`), and the rules
generator (`rules/`) writes the Firestore rules from it. Extensions: `x-id-field` (the source
field that holds the document id) and per property `x-firestore-type: timestamp` and
`x-normalize: lowercase`.

`load_schemas(directory)` reads them all (a pure function: an instance's owner calls it once);
`load_schema(collection)` is the same for one collection of `schemas/`, remembered.
"""

from __future__ import annotations

import functools
from pathlib import Path

from shared.errors import ConfigError
from shared.schema_model import FIELD_TYPES, CollectionSchema, SchemaError, load_schema_file
from shared.schema_model import load_schemas as _load_schemas

__all__ = ["FIELD_TYPES", "SCHEMA_DIR", "CollectionSchema", "load_schema", "load_schemas"]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def load_schemas(directory: Path = SCHEMA_DIR) -> dict[str, CollectionSchema]:
    """Every collection schema of `directory` by name; `ConfigError` when one is unusable."""
    try:
        return _load_schemas(directory)
    except SchemaError as exc:
        raise ConfigError(f"invalid schema: {exc}", code="invalid_schema") from None


def read_schema(collection: str, directory: Path = SCHEMA_DIR) -> CollectionSchema:
    """The schema of one collection, read from `directory`; `ConfigError` when unusable."""
    path = directory / f"{collection}.schema.json"
    try:
        return load_schema_file(path)
    except FileNotFoundError:
        raise ConfigError(f"collection {collection!r} has no schema file {path.name}",
                          code="missing_schema") from None
    except SchemaError as exc:
        raise ConfigError(f"schema {path.name} is invalid: {exc}", code="invalid_schema") from None


@functools.cache
def load_schema(collection: str) -> CollectionSchema:
    """The schema of a collection, read once from `schemas/`; `ConfigError` when unusable.

    Kept for the modules that load one collection at a time until an instance's owner holds
    `load_schemas(SCHEMA_DIR)`; the files are part of the code, so remembering them is safe.
    """
    return read_schema(collection)
