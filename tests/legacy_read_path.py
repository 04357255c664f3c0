"""The oracle of tests/test_wire_encoding.py and tests/test_snapshot_generation.py: the read
path as it was before it read raw protobuf (commit ec00aa6), frozen here on purpose.

Its encoder is a verbatim copy of that commit's `shared/encoding.py`, its reads go through the
Python client's object layer (`Query.stream()`, `DocumentReference.get()`, `to_dict()`), and
its snapshot query evaluation is that commit's `run_on_items`. The tests compare the new
path's bytes and pages with these; do not "fix" or share code with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from functions.collection_api.query import ReadQuery, finish_page, to_firestore_query
from shared import http

UTC = dt.UTC


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a `Z`, fractional seconds only when present (up to nanoseconds)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    nanos = getattr(value, "nanosecond", 0) or value.microsecond * 1000
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def encode_value(value: Any) -> Any:
    """Turn one Firestore value (as the Python client returns it) into JSON-ready data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    latitude = getattr(value, "latitude", None)
    if latitude is not None and hasattr(value, "longitude"):
        return {"latitude": latitude, "longitude": value.longitude}
    path = getattr(value, "path", None)
    if isinstance(path, str):
        return path
    raise TypeError(f"cannot encode Firestore value of type {type(value).__name__}")


def encode_document(doc_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A document as the API and the snapshots show it: `id` first, then its fields by name."""
    encoded = {"id": doc_id}
    for key in sorted(data):
        if key != "id":
            encoded[key] = encode_value(data[key])
    return encoded


# --- the reads, through the client's object layer ---------------------------------------------

def list_head(db: Any, query: ReadQuery) -> bytes:
    """The bytes of a list answer up to `source`/`asOf` (what its ETag covers)."""
    docs = list(to_firestore_query(db.collection(query.collection), query).stream(timeout=30))
    page = finish_page([encode_document(doc.id, doc.to_dict()) for doc in docs], query)
    listing: dict[str, Any] = {"collection": query.collection, "items": page.items,
                               "count": len(page.items), "nextPageToken": page.next_page_token}
    if query.updated_since is not None:
        listing["deleted"] = deleted_since(db, query) if query.cursor is None else []
    return http.dumps(listing)


def deleted_since(db: Any, query: ReadQuery) -> list[str]:
    """The ids of the tombstones recorded after the poll's `updatedSince`."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.tombstones import tombstone_collection

    tombstones = tombstone_collection(db, query.collection).where(
        filter=FieldFilter("recordedAt", ">", query.updated_since))
    return sorted({snapshot.id for snapshot in tombstones.stream(timeout=30)})


def document_body(db: Any, collection: str, doc_id: str,
                  fields: tuple[str, ...] | None) -> bytes | None:
    """The bytes of a single-document answer (None: no such document)."""
    snapshot = db.collection(collection).document(doc_id).get(
        field_paths=list(fields) if fields is not None else None, timeout=30)
    return http.dumps(encode_document(doc_id, snapshot.to_dict() or {})) \
        if snapshot.exists else None


def collection_items(db: Any, collection: str) -> bytes:
    """Every document of a collection, encoded and sorted by id (a rebuild's items)."""
    items = [encode_document(doc.id, doc.to_dict() or {})
             for doc in db.collection(collection).stream(timeout=30)]
    return http.dumps(sorted(items, key=lambda item: item["id"]))


# --- the snapshot path's query evaluation (a filter, then a sort, on every request) ------------

def run_on_items(items: Any, query: ReadQuery, schema: Any) -> Any:
    """Answer `query` from encoded items (a snapshot) exactly as Firestore would."""
    from functions.collection_api.query import _decode_typed, _matches, sort_key

    def typed(item: Mapping[str, Any], field: str) -> tuple[Any, bool]:
        if field not in item:
            return None, False
        try:
            return _decode_typed(schema.field_types.get(field, "string"), item[field]), True
        except (TypeError, ValueError):
            return item[field], True

    filters = query.all_filters()
    selected = []
    for item in items:
        if all(_matches(*typed(item, f.field), f) for f in filters):
            if query.order_field is None:
                selected.append(((), item))
            else:
                value, present = typed(item, query.order_field)
                if present:
                    selected.append((sort_key(value), item))
    selected.sort(key=lambda pair: (pair[0], pair[1]["id"]), reverse=query.descending)
    if query.cursor is not None:
        position = ((sort_key(query.cursor.value) if query.order_field else ()),
                    query.cursor.doc_id)
        if query.descending:
            selected = [p for p in selected if (p[0], p[1]["id"]) < position]
        else:
            selected = [p for p in selected if (p[0], p[1]["id"]) > position]
    page = [item for _, item in selected[: query.limit + 1]]
    return finish_page(page, query)
