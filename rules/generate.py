"""Generate `firestore.rules` and the rules tests' cases from `schemas/*.schema.json`.

    python -m rules.generate            # rewrite firestore.rules and rules/test/cases.json
    python -m rules.generate --check    # exit 1 when either differs from what the schemas give

Every schema file is a collection the dashboard may read and write directly: signed-in users
whose token has `admin == true` may read it, and may write it when the resulting document
satisfies the schema (required fields, no unknown field, types, string / list / map size
bounds, enums, patterns, number ranges, lowercase) with `updatedAt == request.time` and, on
create, `createdAt == request.time`; an update can never add, change or remove `createdAt`.
The same admins may read the collections' tombstones (`_tombstones/<collection>/ids`, the
deletions a live dashboard listens to) and the migration runs (`_migrations`). Everything
else (the backend's internal collections, subcollections) matches no rule and is denied to
every client.

A schema keyword the generator does not know is an error, so a schema change can never
silently loosen the rules. Keywords that rules cannot express (they have no loops: the element
types of lists, the value types of maps) are listed in `BACKEND_ONLY` and left to the backend's
validation; the README (Security) says so.

The same constraints give `rules/test/cases.json`: for each collection a valid document, one at
every bound, and one invalid variant per enforced constraint, which `rules/test/*.test.mjs`
replays against Google's emulator. `tests/test_rules_schema.py` checks in CI that both files
are up to date and that the cases agree with an independent JSON Schema validator.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO / "schemas"
RULES_PATH = REPO / "firestore.rules"
CASES_PATH = REPO / "rules" / "test" / "cases.json"

CREATED, UPDATED = "createdAt", "updatedAt"
STAMPS = (CREATED, UPDATED)
FIXED_TIME = "2024-05-01T12:00:00Z"
OTHER_TIME = "2023-01-01T00:00:00Z"
SERVER_TIME = {"$serverTime": True}
DELETE = {"$delete": True}

TYPE_TESTS = {"string": "is string", "number": "is number", "integer": "is int",
              "boolean": "is bool", "array": "is list", "object": "is map",
              "timestamp": "is timestamp"}
TOP_KEYWORDS = {"$schema", "$id", "$comment", "title", "description", "type", "x-id-field",
                "required", "properties", "additionalProperties"}
ENFORCED = {"type", "x-firestore-type", "enum", "const", "minLength", "maxLength", "pattern",
            "x-normalize", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
            "minItems", "maxItems", "minProperties", "maxProperties"}
BACKEND_ONLY = {
    "items": "the type and size of each list element",
    "additionalProperties": "the type and size of each map value",
    "uniqueItems": "that list elements are distinct",
    "propertyNames": "the key names of a map",
    "format": "string formats",
}
ANNOTATIONS = {"title", "description", "$comment", "default", "examples", "deprecated",
               "readOnly", "writeOnly"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")
_STRING_CANDIDATES = ("example", "ada@example.com", "a", "ab", "abc", "a-1", "A1", "2024-05-01",
                      "https://example.com/a", "ok")
_BAD_STRING_CANDIDATES = ("", "no at sign", "a b@c d", "@", "x", "a@b@c", "with\nnewline",
                          "UPPER", "0", "-", "*")


class GeneratorError(ValueError):
    """A schema the rules cannot be generated from (the message names schema and field)."""


@dataclass(frozen=True)
class Field:
    """One top-level property of a collection schema, as the rules see it."""

    name: str
    prop: Mapping[str, Any]
    types: tuple[str, ...]
    required: bool
    where: str

    @property
    def nullable(self) -> bool:
        return "null" in self.types

    @property
    def main_type(self) -> str:
        return next(kind for kind in self.types if kind != "null")


@dataclass(frozen=True)
class Collection:
    """A collection: its name, schema file and fields (the stamps included)."""

    name: str
    path: Path
    fields: tuple[Field, ...]

    @property
    def function(self) -> str:
        words = re.split(r"[^A-Za-z0-9]+", self.name)
        return "valid" + "".join(word[:1].upper() + word[1:] for word in words if word) + "Doc"

    @property
    def required(self) -> list[str]:
        return [field.name for field in self.fields if field.required]


# --- reading the schemas -------------------------------------------------------------------

def load_collections(schema_dir: Path = SCHEMA_DIR) -> list[Collection]:
    """Every `<name>.schema.json` in `schema_dir`, checked, sorted by name."""
    collections = [_collection(path) for path in sorted(schema_dir.glob("*.schema.json"))]
    if not collections:
        raise GeneratorError(f"no *.schema.json in {schema_dir}")
    functions = [collection.function for collection in collections]
    if len(set(functions)) != len(functions):
        raise GeneratorError(f"collection names collide as rules functions: {functions}")
    return collections


def _collection(path: Path) -> Collection:
    name = path.name.removesuffix(".schema.json")
    where = path.name
    if not re.match(r"^[a-z][a-z0-9_-]{0,62}$", name):
        raise GeneratorError(f"{where}: invalid collection name {name!r}")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GeneratorError(f"{where}: not JSON: {exc}") from None
    unknown = set(schema) - TOP_KEYWORDS
    if unknown:
        raise GeneratorError(f"{where}: keywords the rules generator does not know: "
                             f"{sorted(unknown)}")
    if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        raise GeneratorError(f"{where}: a collection schema must be a closed object "
                             '("type": "object", "additionalProperties": false)')
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise GeneratorError(f"{where}: no properties")
    required = list(schema.get("required", []))
    missing = [field for field in required if field not in properties]
    if missing:
        raise GeneratorError(f"{where}: required fields without a property: {missing}")
    fields = [_field(name, prop, required=name in required or name in STAMPS,
                     where=f"{where}: {name}") for name, prop in properties.items()]
    for stamp in STAMPS:
        if stamp not in properties:
            fields.append(_field(stamp, {"x-firestore-type": "timestamp"}, required=True,
                                 where=f"{where}: {stamp}"))
        elif fields[[f.name for f in fields].index(stamp)].types != ("timestamp",):
            raise GeneratorError(f"{where}: {stamp} must be a timestamp")
    return Collection(name, path, tuple(fields))


def _field(name: str, prop: Any, *, required: bool, where: str) -> Field:
    if not isinstance(prop, dict):
        raise GeneratorError(f"{where}: a property must be an object")
    unknown = set(prop) - ENFORCED - set(BACKEND_ONLY) - ANNOTATIONS
    if unknown:
        raise GeneratorError(f"{where}: keywords the rules generator does not know: "
                             f"{sorted(unknown)}")
    pattern = prop.get("pattern")
    if pattern is not None and (not isinstance(pattern, str) or _NOT_RE2.search(pattern)):
        raise GeneratorError(f"{where}: pattern {pattern!r} is not RE2 (no lookaround, "
                             "no backreferences)")
    if prop.get("x-normalize") not in (None, "lowercase"):
        raise GeneratorError(f"{where}: unknown x-normalize {prop['x-normalize']!r}")
    return Field(name, prop, _types(prop, where), required, where)


def _types(prop: Mapping[str, Any], where: str) -> tuple[str, ...]:
    declared = prop.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    if "x-firestore-type" in prop:
        if prop["x-firestore-type"] != "timestamp":
            raise GeneratorError(f"{where}: unknown x-firestore-type "
                                 f"{prop['x-firestore-type']!r}")
        if kinds:
            raise GeneratorError(f"{where}: x-firestore-type together with a JSON type")
        kinds = ["timestamp"]
    if not kinds or any(kind not in TYPE_TESTS and kind != "null" for kind in kinds) \
            or all(kind == "null" for kind in kinds):
        raise GeneratorError(f"{where}: needs a type among {sorted(TYPE_TESTS)} "
                             "(or x-firestore-type: timestamp)")
    return tuple(dict.fromkeys(kinds))


# --- the rules -------------------------------------------------------------------------------

HEADER = """\
rules_version = '2';

