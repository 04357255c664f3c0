"""Reading and writing the JSON snapshots in Cloud Storage (`snapshots/<collection>.json`).

A snapshot body has the read API's list shape with every document, plus `generatedAt`.
Reads have a deadline; a parsed snapshot is kept per instance for a short while so an outage
of Firestore does not turn into one download per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.errors import Unavailable

SNAPSHOT_PREFIX = "snapshots/"
SNAPSHOT_CACHE_CONTROL = "private, max-age=0, no-cache"


def snapshot_path(collection: str) -> str:
    """The object name of a collection's snapshot."""
    return f"{SNAPSHOT_PREFIX}{collection}.json"


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot: encoded items (sorted by id) and when they were generated."""

    collection: str
    items: tuple[dict[str, Any], ...]
    generated_at: str
    generation: int | None


def load_snapshot(storage_client: Any, bucket: str, collection: str, *,
                  timeout_s: float) -> Snapshot:
    """Download and parse a snapshot; `Unavailable` when it is missing, unreadable or invalid."""
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry

    blob = storage_client.bucket(bucket).blob(snapshot_path(collection))
    retry = Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout_s)
    try:
        raw = blob.download_as_bytes(timeout=timeout_s, retry=retry)
    except gexc.NotFound:
        raise Unavailable(f"no snapshot of {collection} yet") from None
    except (gexc.GoogleAPIError, OSError, ValueError) as exc:
        raise Unavailable(f"snapshot of {collection} unreadable: {type(exc).__name__}") from None
    try:
        body = json.loads(raw)
        items = body["items"]
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in items
        ):
            raise ValueError("items must be objects with a string id")
        generated_at = str(body.get("generatedAt") or body.get("asOf") or "")
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"snapshot of {collection} is invalid: {exc}") from None
    return Snapshot(collection, tuple(items), generated_at, blob.generation)


def snapshot_body(collection: str, items: list[dict[str, Any]], generated_at: str) -> bytes:
    """The snapshot JSON: the read API's list shape (items sorted by id) plus `generatedAt`."""
    from shared.http import dumps

    ordered = sorted(items, key=lambda item: item["id"])
    return dumps({"collection": collection, "items": ordered, "count": len(ordered),
                  "nextPageToken": None, "source": "snapshot", "asOf": generated_at,
                  "generatedAt": generated_at})


def write_snapshot(storage_client: Any, bucket: str, collection: str, body: bytes, *,
                   timeout_s: float, if_generation_match: int | None = None) -> int | None:
    """Upload a snapshot body; returns the new object generation."""
    blob = storage_client.bucket(bucket).blob(snapshot_path(collection))
    blob.cache_control = SNAPSHOT_CACHE_CONTROL
    kwargs: dict[str, Any] = {"content_type": "application/json; charset=utf-8",
                              "timeout": timeout_s}
    if if_generation_match is not None:
        kwargs["if_generation_match"] = if_generation_match
    blob.upload_from_string(body, **kwargs)
    return blob.generation


def rebuild_snapshot(db: Any, storage_client: Any, bucket: str, collection: str, *,
                     timeout_s: float) -> int:
    """Read the whole collection once and write its snapshot; returns the document count."""
    from shared.encoding import encode_document, format_timestamp
    from shared.schema import utc_now

    generated_at = format_timestamp(utc_now())
    items = [encode_document(doc.id, doc.to_dict())
             for doc in db.collection(collection).stream(timeout=timeout_s)]
    write_snapshot(storage_client, bucket, collection,
                   snapshot_body(collection, items, generated_at), timeout_s=timeout_s)
    return len(items)
