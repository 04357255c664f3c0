"""The local event bridge (`dev/bridge.py`) and the local stack's publisher."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dev.bridge import EventBridge
from shared.events import WRITTEN, decode_event, parse_ns
from tests.helpers import publish
from tests.test_publish_support import attributes, firestore_items, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]


class Recorder:
    """An HTTP endpoint that records CloudEvents; `refuse` answers that many with 503 first."""

    def __init__(self, refuse: int = 0):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if recorder.refused < refuse:
                    recorder.refused += 1
                    self.send_response(503)
                else:
                    recorder.requests.append((dict(self.headers), body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/publish_snapshot"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    running = Recorder()
    yield running
    running.close()


def wait_for(predicate, timeout_s: float = 10.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_bridge_sends_the_cloudevents_eventarc_sends(firestore_client, recorder):
    firestore_client.document("users/u_before").set(user(0))
    bridge = EventBridge(firestore_client, recorder.url, ["users"],
                         project=firestore_client.project).start()
    try:
        ref = firestore_client.document("users/u_1")
        ref.set(user(1))
        wait_for(lambda: len(recorder.requests) == 1)
        ref.set(user(1, status="inactive"))
        wait_for(lambda: len(recorder.requests) == 2)
        ref.delete()
        wait_for(lambda: len(recorder.requests) == 3)
    finally:
        bridge.stop()
    project = firestore_client.project
    changes = []
    for headers, body in recorder.requests:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert lowered["content-type"] == "application/protobuf"
        assert lowered["ce-type"] == WRITTEN and lowered["ce-specversion"] == "1.0"
        assert lowered["ce-source"] == \
            f"//firestore.googleapis.com/projects/{project}/databases/(default)"
        assert lowered["ce-subject"] == "documents/users/u_1"
        assert lowered["ce-document"] == "users/u_1"
        assert lowered["ce-database"] == "(default)" and lowered["ce-namespace"] == "(default)"
        assert lowered["ce-id"] and parse_ns(lowered["ce-time"])
        wire = {("Content-Type" if k == "content-type" else k): v for k, v in lowered.items()}
        changes.append(decode_event(attributes(wire), body))
    assert [c.kind for c in changes] == ["created", "updated", "deleted"]
    assert changes[1].old_value["status"] == "active" and changes[1].value["status"] == "inactive"
    assert changes[2].old_value["status"] == "inactive"
    assert changes[0].version_ns < changes[1].version_ns < changes[2].version_ns
    assert len({c.event_id for c in changes}) == 3
    assert all(c.document_id == "u_1" for c in changes), "the initial data sent nothing"


def test_the_bridge_retries_a_refused_delivery(firestore_client):
    recorder = Recorder(refuse=2)
    bridge = EventBridge(firestore_client, recorder.url, ["users"],
                         project=firestore_client.project).start()
    try:
        firestore_client.document("users/u_1").set(user(1))
        wait_for(lambda: recorder.requests)
        assert bridge.wait_idle(10)
        assert recorder.refused == 2 and bridge.stats.retried == 2
        assert bridge.stats.delivered == 1 and bridge.stats.failed == 0
    finally:
        bridge.stop()
        recorder.close()


def test_in_the_local_stack_a_change_reaches_the_snapshot_within_seconds(
        emulator_env, fresh_instance, firestore_client, storage_client, bucket, monkeypatch):
    """The stack's one-port app (read API + publish_snapshot) and the bridge, as `make dev`
    runs them, with the default PUBLISH_INTERVAL_S of 1 s."""
    from werkzeug.serving import make_server

    from dev.app import create_stack_app

    monkeypatch.delenv("PUBLISH_INTERVAL_S", raising=False)
    for i in range(20):
        firestore_client.document(f"users/u_{i:02d}").set(user(i))
    publish(firestore_client, storage_client, bucket.name)
    server = make_server("127.0.0.1", 0, create_stack_app(
        {"users": "http", "jobs": "http", "publish_snapshot": "cloudevent"}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    bridge = EventBridge(firestore_client, f"{base}/publish_snapshot", ["users", "jobs"],
                         project=firestore_client.project).start()

    def snapshot_ids():
        return [item["id"] for item in snapshot_body(bucket)["items"]]

    try:
        firestore_client.document("users/u_new").set(user(99))
        created = wait_for(lambda: "u_new" in snapshot_ids())
        firestore_client.document("users/u_03").delete()
        deleted = wait_for(lambda: "u_03" not in snapshot_ids())
        for i in range(30):  # a small burst through the bridge
            firestore_client.document(f"users/u_{i % 20:02d}").set(user(i, status="pending"))
        burst = wait_for(lambda: snapshot_body(bucket)["items"]
                         == firestore_items(firestore_client))
        assert bridge.wait_idle(10) and bridge.stats.failed == 0
    finally:
        bridge.stop()
        server.shutdown()
    assert created < 2.5 and deleted < 2.5 and burst < 3.5, (created, deleted, burst)
    assert snapshot_body(bucket, "users")["items"] == firestore_items(firestore_client)