// GENERATED by `python -m rules.generate` from schemas/*.schema.json: do not edit by hand.
// Change a schema (or the template in rules/generate.py) and regenerate; CI fails on drift
// (tests/test_rules_schema.py). Tests: `python -m rules.run` under Google's emulator.
//
// One of the three doors to the data (README.md, Security): direct Firestore access from the
// dashboard. The backend's functions use the Admin SDK, which these rules do not govern.
// Deny by default: a path that no rule below allows is closed to every client. That covers
// every internal collection of the backend (publisher state, migration checkpoints, ...; admins
// may only read the run documents and the tombstones below), every subcollection and every
// collection without a schema.
service cloud.firestore {
  match /databases/{database}/documents {

    // A signed-in user whose ID token carries the custom claim admin == true
    // (set with `python -m functions admin grant EMAIL`).
    function isAdmin() {
      return request.auth != null && request.auth.token.admin == true;
    }

    // Clients set both stamps with serverTimestamp(): request.time is the server's time.
    function stampedOnCreate(data) {
      return data.createdAt == request.time && data.updatedAt == request.time;
    }

    // An update refreshes updatedAt and never adds, changes or removes createdAt.
    function stampedOnUpdate(data, before) {
      return data.updatedAt == request.time
        && !data.diff(before).affectedKeys().hasAny(['createdAt']);
    }
"""

TOMBSTONES = """
    // Deletions, for live dashboards (`_tombstones/<collection>/ids/<id>`: id, deletedAt,
    // recordedAt, expireAt; written only by the backend). A listener on the collection's
    // `updatedAt > t` cannot see a document deleted since; this feed tells it. Readable as the
    // collection itself is, for the configured collections only; the parent documents and
    // anything deeper stay closed.
    match /_tombstones/{{collection}}/ids/{{docId}} {{
      allow get, list: if isAdmin() && collection in {names};
    }}
"""

FOOTER = """
    // Migration progress (`_migrations/<runId>`): readable by admins while a run goes on, as
    // the contract asks; written only by the backend. Its subcollections stay closed.
    match /_migrations/{runId} {
      allow get, list: if isAdmin();
    }

    // Everything else: closed (also without this block; stated for the reader).
    match /{document=**} {
      allow read, write: if false;
    }
  }
}
"""


def render_rules(collections: Iterable[Collection]) -> str:
    """The whole `firestore.rules` text for these collections."""
    collections = list(collections)
    parts = [HEADER]
    for collection in collections:
        parts.append(_render_collection(collection))
    parts.append(TOMBSTONES.format(names=_literal([c.name for c in collections])))
    parts.append(FOOTER)
    return "".join(parts)


def _render_collection(collection: Collection) -> str:
    checks = [f"data.keys().hasAll({_literal(collection.required)})",
              f"data.keys().hasOnly({_literal([f.name for f in collection.fields])})"]
    checks += [_field_check(field) for field in collection.fields
               if field.name not in STAMPS]
    body = "\n        && ".join(checks)
    fn = collection.function
    return f"""
    // --- {collection.name}: from schemas/{collection.path.name} ---
    function {fn}(data) {{
      return {body};
    }}

    match /{collection.name}/{{docId}} {{
      allow get, list: if isAdmin();
      allow create: if isAdmin() && {fn}(request.resource.data)
        && stampedOnCreate(request.resource.data);
      allow update: if isAdmin() && {fn}(request.resource.data)
        && stampedOnUpdate(request.resource.data, resource.data);
      allow delete: if isAdmin();
    }}
