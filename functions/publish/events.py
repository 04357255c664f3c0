"""Firestore document events (Eventarc CloudEvents), decoded at the edge into a frozen value.

Eventarc delivers gen2 Firestore triggers as CloudEvents of type
`google.cloud.firestore.document.v1.written` (also `.created`, `.updated`, `.deleted`), usually
in binary mode: the attributes in `ce-*` headers (`id`, `source` =
`//firestore.googleapis.com/projects/P/databases/D`, `subject` = `documents/users/u1`, `time`,
and the extensions `document` = `users/u1`, `database`, `namespace`, `project`, `location`) and
the data, a `google.events.cloud.firestore.v1.DocumentEventData`, in the body as
`application/protobuf`. The JSON encoding of the same message (`application/json`) is accepted
too. `decode_event` turns either into a `DocumentChange` before any business code runs; a
payload that can never be decoded raises `EventError` (retrying would not help).

Field values are decoded to the Python types the Firestore client's `to_dict()` returns
(timestamps keep their nanoseconds, arrays are tuples, maps read-only), so `encode_document`
gives the same JSON for an event as the read API gives for the stored document.

Versions: a written document's version is its `update_time`, which only grows. A delete has no
new document; its version is the event `time` (the commit time of the delete), kept strictly
above the deleted document's `update_time`. Comparing versions makes duplicates and late, older
events harmless. `encode_event` is the inverse, used by the tests and the benchmarks.

Google's Firestore emulator (the local stack's event source) differs from Eventarc in three
ways the decoding accepts: its `source` doubles `projects/`, its `time` is the publish time cut
to the second (not the commit time: a delete's version then rests on the deleted document's
`update_time`, and tombstones on their own `recordedAt`), and its update mask is always empty.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import types
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import AppError
from shared.times import format_ns, from_ns, parse_ns, timestamp_ns, to_ns

EVENT_TYPE_PREFIX = "google.cloud.firestore.document.v1."
WRITTEN = EVENT_TYPE_PREFIX + "written"
PROTOBUF = "application/protobuf"
JSON = "application/json"
DATA_SCHEMA = ("https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/"
               "cloud/firestore/v1/data.proto")
# Google's Firestore emulator names its source `//firestore.googleapis.com/projects/projects/P/...`
# (the prefix doubled); Eventarc's has it once. Both name the project and the database.
_SOURCE = re.compile(
    r"^//firestore\.googleapis\.com/projects/(?:projects/)?([^/]+)/databases/([^/]+)$")
_NAME = re.compile(r"^projects/([^/]+)/databases/([^/]+)/documents/(.+)$")
UTC = dt.UTC


class EventError(AppError):
    """The event can never be processed as sent (malformed, not a Firestore document event)."""

    code = "bad_event"


@dataclass(frozen=True)
class Reference:
    """A decoded reference value: the document path relative to the database (`users/u1`)."""

    path: str


@dataclass(frozen=True)
class GeoPoint:
    """A decoded geo point."""

    latitude: float
    longitude: float


@dataclass(frozen=True)
class DocumentVersion:
    """One state of a document, for building events: its fields and its timestamps (ns)."""

    data: Mapping[str, Any]
    update_time_ns: int
    create_time_ns: int | None = None


@dataclass(frozen=True)
class DocumentChange:
    """A Firestore document event, decoded: which document, its new and old fields, when."""

    event_id: str
    event_type: str
    event_time_ns: int
    source: str
    project: str
    database: str
    collection: str
    document_id: str
    value: Mapping[str, Any] | None
    old_value: Mapping[str, Any] | None
    update_time_ns: int | None
    old_update_time_ns: int | None
    update_mask: tuple[str, ...] = ()

    @property
    def deleted(self) -> bool:
        """True when the document no longer exists after this change."""
        return self.value is None

    @property
    def kind(self) -> str:
        """`created`, `updated` or `deleted`."""
        if self.value is None:
            return "deleted"
        return "created" if self.old_value is None else "updated"

    @property
    def version_ns(self) -> int:
        """The order of this change among the document's changes (see the module docstring)."""
        if self.value is not None and self.update_time_ns is not None:
            return self.update_time_ns
        floor = (self.old_update_time_ns + 1) if self.old_update_time_ns is not None else 0
        return max(self.event_time_ns, floor)

    @property
    def document_path(self) -> str:
        """`<collection>/<id>`."""
        return f"{self.collection}/{self.document_id}"

    @property
    def event_time(self) -> dt.datetime:
        """The event time as an aware datetime (microseconds)."""
        return from_ns(self.event_time_ns)


