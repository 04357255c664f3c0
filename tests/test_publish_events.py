"""`publish_snapshot` through functions-framework: events in; snapshot, manifest, tombstones out."""

from __future__ import annotations

import json
import logging
import time

import pytest

from functions.publish.events import structured_to_binary
from shared.times import format_ns
from tests.test_events import sample
from tests.test_publish_support import (
    Writer,
    firestore_items,
    manifest,
    post_event,
    snapshot_body,
    user,
)

pytest_plugins = ["tests.test_publish_support"]


def test_created_updated_deleted_events_keep_the_snapshot_equal_to_firestore(
        function_client, firestore_client, bucket, make_api):
    writer = Writer(firestore_client)
    for i in range(3):
        request = writer.set_request(f"u_{i}", user(i))
        assert post_event(function_client, *request).status_code == 200
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    assert body["items"] == make_api().get("/users?limit=100").json["items"]
    assert [item["id"] for item in body["items"]] == ["u_0", "u_1", "u_2"]
    assert body["count"] == 3 and body["collection"] == "users" and body["generatedAt"]
    assert body["updateTimes"] == {doc_id: format_ns(v.update_time_ns)
                                   for doc_id, v in writer.current.items()}

    assert post_event(function_client,
                      *writer.set_request("u_1", user(1, status="inactive"))).status_code == 200
    headers, data = writer.delete_request("u_0")
    assert post_event(function_client, headers, data).status_code == 200

    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    assert [item["id"] for item in body["items"]] == ["u_1", "u_2"]
    assert body["items"][0]["status"] == "inactive"
    assert [t["id"] for t in body["tombstones"]] == ["u_0"]
    assert body["tombstones"][0]["deletedAt"] == headers["ce-time"]
    tombstone = firestore_client.document("_tombstones/users/ids/u_0").get()
    assert tombstone.exists and tombstone.get("id") == "u_0"


def test_snapshot_object_headers_and_manifest(function_client, firestore_client, bucket):
    writer = Writer(firestore_client)
    post_event(function_client, *writer.set_request("u_1", user(1)))
    blob = bucket.get_blob("snapshots/users/index.json")
    # The emulator keeps only the media type of the upload (it drops `; charset=utf-8`, which
    # Cloud Storage keeps); test_publish_storage.py checks the exact header we send.
    assert blob.content_type.split(";")[0] == "application/json"
    assert blob.cache_control == "private, max-age=0, no-cache"
    entry = manifest(bucket)["collections"]["users"]
    body = snapshot_body(bucket)
    assert entry == {"count": 1, "contentHash": body["contentHash"],
                     "generation": str(blob.generation), "generatedAt": body["generatedAt"]}
    assert bucket.get_blob("snapshots/manifest.json").cache_control == \
        "private, max-age=0, no-cache"


def test_json_encoded_events_are_published_too(function_client, firestore_client, bucket):
    writer = Writer(firestore_client)
    headers, body = writer.set_request("u_7", user(7), content_type="application/json")
    assert headers["Content-Type"] == "application/json"
    assert post_event(function_client, headers, body).status_code == 200
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_duplicates_change_nothing(function_client, firestore_client, bucket):
    writer = Writer(firestore_client)
    request = writer.set_request("u_1", user(1))
    post_event(function_client, *request)
    generation = bucket.get_blob("snapshots/users/index.json").generation
    for _ in range(3):
        assert post_event(function_client, *request).status_code == 200
    assert bucket.get_blob("snapshots/users/index.json").generation == generation


def test_saved_samples_through_the_function(function_client, firestore_client, bucket):
    """The saved protobuf samples (created, updated, deleted), delivered out of order."""
    now = format_ns(time.time_ns())
    created, updated, deleted = (structured_to_binary({**sample(name), "time": now})
                                 for name in ("firestore-created", "firestore-updated",
                                              "firestore-deleted"))
    firestore_client.collection("users").document("u_other").set(user(9))
    for request in (updated, created):
        assert post_event(function_client, *request).status_code == 200
    items = {item["id"]: item for item in snapshot_body(bucket)["items"]}
    assert items["u_ada"]["status"] == "inactive", "the older created event must not win"
    assert "u_other" in items, "the first event bootstrapped the snapshot from Firestore"
    assert post_event(function_client, *deleted).status_code == 200
    assert post_event(function_client, *updated).status_code == 200
    body = snapshot_body(bucket)
    assert [item["id"] for item in body["items"]] == ["u_other"]
    assert [t["id"] for t in body["tombstones"]] == ["u_ada"]


