"""The snapshot path parses a snapshot once per object generation and answers its queries from
orders and columns computed once, with the same pages as before."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.collection_api.query import Cursor, Filter, ReadQuery, _typed, run_on_items
from shared.schema import load_schema
from tests import legacy_read_path as legacy
from tests.helpers import closed_port, firestore_client_at, publish, read_api_client, seed_users

UTC = dt.UTC
USERS = load_schema("users")
MOMENTS = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 1, 1),
                       timezones=st.just(UTC))
# Values as a snapshot holds them (JSON): numbers, strings (timestamps among them), NaN and
# ±Infinity as strings, arrays, maps, null, booleans.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)
    | st.sampled_from(["a", "b", "NaN", "Infinity", "-Infinity", "2020-01-01T00:00:00Z",
                       "2021-06-01T12:00:00.5Z"])
    | MOMENTS.map(legacy.format_timestamp),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["x", "y"]), children, max_size=2), max_leaves=4)
FIELDS = ("hourlyRate", "name", "createdAt", "updatedAt", "skills", "role")
TYPED = {"hourlyRate": st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False),
         "name": st.sampled_from(["a", "b", "NaN"]),
         "createdAt": MOMENTS, "updatedAt": MOMENTS,
         "role": st.sampled_from(["a", "b"])}
IDS = st.sampled_from([f"u{i}" for i in range(12)])


@st.composite
def items_and_queries(draw):
    ids = sorted(draw(st.sets(IDS, max_size=12)))
    items = tuple({"id": doc_id, **draw(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES))}
                  for doc_id in ids)
    queries = []
    for _ in range(draw(st.integers(1, 6))):
        order = draw(st.sampled_from([None, "hourlyRate", "name", "createdAt"]))
        filters = []
        for _ in range(draw(st.integers(0, 2))):
            field = draw(st.sampled_from(sorted(TYPED)))
            op = draw(st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte", "in"]))
            value = draw(TYPED[field])
            filters.append(Filter(field, op, (value, draw(TYPED[field])) if op == "in"
                                  else value))
        if draw(st.booleans()):
            filters.append(Filter("skills", "cs", draw(JSON_VALUES)))
        cursor = None
        if items and draw(st.booleans()):  # after a document, as a page token says
            after = draw(st.sampled_from(items))
            value = (_typed(after, order, USERS.field_types[order])[0]
                     if order is not None else None)
            cursor = Cursor(value, after["id"])
        elif draw(st.booleans()):
            value = draw(TYPED[order]) if order is not None and draw(st.booleans()) else None
            cursor = Cursor(value, draw(IDS))
        queries.append(ReadQuery("users", tuple(filters), order, draw(st.booleans()),
                                 draw(st.integers(1, 5)),
                                 updated_since=draw(st.none() | MOMENTS), cursor=cursor))
    return items, queries


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=items_and_queries())
def test_pages_from_computed_orders_equal_the_filter_then_sort_pages(case):
    items, queries = case
    memo: dict = {}  # one snapshot generation serves every query
    for query in queries:
        assert run_on_items(items, query, USERS, memo) == legacy.run_on_items(items, query,
                                                                             USERS), query


# --- one parse per generation, against the emulators ---------------------------------------------

def test_a_snapshot_is_parsed_once_per_generation(firestore_client, storage_client, bucket):
    from shared.snapshots import load_snapshot

    seed_users(firestore_client, 5)
    publish(firestore_client, storage_client, bucket.name)
    first = load_snapshot(storage_client, bucket.name, "users", timeout_s=5)
    assert first.item("u_0003")["name"] == "User 003" and first.item("nope") is None
    again = load_snapshot(storage_client, bucket.name, "users", timeout_s=5, known=first)
    assert again is first, "same generation: the parsed snapshot comes back as it is"
    firestore_client.collection("users").document("u_0003").update({"name": "Renamed"})
    publish(firestore_client, storage_client, bucket.name)
    newer = load_snapshot(storage_client, bucket.name, "users", timeout_s=5, known=first)
    assert newer is not first and newer.generation != first.generation
    assert newer.item("u_0003")["name"] == "Renamed"


def test_an_outage_without_cache_revalidates_instead_of_parsing(make_context, firestore_client,
                                                                storage_client, bucket,
                                                                project_id, monkeypatch):
    from shared import snapshot_reader as snapshots  # where parts are parsed

    seed_users(firestore_client, 30)
    publish(firestore_client, storage_client, bucket.name)
    parsed = []
    real_parse = snapshots.parse_snapshot

    def counting_parse(*args, **kwargs):
        parsed.append(args[0])
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(snapshots, "parse_snapshot", counting_parse)
    dead = firestore_client_at(closed_port(), project_id)
    api = read_api_client(make_context(db=lambda: dead, FIRESTORE_TIMEOUT_S="0.5",
                                       CACHE_TTL_S="0"))
    pages = [api.get(f"/users?orderBy=-hourlyRate&limit={n}") for n in (3, 4, 5)]
    assert all(page.headers["X-Data-Source"] == "snapshot" for page in pages)
    assert [len(page.json["items"]) for page in pages] == [3, 4, 5]
    assert api.get("/users/u_0007").json["name"] == "User 007"
    assert parsed == ["users"], "one parse for one generation"
    firestore_client.collection("users").document("u_0007").update({"name": "Changed"})
    publish(firestore_client, storage_client, bucket.name)  # the publisher parses it too
    parsed.clear()
    assert api.get("/users/u_0007").json["name"] == "Changed"
    assert api.get("/users?limit=2").json["count"] == 2
    assert parsed == ["users"], "a new generation is parsed once"