# --- decoding ----------------------------------------------------------------------------------

def decode_cloud_event(event: Any) -> DocumentChange:
    """Decode a `cloudevents` CloudEvent (as functions-framework passes it)."""
    return decode_event(event.get_attributes(), event.get_data())


def decode_event(attributes: Mapping[str, Any], data: Any) -> DocumentChange:
    """Decode CloudEvent attributes and data (protobuf bytes or JSON) into a `DocumentChange`."""
    event_type = str(attributes.get("type") or "")
    if not event_type.startswith(EVENT_TYPE_PREFIX):
        raise EventError(f"not a Firestore document event: type {event_type!r}")
    event_id = str(attributes.get("id") or "")
    if not event_id:
        raise EventError("the event has no id")
    message = _event_data(attributes.get("datacontenttype"), data)
    source = str(attributes.get("source") or "")
    project, database = _project_and_database(attributes, source, message)
    path = _document_path(attributes, message)
    segments = path.split("/")
    if len(segments) < 2 or len(segments) % 2 or not all(segments):
        raise EventError(f"not a document path: {path!r}")
    event_time_ns = _event_time(attributes.get("time"))
    value = message.value if message.HasField("value") else None
    old_value = message.old_value if message.HasField("old_value") else None
    refs = (project, database)
    return DocumentChange(
        event_id=event_id,
        event_type=event_type,
        event_time_ns=event_time_ns,
        source=source,
        project=project,
        database=database,
        collection="/".join(segments[:-1]),
        document_id=segments[-1],
        value=_decode_fields(value.fields, refs) if value is not None else None,
        old_value=_decode_fields(old_value.fields, refs) if old_value is not None else None,
        update_time_ns=timestamp_ns(value.update_time) if value is not None else None,
        old_update_time_ns=(timestamp_ns(old_value.update_time)
                            if old_value is not None else None),
        update_mask=tuple(message.update_mask.field_paths),
    )


def _event_data(content_type: Any, data: Any) -> Any:
    """The raw `DocumentEventData` protobuf of the event's data."""
    from google.events.cloud.firestore import DocumentEventData
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    message_class = DocumentEventData.pb()
    kind = str(content_type or "").split(";")[0].strip().lower()
    try:
        if isinstance(data, (bytes, bytearray)) and kind != JSON:
            return message_class.FromString(bytes(data))
        if isinstance(data, (bytes, bytearray, str)):
            data = json.loads(data)
        if isinstance(data, Mapping):
            message = message_class()
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
            return message
    except (DecodeError, json_format.ParseError, ValueError, TypeError) as exc:
        raise EventError(f"undecodable {kind or 'event'} data: {exc}") from None
    raise EventError(f"unexpected event data of type {type(data).__name__} ({kind or 'no type'})")


def _project_and_database(attributes: Mapping[str, Any], source: str,
                          message: Any) -> tuple[str, str]:
    match = _SOURCE.match(source)
    if match:
        return match.group(1), match.group(2)
    for document in (message.value, message.old_value):
        named = _NAME.match(document.name)
        if named:
            return named.group(1), named.group(2)
    return str(attributes.get("project") or ""), str(attributes.get("database") or "(default)")


def _document_path(attributes: Mapping[str, Any], message: Any) -> str:
    document = str(attributes.get("document") or "")
    if document:
        return document.strip("/")
    subject = str(attributes.get("subject") or "")
    if subject.startswith("documents/"):
        return subject.removeprefix("documents/")
    for candidate in (message.value, message.old_value):
        named = _NAME.match(candidate.name)
        if named:
            return named.group(3)
    raise EventError("the event names no document (no document, subject or value name)")


def _event_time(raw: Any) -> int:
    if isinstance(raw, dt.datetime):
        return to_ns(raw)
    try:
        return parse_ns(str(raw or ""))
    except ValueError:
        raise EventError(f"the event has no valid time: {raw!r}") from None


def _decode_fields(fields: Any, refs: tuple[str, str]) -> Mapping[str, Any]:
    return types.MappingProxyType({key: _decode_value(value, refs)
                                   for key, value in fields.items()})


def _decode_value(value: Any, refs: tuple[str, str]) -> Any:
    """One protobuf `Value` as the Python client decodes it."""
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    kind = value.WhichOneof("value_type")
    if kind is None or kind == "null_value":
        return None
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(value.timestamp_value)
    if kind == "reference_value":
        named = _NAME.match(value.reference_value)
        return Reference(named.group(3) if named else value.reference_value)
    if kind == "geo_point_value":
        return GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    if kind == "array_value":
        return tuple(_decode_value(item, refs) for item in value.array_value.values)
    if kind == "map_value":
        return _decode_fields(value.map_value.fields, refs)
    return getattr(value, kind)


