"""The parsed schema model (`shared.schema_model`) and the checks reading it (`schema_check`).

One model is read by record conversion, validation, the read API's filters and the rules
generator; these tests pin what it parses (nullable unions, formats, enums, bounds), what it
refuses, that it is immutable and loaded by a pure function, and that its checks say problems
in JSON's terms.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from rules import generate
from rules.schemas import BACKEND_ONLY, GeneratorError
from shared.errors import BadRequest, ConfigError
from shared.records import RecordError, convert_record
from shared.schema import SCHEMA_DIR, load_schema, read_schema
from shared.schema_check import format_ok, is_valid, json_equal, schema_message, violations
from shared.schema_model import (
    NESTED,
    SchemaError,
    ValueSchema,
    load_schemas,
    parse_schema,
    parse_value,
)


def closed(properties: dict[str, Any], **extra: Any) -> str:
    """A collection schema's JSON text with these properties."""
    return json.dumps({"type": "object", "properties": properties,
                       "additionalProperties": False, **extra})


def model(properties: dict[str, Any], **extra: Any):
    return parse_schema("things", closed(properties, **extra), source="things.schema.json")


def said(schema, data: dict[str, Any], *, partial: bool = False) -> list[tuple[Any, str]]:
    """(top-level field, message) of every violation, in report order."""
    return [(v.path[0] if v.path else v.missing, schema_message(v))
            for v in violations(schema, data, partial=partial)]


# --- what the real schemas parse into -------------------------------------------------------------

def test_users_schema_parses_into_fields_in_file_order_with_the_stamps():
    users = load_schema("users")
    assert users.name == "users" and users.id_field == "id" and users.source == "users.schema.json"
    assert users.field_names[:3] == ("name", "email", "role")
    assert users.field_names[-2:] == ("createdAt", "updatedAt")
    assert users.required == ("name", "email", "role", "status")
    email = users.by_name["email"].value
    assert (email.types, email.min_length, email.max_length) == (("string",), 3, 320)
    assert email.lowercase and email.pattern == "^[^@\\s]+@[^@\\s]+$"
    assert users.by_name["role"].value.enum == ("creator", "editor", "admin")
    assert users.by_name["hourlyRate"].value.maximum == 100000
    assert users.lowercase_fields == {"email"}
    assert users.timestamp_fields == {"createdAt", "updatedAt"}


def test_a_nullable_union_is_one_type_plus_null():
    social = load_schema("users").by_name["social"].value
    assert social.types == ("object",) and social.max_properties == 20
    values = social.values
    assert isinstance(values, ValueSchema)
    assert values.types == ("string", "null") and values.nullable
    assert values.main_type == "string" and values.max_length == 2000
    assert not social.nullable


def test_read_api_types_come_from_the_model():
    users = load_schema("users")
    assert users.field_types["social"] == "map" and users.field_types["createdAt"] == "timestamp"
    assert users.item_types == {"skills": "string"}
    assert users.parse_value("hourlyRate", "12.5") == 12.5
    with pytest.raises(BadRequest, match="unknown field"):
        users.field_type("nope")


