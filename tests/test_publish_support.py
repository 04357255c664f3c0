"""Fixtures and helpers of the snapshot publisher tests (this module holds no tests).

`Writer` writes documents through the real Firestore client and returns the event Eventarc
would deliver for each write (built from the write's own result, protobuf on the wire), so the
tests can deliver events late, twice, shuffled or concurrently.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from functions.publish.events import DocumentChange, DocumentVersion, decode_event, encode_event
from shared.settings import Settings
from shared.times import to_ns

ROOT = Path(__file__).resolve().parent.parent
FAST = {"PUBLISH_INTERVAL_S": "0.05", "PUBLISH_WAIT_S": "60", "STORAGE_TIMEOUT_S": "10"}


@pytest.fixture
def make_publisher(emulator_env, firestore_client, storage_client):
    """`make_publisher(storage=None, **env)`: a publisher as one instance would build it."""
    from functions.publish.publisher import Publisher

    def make(storage: Any = None, db: Any = None, **env: str) -> Publisher:
        settings = Settings.from_env({**os.environ, **FAST, **env})
        return Publisher(settings, db=lambda: db or firestore_client,
                         storage=lambda: storage or storage_client)

    return make


@pytest.fixture
def function_client(emulator_env, monkeypatch, fresh_instance):
    """`publish_snapshot` of main.py served by functions-framework (a werkzeug test client)."""
    from functions_framework import create_app
    from werkzeug.test import Client

    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    app = create_app(target="publish_snapshot", source=str(ROOT / "main.py"),
                     signature_type="cloudevent")
    return Client(app)


class Writer:
    """Writes documents of one collection and hands back the events of those writes."""

    def __init__(self, db: Any, collection: str = "users"):
        self.db = db
        self.collection = collection
        self.project = db.project
        self.current: dict[str, DocumentVersion] = {}
        self._lock = threading.Lock()

    def set(self, doc_id: str, data: dict[str, Any], **wire: Any) -> DocumentChange:
        """Write a whole document; the event of that write."""
        return decode_event(*_split(self.set_request(doc_id, data, **wire)))

    def delete(self, doc_id: str, **wire: Any) -> DocumentChange:
        """Delete a document; the event of that delete (its time is the commit time)."""
        return decode_event(*_split(self.delete_request(doc_id, **wire)))

    def set_request(self, doc_id: str, data: dict[str, Any],
                    **wire: Any) -> tuple[dict[str, str], bytes]:
        """Write a whole document; the binary-mode request of its event."""
        result = self.db.collection(self.collection).document(doc_id).set(data)
        version = DocumentVersion(dict(data), to_ns(result.update_time))
        with self._lock:
            old = self.current.get(doc_id)
            self.current[doc_id] = version
        return self.request(doc_id, version, old, **wire)

    def delete_request(self, doc_id: str, **wire: Any) -> tuple[dict[str, str], bytes]:
        """Delete a document; the binary-mode request of its event."""
        commit_time = self.db.collection(self.collection).document(doc_id).delete()
        with self._lock:
            old = self.current.pop(doc_id, None)
        return self.request(doc_id, None, old, event_time_ns=to_ns(commit_time), **wire)

    def request(self, doc_id: str, value: DocumentVersion | None,
                old: DocumentVersion | None, **wire: Any) -> tuple[dict[str, str], bytes]:
        return encode_event(project=self.project, collection=self.collection,
                            document_id=doc_id, value=value, old_value=old, **wire)


def _split(request: tuple[dict[str, str], bytes]) -> tuple[dict[str, str], bytes]:
    headers, body = request
    return attributes(headers), body


def attributes(headers: dict[str, str]) -> dict[str, str]:
    """The CloudEvent attributes of binary-mode headers."""
    found = {key[3:]: value for key, value in headers.items() if key.startswith("ce-")}
    found["datacontenttype"] = headers["Content-Type"]
    return found


def user(i: int, **changes: Any) -> dict[str, Any]:
    """A small user document (what the schema allows)."""
    return {"name": f"User {i}", "email": f"user{i}@example.com", "role": "creator",
            "status": "active", "hourlyRate": 40 + i, **changes}


def snapshot_body(bucket: Any, collection: str = "users") -> dict[str, Any]:
    """The whole snapshot (its index and every part, read through the loader) as the parsed
    single-file view: the shape the one snapshot object had before parts."""
    from shared.snapshot_reader import load_view, read_current, single_file_body

    return json.loads(read_current(
        lambda: load_view(bucket.client, bucket.name, collection, timeout_s=10),
        single_file_body))


def manifest(bucket: Any) -> dict[str, Any]:
    """The parsed manifest object."""
    return json.loads(bucket.blob("snapshots/manifest.json").download_as_bytes())


def firestore_items(db: Any, collection: str = "users") -> list[dict[str, Any]]:
    """Every document of the collection as the read API encodes it, sorted by id."""
    from shared.encoding import encode_document

    return sorted((encode_document(doc.id, doc.to_dict())
                   for doc in db.collection(collection).stream()), key=lambda i: i["id"])


def post_event(client: Any, headers: dict[str, str], body: bytes) -> Any:
    """POST one binary-mode CloudEvent to a functions-framework test client."""
    return client.post("/", headers=headers, data=body)
