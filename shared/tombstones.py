"""Tombstones: the record of deleted documents that `updatedSince` polls return as `deleted`.

A deleted document leaves nothing in Firestore to query, so each deletion is recorded:

- by the write API's DELETE, in the same atomic commit as the delete itself
  (`stage_tombstone`): a dashboard listening to `_tombstones/<collection>/ids` (live mode of
  `web/data-client.js`, readable by admins per `firestore.rules`) learns it at once. It also
  holds `deletedVersion`, the update time (ns) of the version it deleted;
- by the snapshot publisher, for every deletion it publishes (deletes made directly in
  Firestore, by a migration, ...), twice, written together:

- in Firestore, `_tombstones/<collection>/ids/<id>` with `deletedAt` (the delete's commit time),
  `recordedAt` (the commit time of the tombstone itself) and `expireAt` (for an optional
  Firestore TTL policy). The read API's Firestore path queries `recordedAt > updatedSince`:
  `recordedAt`, not `deletedAt`, because the event reaches the publisher a moment after the
  delete, and a poll whose `asOf` falls in between must still see it at its next poll;
- in the snapshot body (`tombstones`: id, deletedAt, recordedAt), so the snapshot path answers
  the same question when Firestore is down.

The publisher does not write a tombstone again when it records the same deletion (the write
API's): one committed at or after the deletion, or one whose `deletedVersion` is the version
the deletion event removed (its `old_value`; the emulator's event time is the publish time cut
to the second, which can fall after the commit). A second write would move `recordedAt` and
cost every listening dashboard one more read.

A document deleted and then created again keeps its tombstone (until pruned): a client applies
`deleted` first and then `items`, and ends with the document. Tombstones older than
`TOMBSTONE_RETENTION_S` are pruned; a poll older than that should reload the whole list.
The `_tombstones` documents are written only by the backend (the rules let admins read the
`ids` of configured collections, nothing else), and no trigger watches them, so writing them
never wakes the publisher.
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


def tombstone_fields(doc_id: str, deleted_at: Any, expire_at: dt.datetime) -> dict[str, Any]:
    """The fields of one tombstone document (`deleted_at` may be `SERVER_TIMESTAMP`)."""
    from google.cloud import firestore

    return {"id": doc_id, "deletedAt": deleted_at, "recordedAt": firestore.SERVER_TIMESTAMP,
            "expireAt": expire_at}


def stage_tombstone(batch: Any, db: Any, collection: str, doc_id: str, *, deleted_version: Any,
                    retention_s: float) -> None:
    """Add the tombstone of a delete to the batch that deletes the document, so both commit
    together: `deletedAt` and `recordedAt` are the commit's server time; `deleted_version` is
    the update time of the version the batch deletes (its precondition)."""
    from google.cloud import firestore

    from shared.times import to_ns, utc_now

    batch.set(tombstone_collection(db, collection).document(doc_id), {
        **tombstone_fields(doc_id, firestore.SERVER_TIMESTAMP,
                           utc_now() + dt.timedelta(seconds=retention_s)),
        "deletedVersion": to_ns(deleted_version)})


def record_tombstones(db: Any, collection: str, deleted: Iterable[tuple[str, int]], *,
                      retention_s: float, timeout_s: float,
                      removed_versions: dict[str, int] | None = None) -> int | None:
    """Write one tombstone per `(id, deleted_ns)` unless the same deletion is recorded already;
    returns the latest commit time in ns, of the written or the found ones (None when there
    was nothing to record).

    A tombstone committed at or after `deleted_ns`, or whose `deletedVersion` is the version
    the deletion removed (`removed_versions[id]`, from the event, when known), is kept as it
    is: one read per id here instead of one more read per listening dashboard. A tombstone
    written twice only moves its `recordedAt`, which makes a poll report the id once more
    (deleting an absent id is a no-op for the client).
    """
    from shared.times import from_ns, to_ns

    target = tombstone_collection(db, collection)
    pending = list(deleted)
    latest: int | None = None
    for start in range(0, len(pending), BATCH_LIMIT):
        chunk = pending[start:start + BATCH_LIMIT]
        found = {snapshot.id: snapshot for snapshot in db.get_all(
            [target.document(doc_id) for doc_id, _ in chunk], timeout=timeout_s)
            if snapshot.exists}
        batch = db.batch()
        writes = 0
        for doc_id, deleted_ns in chunk:
            existing = found.get(doc_id)
            if existing is not None and _records(existing, deleted_ns,
                                                 (removed_versions or {}).get(doc_id)):
                latest = max(latest or 0, to_ns(existing.update_time))
                continue
            deleted_at = from_ns(deleted_ns)
            batch.set(target.document(doc_id), tombstone_fields(
                doc_id, deleted_at, deleted_at + dt.timedelta(seconds=retention_s)))
            writes += 1
        if writes:
            results = batch.commit(timeout=timeout_s)
            if results:
                latest = max(latest or 0, to_ns(results[0].update_time))
    return latest


def _records(tombstone: Any, deleted_ns: int, removed_version: int | None) -> bool:
    """Whether a stored tombstone records this deletion already."""
    from shared.times import to_ns

    if to_ns(tombstone.update_time) >= deleted_ns:
        return True
    return removed_version is not None and \
        (tombstone.to_dict() or {}).get("deletedVersion") == removed_version


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

    from shared.firestore_wire import run_query
    from shared.times import timestamp_ns

    newest = (tombstone_collection(db, collection)
              .order_by("recordedAt", direction=Query.DESCENDING).limit(1))
    for doc in run_query(db, newest, **call):
        recorded = doc.document.fields.get("recordedAt")
        if recorded is None or recorded.WhichOneof("value_type") != "timestamp_value":
            return None
        return timestamp_ns(recorded.timestamp_value)
    return None