"""


def _field_check(field: Field) -> str:
    value = f"data.{field.name}" if _IDENTIFIER.match(field.name) \
        else f"data[{_literal(field.name)}]"
    alternatives = []
    for kind in field.types:
        if kind == "null":
            alternatives.append(f"{value} == null")
        else:
            alternatives.append(" && ".join([f"{value} {TYPE_TESTS[kind]}",
                                             *_constraints(field.prop, kind, value)]))
    check = alternatives[0] if len(alternatives) == 1 \
        else "(" + " || ".join(f"({alt})" for alt in alternatives) + ")"
    if "enum" in field.prop:
        check += f" && {value} in {_literal(field.prop['enum'])}"
    if "const" in field.prop:
        check += f" && {value} == {_literal(field.prop['const'])}"
    if field.required:
        return check
    return f"(!({_literal(field.name)} in data) || ({check}))"


def _constraints(prop: Mapping[str, Any], kind: str, value: str) -> list[str]:
    out = []
    if kind == "string":
        if prop.get("minLength", 0) > 0:
            out.append(f"{value}.size() >= {prop['minLength']}")
        if "maxLength" in prop:
            out.append(f"{value}.size() <= {prop['maxLength']}")
        if "pattern" in prop:
            out.append(f"{value}.matches({_literal(rules_regex(prop['pattern']))})")
        if prop.get("x-normalize") == "lowercase":
            out.append(f"{value} == {value}.lower()")
    elif kind in ("number", "integer"):
        for keyword, operator in (("minimum", ">="), ("maximum", "<="),
                                  ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
            if keyword in prop:
                out.append(f"{value} {operator} {_literal(prop[keyword])}")
    elif kind == "array":
        if prop.get("minItems", 0) > 0:
            out.append(f"{value}.size() >= {prop['minItems']}")
        if "maxItems" in prop:
            out.append(f"{value}.size() <= {prop['maxItems']}")
    elif kind == "object":
        if prop.get("minProperties", 0) > 0:
            out.append(f"{value}.size() >= {prop['minProperties']}")
        if "maxProperties" in prop:
            out.append(f"{value}.size() <= {prop['maxProperties']}")
    return out


def rules_regex(pattern: str) -> str:
    """A JSON Schema pattern (searched) as a rules regex (RE2, matched on the whole string)."""
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern
    return f"(?s).*(?:{pattern}).*"


def _literal(value: Any) -> str:
    """A rules literal of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise GeneratorError(f"non-finite number {value!r} in a schema")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    raise GeneratorError(f"cannot write {value!r} as a rules literal")


