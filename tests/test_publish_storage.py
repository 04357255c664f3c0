"""Cloud Storage's 429 and 412, served at the HTTP boundary.

No emulator says 429 (`rateLimitExceeded`: more than about one write per second to one object
name), and it cannot be told to lose a race on cue. So a small HTTP proxy sits between the
publisher's storage client and the emulator: it forwards every request, records it, and, when a
test says so, answers an upload itself with 429 or 412 (after letting another publisher write,
as a real race would).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from unittest import mock

import pytest

from shared.errors import Unavailable
from tests.storage_proxy import StorageProxy, upload_media_type, upload_metadata, upload_name
from tests.test_publish_support import Writer, firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]

RATE_LIMITED = {"error": {"code": 429, "message": "The object exceeded the rate limiting of "
                          "object mutations, please reduce the rate of create, update, and "
                          "delete requests.",
                          "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded",
                                      "message": "rate limit exceeded"}]}}
CONDITION_NOT_MET = {"error": {"code": 412, "message": "At least one of the pre-conditions you "
                               "specified did not hold.",
                               "errors": [{"domain": "global", "reason": "conditionNotMet",
                                           "message": "Precondition Failed"}]}}


def is_upload(request: dict, name: str = "snapshots/users/index.json") -> bool:
    return request["method"] == "POST" and upload_name(request) == name


@pytest.fixture
def proxy(emulators):
    running = StorageProxy(emulators.storage.host)
    yield running
    running.close()


@pytest.fixture
def proxied_storage(proxy, project_id):
    """A storage client whose every request goes through the proxy."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": proxy.url}):
        client = storage.Client(project=project_id, credentials=AnonymousCredentials())
    yield client
    client.close()


def test_every_upload_is_conditional_and_carries_its_headers(make_publisher, proxied_storage,
                                                             proxy, firestore_client, bucket):
    seen = []

    def watch(request):
        if request["path"].startswith("/upload/"):
            seen.append(request)

    proxy.intercept = watch
    writer = Writer(firestore_client)
    publisher = make_publisher(storage=proxied_storage)
    publisher.publish(writer.set("u_1", user(1)))
    first_generation = bucket.get_blob("snapshots/users/index.json").generation
    publisher.publish(writer.set("u_2", user(2)))
    names = [upload_name(request) for request in seen]
    assert names.count("snapshots/users/index.json") == 2 and "snapshots/manifest.json" in names
    for request in seen:
        assert "ifGenerationMatch" in request["query"], request["query"]
        # Parts are stored gzipped when that pays (their name says so); the rest is JSON.
        assert upload_media_type(request) == ("application/gzip"
                                              if upload_name(request).endswith(".gz")
                                              else "application/json; charset=utf-8")
        assert upload_metadata(request)["cacheControl"] == "private, max-age=0, no-cache"
    first, second = (int(r["query"]["ifGenerationMatch"][0]) for r in seen
                     if upload_name(r) == "snapshots/users/index.json")
    assert first == 0, "the first snapshot is create-only"
    assert second == first_generation, "the next write is conditional on the one it merged"


def test_429_rate_limit_is_retried_with_backoff(make_publisher, proxied_storage, proxy,
                                                firestore_client, bucket):
    writer = Writer(firestore_client)
    publisher = make_publisher(storage=proxied_storage)
    publisher.publish(writer.set("u_1", user(1)))
    refusals = {"left": 2}

    def rate_limit(request):
        if is_upload(request) and refusals["left"]:
            refusals["left"] -= 1
            return 429, RATE_LIMITED
        return None

    proxy.intercept = rate_limit
    proxy.log.clear()
    publisher.publish(writer.set("u_2", user(2)))
    attempts = proxy.uploads()
    assert [status for _, _, status in attempts] == [429, 429, 200]
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.2 for gap in gaps), f"retried without backing off: {gaps}"
    assert gaps[1] > gaps[0] * 0.9, "the backoff should grow"
    assert publisher.stats.throttled == 2
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_429_past_the_deadline_fails_the_event_so_that_eventarc_retries_it(
        make_publisher, proxied_storage, proxy, firestore_client, bucket):
    writer = Writer(firestore_client)
    publisher = make_publisher(storage=proxied_storage, PUBLISH_WAIT_S="2")
    publisher.publish(writer.set("u_1", user(1)))
    proxy.intercept = lambda request: (429, RATE_LIMITED) if is_upload(request) else None
    event = writer.set("u_2", user(2))
    started = time.monotonic()
    with pytest.raises(Unavailable, match="kept failing"):
        publisher.publish(event)
    assert time.monotonic() - started < 5
    proxy.intercept = lambda request: None
    publisher.publish(event)  # the redelivery
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_412_merges_again_on_the_newer_snapshot(make_publisher, proxied_storage, proxy,
                                                firestore_client, storage_client, bucket):
    """Instance A loses the race to instance B: A's upload gets 412 after B wrote, so A reads
    B's snapshot and merges its change into it; neither change is lost."""
    writer = Writer(firestore_client)
    a = make_publisher(storage=proxied_storage)
    b = make_publisher(PUBLISH_INTERVAL_S="0")  # talks to the emulator directly
    a.publish(writer.set("u_0", user(0)))
    change_a = writer.set("u_a", user(1))
    change_b = writer.set("u_b", user(2))
    raced = {"done": False}

    def lose_the_race(request):
        if is_upload(request) and not raced["done"]:
            raced["done"] = True
            b.publish(change_b)  # B writes between A's read and A's write
            return 412, CONDITION_NOT_MET
        return None

    proxy.intercept = lose_the_race
    a.publish(change_a)
    assert raced["done"] and a.stats.conflicts == 1
    assert [status for _, _, status in proxy.uploads()][-2:] == [412, 200]
    body = snapshot_body(bucket)
    assert [item["id"] for item in body["items"]] == ["u_0", "u_a", "u_b"]
    assert body["items"] == firestore_items(firestore_client)


def test_a_real_race_on_the_emulator_never_puts_an_older_snapshot_back(make_publisher,
                                                                      firestore_client, bucket):
    """Two instances with stale caches write at once; generation preconditions (enforced by
    our patched emulator) make the loser merge again."""
    writer = Writer(firestore_client)
    a, b = make_publisher(PUBLISH_INTERVAL_S="0"), make_publisher(PUBLISH_INTERVAL_S="0")
    a.publish(writer.set("u_0", user(0)))
    b.publish(writer.set("u_1", user(1)))
    events = [writer.set(f"u_{i}", user(i)) for i in range(2, 12)]
    threads = [threading.Thread(target=(a if i % 2 else b).publish, args=(event,))
               for i, event in enumerate(events)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