def test_unconfigured_collection_is_ignored_with_a_log_line_not_retried(
        function_client, bucket, reads, caplog):
    headers, body = structured_to_binary({**sample("firestore-unconfigured"),
                                          "time": format_ns(time.time_ns())})
    reads.reset()
    with caplog.at_level(logging.WARNING, logger="dashboard.publish"):
        response = post_event(function_client, headers, body)
    assert response.status_code == 200, "a non-2xx answer would make Eventarc retry it"
    assert "collection 'clients' is not configured" in caplog.text
    assert bucket.get_blob("snapshots/clients/index.json") is None
    assert reads.count() == 0


@pytest.mark.parametrize("path", ["_publisher/state", "_tombstones/users/ids/u_1",
                                  "users/u_1/notes/n_1"])
def test_the_publisher_never_reacts_to_its_own_writes(function_client, firestore_client,
                                                      bucket, path, caplog):
    collection, _, doc_id = path.rpartition("/")
    writer = Writer(firestore_client, collection)
    with caplog.at_level(logging.WARNING, logger="dashboard.publish"):
        response = post_event(function_client, *writer.set_request(doc_id, {"x": 1}))
    assert response.status_code == 200
    assert "is not configured" in caplog.text
    assert list(bucket.list_blobs(prefix="snapshots/")) == []


def test_events_older_than_max_event_age_are_dropped_with_a_log_line(function_client, bucket,
                                                                     caplog):
    headers, body = structured_to_binary(sample("firestore-created"))  # from 2024
    with caplog.at_level(logging.ERROR, logger="dashboard.publish"):
        assert post_event(function_client, headers, body).status_code == 200
    assert "MAX_EVENT_AGE_S" in caplog.text
    assert bucket.get_blob("snapshots/users/index.json") is None


def test_undecodable_events_are_acknowledged_with_a_log_line(function_client, caplog):
    headers, _ = structured_to_binary(sample("firestore-created"))
    with caplog.at_level(logging.ERROR, logger="dashboard.publish"):
        response = post_event(function_client, headers, b"\xff\x00 not protobuf")
    assert response.status_code == 200
    assert "undecodable" in caplog.text


def test_storage_down_fails_the_event_so_that_it_is_retried(function_client, firestore_client,
                                                            monkeypatch):
    from tests.helpers import closed_port

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://" + closed_port())
    monkeypatch.setenv("PUBLISH_WAIT_S", "2")
    monkeypatch.setenv("STORAGE_TIMEOUT_S", "0.5")
    writer = Writer(firestore_client)
    response = post_event(function_client, *writer.set_request("u_1", user(1)))
    assert response.status_code == 500


def test_steady_state_costs_at_most_one_document_read_per_event(make_publisher,
                                                                firestore_client, storage_client,
                                                                bucket, reads):
    from tests.helpers import publish

    writer = Writer(firestore_client)
    for i in range(100):
        writer.set(f"u_{i:03d}", user(i))
    publish(firestore_client, storage_client, bucket.name)
    publisher = make_publisher(PUBLISH_INTERVAL_S="0.05")
    reads.reset()
    events = 10
    for n in range(events):
        publisher.publish(writer.set(f"u_{n * 7:03d}", user(n, status="inactive")))
        time.sleep(0.06)  # one change per slot interval: the steady state
    assert reads.count() <= events, f"{reads.count()} reads for {events} events"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    assert publisher.stats.snapshot_writes == events


def test_a_missing_snapshot_is_built_from_firestore_first(make_publisher, firestore_client,
                                                          bucket):
    writer = Writer(firestore_client)
    for i in range(5):
        writer.set(f"u_{i}", user(i))
    make_publisher().publish(writer.set("u_9", user(9)))
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client) and body["count"] == 6


def test_a_corrupt_snapshot_is_rebuilt_not_merged_into(make_publisher, firestore_client, bucket):
    writer = Writer(firestore_client)
    writer.set("u_1", user(1))
    bucket.blob("snapshots/users/index.json").upload_from_string(b"{broken",
                                                           content_type="application/json")
    make_publisher().publish(writer.set("u_2", user(2)))
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_rebuilt_items_equal_what_the_read_api_serves(firestore_client, storage_client, bucket,
                                                      make_api):
    from tests.helpers import publish, seed_users

    seed_users(firestore_client, 12)
    publish(firestore_client, storage_client, bucket.name)
    body = snapshot_body(bucket)
    assert body["items"] == make_api().get("/users?limit=100").json["items"]
    assert json.loads(json.dumps(body))["nextPageToken"] is None
