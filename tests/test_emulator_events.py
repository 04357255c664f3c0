"""Google's Firestore emulator delivers its own change events to `publish_snapshot`.

The saved payloads (`tests/data/events/emulator-*.json`) are real deliveries of the emulator
(a create, an update and a delete of `users/u_1`), captured as received: their path, `ce-*`
headers and base64 text body. The end-to-end test registers the local stack's triggers in the
session's emulator (started with `--functions_emulator`) and watches a write reach the
snapshot with nothing else involved.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from dev.app import create_stack_app
from dev.deliveries import EventHost
from dev.stack import prepare_emulator
from functions.publish.events import EventError, decode_event
from tests.helpers import publish
from tests.test_publish_support import firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]

EVENTS = Path(__file__).parent / "data" / "events"
KINDS = ("create", "update", "delete")


def saved(kind: str) -> dict:
    """One saved delivery: {"path", "headers", "body"}."""
    return json.loads((EVENTS / f"emulator-{kind}.json").read_text(encoding="utf-8"))


def attributes_of(headers: dict[str, str]) -> dict[str, str]:
    """CloudEvent attributes from binary-mode headers, as functions-framework reads them."""
    found = {key[3:].lower(): value for key, value in headers.items()
             if key.lower().startswith("ce-")}
    found["datacontenttype"] = headers["Content-Type"]
    return found


def test_saved_deliveries_are_the_emulators_quirks():
    """What the edge must accept: the doubled source, a time cut to the second, no mask."""
    for kind in KINDS:
        delivery = saved(kind)
        headers = delivery["headers"]
        assert delivery["path"] == \
            "/functions/projects/demo-capture/triggers/publish-snapshot-users"
        assert headers["ce-source"] == \
            "//firestore.googleapis.com/projects/projects/demo-capture/databases/(default)"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", headers["ce-time"])
        assert headers["Content-Type"] == "application/protobuf"
        base64.b64decode(delivery["body"], validate=True)  # text, not the raw bytes


def test_saved_deliveries_decode_to_the_changes_made():
    changes = [decode_event(attributes_of(saved(kind)["headers"]),
                            base64.b64decode(saved(kind)["body"])) for kind in KINDS]
    assert [change.kind for change in changes] == ["created", "updated", "deleted"]
    assert {(c.project, c.database, c.collection, c.document_id) for c in changes} == {
        ("demo-capture", "(default)", "users", "u_1")}
    created, updated, deleted = changes
    assert created.value["name"] == "Ada" and created.value["n"] == 1
    assert updated.old_value["n"] == 1 and updated.value["n"] == 2
    assert updated.update_mask == ()  # the emulator sends no mask
    assert deleted.old_value["n"] == 2
    # Versions order the changes although `time` is cut to the second.
    assert created.version_ns < updated.version_ns < deleted.version_ns


def test_the_doubled_source_is_accepted_only_in_that_form():
    headers = dict(saved("create")["headers"])
    body = base64.b64decode(saved("create")["body"])
    for source in ("//firestore.googleapis.com/projects/demo-capture/databases/(default)",
                   "//firestore.googleapis.com/projects/projects/demo-capture/databases/(default)"):
        change = decode_event({**attributes_of(headers), "source": source}, body)
        assert (change.project, change.database) == ("demo-capture", "(default)")
    with pytest.raises(EventError):
        decode_event({**attributes_of(headers), "type": "google.cloud.storage.object.v1"}, body)


def test_the_delivery_route_hands_the_decoded_bytes_to_the_function():
    received: list[tuple[str, dict, bytes]] = []

    def function(environ, start_response):
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        received.append((environ["PATH_INFO"], {k: v for k, v in environ.items()
                                                 if k.startswith("HTTP_CE_")}, body))
        start_response("204 No Content", [])
        return [b""]

    client = Client(EventHost(function))
    delivery = saved("update")
    path = delivery["path"].removeprefix("/functions")
    response = client.post(path, data=delivery["body"].encode(), headers=delivery["headers"])
    assert response.status_code == 202  # answered at once; the function runs on the pool
    wait_for(lambda: received, 5)
    assert received[0][0] == "/"
    assert received[0][1]["HTTP_CE_SUBJECT"] == "documents/users/u_1"
    assert received[0][2] == base64.b64decode(delivery["body"])
    assert client.post(path, data=b"not base64 at all!").status_code == 400
    assert client.get(path).status_code == 404
    assert client.post("/projects/p/other", data=delivery["body"]).status_code == 404
    assert len(received) == 1


def wait_for(predicate, timeout_s: float) -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s} s")
        time.sleep(0.02)


def test_a_write_in_the_emulator_reaches_the_snapshot_through_its_own_events(
        emulators, emulator_env, fresh_instance, firestore_client, storage_client, bucket,
        monkeypatch):
    """The local stack's wiring, end to end: triggers registered in Google's emulator, its
    deliveries to the one-port host's `/functions/...`, `publish_snapshot`, the snapshot."""
    if emulators.events is None:
        pytest.skip("FIRESTORE_EMULATOR_HOST names an emulator this session did not start: "
                    "its --functions_emulator does not point at this test's receiver")
    monkeypatch.delenv("PUBLISH_INTERVAL_S", raising=False)  # the default, as `make dev` runs
    for i in range(20):
        firestore_client.document(f"users/u_{i:02d}").set(user(i))
    publish(firestore_client, storage_client, bucket.name)
    app = create_stack_app({"publish_snapshot": "cloudevent"}, static_dir=None)
    emulators.events.route(firestore_client.project, app)
    try:
        prepare_emulator(emulators.firestore, firestore_client.project, ("users", "jobs"))

        def snapshot_ids() -> list[str]:
            return [item["id"] for item in snapshot_body(bucket)["items"]]

        # Deadlines for a loaded CI machine only: how fast changes land is measured side by
        # side by `make bench-burst` and `make bench-publish`, not here.
        firestore_client.document("users/u_new").set(user(99))
        wait_for(lambda: "u_new" in snapshot_ids(), 10)
        firestore_client.document("users/u_03").delete()
        wait_for(lambda: "u_03" not in snapshot_ids(), 10)
        for i in range(30):  # a burst: coalesced, and the last change is published
            firestore_client.document(f"users/u_{i % 20:02d}").set(user(i, status="pending"))
        wait_for(lambda: snapshot_body(bucket)["items"] == firestore_items(firestore_client), 15)
        assert "u_03" in {t["id"] for t in snapshot_body(bucket)["tombstones"]}
    finally:  # later deliveries of this project must not reach a test that is over
        emulators.events.route(firestore_client.project, None)


def test_the_stack_server_takes_deliveries_on_its_one_port(emulators, emulator_env,
                                                           fresh_instance, firestore_client,
                                                           bucket):
    """Over real HTTP, as `make dev` serves it: a saved delivery re-addressed to this test's
    project is published (the emulator's body and headers, unchanged but for the project)."""
    server = make_server("127.0.0.1", 0, create_stack_app(
        {"publish_snapshot": "cloudevent"}, static_dir=None), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project = firestore_client.project
    try:
        from google.events.cloud.firestore import DocumentEventData

        message = DocumentEventData.pb().FromString(base64.b64decode(saved("create")["body"]))
        message.value.name = message.value.name.replace("demo-capture", project)
        headers = {key: value.replace("demo-capture", project)
                   for key, value in saved("create")["headers"].items()}
        headers["ce-time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/functions/projects/{project}/triggers/"
            "publish-snapshot-users", data=base64.b64encode(message.SerializeToString()),
            headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        wait_for(lambda: _has_snapshot(bucket), 10)
    finally:
        server.shutdown()
    assert [item["id"] for item in snapshot_body(bucket)["items"]] == ["u_1"]


def _has_snapshot(bucket) -> bool:
    return bucket.get_blob("snapshots/users/index.json") is not None
