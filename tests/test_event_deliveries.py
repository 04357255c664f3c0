"""The local stack's event host (`dev/deliveries.py`): concurrency and retries as Eventarc's.

On Google's Firestore emulator, through its own deliveries (the session emulator runs with
`--functions_emulator`, `emulators.events` routes a project's deliveries to a test's app):
a burst of 2,000 writes reaches the snapshot completely (in batches, the stack's default); a
delivery that fails a few times is retried and lands, one request each or in a batch (the rest
of its batch is not delivered again); one that keeps failing is dropped after its retry budget,
with a log line. Without the emulator: every delivery is under way at once (none queues behind
held ones), batches gather deliveries and keep to the concurrency, the settings and their
backoff schedule. Speed is measured by `bench/burst_bench.py`, not here.
"""

from __future__ import annotations

import base64
import logging
import threading

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response

from dev.app import MAIN, PublishBatches, create_stack_app
from dev.deliveries import DeliverySettings, EventHost
from dev.stack import prepare_emulator
from shared.errors import ConfigError
from tests.helpers import publish
from tests.test_emulator_events import attributes_of, saved, wait_for
from tests.test_publish_support import firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]

QUICK_RETRIES = DeliverySettings(retry_min_s=0.05, retry_max_s=0.2, max_attempts=4,
                                 max_age_s=30)
LIVENESS_S = 60  # a bound for "it happens", not a target (the benchmark measures the target)


@pytest.fixture
def emulator_events(emulators):
    if emulators.events is None:
        pytest.skip("FIRESTORE_EMULATOR_HOST names an emulator this session did not start: "
                    "its --functions_emulator does not point at this test's receiver")
    return emulators.events


@pytest.fixture
def publish_app(emulator_env, fresh_instance, monkeypatch):
    """`publish_snapshot` of main.py as functions-framework serves it, with the default write
    slot (PUBLISH_INTERVAL_S=1, as `make dev` runs)."""
    from functions_framework import create_app

    monkeypatch.delenv("PUBLISH_INTERVAL_S", raising=False)
    return create_app(target="publish_snapshot", source=str(MAIN), signature_type="cloudevent")


class Flaky:
    """A WSGI app in front of `publish_snapshot` that fails the deliveries of chosen documents:
    `failures[doc_id]` attempts each (an exception first, then 500s; -1: always). It records
    every attempt as (doc_id, ce-id)."""

    def __init__(self, app, failures: dict[str, int]):
        self.app = app
        self.failures = dict(failures)
        self.attempts: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        doc_id = environ.get("HTTP_CE_SUBJECT", "").rpartition("/")[2]
        with self.lock:
            self.attempts.append((doc_id, environ.get("HTTP_CE_ID", "")))
            tried = sum(1 for seen, _ in self.attempts if seen == doc_id)
            budget = self.failures.get(doc_id, 0)
        if budget == -1 or tried <= budget:
            if tried == 1:
                raise RuntimeError(f"connection reset while publishing {doc_id}")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"publishing failed: 504 Deadline Exceeded"]
        return self.app(environ, start_response)

    def tries(self, doc_id: str) -> list[str]:
        """The event ids of each attempt at `doc_id`'s delivery."""
        with self.lock:
            return [event_id for seen, event_id in self.attempts if seen == doc_id]


class FlakyBatches:
    """The stack's `batch_app` (the real publisher behind it) failing the events of chosen
    documents: `failures[doc_id]` attempts each (the first by raising, which fails the whole
    batch, then by answering a failure for that event only). It records every attempt as
    (doc_id, ce-id), and each batch's size."""

    def __init__(self, failures: dict[str, int]):
        self.publish = PublishBatches()
        self.failures = dict(failures)
        self.attempts: list[tuple[str, str]] = []
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, events):
        failed: dict[int, str] = {}
        with self.lock:
            self.batches.append(len(events))
            for position, (attributes, _) in enumerate(events):
                doc_id = attributes["subject"].rpartition("/")[2]
                self.attempts.append((doc_id, attributes["id"]))
                tried = sum(1 for seen, _ in self.attempts if seen == doc_id)
                if tried <= self.failures.get(doc_id, 0):
                    failed[position] = ("raise" if tried == 1 else
                                        "publishing failed: 504 Deadline Exceeded")
        if "raise" in failed.values():
            doc_id = events[next(p for p, why in failed.items() if why == "raise")][0]["subject"]
            raise RuntimeError(f"connection reset while publishing {doc_id.rpartition('/')[2]}")
        passed = [position for position in range(len(events)) if position not in failed]
        answers = self.publish([events[position] for position in passed])
        merged: list[str | None] = [failed.get(position) for position in range(len(events))]
        for position, answer in zip(passed, answers, strict=True):
            merged[position] = answer
        return merged

    def tries(self, doc_id: str) -> list[str]:
        """The event ids of each attempt at `doc_id`'s delivery."""
        with self.lock:
            return [event_id for seen, event_id in self.attempts if seen == doc_id]


