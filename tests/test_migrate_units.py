"""The migration's pure parts, without emulators: ids, dates, values, shapes, positions, ramp-up."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from functions.migrate.source import bytes_source, iter_records, scan
from functions.migrate.writer import RampUpLimiter
from shared.errors import BadRequest
from shared.records import RecordError, convert_record, record_id, same_value
from shared.schema import load_schema

UTC = dt.UTC


@pytest.fixture(scope="module")
def users():
    return load_schema("users")


def valid_user(**extra):
    return {"id": "u_1", "name": "Ada", "email": "ADA@Example.com ", "role": "creator",
            "status": "active", **extra}


# --- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("record", "reason"), [
    ("not an object", "not_an_object"),
    (None, "not_an_object"),
    ([1, 2], "not_an_object"),
    ({"name": "x"}, "missing_id"),
    ({"id": ""}, "missing_id"),
    ({"id": "   "}, "missing_id"),
    ({"id": "a/b"}, "invalid_id"),
    ({"id": "."}, "invalid_id"),
    ({"id": ".."}, "invalid_id"),
    ({"id": "__x__"}, "invalid_id"),
    ({"id": "é" * 751}, "invalid_id"),  # 1,502 bytes
    ({"id": True}, "invalid_id"),
    ({"id": 1.5}, "invalid_id"),
    ({"id": {"a": 1}}, "invalid_id"),
])
def test_ids_are_checked_by_firestore_rules_and_never_rewritten(users, record, reason):
    with pytest.raises(RecordError) as caught:
        record_id(record, users)
    assert caught.value.reason == reason


def test_valid_ids_pass_unchanged(users):
    assert record_id({"id": " spaced id "}, users) == " spaced id "
    assert record_id({"id": 42}, users) == "42"
    assert record_id({"id": "é" * 750}, users) == "é" * 750  # exactly 1,500 bytes
    assert record_id({"id": "__x"}, users) == "__x"


def test_keyed_records_take_the_key_and_must_agree_with_their_id_field(users):
    assert record_id({"name": "x"}, users, key="u_9") == "u_9"
    assert record_id({"id": "u_9"}, users, key="u_9") == "u_9"
    with pytest.raises(RecordError) as caught:
        record_id({"id": "u_8"}, users, key="u_9")
    assert caught.value.reason == "invalid_id"
    with pytest.raises(RecordError) as caught:
        record_id({}, users, key="a/b")
    assert caught.value.reason == "invalid_id"


# --- conversion ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("2023-10-15T12:02:00Z", dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)),
    ("2023-10-15T14:02:00+02:00", dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)),
    ("2023-10-15T12:02:00.123Z", dt.datetime(2023, 10, 15, 12, 2, 0, 123000, tzinfo=UTC)),
    ("2023-10-15T12:02", dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)),
    ("2023-10-15", dt.datetime(2023, 10, 15, tzinfo=UTC)),
    ("10/15/2023", dt.datetime(2023, 10, 15, tzinfo=UTC)),
    (1697371320000, dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)),
    ("1697371320000", dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)),
])
def test_dates_in_each_format_become_utc_timestamps(users, raw, expected):
    converted = convert_record(valid_user(createdAt=raw), users)
    value = converted.data["createdAt"]
    assert value == expected and value.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("raw", ["yesterday-ish", "13/45/2023", "2023-02-30", True,
                                 -5, 10**16, [2023]])
def test_unparseable_dates_are_schema_failures_naming_the_field(users, raw):
    with pytest.raises(RecordError) as caught:
        convert_record(valid_user(createdAt=raw), users)
    assert caught.value.reason == "schema"
    assert [problem.field for problem in caught.value.problems] == ["createdAt"]


def test_normalisation_and_every_problem_at_once(users):
    converted = convert_record(valid_user(), users)
    assert converted.doc_id == "u_1" and converted.data["email"] == "ada@example.com"
    assert "id" not in converted.data
    with pytest.raises(RecordError) as caught:
        convert_record({"id": "u_2", "name": "B", "role": "boss", "hourlyRate": "eighty"}, users)
    fields = sorted(str(problem.field) for problem in caught.value.problems)
    assert fields == ["email", "hourlyRate", "role", "status"]


def test_values_firestore_cannot_store_are_refused(users):
    for bad in ({"social": {"x": 2**63}}, {"skills": [["nested"]]}, {"social": {"__k__": "v"}}):
        with pytest.raises(RecordError) as caught:
            convert_record(valid_user(**bad), users)
        assert caught.value.reason == "schema", bad


def test_a_document_over_one_mebibyte_is_too_large(users):
    with pytest.raises(RecordError) as caught:
        convert_record(valid_user(bio="x" * (1024 * 1024)), users)
    assert caught.value.reason == "too_large"


def test_same_value_counts_types():
    stamp = dt.datetime(2023, 1, 1, tzinfo=UTC)
    assert same_value(1, 1) and not same_value(1, 1.0) and not same_value(1, True)
    assert not same_value(True, 1) and same_value(None, None) and not same_value(None, "")
    assert same_value(stamp, stamp.astimezone(dt.timezone(dt.timedelta(hours=2))))
    assert same_value({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not same_value({"a": [1]}, {"a": [1], "b": 2})
    assert not same_value([1, 2], [2, 1])


# --- shapes ----------------------------------------------------------------------------------

def records_of(payload, collection="users", root=None):
    source = bytes_source(json.dumps(payload).encode())
    layout = scan(source, collection=collection, root=root)
    return layout, list(iter_records(source, layout))


def test_array_shape():
    layout, records = records_of([{"id": "a"}, 5, {"id": "b"}])
    assert (layout.shape, layout.total) == ("array", 3)
    assert records == [(0, None, {"id": "a"}), (1, None, 5), (2, None, {"id": "b"})]


def test_wrapped_shape_with_metadata_before_and_after():
    payload = {"lastUpdated": "2025-06-01", "users": [{"id": "a"}, {"id": "b"}], "version": 3}
    layout, records = records_of(payload)
    assert (layout.shape, layout.root, layout.total) == ("wrapped", "users", 2)
    assert [record for _, _, record in records] == [{"id": "a"}, {"id": "b"}]


def test_wrapped_shape_under_another_name_and_extra_arrays():
    layout, _ = records_of({"meta": 1, "people": [{"id": "a"}]})
    assert (layout.shape, layout.root) == ("wrapped", "people")
    layout, _ = records_of({"users": [{"id": "a"}], "tags": ["x"]})
    assert layout.root == "users" and "tags" in layout.warnings[0]


def test_keyed_shape_gives_keys_and_indexes():
    layout, records = records_of({"u_1": {"name": "a"}, "u_2": "oops", "u_3": {"name": "c"}})
    assert (layout.shape, layout.total) == ("keyed", 3)
    assert [(index, key) for index, key, _ in records] == [(0, "u_1"), (1, "u_2"), (2, "u_3")]


def test_ambiguous_or_scalar_sources_are_refused():
    with pytest.raises(BadRequest) as caught:
        records_of({"a": [1], "b": {"x": 1}})
    assert caught.value.code == "invalid_shape"
    layout, _ = records_of({"a": [1], "b": {"x": 1}}, root="a")
    assert layout.root == "a"
    with pytest.raises(BadRequest):
        records_of(42)
    with pytest.raises(BadRequest):
        records_of([1], root="users")


@pytest.mark.parametrize(("text", "line", "column"), [
    ('[{"id": "a"},\n {"id": "b",, }]', 2, 13),  # the second comma
    ('{"users": [\n  {"id": "a"}\n  {"id": "b"}\n]}', 3, 3),
    ('[{"id": "a"}', 1, 13),
    ("", 1, 1),
])
def test_bad_json_is_refused_with_its_position(text, line, column):
    with pytest.raises(BadRequest) as caught:
        scan(bytes_source(text.encode()), collection="users")
    assert caught.value.code == "invalid_json"
    assert (caught.value.details["line"], caught.value.details["column"]) == (line, column)
    assert f"line {line}, column {column}" in caught.value.message or not text


def test_numbers_are_ints_or_floats_never_decimals():
    _, records = records_of([{"a": 1, "b": 1.5, "c": 1e3}])
    record = records[0][2]
    assert type(record["a"]) is int and type(record["b"]) is float and type(record["c"]) is float


# --- ramp-up -----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_ramp_up_follows_500_50_5():
    clock = FakeClock()
    limiter = RampUpLimiter(500, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(400) == 0  # the bucket starts with one second of budget
    limiter.acquire(400)
    limiter.acquire(400)
    assert clock.now == pytest.approx(1.4)  # 1,200 writes: 500 at once, then 500/s
    assert limiter.rate(299) == 500 and limiter.rate(300) == 750 and limiter.rate(600) == 1125
    clock.now = 900.0
    waited = sum(limiter.acquire(100) for _ in range(50))  # 5,000 writes at 1,687.5/s
    assert waited == pytest.approx((5000 - 1687.5) / 1687.5, rel=0.01)


# --- the quick schema check agrees with jsonschema --------------------------------------------

MUTATIONS = [None, True, False, 0, 1, -1, 1.0, 1.5, -0.5, 10**6, float("inf"), "", "x",
             "a@b", "A@B.C", "x" * 201, "x" * 5001, "creator", "open", "active", "???", [],
             ["a"], ["a"] * 51, [1], [None], {}, {"k": "v"}, {"k": None}, {"k": 1},
             {f"k{i}": "v" for i in range(21)}, dt.datetime(2023, 1, 1, tzinfo=UTC)]


@pytest.mark.parametrize("collection", ["users", "jobs"])
def test_the_quick_check_never_accepts_what_jsonschema_refuses(collection):
    import random

    from jsonschema import Draft202012Validator

    from shared.records import _quick_check

    schema = load_schema(collection)
    full = Draft202012Validator(dict(schema.json_schema))
    quick = _quick_check(schema, partial=False)
    assert quick is not None  # our schemas stay within the compiled subset
    base = ({"name": "Ada", "email": "ada@example.com", "role": "creator", "status": "active",
             "skills": ["editing"], "hourlyRate": 50, "social": {"instagram": "@a"}}
            if collection == "users" else
            {"title": "Shoot", "status": "open", "budget": 10.5, "assignedTo": ["u_1"],
             "tags": ["rush"], "client": "Kim"})
    fields = [*schema.json_schema["properties"], "extra", "__name__"]
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
    agreed = refused = 0
    for _ in range(3000):
        record = dict(base)
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(fields)
            if rng.random() < 0.2:
                record.pop(name, None)
            else:
                record[name] = rng.choice(MUTATIONS)
        expected = full.is_valid(record)
        got = quick(record)
        assert got == expected, record  # exact, and in particular never a false pass
        agreed += 1
        refused += not expected
    assert agreed == 3000 and 300 < refused < 2900


def test_schema_problems_say_what_is_wanted_without_echoing_the_value(users):
    bad = valid_user(name={"secret.py": None}, role="boss", email="x", hourlyRate=-1,
                     skills=["a", 5], social={"site": 7})
    with pytest.raises(RecordError) as caught:
        convert_record(bad, users)
    said = {(problem.field, problem.message) for problem in caught.value.problems}
    assert said == {
        ("name", "must be a string, not an object"),
        ("role", 'must be one of "creator", "editor", "admin"'),
        ("email", "must be at least 3 characters long"),
        ("email", "must be an email address (name@example.com)"),
        ("hourlyRate", "must be at least 0"),
        ("skills", "at item 1: must be a string, not an integer"),
        ("social", 'at key "site": must be a string or null, not an integer')}
    assert "secret" not in caught.value.message and "None" not in caught.value.message
