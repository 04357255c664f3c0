"""Units with no emulator: value encoding, query parsing, page tokens, cache, breaker."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time

import pytest

from functions.collection_api.breaker import CircuitBreaker
from functions.collection_api.cache import TTLCache, WriteFence
from functions.collection_api.query import (
    ReadQuery,
    make_page_token,
    parse_list_query,
    run_on_items,
    sort_key,
)
from shared.encoding import encode_document, encode_value
from shared.errors import BadRequest
from shared.schema import load_schema
from shared.times import format_timestamp, parse_timestamp

USERS = load_schema("users")


def parse(query: str, **kw):
    from urllib.parse import parse_qsl

    return parse_list_query(parse_qsl(query, keep_blank_values=True), USERS,
                            default_limit=kw.get("default", 100), max_limit=kw.get("max", 1000))


def test_encoding_of_every_firestore_type():
    from google.cloud.firestore_v1 import GeoPoint
    from google.cloud.firestore_v1.document import DocumentReference

    stamp = dt.datetime(2024, 2, 29, 13, 5, 7, 120000, tzinfo=dt.UTC)
    ref = DocumentReference("users", "u_1", client=_FakeClient())
    encoded = encode_value({"t": stamp, "g": GeoPoint(1.5, -2.25), "r": ref, "b": b"\x00\xff",
                            "n": None, "l": [1, 2.5, "x", True], "nan": float("nan")})
    assert encoded == {"t": "2024-02-29T13:05:07.12Z", "g": {"latitude": 1.5, "longitude": -2.25},
                       "r": "users/u_1", "b": "AP8=", "n": None, "l": [1, 2.5, "x", True],
                       "nan": "NaN"}
    assert encode_document("x", {"b": 1, "a": 2, "id": "ignored"}) == {"id": "x", "a": 2, "b": 1}


class _FakeClient:
    """The minimum a DocumentReference needs to print its path (no network involved)."""

    _database_string = "projects/p/databases/(default)"


def test_timestamps_round_trip_in_utc():
    plus_two = parse_timestamp("2024-01-01T12:00:00.5+02:00")
    assert format_timestamp(plus_two) == "2024-01-01T10:00:00.5Z"
    assert parse_timestamp("2024-01-01") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        parse_timestamp("01/02/2024")


def test_filters_are_typed_by_the_schema():
    query = parse("hourlyRate=gte.80&status=in.active,pending&createdAt=2024-01-01"
                  "&skills=cs.sound&name=Ann")
    by_field = {f.field: f for f in query.filters}
    assert by_field["hourlyRate"].value == 80 and by_field["hourlyRate"].op == "gte"
    assert by_field["status"].value == ("active", "pending")
    assert by_field["createdAt"].value == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert by_field["skills"].op == "cs" and by_field["name"].op == "eq"
    assert query.order_field == "hourlyRate", "a range filter sorts by its field"


def test_a_value_that_looks_like_an_operator_needs_eq():
    assert parse("name=eq.lt.5").filters[0].value == "lt.5"
    assert parse("name=lt.5").filters[0].op == "lt"


def test_forged_page_tokens_are_rejected():
    query = parse("orderBy=hourlyRate&limit=2")
    good = make_page_token(query, {"id": "u_1", "hourlyRate": 50})
    assert parse(f"orderBy=hourlyRate&limit=5&pageToken={good}").cursor.value == 50

    def forge(payload):
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()

    fingerprint = query.fingerprint()
    for payload in ({"q": fingerprint, "v": "fifty", "id": "u_1"},
                    {"q": fingerprint, "v": 50, "id": "../../etc"},
                    {"q": fingerprint, "v": 50, "id": "__name__"},
                    {"q": fingerprint, "v": 50, "id": "u_1", "extra": 1},
                    {"q": "0" * 16, "v": 50, "id": "u_1"},
                    [1, 2, 3]):
        with pytest.raises(BadRequest):
            parse(f"orderBy=hourlyRate&pageToken={forge(payload)}")


def test_snapshot_evaluation_follows_firestore_type_order():
    assert sort_key(None) < sort_key(False) < sort_key(0) < sort_key(
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC)) < sort_key("a") < sort_key([]) < sort_key({})
    assert sort_key(float("nan")) < sort_key(-1e300)
    items = [{"id": "a", "hourlyRate": 10}, {"id": "b", "hourlyRate": "10"},
             {"id": "c", "hourlyRate": 10.0}, {"id": "d"}, {"id": "e", "hourlyRate": True}]
    page = run_on_items(items, ReadQuery("users", order_field="hourlyRate"), USERS)
    assert [i["id"] for i in page.items] == ["e", "a", "c", "b"]
    equal_ten = parse("hourlyRate=10")
    assert [i["id"] for i in run_on_items(items, equal_ten, USERS).items] == ["a", "c"]


def test_cache_expires_and_computes_once_under_contention():
    cache: TTLCache[str] = TTLCache(ttl_s=0.2)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return "value", None

    threads = [threading.Thread(target=cache.get_or_compute, args=("k", compute))
               for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    time.sleep(0.25)
    assert cache.get("k") is None
    cache.put("other", "x", ttl_s=0)
    assert cache.get("other") is None


def test_an_answer_computed_across_a_write_is_not_stored():
    cache: TTLCache[str] = TTLCache(ttl_s=60)
    fence = WriteFence()

    def read_while_a_write_commits():
        fence.begin("users")  # began and ended while this answer was being read
        fence.end("users")
        return "before the write", None

    assert fence.cached(cache, "users", "k", read_while_a_write_commits) == "before the write"
    assert cache.get("k") is None
    assert fence.cached(cache, "users", "k", lambda: ("after", None)) == "after"
    assert cache.get("k") == "after"
    fence.begin("jobs")  # another collection's write does not concern this key
    fence.end("jobs")
    assert fence.cached(cache, "users", "k", lambda: ("recomputed", None)) == "after"


def test_reads_skip_the_cache_while_a_write_is_in_flight():
    cache: TTLCache[str] = TTLCache(ttl_s=60)
    fence = WriteFence()
    cache.put("k", "cached before the write")
    fence.begin("users")
    assert fence.generation("users") is None
    assert fence.cached(cache, "users", "k", lambda: ("from Firestore", None)) == "from Firestore"
    assert cache.get("k") == "cached before the write", "not replaced: the write drops it"
    fence.end("users")
    assert fence.generation("users") == 2


def test_breaker_opens_cools_down_and_allows_one_trial():
    now = [0.0]
    breaker = CircuitBreaker(cooldown_s=5, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 5.1
    assert breaker.allow(), "one trial after the cool-down"
    assert not breaker.allow(), "only one trial at a time"
    breaker.record_success()
    assert breaker.allow() and breaker.allow()