@pytest.fixture
def routed(emulators, emulator_events, emulator_env, fresh_instance, firestore_client,
           storage_client, bucket):
    """`routed(app)`: the project's first 20 users published, the stack's triggers registered,
    and the project's deliveries routed to `app` (an `EventHost` is mounted at `/functions`, as
    the stack mounts it; unrouted again at the end of the test)."""
    for i in range(20):
        firestore_client.document(f"users/u_{i:02d}").set(user(i))
    publish(firestore_client, storage_client, bucket.name)

    def route(app):
        mounted = app
        if isinstance(app, EventHost):
            mounted = DispatcherMiddleware(Response(status=404), {"/functions": app})
            mounted.close = app.close
        emulator_events.route(firestore_client.project, mounted)
        prepare_emulator(emulators.firestore, firestore_client.project, ("users", "jobs"))
        return app

    yield route
    emulator_events.route(firestore_client.project, None)


def post_deliveries(host: EventHost, count: int) -> None:
    """POST `count` copies of a saved delivery (ids `event-0`...) to the host: each is 202."""
    client = Client(host)
    delivery = saved("update")
    path = delivery["path"].removeprefix("/functions")
    for i in range(count):
        headers = {**delivery["headers"], "ce-id": f"event-{i}"}
        assert client.post(path, data=delivery["body"].encode(),
                           headers=headers).status_code == 202


def _snapshot_ids(bucket) -> set[str]:
    return {item["id"] for item in snapshot_body(bucket)["items"]}


def test_a_burst_of_2000_writes_reaches_the_snapshot_through_the_emulators_events(
        routed, firestore_client, bucket, monkeypatch):
    """Written through Firestore (the Admin SDK, 4 commits of 500), delivered by the emulator
    itself to the stack's event host and `publish_snapshot`: every change lands."""
    monkeypatch.delenv("PUBLISH_INTERVAL_S", raising=False)  # the default, as `make dev` runs
    app = routed(create_stack_app({"publish_snapshot": "cloudevent"}, static_dir=None,
                                  deliveries=DeliverySettings()))
    burst = [f"b_{i:04d}" for i in range(2000)]
    for start in range(0, len(burst), 500):
        batch = firestore_client.batch()
        for doc_id in burst[start:start + 500]:
            batch.set(firestore_client.document(f"users/{doc_id}"),
                      user(int(doc_id[2:]), status="pending"))
        batch.commit()
    wait_for(lambda: set(burst) <= _snapshot_ids(bucket), LIVENESS_S)
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    assert app.event_host.wait_idle(LIVENESS_S)
    stats = app.event_host.stats
    assert stats.received >= len(burst) and stats.dropped == 0 and stats.refused == 0