# --- the test cases --------------------------------------------------------------------------

def render_cases(collections: Iterable[Collection]) -> str:
    """`rules/test/cases.json`: per collection, valid documents and invalid variants."""
    out: dict[str, Any] = {
        "_comment": "GENERATED by `python -m rules.generate` from schemas/*.schema.json; "
                    "markers: {$serverTime}, {$timestamp: RFC 3339}, {$delete}",
        "collections": {},
    }
    for collection in collections:
        out["collections"][collection.name] = _cases(collection)
    return json.dumps(out, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def _cases(collection: Collection) -> dict[str, Any]:
    valid = {field.name: _valid_value(field) for field in collection.fields}
    valid.update({CREATED: SERVER_TIME, UPDATED: SERVER_TIME})
    minimal = {name: valid[name] for name in collection.required}
    at_bounds = dict(valid)
    for field in collection.fields:
        bound = _bound_value(field)
        if bound is not None:
            at_bounds[field.name] = bound
    stored = {**valid, CREATED: {"$timestamp": OTHER_TIME}, UPDATED: {"$timestamp": OTHER_TIME}}

    invalid_creates = []
    for name in collection.required:
        doc = {key: value for key, value in valid.items() if key != name}
        invalid_creates.append(_case(f"required {name} missing", "required", doc))
    invalid_creates.append(_case("unknown field", "additionalProperties",
                                 {**valid, "unexpectedField": "x"}))
    for field in collection.fields:
        if field.name in STAMPS:
            continue
        for why, keyword, bad in _invalid_values(field):
            invalid_creates.append(_case(f"{field.name}: {why}", keyword,
                                         {**valid, field.name: bad}))
    invalid_creates += [
        _case("createdAt not the server time", "stamps",
              {**valid, CREATED: {"$timestamp": FIXED_TIME}}),
        _case("updatedAt not the server time", "stamps",
              {**valid, UPDATED: {"$timestamp": FIXED_TIME}}),
        _case("updatedAt a string", "stamps", {**valid, UPDATED: FIXED_TIME}),
    ]

    change_field = next(field for field in collection.fields if field.name not in STAMPS)
    other_value = _other_valid_value(change_field, valid[change_field.name])
    valid_updates = [_case(f"change {change_field.name}", "", {change_field.name: other_value,
                                                               UPDATED: SERVER_TIME}),
                     _case("only refresh updatedAt", "", {UPDATED: SERVER_TIME})]
    optional = [field for field in collection.fields if not field.required]
    if optional:
        valid_updates.append(_case(f"remove optional {optional[0].name}", "",
                                   {optional[0].name: DELETE, UPDATED: SERVER_TIME}))

    invalid_updates = [
        _case("updatedAt left unchanged", "stamps", {change_field.name: other_value}),
        _case("updatedAt not the server time", "stamps",
              {change_field.name: other_value, UPDATED: {"$timestamp": FIXED_TIME}}),
        _case("createdAt changed", "stamps",
              {CREATED: {"$timestamp": FIXED_TIME}, UPDATED: SERVER_TIME}),
        _case("createdAt set to the server time", "stamps",
              {CREATED: SERVER_TIME, UPDATED: SERVER_TIME}),
        _case("createdAt removed", "stamps", {CREATED: DELETE, UPDATED: SERVER_TIME}),
        _case("unknown field added", "additionalProperties",
              {"unexpectedField": "x", UPDATED: SERVER_TIME}),
    ]
    for name in collection.required:
        if name not in STAMPS:
            invalid_updates.append(_case(f"required {name} removed", "required",
                                         {name: DELETE, UPDATED: SERVER_TIME}))
    for field in collection.fields:
        if field.name not in STAMPS:
            for why, keyword, bad in _invalid_values(field):
                invalid_updates.append(_case(f"{field.name}: {why}", keyword,
                                             {field.name: bad, UPDATED: SERVER_TIME}))

    return {
        "schema": f"schemas/{collection.path.name}",
        "fields": [field.name for field in collection.fields],
        "required": collection.required,
        "valid": valid,
        "minimal": minimal,
        "atBounds": at_bounds,
        "stored": stored,
        "invalidCreates": invalid_creates,
        "validUpdates": valid_updates,
        "invalidUpdates": invalid_updates,
    }


def _case(why: str, keyword: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"why": why, "keyword": keyword, "data": copy.deepcopy(data)}


def _valid_value(field: Field, kind: str | None = None) -> Any:
    prop = field.prop
    kind = kind or field.main_type
    if "const" in prop:
        return prop["const"]
    if "enum" in prop:
        return next(value for value in prop["enum"] if value is not None)
    if kind == "timestamp":
        return {"$timestamp": FIXED_TIME}
    if kind == "boolean":
        return True
    if kind in ("number", "integer"):
        low, high = _number_range(prop)
        if kind == "number" and low + 0.5 <= high:
            return low + 0.5
        return math.ceil(low)
    if kind == "string":
        return _valid_string(field)
    if kind == "array":
        count = max(1, prop.get("minItems", 0))
        if prop.get("maxItems", count) < count:
            count = prop["maxItems"]
        return [_element(prop.get("items"), field) for _ in range(count)]
    if kind == "object":
        count = max(1, prop.get("minProperties", 0))
        if prop.get("maxProperties", count) < count:
            count = prop["maxProperties"]
        return {f"k{i}": _element(prop.get("additionalProperties"), field)
                for i in range(count)}
    raise GeneratorError(f"{field.where}: no valid value for type {kind}")


def _element(schema: Any, field: Field) -> Any:
    if not isinstance(schema, dict):
        return "x"
    element = _field(f"{field.name}[]", schema, required=True, where=f"{field.where} (element)")
    return _valid_value(element)


def _number_range(prop: Mapping[str, Any]) -> tuple[float, float]:
    if "minimum" in prop:
        low = prop["minimum"]
    elif "exclusiveMinimum" in prop:
        low = prop["exclusiveMinimum"] + 1
    else:
        low = 0
    if "maximum" in prop:
        high = prop["maximum"]
    elif "exclusiveMaximum" in prop:
        high = prop["exclusiveMaximum"] - 1
    else:
        high = low + 1000
    if low > high:
        raise GeneratorError(f"empty number range {prop!r}")
    return low, high


def _string_ok(prop: Mapping[str, Any], text: str) -> bool:
    if len(text) < prop.get("minLength", 0) or len(text) > prop.get("maxLength", len(text)):
        return False
    if prop.get("x-normalize") == "lowercase" and text != text.lower():
        return False
    pattern = prop.get("pattern")
    return pattern is None or re.search(pattern, text) is not None


def _valid_string(field: Field) -> str:
    prop = field.prop
    candidates = [*prop.get("examples", []), *_STRING_CANDIDATES,
                  "a" * max(1, prop.get("minLength", 1))]
    for text in candidates:
        if isinstance(text, str) and _string_ok(prop, text):
            return text
    raise GeneratorError(f"{field.where}: no valid example string found; add one under "
                         '"examples" in the schema')


def _other_valid_value(field: Field, current: Any) -> Any:
    if field.main_type == "string" and "enum" not in field.prop and "const" not in field.prop:
        for text in [*_STRING_CANDIDATES, *field.prop.get("examples", [])]:
            if text != current and _string_ok(field.prop, text):
                return text
    if "enum" in field.prop:
        others = [value for value in field.prop["enum"] if value != current]
        if others:
            return others[0]
    return current


def _bound_value(field: Field) -> Any:
    prop, kind = field.prop, field.main_type
    if "enum" in prop or "const" in prop:
        return None
    if kind == "string" and "maxLength" in prop and "pattern" not in prop:
        return "a" * prop["maxLength"]
    if kind in ("number", "integer") and "maximum" in prop:
        return prop["maximum"]
    if kind == "array" and "maxItems" in prop:
        return [_element(prop.get("items"), field) for _ in range(prop["maxItems"])]
    if kind == "object" and "maxProperties" in prop:
        return {f"k{i}": _element(prop.get("additionalProperties"), field)
                for i in range(prop["maxProperties"])}
    return None


def _invalid_values(field: Field) -> list[tuple[str, str, Any]]:
    """(why, schema keyword, value) for each constraint of the field the rules enforce."""
    prop, kind = field.prop, field.main_type
    out: list[tuple[str, str, Any]] = []
    wrong = _wrong_type_value(field)
    out.append((f"wrong type {type(wrong).__name__}", "type", wrong))
    if not field.nullable:
        out.append(("null", "type", None))
    if "enum" in prop:
        out.append(("not in enum", "enum", "not-in-enum" if kind == "string" else -999999))
    if "const" in prop:
        out.append(("not the constant", "const", "not-the-constant" if kind == "string" else -1))
    if kind == "string":
        if prop.get("minLength", 0) > 0:
            out.append(("shorter than minLength", "minLength", "a" * (prop["minLength"] - 1)))
        if "maxLength" in prop:
            out.append(("longer than maxLength", "maxLength", "a" * (prop["maxLength"] + 1)))
        if "pattern" in prop:
            out.append(("does not match the pattern", "pattern", _bad_string(field)))
        if prop.get("x-normalize") == "lowercase":
            upper = _valid_string(field).upper()
            out.append(("not lowercase", "x-normalize", upper))
    if kind in ("number", "integer"):
        step = 1
        if "minimum" in prop:
            out.append(("below minimum", "minimum", prop["minimum"] - step))
        if "maximum" in prop:
            out.append(("above maximum", "maximum", prop["maximum"] + step))
        if "exclusiveMinimum" in prop:
            out.append(("at exclusiveMinimum", "exclusiveMinimum", prop["exclusiveMinimum"]))
        if "exclusiveMaximum" in prop:
            out.append(("at exclusiveMaximum", "exclusiveMaximum", prop["exclusiveMaximum"]))
    if kind == "array":
        if prop.get("minItems", 0) > 0:
            out.append(("fewer than minItems", "minItems",
                        [_element(prop.get("items"), field)] * (prop["minItems"] - 1)))
        if "maxItems" in prop:
            out.append(("more than maxItems", "maxItems",
                        [_element(prop.get("items"), field)] * (prop["maxItems"] + 1)))
    if kind == "object":
        if prop.get("minProperties", 0) > 0:
            out.append(("fewer than minProperties", "minProperties",
                        {f"k{i}": _element(prop.get("additionalProperties"), field)
                         for i in range(prop["minProperties"] - 1)}))
        if "maxProperties" in prop:
            out.append(("more than maxProperties", "maxProperties",
                        {f"k{i}": _element(prop.get("additionalProperties"), field)
                         for i in range(prop["maxProperties"] + 1)}))
    return out


def _wrong_type_value(field: Field) -> Any:
    allowed = set(field.types)
    if "integer" in allowed and "number" not in allowed:
        return 1.5
    if "timestamp" in allowed:
        return FIXED_TIME
    for value, kinds in (("text", {"string"}), (12345, {"number", "integer"}),
                         (True, {"boolean"}), (["x"], {"array"}), ({"k": "v"}, {"object"})):
        if not kinds & allowed:
            return value
    raise GeneratorError(f"{field.where}: accepts every type; nothing to test")


def _bad_string(field: Field) -> str:
    prop = field.prop
    for text in _BAD_STRING_CANDIDATES:
        fits = prop.get("minLength", 0) <= len(text) <= prop.get("maxLength", len(text))
        if fits and re.search(prop["pattern"], text) is None:
            return text
    raise GeneratorError(f"{field.where}: no string found that breaks the pattern")


# --- command line ----------------------------------------------------------------------------

def outputs(schema_dir: Path = SCHEMA_DIR) -> dict[Path, str]:
    """What the files should hold: {RULES_PATH: rules, CASES_PATH: cases}."""
    collections = load_collections(schema_dir)
    return {RULES_PATH: render_rules(collections), CASES_PATH: render_cases(collections)}


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with `--check` report whether they are up to date."""
    parser = argparse.ArgumentParser(prog="python -m rules.generate", description=__doc__
                                     .splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a generated file is out of date")
    args = parser.parse_args(argv)
    try:
        wanted = outputs()
    except GeneratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in wanted.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)} (run `python -m rules.generate`)",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    if not stale:
        print("up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
