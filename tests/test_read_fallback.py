"""Fallback to the snapshot, the circuit breaker, the deadline and the per-instance cache."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import BlackHole, closed_port, firestore_client_at, publish, seed_users


@pytest.fixture
def published(firestore_client, storage_client, bucket):
    """20 users in Firestore and in their snapshot."""
    seed_users(firestore_client, 20)
    publish(firestore_client, storage_client, bucket.name)


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def test_stopped_firestore_falls_back_to_the_snapshot(make_api, project_id, published):
    dead = firestore_client_at(closed_port(), project_id)
    api = make_api(db=lambda: dead, FIRESTORE_TIMEOUT_S="1")
    response = api.get("/users?status=active&orderBy=-hourlyRate&limit=3")
    assert response.status_code == 200
    assert response.headers["X-Data-Source"] == "snapshot"
    assert response.json["source"] == "snapshot" and response.json["count"] == 3
    assert all(item["status"] == "active" for item in response.json["items"])
    assert response.headers["ETag"]


@pytest.fixture
def hung_api(make_context, project_id, black_hole):
    """The read API of an instance whose Firestore accepts connections and never answers."""
    from tests.helpers import read_api_client

    hung = firestore_client_at(black_hole.host, project_id)
    return read_api_client(make_context(db=lambda: hung, FIRESTORE_TIMEOUT_S="0.5"))


def test_hung_firestore_falls_back_within_the_deadline(hung_api, published):
    api = hung_api
    started = time.perf_counter()
    response = api.get("/users")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["X-Data-Source"] == "snapshot"
    # Generous for a loaded CI machine: without the deadline the black hole holds it forever.
    assert elapsed < 0.5 + 2.5, f"fallback took {elapsed:.2f}s"
    assert elapsed >= 0.45, "the deadline was not waited out: was Firestore tried at all?"


def test_circuit_breaker_skips_firestore_then_tries_again(make_context, firestore_client,
                                                          project_id, published, black_hole):
    from tests.helpers import read_api_client

    hung = firestore_client_at(black_hole.host, project_id)
    current = {"db": hung}
    context = make_context(db=lambda: current["db"], FIRESTORE_TIMEOUT_S="0.5",
                           BREAKER_COOLDOWN_S="1", CACHE_TTL_S="0")
    api = read_api_client(context)
    started = time.perf_counter()
    assert api.get("/users").headers["X-Data-Source"] == "snapshot"
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert api.get("/users?limit=5").headers["X-Data-Source"] == "snapshot"
    during = time.perf_counter() - started
    assert first >= 0.45 and during < 0.25, (first, during)
    current["db"] = firestore_client  # Firestore comes back
    assert api.get("/users").headers["X-Data-Source"] == "snapshot", "still cooling down"
    time.sleep(1.1)
    assert api.get("/users").headers["X-Data-Source"] == "firestore"
    assert api.get("/users?limit=2").headers["X-Data-Source"] == "firestore"


def test_both_down_is_503_with_retry_after(make_api, project_id, firestore_client):
    seed_users(firestore_client, 2)  # no snapshot was ever published
    dead = firestore_client_at(closed_port(), project_id)
    response = make_api(db=lambda: dead, FIRESTORE_TIMEOUT_S="0.5").get("/users")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert "Traceback" not in response.get_data(as_text=True)


def test_missing_snapshot_object_with_storage_down(make_context, project_id, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from functions.collection_api.context import ApiContext as ReadContext
    from shared.settings import Settings
    from tests.helpers import read_api_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://" + closed_port())
    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("STORAGE_TIMEOUT_S", "0.5")
    dead_storage = storage.Client(project=project_id, credentials=AnonymousCredentials())
    dead_db = firestore_client_at(closed_port(), project_id)
    context = ReadContext.create(Settings.from_env(), db=lambda: dead_db,
                                 storage=lambda: dead_storage)
    started = time.perf_counter()
    response = read_api_client(context).get("/users")
    assert response.status_code == 503
    assert time.perf_counter() - started < 5


def test_cached_reads_cost_no_firestore_reads(make_api, firestore_client, reads, published):
    api = make_api(CACHE_TTL_S="60")
    reads.reset()
    first = api.get("/users?limit=10")
    cold = reads.count()
    assert cold >= 10
    second = api.get("/users?limit=10")
    revalidated = api.get("/users?limit=10", headers={"If-None-Match": first.headers["ETag"]})
    assert second.data == first.data and revalidated.status_code == 304
    assert reads.count() == cold, "a cached answer read Firestore again"


def test_cache_expires_after_its_ttl(make_api, firestore_client, reads, published):
    api = make_api(CACHE_TTL_S="0.3")
    api.get("/users?limit=5")
    reads.reset()
    api.get("/users?limit=5")
    assert reads.count() == 0
    time.sleep(0.4)
    api.get("/users?limit=5")
    assert reads.count() >= 5


def test_concurrent_identical_requests_share_one_firestore_read(make_context, reads, published):
    from tests.helpers import read_api_client

    context = make_context(CACHE_TTL_S="60")
    reads.reset()
    results = []

    def fetch():
        results.append(read_api_client(context).get("/users?limit=20"))

    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 16
    assert len({r.data for r in results}) == 1
    assert reads.count() <= 21, f"{reads.count()} reads for 16 identical requests"


def _later(stamp: str, micros: int = 1) -> str:
    import datetime as dt

    from shared.times import format_timestamp, parse_timestamp

    return format_timestamp(parse_timestamp(stamp) + dt.timedelta(microseconds=micros))


def test_updated_since_poll_with_no_change_costs_one_read(make_api, reads, published):
    api = make_api(CACHE_TTL_S="60")
    as_of = api.get("/users").json["asOf"]
    first = api.get(f"/users?updatedSince={as_of}")  # also reads the newest tombstone's time
    assert first.json["items"] == [] and first.json["deleted"] == []
    reads.reset()
    response = api.get(f"/users?updatedSince={_later(first.json['asOf'])}")
    assert response.status_code == 200 and response.json["items"] == []
    assert reads.count() == 1


def test_poll_reports_deletions_and_never_skips_one(make_api, firestore_client, published):
    import time as clock

    from shared.times import to_ns, utc_now
    from shared.tombstones import record_tombstones

    api = make_api(CACHE_TTL_S="0.5")
    as_of = api.get("/users").json["asOf"]
    quiet = api.get(f"/users?updatedSince={as_of}").json
    assert quiet["deleted"] == []
    # A deletion recorded after the newest-tombstone time was cached: the next poll may not
    # see it yet, but its asOf must not move past the cached check, so a later poll does.
    firestore_client.collection("users").document("u_0003").delete()
    record_tombstones(firestore_client, "users", [("u_0003", to_ns(utc_now()))],
                      retention_s=3600, timeout_s=10)
    cursor = quiet["asOf"]
    seen: list[str] = []
    deadline = clock.monotonic() + 5
    while "u_0003" not in seen and clock.monotonic() < deadline:
        poll = api.get(f"/users?updatedSince={cursor}").json
        seen.extend(poll["deleted"])
        cursor = poll["asOf"]
        clock.sleep(0.2)
    assert seen == ["u_0003"]


def test_hung_firestore_on_a_single_document_read(hung_api, published):
    api = hung_api
    started = time.perf_counter()
    response = api.get("/users/u_0004")
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 200 and response.headers["X-Data-Source"] == "snapshot"
    assert response.json["id"] == "u_0004"
