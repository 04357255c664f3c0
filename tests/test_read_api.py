"""The read API end to end against the emulators: shape, queries, paging, caching headers, CORS."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from shared.times import format_timestamp, parse_timestamp
from tests.helpers import publish, seed_users

ORIGIN = "https://dash.example.org"


def ids(response) -> list[str]:
    return [item["id"] for item in response.json["items"]]


def test_list_has_the_contract_shape(api, firestore_client):
    seeded = seed_users(firestore_client, 5)
    response = api.get("/users")
    assert response.status_code == 200
    body = response.json
    assert list(body) == ["collection", "items", "count", "nextPageToken", "source", "asOf"]
    assert body["collection"] == "users" and body["count"] == 5 and body["nextPageToken"] is None
    assert ids(response) == sorted(seeded)
    assert body["source"] == "firestore" and response.headers["X-Data-Source"] == "firestore"
    parse_timestamp(body["asOf"])
    first = body["items"][0]
    assert first["createdAt"] == "2023-01-01T00:00:00Z"
    assert first["hourlyRate"] == 40 and first["skills"] == ["editing"]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["ETag"].startswith('W/"')
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_get_one_document_and_404(api, firestore_client):
    seed_users(firestore_client, 3)
    firestore_client.collection("users").document("with space é").set({"name": "Odd id"})
    response = api.get("/users/u_0001")
    assert response.status_code == 200
    assert response.json["id"] == "u_0001" and response.json["name"] == "User 001"
    assert "ETag" in response.headers
    assert api.get("/users/with%20space%20%C3%A9").json["name"] == "Odd id"
    missing = api.get("/users/nope")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    projected = api.get("/users/u_0001?fields=email")
    assert projected.json == {"id": "u_0001", "email": "user1@example.com"}


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=-1", "limit=1001",
                                   "orderBy=nope", "fields=secret", "hourlyRate=abc",
                                   "createdAt=gt.yesterday", "role=lt.b&status=gt.a",
                                   "orderBy=name&hourlyRate=gt.10", "skills=editing",
                                   "name=cs.x", "updatedSince=last-week", "pageToken=garbage",
                                   "limit=1&limit=2", "social=x", "__name__=x"])
def test_bad_parameters_are_400(api, firestore_client, query):
    response = api.get(f"/users?{query}")
    assert response.status_code == 400, response.json
    assert set(response.json["error"]) >= {"code", "message"}


def test_limit_default_and_maximum(make_api, firestore_client):
    seed_users(firestore_client, 12)
    api = make_api(DEFAULT_LIMIT="5", MAX_LIMIT="10")
    assert api.get("/users").json["count"] == 5
    assert api.get("/users?limit=10").json["count"] == 10
    assert api.get("/users?limit=11").status_code == 400


def test_paging_sees_every_document_once_while_documents_are_inserted(api, firestore_client):
    seed_users(firestore_client, 40)
    seen: list[str] = []
    token = None
    inserted = 0
    while True:
        url = "/users?limit=7&orderBy=-hourlyRate" + (f"&pageToken={token}" if token else "")
        response = api.get(url)
        assert response.status_code == 200
        seen.extend(ids(response))
        token = response.json["nextPageToken"]
        if token is None:
            break
        # Inserts between pages land before and after the cursor; neither may shift the pages.
        seed_users(firestore_client, 2, start=100 + inserted)
        inserted += 2
    assert len(seen) == len(set(seen)), "a document was returned twice"
    assert {f"u_{i:04d}" for i in range(40)} <= set(seen), "a document was skipped"
    rates = [firestore_client.collection("users").document(i).get().get("hourlyRate")
             for i in seen]
    assert rates == sorted(rates, reverse=True)


def test_order_by_leaves_out_documents_without_the_field(api, firestore_client):
    seed_users(firestore_client, 4)
    firestore_client.collection("users").document("no_rate").set({"name": "No rate"})
    by_rate = api.get("/users?orderBy=hourlyRate")
    assert "no_rate" not in ids(by_rate) and by_rate.json["count"] == 4
    assert "no_rate" in ids(api.get("/users"))
    by_id_desc = ids(api.get("/users?orderBy=-id"))
    assert by_id_desc == sorted(by_id_desc, reverse=True)


FILTER_CASES = [
    ("hourlyRate=gte.80", lambda d: d["hourlyRate"] >= 80),
    ("hourlyRate=55.5", lambda d: d["hourlyRate"] == 55.5),
    ("hourlyRate=lt.80&orderBy=-hourlyRate", lambda d: d["hourlyRate"] < 80),
    ("status=in.active,pending", lambda d: d["status"] in ("active", "pending")),
    ("role=neq.creator", lambda d: d["role"] != "creator"),
    ("role=editor&status=active", lambda d: d["role"] == "editor" and d["status"] == "active"),
    ("skills=cs.editing", lambda d: "editing" in d["skills"]),
    ("createdAt=lt.2023-03-01", lambda d: d["createdAt"] < dt.datetime(2023, 3, 1, tzinfo=dt.UTC)),
    ("createdAt=gte.2023-02-12T00:00:00Z&createdAt=lte.2023-04-01T00:00:00%2B00:00",
     lambda d: dt.datetime(2023, 2, 12, tzinfo=dt.UTC) <= d["createdAt"]
     <= dt.datetime(2023, 4, 1, tzinfo=dt.UTC)),
    ("name=User%20004", lambda d: d["name"] == "User 004"),
    ("hourlyRate=in.(40,150)", lambda d: d["hourlyRate"] in (40, 150)),
]


@pytest.mark.parametrize(("query", "predicate"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filters_compare_typed_values(api, firestore_client, query, predicate):
    seeded = seed_users(firestore_client, 24)
    # Strings that look like numbers and dates must not match numbers and timestamps: values
    # are typed by the schema, and Firestore never compares across types.
    stringly = {"name": "Stringly", "hourlyRate": "80", "createdAt": "2023-01-05",
                "status": "other", "role": "other", "skills": ["x"]}
    firestore_client.collection("users").document("stringly").set(stringly)
    seeded["stringly"] = stringly

    def selects(data):
        try:
            return predicate(data)
        except TypeError:  # Python refuses to compare across types; Firestore never matches
            return False

    response = api.get(f"/users?{query}&limit=100")
    assert response.status_code == 200, response.json
    expected = sorted(doc_id for doc_id, data in seeded.items() if selects(data))
    assert expected, "the case must select something"
    got = ids(response)
    assert sorted(got) == expected
    if not any(op in query for op in ("orderBy", "=gte", "=lt", "=gt", "=lte", "neq")):
        assert got == expected, "equality queries come ordered by id"


def test_range_filter_orders_by_its_field(api, firestore_client):
    seed_users(firestore_client, 10)
    items = api.get("/users?hourlyRate=gt.50").json["items"]
    assert [i["hourlyRate"] for i in items] == sorted(i["hourlyRate"] for i in items)


def test_projection_returns_only_the_named_fields(api, firestore_client):
    seed_users(firestore_client, 3)
    items = api.get("/users?fields=name,email&orderBy=-hourlyRate").json["items"]
    assert all(set(item) == {"id", "name", "email"} for item in items)
    assert len(items) == 3


def test_updated_since_returns_only_later_changes(api, firestore_client, make_api):
    from google.cloud import firestore

    seed_users(firestore_client, 6)
    as_of = api.get("/users").json["asOf"]
    for doc_id in ("u_0002", "u_0004"):
        firestore_client.collection("users").document(doc_id).update(
            {"status": "inactive", "updatedAt": firestore.SERVER_TIMESTAMP})
    fresh = make_api()  # a new instance: no cached answer
    response = fresh.get(f"/users?updatedSince={as_of}")
    assert response.status_code == 200
    assert ids(response) == ["u_0002", "u_0004"]
    later = response.json["items"][-1]["updatedAt"]
    assert fresh.get(f"/users?updatedSince={later}").json["items"] == []


def test_etag_gives_304_and_changes_with_the_data(make_api, firestore_client):
    seed_users(firestore_client, 3)
    api = make_api(CACHE_TTL_S="0")
    first = api.get("/users")
    etag = first.headers["ETag"]
    again = api.get("/users", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert api.get("/users", headers={"If-None-Match": '"other"'}).status_code == 200
    firestore_client.collection("users").document("u_0001").update({"name": "Renamed"})
    changed = api.get("/users", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    one = api.get("/users/u_0001")
    assert api.get("/users/u_0001",
                   headers={"If-None-Match": one.headers["ETag"]}).status_code == 304


def test_gzip_when_accepted_and_large(api, firestore_client):
    seed_users(firestore_client, 30)
    plain = api.get("/users")
    zipped = api.get("/users", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert len(zipped.data) < len(plain.data)
    assert json.loads(gzip.decompress(zipped.data))["items"] == plain.json["items"]
    small = api.get("/users/u_0001", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


def test_cors_for_allowed_and_foreign_origins(api, firestore_client):
    seed_users(firestore_client, 1)
    allowed = api.get("/users", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in allowed.headers["Vary"]
    exposed = allowed.headers["Access-Control-Expose-Headers"]
    assert "ETag" in exposed and "X-Data-Source" in exposed
    foreign = api.get("/users", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 200
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert "Origin" in foreign.headers["Vary"]
    preflight = api.options("/users", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, if-none-match"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    allow_headers = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allow_headers and "if-none-match" in allow_headers
    assert int(preflight.headers["Access-Control-Max-Age"]) >= 600
    foreign_preflight = api.options("/users", headers={"Origin": "https://evil.example",
                                                        "Access-Control-Request-Method": "GET"})
    assert foreign_preflight.status_code == 204
    assert "Access-Control-Allow-Origin" not in foreign_preflight.headers
    assert "Access-Control-Allow-Methods" not in foreign_preflight.headers
    error = api.get("/users?limit=0", headers={"Origin": ORIGIN})
    assert error.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize(("method", "path"), [("TRACE", "/users"), ("PROPFIND", "/users/u_1"),
                                              ("POST", "/users/u_1"), ("PUT", "/users"),
                                              ("PATCH", "/users"), ("DELETE", "/users")])
def test_wrong_method_is_405(api, method, path):
    response = api.open(path, method=method)
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unknown_paths_are_404(api):
    for path in ("/users/a/b", "/users/__reserved__", "/users/.."):
        response = api.get(path)
        assert response.status_code in (400, 404), path
        assert "error" in response.json


def test_snapshot_answers_with_the_same_query_semantics(api, snapshot_api, firestore_client,
                                                        storage_client, bucket):
    seed_users(firestore_client, 30)
    firestore_client.collection("users").document("no_rate").set({"name": "No rate"})
    publish(firestore_client, storage_client, bucket.name)
    queries = ["", "?limit=4", "?orderBy=-hourlyRate&limit=6", "?hourlyRate=gte.80",
               "?status=in.active,pending&orderBy=name", "?skills=cs.editing&fields=name",
               "?createdAt=lt.2023-04-01&orderBy=-createdAt", "?role=neq.admin&limit=5",
               "?orderBy=-id&limit=3"]
    for query in queries:
        from_firestore = api.get(f"/users{query}")
        from_snapshot = snapshot_api.get(f"/users{query}")
        assert from_snapshot.headers["X-Data-Source"] == "snapshot", query
        assert from_snapshot.json["source"] == "snapshot"
        assert from_snapshot.json["items"] == from_firestore.json["items"], query
        assert from_snapshot.json["nextPageToken"] == from_firestore.json["nextPageToken"], query
        # The ETag covers the bytes of everything but source and asOf: the same from both.
        assert from_snapshot.headers["ETag"] == from_firestore.headers["ETag"], query
    # Page tokens are interchangeable between the two sources.
    token = api.get("/users?orderBy=-hourlyRate&limit=6").json["nextPageToken"]
    assert snapshot_api.get(f"/users?orderBy=-hourlyRate&limit=6&pageToken={token}").json[
        "items"] == api.get(f"/users?orderBy=-hourlyRate&limit=6&pageToken={token}").json["items"]
    for path in ("/users/u_0003", "/users/u_0003?fields=name,email,hourlyRate"):
        assert snapshot_api.get(path).data == api.get(path).data, path
    assert snapshot_api.get("/users/absent").status_code == 404


def test_page_token_is_bound_to_its_query(api, firestore_client):
    seed_users(firestore_client, 10)
    token = api.get("/users?limit=3&orderBy=name").json["nextPageToken"]
    assert api.get(f"/users?limit=3&orderBy=name&pageToken={token}").status_code == 200
    other = api.get(f"/users?limit=3&orderBy=-name&pageToken={token}")
    assert other.status_code == 400 and other.json["error"]["code"] == "invalid_page_token"
    assert api.get(f"/users?limit=3&orderBy=name&pageToken={token[:-4]}").status_code == 400


def test_as_of_is_a_utc_timestamp(api, firestore_client):
    seed_users(firestore_client, 1)
    as_of = api.get("/users").json["asOf"]
    assert as_of.endswith("Z")
    assert abs(parse_timestamp(as_of) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert format_timestamp(parse_timestamp(as_of)) == as_of


def test_head_and_configured_cache_control(make_api, firestore_client):
    seed_users(firestore_client, 2)
    api = make_api(CACHE_CONTROL="private, max-age=30")
    head = api.head("/users")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["ETag"] == api.get("/users").headers["ETag"]
    assert head.headers["Cache-Control"] == "private, max-age=30"
    assert api.get("/users?limit=0").headers["Cache-Control"] == "no-store"
