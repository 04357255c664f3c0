"""The scheduled catch-up: brings every snapshot to Firestore after lost events, and repairs
parts that are missing or unreadable.

Events can be lost (past Eventarc's retry window, dropped as too old, a delivery that failed
where nothing redelivers). Every `CATCHUP` period (Cloud Scheduler calls `catch_up_snapshots`;
the local stack runs it itself), per collection:

1. The documents whose `updatedAt` is after the collection's watermark minus
   `CATCHUP_MARGIN_S` (commit skew: `updatedAt` is the write's server time, close to but not
   the commit's), and the tombstones recorded after it, become changes that go through
   `Publisher.submit`, the event path's own: merged by version, so what the events already
   published changes nothing and nothing older replaces anything newer. The cost is the
   documents that changed since the last run (one read each, plus one per empty query), not the
   collection.
2. The parts are listed (object metadata only): a part the index names that is missing or
   whose size is not the index's is rebuilt from Firestore (its id range only). Parts no index
   names, older than `ORPHAN_GRACE_S`, are deleted (a merge that failed after writing them).
   A missing or unreadable index, or a collection without a watermark yet, is rebuilt whole
   (streamed, N reads once).
3. The watermark moves to the time this run started.

Limits: a document written without `updatedAt` (outside the write API and the migration), or
deleted outside the write API (no tombstone) with its event lost, is not seen here; the
doctor's count and freshness checks flag that, and `python -m ops rebuild` repairs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from functions.publish.publisher import STATE_COLLECTION, Publisher
from shared.settings import Settings
from shared.snapshot_format import Change

log = logging.getLogger("dashboard.catchup")

CATCHUP_DOCUMENT = "catchup"
SUBMIT_CHUNK = 500
PAGE_SIZE = 1000  # documents per query of the changes since the watermark
ORPHAN_GRACE_S = 600.0


@dataclass
class CatchUpReport:
    """What one run did to one collection."""

    collection: str
    since: str | None
    changes: int = 0
    deletions: int = 0
    repaired_parts: int = 0
    swept_parts: int = 0
    rebuilt: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this report."""
        return {"collection": self.collection, "since": self.since, "changes": self.changes,
                "deletions": self.deletions, "repairedParts": self.repaired_parts,
                "sweptParts": self.swept_parts, "rebuilt": self.rebuilt}


def run_catch_up(settings: Settings, db: Any, storage_client: Any,
                 publisher: Publisher) -> list[CatchUpReport]:
    """One catch-up run over every configured collection (see the module's docstring)."""
    from google.cloud import firestore

    started_ns = time.time_ns()
    state_ref = db.collection(STATE_COLLECTION).document(CATCHUP_DOCUMENT)
    found = state_ref.get(timeout=max(settings.firestore_timeout_s, 5.0))
    watermarks = ((found.to_dict() or {}).get("watermarks") or {}) if found.exists else {}
    reports = []
    for collection in settings.collections:
        raw = watermarks.get(collection)
        report = _catch_up_collection(settings, db, storage_client, publisher, collection,
                                      int(raw) if raw else None)
        state_ref.set({"watermarks": {collection: str(started_ns)},
                       "lastRunAt": firestore.SERVER_TIMESTAMP}, merge=True,
                      timeout=max(settings.firestore_timeout_s, 5.0))
        log.info("catch-up of %s: %s", collection, report.to_json())
        reports.append(report)
    return reports


def _catch_up_collection(settings: Settings, db: Any, storage_client: Any,
                         publisher: Publisher, collection: str,
                         watermark_ns: int | None) -> CatchUpReport:
    from shared.snapshot_io import load_index
    from shared.snapshots import rebuild_collection
    from shared.times import format_ns

    timeout_s = max(settings.storage_timeout_s, 30.0)
    index = load_index(storage_client, settings.snapshot_bucket, collection,
                       timeout_s=settings.storage_timeout_s)
    if watermark_ns is None or index is None or not index.exists:
        report = CatchUpReport(collection, None, rebuilt=True)
        rebuilt = rebuild_collection(db, storage_client, settings.snapshot_bucket, collection,
                                     timeout_s=timeout_s,
                                     retention_s=settings.tombstone_retention_s)
        report.changes = rebuilt.added + rebuilt.updated
        report.deletions = rebuilt.removed
        return report
    since_ns = watermark_ns - int(settings.catchup_margin_s * 1e9)
    report = CatchUpReport(collection, format_ns(since_ns))
    chunk: list[Change] = []
    for change in _changed_since(db, collection, since_ns, timeout_s=timeout_s):
        if change.deleted:
            report.deletions += 1
        else:
            report.changes += 1
        chunk.append(change)
        if len(chunk) >= SUBMIT_CHUNK:
            publisher.submit(chunk)
            chunk = []
    if chunk:
        publisher.submit(chunk)
    _repair_parts(settings, db, storage_client, collection, report)
    return report