def test_a_delivery_that_fails_is_retried_with_backoff_and_lands(
        routed, publish_app, firestore_client, bucket, caplog):
    """An exception, then two 500s (e.g. `publishing failed: 504 Deadline Exceeded` while
    Firestore was frozen): the same event is tried again after 0.05, 0.1, 0.2 s and lands."""
    flaky = Flaky(publish_app, {"u_flaky": 3})
    host = routed(EventHost(flaky, QUICK_RETRIES))
    caplog.set_level(logging.WARNING, logger="dashboard.stack")
    firestore_client.document("users/u_flaky").set(user(77))
    wait_for(lambda: "u_flaky" in _snapshot_ids(bucket), LIVENESS_S)
    tries = flaky.tries("u_flaky")
    assert len(tries) == 4 and len(set(tries)) == 1  # one event, delivered four times
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert "RuntimeError: connection reset while publishing u_flaky" in retries[0]
    assert "(500 Internal Server Error publishing failed: 504 Deadline Exceeded)" in retries[1]
    assert [message.rsplit("retrying in ", 1)[1] for message in retries] == [
        "0.05 s", "0.10 s", "0.20 s"]
    assert host.wait_idle(LIVENESS_S)
    assert (host.stats.delivered, host.stats.retried, host.stats.dropped) == (1, 3, 0)
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_a_delivery_that_fails_in_a_batch_is_retried_alone_and_lands(
        routed, firestore_client, bucket, caplog, monkeypatch):
    """The stack's batches: a batch that raises is tried again whole; then the one event that
    still fails is retried with backoff, alone, while the rest of its batch is done."""
    monkeypatch.setenv("PUBLISH_INTERVAL_S", "0.05")
    flaky = FlakyBatches({"u_flaky": 3})
    host = routed(EventHost(settings=QUICK_RETRIES, batch_app=flaky))
    caplog.set_level(logging.WARNING, logger="dashboard.stack")
    batch = firestore_client.batch()
    for doc_id in ("u_flaky", "u_fine_1", "u_fine_2"):
        batch.set(firestore_client.document(f"users/{doc_id}"), user(77))
    batch.commit()
    wait_for(lambda: {"u_flaky", "u_fine_1", "u_fine_2"} <= _snapshot_ids(bucket), LIVENESS_S)
    assert host.wait_idle(LIVENESS_S)
    tries = flaky.tries("u_flaky")
    assert len(tries) == 4 and len(set(tries)) == 1  # one event, delivered four times
    fine = [len(flaky.tries(doc_id)) for doc_id in ("u_fine_1", "u_fine_2")]
    # Each is tried again only when it shared the batch that raised: at most twice.
    assert all(1 <= count <= 2 for count in fine), fine
    retries = [r.getMessage() for r in caplog.records
               if "of documents/users/u_flaky:" in r.getMessage()
               and "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert "RuntimeError: connection reset while publishing u_flaky" in retries[0]
    assert "(publishing failed: 504 Deadline Exceeded)" in retries[1]
    assert [message.rsplit("retrying in ", 1)[1] for message in retries] == [
        "0.05 s", "0.10 s", "0.20 s"]
    assert (host.stats.delivered, host.stats.dropped) == (3, 0)
    assert host.stats.retried == 3 + sum(count - 1 for count in fine)
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    host.close()
    flaky.publish.close()


def test_a_delivery_beyond_its_retry_budget_is_dropped_and_logged(
        routed, publish_app, firestore_client, bucket, caplog):
    flaky = Flaky(publish_app, {"u_lost": -1})
    host = routed(EventHost(flaky, QUICK_RETRIES))
    caplog.set_level(logging.WARNING, logger="dashboard.stack")
    firestore_client.document("users/u_lost").set(user(66))
    firestore_client.document("users/u_kept").set(user(67))
    wait_for(lambda: "u_kept" in _snapshot_ids(bucket), LIVENESS_S)
    assert host.wait_idle(LIVENESS_S)
    assert len(flaky.tries("u_lost")) == QUICK_RETRIES.max_attempts
    assert "u_lost" not in _snapshot_ids(bucket)  # lost: the catch-up's job to repair
    drops = [r for r in caplog.records if r.getMessage().startswith("dropping event")]
    assert len(drops) == 1 and drops[0].levelno == logging.ERROR
    assert "of documents/users/u_lost after 4 attempts" in drops[0].getMessage()
    assert (host.stats.dropped, host.stats.retried) == (1, 3)


def test_no_delivery_queues_behind_held_ones():
    """`publish_snapshot` holds each request until its change is written: 500 held deliveries
    are all under way at once (the pool of 16 before ran them 16 at a time)."""
    held = threading.Event()
    under_way: list[str] = []
    lock = threading.Lock()

    def holding(environ, start_response):
        with lock:
            under_way.append(environ["HTTP_CE_ID"])
        held.wait(LIVENESS_S)
        start_response("204 No Content", [])
        return [b""]

    host = EventHost(holding, DeliverySettings())
    try:
        post_deliveries(host, 500)
        wait_for(lambda: len(under_way) == 500, LIVENESS_S)
    finally:
        held.set()
    assert host.wait_idle(LIVENESS_S)
    assert host.stats.delivered == 500
    host.close()


def test_batches_gather_deliveries_and_keep_to_the_concurrency():
    """300 deliveries with room for 100: the first 100 are held (in fewer calls than
    deliveries), the rest wait for room, nothing is lost or delivered twice."""
    held = threading.Event()
    lock = threading.Lock()
    seen: list[str] = []
    calls: list[int] = []
    under_way = [0]
    most = [0]

    def holding(events):
        with lock:
            calls.append(len(events))
            seen.extend(attributes["id"] for attributes, _ in events)
            under_way[0] += len(events)
            most[0] = max(most[0], under_way[0])
        held.wait(LIVENESS_S)
        with lock:
            under_way[0] -= len(events)
        return [None] * len(events)

    host = EventHost(settings=DeliverySettings(concurrency=100), batch_app=holding)
    try:
        post_deliveries(host, 300)
        wait_for(lambda: len(seen) == 100, LIVENESS_S)
        assert len(calls) < 100 and most[0] == 100
    finally:
        held.set()
    assert host.wait_idle(LIVENESS_S)
    assert sorted(seen) == sorted(f"event-{i}" for i in range(300))
    assert most[0] <= 100 and host.stats.delivered == 300
    host.close()


def test_a_batch_hands_each_event_as_functions_framework_reads_it():
    received: list[tuple[dict[str, str], bytes]] = []

    def record(events):
        received.extend(events)
        return [None] * len(events)

    host = EventHost(settings=DeliverySettings(), batch_app=record)
    delivery = saved("update")
    response = Client(host).post(delivery["path"].removeprefix("/functions"),
                                 data=delivery["body"].encode(), headers=delivery["headers"])
    assert response.status_code == 202
    assert host.wait_idle(LIVENESS_S)
    attributes, data = received[0]
    assert attributes == attributes_of(delivery["headers"])
    assert data == base64.b64decode(delivery["body"])
    with pytest.raises(ValueError):
        EventHost(lambda environ, start_response: [], batch_app=record)
    host.close()


def test_settings_and_backoff_schedule():
    settings = DeliverySettings.from_env({"EVENT_RETRY_MIN_S": "10", "EVENT_RETRY_MAX_S": "600",
                                          "EVENT_RETRY_ATTEMPTS": "8"})
    assert [settings.backoff_s(n) for n in range(1, 9)] == [
        10, 20, 40, 80, 160, 320, 600, 600]  # Eventarc's production bounds
    assert DeliverySettings.from_env({}) == DeliverySettings()
    assert DeliverySettings().batch and not DeliverySettings.from_env(
        {"EVENT_DELIVERY_BATCH": "false"}).batch
    with pytest.raises(ConfigError, match="EVENT_DELIVERY_CONCURRENCY"):
        DeliverySettings.from_env({"EVENT_DELIVERY_CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match="EVENT_RETRY_MAX_S"):
        DeliverySettings.from_env({"EVENT_RETRY_MIN_S": "5", "EVENT_RETRY_MAX_S": "1"})


def test_no_retry_starts_past_the_maximum_age_and_a_full_host_refuses():
    calls: list[int] = []

    def failing(environ, start_response):
        calls.append(1)
        start_response("503 Service Unavailable", [])
        return [b""]

    delivery = saved("create")
    path = delivery["path"].removeprefix("/functions")
    aged = EventHost(failing, DeliverySettings(retry_min_s=1, max_attempts=10, max_age_s=0.5))
    assert Client(aged).post(path, data=delivery["body"].encode(),
                             headers=delivery["headers"]).status_code == 202
    assert aged.wait_idle(LIVENESS_S)
    assert (len(calls), aged.stats.dropped) == (1, 1)  # a retry 1 s later would be too old
    aged.close()

    blocked = threading.Event()

    def holding(environ, start_response):
        blocked.wait(LIVENESS_S)
        start_response("204 No Content", [])
        return [b""]

    full = EventHost(holding, DeliverySettings(max_outstanding=2))
    client = Client(full)
    try:
        answers = [client.post(path, data=delivery["body"].encode(),
                               headers=delivery["headers"]).status_code for _ in range(3)]
    finally:
        blocked.set()
    assert answers == [202, 202, 503] and full.stats.refused == 1
    assert full.wait_idle(LIVENESS_S)
    full.close()
