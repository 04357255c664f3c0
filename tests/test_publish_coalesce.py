"""Coalescing: a burst of document writes becomes few object writes, and the last one is kept."""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time

import pytest

from shared.errors import Unavailable
from tests.helpers import closed_port, publish
from tests.test_publish_support import Writer, firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]


def deliver(publishers, events, *, spread_s: float, workers: int = 64) -> tuple[float, float]:
    """Deliver events evenly over `spread_s` seconds, concurrently, round robin over instances,
    as Eventarc pushes them. Returns (seconds until the last delivery started, seconds until
    every delivery was acknowledged); raises what a delivery raised."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = []
        for n, event in enumerate(events):
            time.sleep(max(0.0, started + spread_s * n / len(events) - time.monotonic()))
            futures.append(pool.submit(publishers[n % len(publishers)].publish, event))
        last_sent = time.monotonic() - started
        for future in futures:
            future.result(timeout=120)
    return last_sent, time.monotonic() - started


@pytest.fixture
def seeded(firestore_client, storage_client, bucket):
    writer = Writer(firestore_client)
    for i in range(100):
        writer.set(f"u_{i:03d}", user(i))
    publish(firestore_client, storage_client, bucket.name)
    return writer


def test_a_burst_in_one_instance_becomes_one_write_per_interval(make_publisher, seeded,
                                                                firestore_client, bucket):
    interval, spread = 0.25, 1.0
    events = [seeded.set(f"u_{i % 100:03d}", user(i, status="pending")) for i in range(200)]
    publisher = make_publisher(PUBLISH_INTERVAL_S=str(interval))
    burst, acknowledged = deliver([publisher], events, spread_s=spread)
    writes = publisher.stats.snapshot_writes
    # The budget: one write per interval of the burst, plus one.
    assert writes <= math.ceil(max(burst, spread) / interval) + 1, \
        f"{writes} writes for a {burst:.2f} s burst"
    assert acknowledged - burst <= interval + 3.0, "the trailing edge took too long"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client), \
        "the last change of the burst was not published"


def test_instances_share_one_write_slot_and_hand_over_their_batches(make_publisher, seeded,
                                                                     firestore_client, bucket):
    interval, spread = 0.25, 1.5
    events = [seeded.set(f"u_{i % 100:03d}", user(i, role="editor")) for i in range(300)]
    instances = [make_publisher(PUBLISH_INTERVAL_S=str(interval)) for _ in range(3)]
    burst, acknowledged = deliver(instances, events, spread_s=spread)
    writes = sum(p.stats.snapshot_writes for p in instances)
    # One slot per interval over all instances: writes follow the time taken, not the events.
    assert writes <= math.ceil(acknowledged / interval) + 1, f"{writes} writes by 3 instances"
    assert acknowledged - burst <= 2 * interval + 3.0, "the trailing edge took too long"
    assert sum(p.stats.persisted for p in instances) > 0
    assert sum(p.stats.covered_by_others for p in instances) > 0, \
        "no instance's batch was ever published by another instance"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_a_change_right_after_a_write_waits_for_the_next_slot_then_is_published(
        make_publisher, seeded, firestore_client, bucket):
    publisher = make_publisher(PUBLISH_INTERVAL_S="0.5")
    publisher.publish(seeded.set("u_001", user(1, status="inactive")))
    written = time.monotonic()
    late = seeded.set("u_002", user(2, status="inactive"))
    publisher.publish(late)  # returns only once it is in the snapshot
    assert time.monotonic() - written >= 0.4, "two writes within one interval"
    items = {item["id"]: item for item in snapshot_body(bucket)["items"]}
    assert items["u_002"]["status"] == "inactive"


def test_when_the_leader_fails_every_change_of_its_batch_fails_too(make_publisher, seeded,
                                                                   project_id):
    """Nobody acknowledges a change that is not published: the followers raise as well, so
    Eventarc redelivers every event of the batch."""
    import os
    from unittest import mock

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": "http://" + closed_port()}):
        dead = storage.Client(project=project_id, credentials=AnonymousCredentials())
    publisher = make_publisher(storage=dead, PUBLISH_WAIT_S="2", STORAGE_TIMEOUT_S="0.5")
    events = [seeded.set(f"u_{i:03d}", user(i, status="pending")) for i in range(6)]
    outcomes: list[BaseException | None] = []
    lock = threading.Lock()

    def run(event):
        try:
            publisher.publish(event)
            outcome = None
        except BaseException as exc:
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == 6
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes


def test_a_batch_of_events_is_one_write_with_an_outcome_for_each(make_publisher, seeded,
                                                                 firestore_client, bucket):
    """`publish_many` (the local event host's batches): a duplicate and an unconfigured
    collection are acknowledged as such, the rest lands in one write."""
    publisher = make_publisher()
    first = seeded.set("u_001", user(1, status="inactive"))
    publisher.publish(first)
    writes = publisher.stats.snapshot_writes
    events = [first, *(seeded.set(f"u_{i:03d}", user(i, status="pending"))
                       for i in range(10, 20)),
              Writer(firestore_client, "clients").set("c_1", {"name": "elsewhere"})]
    assert publisher.publish_many(events) == ["duplicate"] + ["published"] * 10 + ["ignored"]
    assert publisher.stats.snapshot_writes == writes + 1
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_a_batch_that_is_not_written_fails_its_changes_and_acknowledges_the_rest(
        make_publisher, seeded, firestore_client, project_id, caplog):
    """`handle_events`: each change that was not written answers why (its event is retried);
    an undecodable event and an unconfigured collection are acknowledged (a retry cannot
    help)."""
    import logging
    import os
    from unittest import mock

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from functions.publish.serve import handle_events
    from tests.test_publish_support import attributes

    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": "http://" + closed_port()}):
        dead = storage.Client(project=project_id, credentials=AnonymousCredentials())
    publisher = make_publisher(storage=dead, PUBLISH_WAIT_S="2", STORAGE_TIMEOUT_S="0.5")
    requests = [seeded.set_request(f"u_{i:03d}", user(i, status="pending")) for i in (1, 2)]
    other = Writer(firestore_client, "clients").set_request("c_1", {"name": "elsewhere"})
    events = [(attributes(headers), body) for headers, body in requests]
    events += [(attributes(requests[0][0]), b"\xff\x00 not protobuf"),
               (attributes(other[0]), other[1])]
    with caplog.at_level(logging.ERROR, logger="dashboard.publish"):
        failures = handle_events(events, lambda: publisher)
    assert [failure.split(":")[0] if failure else failure for failure in failures] == [
        "Unavailable", "Unavailable", None, None]
    assert "undecodable" in caplog.text