def _changed_since(db: Any, collection: str, since_ns: int, *,
                   timeout_s: float) -> Iterator[Change]:
    """The documents updated after `since_ns` (by `updatedAt`) and the deletions recorded
    after it, as changes with their versions; read in pages (see `_pages`)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.encoding import encode_document_pb
    from shared.times import from_ns, timestamp_ns
    from shared.tombstones import tombstone_collection

    since = from_ns(since_ns)
    updated = db.collection(collection).where(filter=FieldFilter("updatedAt", ">", since))
    for doc in _pages(db, updated, "updatedAt", timeout_s=timeout_s):
        yield Change(collection, doc.id, doc.update_time_ns,
                     encode_document_pb(doc.id, doc.document.fields))
    deleted = tombstone_collection(db, collection).where(
        filter=FieldFilter("recordedAt", ">", since))
    for tombstone in _pages(db, deleted, "recordedAt", timeout_s=timeout_s):
        deleted_at = tombstone.document.fields.get("deletedAt")
        if deleted_at is not None and deleted_at.WhichOneof("value_type") == "timestamp_value":
            yield Change(collection, tombstone.id, timestamp_ns(deleted_at.timestamp_value),
                         None)


def _pages(db: Any, query: Any, field: str, *, timeout_s: float,
           page_size: int | None = None) -> Iterator[Any]:
    """The documents of `query` (an inequality on the timestamp `field`) in (`field`, id)
    order, a page of `page_size` per query, each page read whole before any is handed on.

    One stream for every change would stay open while the changes are published (a second
    per `SUBMIT_CHUNK`): past its deadline after a large gap, and with the channel buffering
    responses ahead of a consumer that is not reading. A page is one short RPC."""
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    from shared.firestore_wire import run_query

    size = page_size or PAGE_SIZE
    after: dict[str, Any] | None = None
    while True:
        ordered = query.order_by(field).order_by("__name__")
        if after is not None:
            ordered = ordered.start_after(after)
        page = list(run_query(db, ordered.limit(size), timeout=timeout_s))
        yield from page
        if len(page) < size:
            return
        last = page[-1]
        after = {field: DatetimeWithNanoseconds.from_timestamp_pb(
            last.document.fields[field].timestamp_value), "__name__": last.id}


def _repair_parts(settings: Settings, db: Any, storage_client: Any, collection: str,
                  report: CatchUpReport) -> None:
    """Rebuild the parts that are missing or not the size the index says; sweep orphans."""
    from shared.snapshot_io import delete_objects, load_index
    from shared.snapshot_merge import merge_changes, range_state
    from shared.snapshot_parts import parts_prefix

    bucket = settings.snapshot_bucket
    timeout_s = max(settings.storage_timeout_s, 30.0)
    listed = {blob.name: blob for blob in storage_client.list_blobs(
        bucket, prefix=parts_prefix(collection), timeout=timeout_s)}
    index = load_index(storage_client, bucket, collection, timeout_s=timeout_s)
    if index is None or not index.exists:
        return
    broken = [position for position, ref in enumerate(index.parts)
              if ref.name not in listed or int(listed[ref.name].size or 0) != ref.stored_bytes]
    if broken:
        log.error("catch-up: %d snapshot parts of %s are missing or damaged: rebuilding their "
                  "ranges from Firestore", len(broken), collection)
        outcome = merge_changes(
            storage_client, bucket, collection, [], timeout_s=timeout_s,
            deadline=time.monotonic() + settings.publish_wait_s, known=index,
            repair=lambda lo, hi: range_state(db, collection, lo, hi, timeout_s=timeout_s),
            repair_positions=broken)
        report.repaired_parts = len(broken)
        index = outcome.index
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ORPHAN_GRACE_S)
    orphans = [name for name, blob in listed.items()
               if name not in index.names() and blob.updated is not None
               and blob.updated < cutoff]
    report.swept_parts = delete_objects(storage_client, bucket, orphans, timeout_s=timeout_s)
