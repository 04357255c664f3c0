"""Validation of a document's fields against the parsed schema model (`shared.schema_model`).

The checks are JSON Schema's (Draft 2020-12) for the keywords the model holds, with its
semantics: a keyword passes values of the types it does not apply to, `1.0` is an integer,
`true` is not `1`, every problem is reported, in the order of the fields' paths and then of the
keywords in the file. `format` is checked too (JSON Schema leaves it to the implementation).
`tests/test_migrate_units.py` holds the checks to a standard JSON Schema validator on thousands
of generated records. A `Violation` carries what `schema_message` needs to say the problem in
JSON's terms without repeating the value.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.schema_model import CollectionSchema, ValueSchema

_TYPE_TESTS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_is_number = _TYPE_TESTS["number"]
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class Violation:
    """One keyword a value breaks; the attribute names are JSON Schema validators' own."""

    validator: str
    validator_value: Any
    instance: Any
    path: tuple[str | int, ...]
    missing: str | None = None  # the absent field of a `required` violation


def violations(schema: CollectionSchema, data: Mapping[str, Any], *,
               partial: bool = False) -> list[Violation]:
    """Every violation of the collection schema by `data`, ordered by path (fields by name).

    With `partial`, required fields may be absent (a PATCH). Fields the collection does not
    have give one `additionalProperties` violation at the top.
    """
    found = []
    if not partial:
        found += [Violation("required", list(schema.required), data, (), missing=name)
                  for name in schema.required if name not in data]
    for field in schema.fields:
        if field.name in data:
            found += value_violations(field.value, data[field.name], (field.name,))
    fields = schema.by_name
    if any(name not in fields for name in data):
        found.append(Violation("additionalProperties", False, data, ()))
    return sorted(found, key=lambda violation: violation.path)


def is_valid(schema: CollectionSchema, data: Mapping[str, Any], *, partial: bool = False) -> bool:
    """True when `data` breaks nothing in the schema (stops at the first field that breaks some)."""
    if not partial and any(name not in data for name in schema.required):
        return False
    fields = schema.by_name
    for name, item in data.items():
        field = fields.get(name)
        if field is None or value_violations(field.value, item, (name,)):
            return False
    return True


def value_violations(value: ValueSchema | bool | None, instance: Any,
                     path: tuple[str | int, ...]) -> list[Violation]:
    """The violations of one value at `path` (a boolean schema: True allows all, False none)."""
    if value is None or value is True:
        return []
    if value is False:
        return [Violation("false", False, instance, path)]
    found: list[Violation] = []
    for keyword in value.keywords:
        found += _KEYWORDS[keyword](value, instance, path)
    return found


