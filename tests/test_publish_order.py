"""At-least-once, unordered delivery: duplicates and late events never change the result."""

from __future__ import annotations

import queue
import random
import threading
import urllib.parse

import pytest

from shared.times import format_ns, format_timestamp, utc_now
from tests.helpers import publish
from tests.test_publish_support import Writer, firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]


def test_a_delete_is_not_undone_by_a_late_older_update(make_publisher, firestore_client,
                                                       storage_client, bucket, make_api,
                                                       snapshot_api):
    writer = Writer(firestore_client)
    writer.set("u_0", user(0))
    publish(firestore_client, storage_client, bucket.name)
    since = format_timestamp(utc_now())
    created = writer.set("u_1", user(1))
    updated = writer.set("u_1", user(1, status="inactive"))
    deleted = writer.delete("u_1")
    publisher = make_publisher()
    for event in (created, deleted, updated, created, updated):
        publisher.publish(event)
    body = snapshot_body(bucket)
    assert [item["id"] for item in body["items"]] == ["u_0"]
    assert body["tombstones"][0]["id"] == "u_1"
    assert body["tombstones"][0]["deletedAt"] == format_ns(deleted.version_ns)
    assert body["items"] == firestore_items(firestore_client)

    poll = f"/users?updatedSince={urllib.parse.quote(since)}"
    from_firestore = make_api().get(poll)
    assert from_firestore.headers["X-Data-Source"] == "firestore"
    assert from_firestore.json["deleted"] == ["u_1"]
    from_snapshot = snapshot_api.get(poll)
    assert from_snapshot.headers["X-Data-Source"] == "snapshot"
    assert from_snapshot.json["deleted"] == ["u_1"]
    assert make_api().get("/users").json.get("deleted") is None, "only polls list deletions"

    recreated = writer.set("u_1", user(1, name="Back again"))
    publisher.publish(deleted)  # a duplicate of the delete, delivered after the re-creation
    publisher.publish(recreated)
    publisher.publish(updated)
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_a_late_delete_of_an_older_version_does_not_remove_a_newer_document(make_publisher,
                                                                            firestore_client,
                                                                            bucket):
    writer = Writer(firestore_client)
    writer.set("u_1", user(1))
    deleted = writer.delete("u_1")
    recreated = writer.set("u_1", user(1, name="New"))
    publisher = make_publisher()
    publisher.publish(recreated)
    publisher.publish(deleted)
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    assert snapshot_body(bucket)["items"][0]["name"] == "New"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_shuffled_stream_with_duplicates_by_concurrent_workers_ends_equal_to_firestore(
        make_publisher, firestore_client, storage_client, bucket, make_api):
    """1,000 events for 200 documents (20% duplicates), shuffled, applied by 8 workers spread
    over 4 instances: the final snapshot equals Firestore's state exactly."""
    rng = random.Random(20240611)  # noqa: S311 - a reproducible shuffle
    writer = Writer(firestore_client)
    for i in range(200):
        writer.set(f"d_{i:03d}", user(i))
    publish(firestore_client, storage_client, bucket.name)
    initial = firestore_items(firestore_client)
    since = format_timestamp(utc_now())

    def changed(i: int, **fields) -> dict:
        return user(i, updatedAt=utc_now(), **fields)

    events = []
    deleted_ever = set()
    while len(events) < 800:
        doc_id = f"d_{rng.randrange(200):03d}"
        if doc_id not in writer.current:
            events.append(writer.set(doc_id, changed(rng.randrange(1000))))
        elif rng.random() < 0.25:
            events.append(writer.delete(doc_id))
            deleted_ever.add(doc_id)
        else:
            events.append(writer.set(doc_id, changed(rng.randrange(1000),
                                                     status=rng.choice(["active", "pending"]))))
    events += rng.sample(events, 200)
    rng.shuffle(events)
    assert len(events) == 1000

    instances = [make_publisher() for _ in range(4)]
    work: queue.Queue = queue.Queue()
    for event in events:
        work.put(event)
    errors: list[BaseException] = []

    def worker(publisher) -> None:
        while True:
            try:
                event = work.get_nowait()
            except queue.Empty:
                return
            try:
                publisher.publish(event)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(instances[n % 4],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:3]

    body = snapshot_body(bucket)
    expected = firestore_items(firestore_client)
    assert body["items"] == expected
    assert body["count"] == len(expected) == len(writer.current)
    stored = {doc.id: format_ns(_ns(doc.update_time))
              for doc in firestore_client.collection("users").stream()}
    assert body["updateTimes"] == stored
    # Every document gone now has a tombstone; a delete superseded by a re-creation whose event
    # came first never took effect, so it may have none.
    absent = {f"d_{i:03d}" for i in range(200)} - set(writer.current)
    assert absent <= {t["id"] for t in body["tombstones"]} <= deleted_ever
    # A dashboard that polls applies `deleted`, then `items`, and ends with Firestore's state.
    poll = make_api().get(f"/users?updatedSince={urllib.parse.quote(since)}&limit=1000").json
    assert absent <= set(poll["deleted"]) <= deleted_ever
    dashboard = {item["id"]: item for item in initial}
    for doc_id in poll["deleted"]:
        dashboard.pop(doc_id, None)
    dashboard.update({item["id"]: item for item in poll["items"]})
    assert sorted(dashboard.values(), key=lambda item: item["id"]) == expected

    stats = [p.stats for p in instances]
    writes = sum(s.snapshot_writes for s in stats)
    assert writes < 500, f"{writes} snapshot writes for 1,000 events: no coalescing"
    assert sum(s.persisted for s in stats) > 0, "no instance ever handed its batch over"


def _ns(value) -> int:
    from shared.times import to_ns

    return to_ns(value)