# --- encoding (the tests and benchmarks build the events Eventarc would send) ----------------

def encode_event(*, project: str, collection: str, document_id: str,
                 value: DocumentVersion | None, old_value: DocumentVersion | None,
                 event_time_ns: int | None = None, database: str = "(default)",
                 event_id: str | None = None, content_type: str = PROTOBUF,
                 update_mask: tuple[str, ...] | None = None,
                 location: str = "local") -> tuple[dict[str, str], bytes]:
    """The binary-mode HTTP request (headers, body) Eventarc sends for one document write.

    `event_time_ns` defaults to the new document's update time (a delete needs it given).
    `event_id` defaults to a name derived from the document and its version, so the same write
    always gives the same id, as a redelivery does.
    """
    from google.events.cloud.firestore import DocumentEventData
    from google.protobuf import json_format

    if value is None and old_value is None:
        raise ValueError("an event needs a value or an old value")
    if event_time_ns is None:
        if value is None:
            raise ValueError("a delete event needs its event_time_ns")
        event_time_ns = value.update_time_ns
    path = f"{collection}/{document_id}"
    name = f"projects/{project}/databases/{database}/documents/{path}"
    message = DocumentEventData.pb()()
    if value is not None:
        _fill_document(message.value, name, value, project, database)
    if old_value is not None:
        _fill_document(message.old_value, name, old_value, project, database)
    if update_mask is None and value is not None and old_value is not None:
        update_mask = tuple(sorted(key for key in set(value.data) | set(old_value.data)
                                   if value.data.get(key, _MISSING)
                                   != old_value.data.get(key, _MISSING)))
    if update_mask:
        message.update_mask.field_paths.extend(update_mask)
    if event_id is None:
        version = value.update_time_ns if value is not None else event_time_ns
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}@{version}"))
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/{database}",
        "ce-type": WRITTEN,
        "ce-subject": f"documents/{path}",
        "ce-time": format_ns(event_time_ns),
        "ce-dataschema": DATA_SCHEMA,
        "ce-project": project,
        "ce-database": database,
        "ce-namespace": "(default)",
        "ce-document": path,
        "ce-location": location,
    }
    if content_type == JSON:
        headers["Content-Type"] = JSON
        body = json_format.MessageToJson(message, indent=None).encode("utf-8")
    else:
        headers["Content-Type"] = PROTOBUF
        body = message.SerializeToString()
    return headers, body


def structured_to_binary(event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """A structured-mode JSON CloudEvent (as saved in sample files) as a binary-mode request."""
    headers = {f"ce-{key}": str(value) for key, value in event.items()
               if key not in ("data", "data_base64", "datacontenttype")}
    headers["Content-Type"] = str(event.get("datacontenttype") or JSON)
    if "data_base64" in event:
        return headers, base64.b64decode(event["data_base64"])
    return headers, json.dumps(event.get("data")).encode("utf-8")


_MISSING = object()


def _fill_document(target: Any, name: str, version: DocumentVersion, project: str,
                   database: str) -> None:
    target.name = name
    for key, item in version.data.items():
        _fill_value(target.fields[key], item, project, database)
    _fill_timestamp(target.update_time, version.update_time_ns)
    _fill_timestamp(target.create_time, version.create_time_ns
                    if version.create_time_ns is not None else version.update_time_ns)


def _fill_timestamp(target: Any, ns: int) -> None:
    target.seconds, target.nanos = divmod(ns, 1_000_000_000)


def _fill_value(target: Any, value: Any, project: str, database: str) -> None:
    if value is None:
        target.null_value = 0
    elif isinstance(value, bool):
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif isinstance(value, dt.datetime):
        _fill_timestamp(target.timestamp_value, to_ns(value))
    elif isinstance(value, Mapping):
        target.map_value.SetInParent()
        for key, item in value.items():
            _fill_value(target.map_value.fields[key], item, project, database)
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            _fill_value(target.array_value.values.add(), item, project, database)
    elif hasattr(value, "latitude") and hasattr(value, "longitude"):
        target.geo_point_value.latitude = value.latitude
        target.geo_point_value.longitude = value.longitude
    elif isinstance(getattr(value, "path", None), str):
        target.reference_value = (f"projects/{project}/databases/{database}/documents/"
                                  f"{value.path}")
    else:
        raise TypeError(f"cannot encode a value of type {type(value).__name__}")
