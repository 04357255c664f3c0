"""Tombstones: the record of deleted documents that `updatedSince` polls return as `deleted`.

A deleted document leaves nothing in Firestore to query, so the snapshot publisher records each
deletion it publishes, twice, written together:

- in Firestore, `_tombstones/<collection>/ids/<id>` with `deletedAt` (the delete's commit time),
  `recordedAt` (the commit time of the tombstone itself) and `expireAt` (for an optional
  Firestore TTL policy). The read API's Firestore path queries `recordedAt > updatedSince`:
  `recordedAt`, not `deletedAt`, because the event reaches the publisher a moment after the
  delete, and a poll whose `asOf` falls in between must still see it at its next poll;
- in the snapshot body (`tombstones`: id, deletedAt, recordedAt), so the snapshot path answers
  the same question when Firestore is down.

A document deleted and then created again keeps its tombstone (until pruned): a client applies
`deleted` first and then `items`, and ends with the document. Tombstones older than
`TOMBSTONE_RETENTION_S` are pruned; a poll older than that should reload the whole list.
The `_tombstones` collection is internal: the Firestore rules deny clients, and no trigger
watches it, so writing it never wakes the publisher.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

TOMBSTONES = "_tombstones"
IDS = "ids"
BATCH_LIMIT = 450  # Firestore takes at most 500 writes per commit


def tombstone_collection(db: Any, collection: str) -> Any:
    """The CollectionReference of a collection's Firestore tombstones."""
    return db.collection(TOMBSTONES).document(collection).collection(IDS)


def record_tombstones(db: Any, collection: str, deleted: Iterable[tuple[str, int]], *,
                      retention_s: float, timeout_s: float) -> int | None:
    """Write one tombstone per `(id, deleted_ns)`; returns the latest commit time in ns (None
    when there was nothing to write).

    Blind writes, no reads: a tombstone written twice only moves its `recordedAt`, which makes
    a poll report the id once more (deleting an absent id is a no-op for the client).
    """
    from google.cloud import firestore

    from shared.events import from_ns, to_ns

    target = tombstone_collection(db, collection)
    pending = list(deleted)
    committed: int | None = None
    for start in range(0, len(pending), BATCH_LIMIT):
        batch = db.batch()
        for doc_id, deleted_ns in pending[start:start + BATCH_LIMIT]:
            deleted_at = from_ns(deleted_ns)
            batch.set(target.document(doc_id), {
                "id": doc_id,
                "deletedAt": deleted_at,
                "recordedAt": firestore.SERVER_TIMESTAMP,
                "expireAt": deleted_at + dt.timedelta(seconds=retention_s),
            })
        results = batch.commit(timeout=timeout_s)
        if results:
            committed = max(committed or 0, to_ns(results[0].update_time))
    return committed


def delete_tombstones(db: Any, collection: str, ids: Iterable[str], *, timeout_s: float) -> int:
    """Delete the Firestore tombstones of `ids` (pruning); returns how many were deleted."""
    target = tombstone_collection(db, collection)
    pending = list(ids)
    for start in range(0, len(pending), BATCH_LIMIT):
        batch = db.batch()
        for doc_id in pending[start:start + BATCH_LIMIT]:
            batch.delete(target.document(doc_id))
        batch.commit(timeout=timeout_s)
    return len(pending)


def deleted_since(db: Any, collection: str, since: dt.datetime, **call: Any) -> list[str]:
    """Ids whose tombstone was recorded after `since` (sorted); `call` holds retry/timeout."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.firestore_wire import run_query

    query = tombstone_collection(db, collection).where(
        filter=FieldFilter("recordedAt", ">", since))
    return sorted({doc.id for doc in run_query(db, query, **call)})


def latest_tombstone(db: Any, collection: str, **call: Any) -> int | None:
    """When the newest tombstone of `collection` was recorded, in ns (None: there is none).

    One document read at most. The read API caches it per instance for `CACHE_TTL_S`, so a
    poll with no deletion skips the tombstone query and costs only its own query's read.
    """
    from google.cloud.firestore_v1 import Query

    from shared.firestore_wire import run_query, timestamp_ns

    newest = (tombstone_collection(db, collection)
              .order_by("recordedAt", direction=Query.DESCENDING).limit(1))
    for doc in run_query(db, newest, **call):
        recorded = doc.document.fields.get("recordedAt")
        if recorded is None or recorded.WhichOneof("value_type") != "timestamp_value":
            return None
        return timestamp_ns(recorded.timestamp_value)
    return None