def _type(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    kinds = value.types  # JSON types only: the model refuses `type` with x-firestore-type
    if any(_TYPE_TESTS[kind](instance) for kind in kinds):
        return ()
    return (Violation("type", kinds[0] if len(kinds) == 1 else list(kinds), instance, path),)


def _enum(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    options = value.enum or ()
    if any(json_equal(option, instance) for option in options):
        return ()
    return (Violation("enum", list(options), instance, path),)


def _const(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    if json_equal(value.const, instance):
        return ()
    return (Violation("const", value.const, instance, path),)


def _bound(keyword: str, attribute: str, applies: Any, measure: Any, below: bool) -> Any:
    """A check of one bound: `measure(instance)` must not be below (or above) the bound."""

    def check(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
        bound = getattr(value, attribute)
        if applies(instance):
            size = measure(instance)
            if (size < bound) if below else (size > bound):
                return (Violation(keyword, bound, instance, path),)
        return ()

    return check


def _exclusive(keyword: str, attribute: str, low: bool) -> Any:
    def check(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
        bound = getattr(value, attribute)
        if _is_number(instance) and ((instance <= bound) if low else (instance >= bound)):
            return (Violation(keyword, bound, instance, path),)
        return ()

    return check


def _pattern(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    if isinstance(instance, str) and re.search(value.pattern or "", instance) is None:
        return (Violation("pattern", value.pattern, instance, path),)
    return ()


def _format(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    if isinstance(instance, str) and not format_ok(value.format or "", instance):
        return (Violation("format", value.format, instance, path),)
    return ()


def format_ok(name: str, text: str) -> bool:
    """True when `text` is a valid `date-time` (RFC 3339), `date` (YYYY-MM-DD) or `email`."""
    if name == "email":
        return _EMAIL.match(text) is not None
    pattern, parse = ((_DATE_TIME, dt.datetime.fromisoformat) if name == "date-time"
                      else (_DATE, dt.date.fromisoformat))
    if pattern.match(text) is None:
        return False
    try:
        parse(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _unique(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    if value.unique_items and isinstance(instance, list) and any(
            json_equal(a, b) for i, a in enumerate(instance) for b in instance[i + 1:]):
        return (Violation("uniqueItems", True, instance, path),)
    return ()


def _nested(keyword: str, attribute: str, container: type, entries: Any) -> Any:
    """The check of a list's elements (`items`) or a map's values (`additionalProperties`)."""

    def check(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
        sub = getattr(value, attribute)
        if not isinstance(instance, container):
            return ()
        if sub is False and instance:
            return (Violation(keyword, False, instance, path),)
        found: list[Violation] = []
        for step, item in entries(instance):
            found += value_violations(sub, item, (*path, step))
        return found

    return check


def _key_names(value: ValueSchema, instance: Any, path: tuple) -> Sequence[Violation]:
    if not isinstance(instance, dict):
        return ()
    found: list[Violation] = []
    for key in instance:
        found += value_violations(value.key_names, key, path)
    return found


def _length(item: Any) -> int:
    return len(item)


def _itself(item: Any) -> Any:
    return item


def _is_str(item: Any) -> bool:
    return isinstance(item, str)


def _is_list(item: Any) -> bool:
    return isinstance(item, list)


def _is_dict(item: Any) -> bool:
    return isinstance(item, dict)


_KEYWORDS: dict[str, Any] = {
    "type": _type, "enum": _enum, "const": _const, "pattern": _pattern, "format": _format,
    "minLength": _bound("minLength", "min_length", _is_str, _length, True),
    "maxLength": _bound("maxLength", "max_length", _is_str, _length, False),
    "minItems": _bound("minItems", "min_items", _is_list, _length, True),
    "maxItems": _bound("maxItems", "max_items", _is_list, _length, False),
    "minProperties": _bound("minProperties", "min_properties", _is_dict, _length, True),
    "maxProperties": _bound("maxProperties", "max_properties", _is_dict, _length, False),
    "minimum": _bound("minimum", "minimum", _is_number, _itself, True),
    "maximum": _bound("maximum", "maximum", _is_number, _itself, False),
    "exclusiveMinimum": _exclusive("exclusiveMinimum", "exclusive_minimum", True),
    "exclusiveMaximum": _exclusive("exclusiveMaximum", "exclusive_maximum", False),
    "uniqueItems": _unique, "items": _nested("items", "items", list, enumerate),
    "additionalProperties": _nested("additionalProperties", "values", dict, dict.items),
    "propertyNames": _key_names,
}


def json_equal(one: Any, two: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`, lists and objects compare deeply."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and one == two
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(json_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return one.keys() == two.keys() and all(json_equal(one[k], two[k]) for k in one)
    return bool(one == two)


# --- saying a violation in JSON's terms ------------------------------------------------------

_JSON_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (Mapping, "an object"), ((list, tuple), "an array"), (type(None), "null"))
_SCHEMA_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
                 "boolean": "a boolean", "object": "an object", "array": "an array",
                 "null": "null"}
_FORMAT_NAMES = {"date-time": "an RFC 3339 date-time", "date": "a date (YYYY-MM-DD)",
                 "email": "an email address"}
# The schemas' patterns, said as what a person types (a regular expression is no sentence for
# the page or a migration report). A pattern missing here is still said as the pattern itself.
_PATTERN_NAMES = {r"^[^@\s]+@[^@\s]+$": "an email address (name@example.com)"}


def _json_kind(value: Any) -> str:
    return next((name for kinds, name in _JSON_KINDS if isinstance(value, kinds)), "a value")


def schema_message(error: Any) -> str:
    """A schema error said in JSON's terms, without echoing the value (jsonschema writes its repr).

    The message names where inside the field the problem is (`item 2`, `key "x"`) and what the
    schema asks; the offending value itself is never repeated back (it may be large, or hold
    what its sender should not see reflected), only its JSON kind. `error` is a `Violation` (or
    a jsonschema `ValidationError`: the same attributes).
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
    elif keyword == "pattern" and expected in _PATTERN_NAMES:
        said = f"must be {_PATTERN_NAMES[expected]}"
    elif keyword == "pattern":
        said = f"must match the pattern {expected}"
    elif keyword == "format" and expected in _FORMAT_NAMES:
        said = f"must be {_FORMAT_NAMES[expected]}"
    elif keyword == "required":
        said = "is required"
    elif keyword == "additionalProperties":
        said = "has a key this field does not allow"
    else:
        said = f"does not satisfy the schema's {keyword}"
    return where + said


def _quoted(text: Any) -> str:
    return json.dumps(text, ensure_ascii=False)
