"""Decoding Eventarc's Firestore CloudEvents at the edge (`functions.publish.events`).

The samples in tests/events/ are CloudEvents in structured JSON, as functions-framework keeps its
test events; protobuf data travels as `data_base64` there and is sent in binary mode (`ce-*`
headers, raw body), as Eventarc delivers it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from cloudevents.http import from_http

from functions.publish.events import (
    JSON,
    DocumentVersion,
    EventError,
    GeoPoint,
    Reference,
    decode_cloud_event,
    decode_event,
    encode_event,
    structured_to_binary,
)
from shared.encoding import encode_document
from shared.times import format_ns, parse_ns

SAMPLES = Path(__file__).resolve().parent / "events"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def decode_sample(name: str, **overrides):
    """Through the CloudEvents SDK exactly as functions-framework parses a request."""
    headers, body = structured_to_binary({**sample(name), **overrides})
    return decode_cloud_event(from_http(headers, body))


ADA = {
    "id": "u_ada", "avatar": "iVBORw==", "bio": None, "createdAt": "2024-03-01T09:30:00Z",
    "email": "ada@example.com", "home": {"latitude": 51.5, "longitude": -0.12},
    "hourlyRate": 80.5, "manager": "users/u_boss", "name": "Ada Lovelace", "rank": 7,
    "role": "creator", "skills": ["editing", "color"],
    "social": {"site": "https://ada.example", "x": None}, "status": "active",
    "updatedAt": "2024-03-02T10:00:00.123456Z", "verified": True,
}


def test_created_protobuf_event_decodes_to_a_typed_frozen_value():
    change = decode_sample("firestore-created")
    assert (change.kind, change.collection, change.document_id) == ("created", "users", "u_ada")
    assert (change.project, change.database) == ("demo-sample", "(default)")
    assert change.event_id == "7b0c3e2a-0001-4f7e-9d3a-000000000001"
    assert change.version_ns == parse_ns("2024-03-02T10:00:00.123456Z")
    assert change.old_value is None and change.update_mask == ()
    value = change.value
    assert isinstance(value["updatedAt"], dt.datetime) and value["updatedAt"].microsecond == 123456
    assert value["avatar"] == b"\x89PNG" and value["skills"] == ("editing", "color")
    assert value["home"] == GeoPoint(51.5, -0.12) and value["manager"] == Reference("users/u_boss")
    assert encode_document(change.document_id, value) == ADA
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.collection = "jobs"  # type: ignore[misc]
    with pytest.raises(TypeError):
        value["name"] = "someone else"  # type: ignore[index]


def test_updated_event_has_old_value_and_mask_and_json_decodes_the_same():
    protobuf = decode_sample("firestore-updated")
    as_json = decode_sample("firestore-updated-json")
    assert protobuf.kind == as_json.kind == "updated"
    assert protobuf.update_mask == ("hourlyRate", "status", "updatedAt")
    assert as_json.update_mask == protobuf.update_mask
    for field in ("value", "old_value", "update_time_ns", "old_update_time_ns", "version_ns",
                  "collection", "document_id", "project", "database", "event_time_ns"):
        assert getattr(as_json, field) == getattr(protobuf, field), field
    assert encode_document("u_ada", protobuf.value)["status"] == "inactive"
    assert encode_document("u_ada", protobuf.old_value) == ADA


def test_deleted_event_is_versioned_by_its_time():
    change = decode_sample("firestore-deleted")
    assert change.kind == "deleted" and change.deleted and change.value is None
    assert change.old_value["status"] == "inactive"
    assert change.version_ns == parse_ns("2024-03-04T12:00:00.5Z")
    assert format_ns(change.version_ns) == "2024-03-04T12:00:00.5Z"


def test_a_delete_is_always_newer_than_the_document_it_deleted():
    old = DocumentVersion({"a": 1}, update_time_ns=2_000_000_000_000_000_000)
    headers, body = encode_event(project="demo-x", collection="users", document_id="u1",
                                 value=None, old_value=old,
                                 event_time_ns=1_999_999_999_000_000_000)
    change = decode_event(_attributes(headers), body)
    assert change.version_ns == old.update_time_ns + 1


def test_structured_mode_with_base64_data_is_accepted_too():
    event = sample("firestore-created")
    structured = from_http({"Content-Type": "application/cloudevents+json"},
                           json.dumps(event).encode())
    assert decode_cloud_event(structured) == decode_sample("firestore-created")


def test_attributes_fall_back_to_subject_and_document_names():
    event = sample("firestore-created")
    del event["document"]
    headers, body = structured_to_binary(event)
    change = decode_event({**_attributes(headers), "subject": "", "source": ""}, body)
    assert change.document_path == "users/u_ada" and change.project == "demo-sample"


def test_subcollection_documents_name_their_whole_collection_path():
    version = DocumentVersion({"text": "hi"}, update_time_ns=10**18)
    headers, body = encode_event(project="demo-x", collection="users/u1/notes",
                                 document_id="n1", value=version, old_value=None)
    change = decode_event(_attributes(headers), body)
    assert (change.collection, change.document_id) == ("users/u1/notes", "n1")


@pytest.mark.parametrize("attributes, data, message", [
    ({"type": "google.cloud.storage.object.v1.finalized"}, b"", "not a Firestore document"),
    ({"id": ""}, None, "no id"),
    ({"time": "yesterday"}, None, "no valid time"),
    ({"document": "users"}, None, "not a document path"),
    ({}, b"\xff\xff\xff garbage", "undecodable"),
    ({"datacontenttype": JSON}, b"{not json", "undecodable"),
    ({}, 42, "unexpected event data"),
])
def test_malformed_events_raise_event_error(attributes, data, message):
    headers, body = structured_to_binary(sample("firestore-created"))
    base = _attributes(headers)
    with pytest.raises(EventError, match=message):
        decode_event({**base, **attributes}, body if data is None else data)


def test_encoded_event_matches_what_the_read_api_encodes(firestore_client):
    """A document with every value type, stored and read back by the real client: the event
    built from it decodes to the same JSON as the read API's encoding of the stored document."""
    from google.cloud import firestore

    ref = firestore_client.collection("users").document("u_types")
    ref.set({"s": "x", "i": 2**40, "f": 0.25, "nan": float("nan"), "b": False, "n": None,
             "t": dt.datetime(2024, 5, 6, 7, 8, 9, 654321, tzinfo=dt.UTC),
             "bytes": b"\x00\x01", "geo": firestore.GeoPoint(-33.9, 18.4),
             "ref": firestore_client.document("jobs/j1"), "arr": [1, "two", {"three": 3.0}],
             "map": {"nested": {"deep": [True]}}, "updatedAt": firestore.SERVER_TIMESTAMP})
    stored = ref.get()
    version = DocumentVersion(stored.to_dict(), _ns(stored.update_time),
                              _ns(stored.create_time))
    headers, body = encode_event(project=firestore_client.project, collection="users",
                                 document_id="u_types", value=version, old_value=None)
    change = decode_event(_attributes(headers), body)
    assert change.version_ns == _ns(stored.update_time)
    assert encode_document("u_types", change.value) == encode_document("u_types",
                                                                       stored.to_dict())


def _ns(value: dt.datetime) -> int:
    from shared.times import to_ns

    return to_ns(value)


def _attributes(headers: dict[str, str]) -> dict[str, str]:
    attributes = {key[3:]: value for key, value in headers.items() if key.startswith("ce-")}
    attributes["datacontenttype"] = headers["Content-Type"]
    return attributes


def test_saved_samples_are_binary_protobuf_or_json():
    for path in sorted(SAMPLES.glob("*.json")):
        event = json.loads(path.read_text())
        assert event["type"] == "google.cloud.firestore.document.v1.written", path.name
        assert event["source"].startswith("//firestore.googleapis.com/projects/"), path.name
        assert event["subject"] == f"documents/{event['document']}", path.name
        if event["datacontenttype"] == "application/protobuf":
            assert base64.b64decode(event["data_base64"]), path.name
        else:
            assert event["datacontenttype"] == JSON and "value" in event["data"], path.name