def test_a_top_level_nullable_field_loads_converts_and_validates(tmp_path):
    """The backend's old loader refused `["number", "null"]`; the rules accepted it."""
    (tmp_path / "things.schema.json").write_text(closed(
        {"ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}), encoding="utf-8")
    things = read_schema("things", tmp_path)
    assert things.field_types["ratio"] == "number"
    assert convert_record({"id": "a", "ratio": None}, things).data == {"ratio": None}
    assert convert_record({"id": "a", "ratio": 0.5}, things).data == {"ratio": 0.5}
    with pytest.raises(RecordError) as caught:
        convert_record({"id": "a", "ratio": "half"}, things)
    assert caught.value.message == "ratio: must be a number or null, not a string"
    with pytest.raises(RecordError, match="ratio: must be at most 1"):
        convert_record({"id": "a", "ratio": 2}, things)
    rules = generate.render_rules(generate.load_collections(tmp_path))
    assert "((data.ratio is number && data.ratio >= 0 && data.ratio <= 1) || " \
           "(data.ratio == null))" in rules


# --- validation in JSON's terms ------------------------------------------------------------------

def test_enums_compare_as_json_values():
    things = model({"level": {"type": "integer", "enum": [1, 2]},
                    "kind": {"type": "string", "enum": ["a", "b"]}})
    assert is_valid(things, {"level": 1.0, "kind": "a"})  # 1.0 is the integer 1 in JSON
    assert said(things, {"level": True, "kind": "c"}) == [
        ("kind", 'must be one of "a", "b"'),
        ("level", "must be an integer, not a boolean"), ("level", "must be one of 1, 2")]
    assert json_equal([1, {"a": 2.0}], [1.0, {"a": 2}]) and not json_equal(True, 1)


def test_bounds_of_strings_numbers_lists_and_maps():
    things = model({"s": {"type": "string", "minLength": 2, "maxLength": 3},
                    "n": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
                    "l": {"type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": True},
                    "m": {"type": "object", "minProperties": 1, "maxProperties": 1}})
    assert is_valid(things, {"s": "ab", "n": 9.5, "l": ["x", "y"], "m": {"k": 1}})
    assert said(things, {"s": "a", "n": 0, "l": [], "m": {}}) == [
        ("l", "must have at least 1 item"), ("m", "must have at least 1 key"),
        ("n", "must be more than 0"), ("s", "must be at least 2 characters long")]
    assert said(things, {"s": "abcd", "n": 10, "l": ["x", "x"], "m": {"a": 1, "b": 2}}) == [
        ("l", "does not satisfy the schema's uniqueItems"), ("m", "must have at most 1 key"),
        ("n", "must be less than 10"), ("s", "must be at most 3 characters long")]
    assert said(things, {"l": ["x", "y", "z"]}) == [("l", "must have at most 2 items")]


def test_elements_and_map_values_are_checked_where_they_are():
    things = model({"tags": {"type": "array", "items": {"type": "string", "maxLength": 2}},
                    "meta": {"type": "object", "additionalProperties": {"type": "integer"},
                             "propertyNames": {"pattern": "^[a-z]+$"}}})
    assert said(things, {"tags": ["ok", 7, "long"], "meta": {"a": "x", "B": 1}}) == [
        ("meta", "must match the pattern ^[a-z]+$"),
        ("meta", 'at key "a": must be an integer, not a string'),
        ("tags", "at item 1: must be a string, not an integer"),
        ("tags", "at item 2: must be at most 2 characters long")]


def test_required_and_unknown_fields():
    things = model({"a": {"type": "string"}, "b": {"type": "string"}}, required=["b", "a"])
    assert said(things, {}) == [("b", "is required"), ("a", "is required")]
    assert said(things, {}, partial=True) == []
    assert not is_valid(things, {"a": "x", "b": "y", "zz": 1})
    assert [v.validator for v in violations(things, {"a": "x", "b": "y", "zz": 1})] == [
        "additionalProperties"]


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("date-time", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.5+02:00"],
     ["2024-05-01", "2024-13-01T00:00:00Z", "yesterday", "2024-05-01T12:00:00"]),
    ("date", ["2024-02-29"], ["2023-02-29", "01/02/2024", "2024-05-01T00:00:00Z"]),
    ("email", ["ada@example.com"], ["ada", "a b@c", "@"]),
])
def test_formats_are_checked(name, good, bad):
    things = model({"f": {"type": "string", "format": name}})
    for text in good:
        assert format_ok(name, text) and is_valid(things, {"f": text}), text
    for text in bad:
        assert not format_ok(name, text), text
        assert said(things, {"f": text})[0][1].startswith("must be a"), text
    assert is_valid(things, {"f": 5}) is False  # format passes non-strings; type does not


def test_conversion_reads_timestamps_and_lowercase_from_the_model():
    converted = convert_record({"id": "u", "name": "Ada", "email": " ADA@X.IO", "role": "admin",
                                "status": "active", "createdAt": "2024-05-01"},
                               load_schema("users"))
    assert converted.data["email"] == "ada@x.io"
    assert converted.data["createdAt"] == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


# --- what the model refuses ---------------------------------------------------------------------

@pytest.mark.parametrize(("properties", "extra", "message"), [
    ({"a": {"type": "string", "oneOf": []}}, {}, "does not know"),
    ({"a": {"type": "date"}}, {}, "needs a type"),
    ({"a": {"type": ["null"]}}, {}, "needs a type"),
    ({"a": {"type": "string", "minLength": "3"}}, {}, "minLength must be a non-negative"),
    ({"a": {"type": "number", "maximum": True}}, {}, "maximum must be a number"),
    ({"a": {"type": "string", "pattern": "("}}, {}, "does not compile"),
    ({"a": {"type": "string", "format": "uri"}}, {}, "format 'uri'"),
    ({"a": {"type": "string", "enum": []}}, {}, "enum must be a non-empty list"),
    ({"a": {"type": "array", "items": {"maxLength": 2}}}, {}, "a \\(items\\): needs a type"),
    ({"a": {"type": "string", "x-normalize": "upper"}}, {}, "x-normalize"),
    ({"a": {"type": "string"}}, {"required": ["b"]}, "without a property"),
    ({"a": {"type": "string"}}, {"x-id-field": ""}, "x-id-field"),
    ({"updatedAt": {"type": "string"}}, {}, "must be a timestamp"),
])
def test_the_model_refuses_what_it_cannot_represent(properties, extra, message):
    with pytest.raises(SchemaError, match=message):
        model(properties, **extra)


def test_an_open_schema_or_a_bad_name_is_refused():
    with pytest.raises(SchemaError, match="closed object"):
        parse_schema("things", json.dumps({"type": "object", "properties": {"a": {}}}),
                     source="things.schema.json")
    with pytest.raises(SchemaError, match="invalid collection name"):
        parse_schema("Things!", closed({"a": {"type": "string"}}), source="x")


def test_element_schemas_parse_with_their_own_place_in_messages():
    with pytest.raises(SchemaError, match=r"f \(additionalProperties\): keywords"):
        parse_value({"type": "object", "additionalProperties": {"type": "string", "nope": 1}},
                    where="f")
    assert parse_value({"propertyNames": {"maxLength": 3}}, where="f", typed=False).types == ()


# --- immutable, and loaded by a pure function of the directory --------------------------------

def test_the_model_is_immutable():
    users = load_schema("users")
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.id_field = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.by_name["email"].value.max_length = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        users.by_name["x"] = users.fields[0]  # type: ignore[index]
    copy = users.json_schema
    copy["properties"].clear()
    assert users.json_schema["properties"]


def test_load_schemas_reads_the_directory_each_time(tmp_path: Path):
    assert load_schemas(tmp_path) == {}
    path = tmp_path / "things.schema.json"
    path.write_text(closed({"a": {"type": "string"}}), encoding="utf-8")
    first = load_schemas(tmp_path)["things"]
    path.write_text(closed({"a": {"type": "string"}, "b": {"type": "boolean"}}), encoding="utf-8")
    second = load_schemas(tmp_path)["things"]
    assert first.field_names == ("a", "createdAt", "updatedAt")
    assert second.field_names == ("a", "b", "createdAt", "updatedAt")
    assert sorted(load_schemas(SCHEMA_DIR)) == ["jobs", "users"]


def test_loading_errors_are_config_errors_with_their_code(tmp_path):
    with pytest.raises(ConfigError) as missing:
        read_schema("things", tmp_path)
    assert missing.value.code == "missing_schema"
    (tmp_path / "things.schema.json").write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError) as invalid:
        read_schema("things", tmp_path)
    assert invalid.value.code == "invalid_schema" and "not JSON" in invalid.value.message


# --- the rules generator reads the same model ----------------------------------------------------

def test_rules_generator_and_model_know_the_same_keywords(tmp_path):
    assert set(BACKEND_ONLY) == NESTED
    (tmp_path / "things.schema.json").write_text(
        closed({"a": {"type": "string", "pattern": "(?=x)"}}), encoding="utf-8")
    with pytest.raises(GeneratorError, match="RE2"):
        generate.load_collections(tmp_path)
    assert read_schema("things", tmp_path).by_name["a"].value.pattern == "(?=x)"


def test_generated_rules_cases_satisfy_the_backends_checks_formats_included(tmp_path):
    (tmp_path / "things.schema.json").write_text(closed({
        "when": {"type": "string", "format": "date-time"},
        "mail": {"type": "string", "format": "email", "maxLength": 40},
        "day": {"type": ["string", "null"], "format": "date"},
    }, required=["when"]), encoding="utf-8")
    cases = json.loads(generate.render_cases(generate.load_collections(tmp_path)))
    things = read_schema("things", tmp_path)
    for key in ("valid", "minimal"):
        doc = {name: value for name, value in cases["collections"]["things"][key].items()
               if name not in ("createdAt", "updatedAt")}
        assert said(things, doc) == [], (key, doc)
