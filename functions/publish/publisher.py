"""The snapshot publisher: keeps each collection's snapshot (`snapshots/<collection>/`, an index
plus bounded parts: `shared.snapshot_merge`) current.

`publish_snapshot` (main.py) receives Eventarc's Firestore `document.v1.written` events of every
configured collection; `python -m ops rebuild [--collection C]` rebuilds snapshots from
Firestore (bootstrap, after a migration, to repair drift) and reports what it changed.

How one event is handled
    1. It is decoded at the edge (`events.py`) into a frozen `DocumentChange`. Undecodable
       events, collections that are not configured (including our own `_publisher` and
       `_tombstones`, so the publisher never reacts to its own writes), other databases and
       events older than `MAX_EVENT_AGE_S` are logged and acknowledged: a retry cannot help.
    2. The event carries the new document, so the change is merged from it: no collection
       read. Merges compare versions (`update_time`; for a delete the delete time) and keep
       tombstones, so duplicates and late, older events change nothing.
    3. The request returns only once its change is in a written snapshot, or raises (Eventarc
       then redelivers it). Nothing is left for "after the response": a gen2 instance gets no
       CPU outside requests and may be stopped at any time.

Coalescing, and where its state lives
    Cloud Storage takes about one write per second to one object name, and a migration writes
    hundreds of documents a second. Writes are coalesced at two levels:

    - In an instance (gen2 serves many requests at once), changes that arrive together join one
      batch. Its first request leads: it waits for the write slot and merges the whole batch in
      one write; the other requests wait for their change to be written. The batch stays open
      while its leader waits, so a burst becomes a few large writes.
    - Across instances, a small Firestore document `_publisher/state` holds the write slot,
      `nextWriteAt`. A leader takes it with a compare-and-set on the document's `update_time`
      (one read, one write), only once `nextWriteAt` has passed, and moves it
      `PUBLISH_INTERVAL_S` ahead; the instance itself also waits that long after its write
      ends. So at most one snapshot write per interval starts, over all instances and
      collections (a flush writes each collection it holds once, then the manifest once).

    A leader that finds the slot taken does not sit on a private batch: in the same kind of
    compare-and-set it copies the batch's changes into `_publisher/state/pending` (one document
    per change version) and takes a sequence number from `pendingSeq`. The next slot holder, on
    whatever instance, reads the entries up to the `pendingSeq` it saw, publishes them with its
    own, raises `coveredSeq` to that number and deletes them. The waiting leader releases the
    requests of every handed-over change once `coveredSeq` reaches its number, and returns when
    all are released, or when it took a slot and wrote the rest itself. The trailing edge of a
    burst is therefore written by whoever holds the next slot, about one interval after the
    last change; if that holder dies, the entries stay for the one after, and requests that
    wait too long fail and are redelivered.

    Why there: instances come and go mid-burst, so the state cannot live in one of them; and it
    cannot live in the snapshot object (generation-based merges alone), because that object
    is the very thing that must not be written more than once a second. No owner lease is
    needed: the slot only spaces writes, correctness never depends on it (see below).

    Steady state (a change now and then) costs one document read per event: reading the slot.
    Pending entries are written and read only while leaders contend.

Never an older snapshot over a newer one
    A change rewrites its part (a new object) and then the index, conditional on the generation
    that was read; on HTTP 412 the merge runs again on the newer index. 429 and 5xx are retried
    with backoff within `PUBLISH_WAIT_S`; past it the event fails and is redelivered. A missing
    snapshot is built from Firestore once (streamed); a damaged part, from its id range.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from functions.publish.events import DocumentChange
from shared.encoding import encode_document
from shared.errors import Unavailable
from shared.settings import Settings
from shared.snapshot_format import Change, ManifestEntry, SnapshotState
from shared.snapshot_merge import PartCache, manifest_entry, merge_changes, range_state
from shared.snapshot_parts import SnapshotIndex
from shared.snapshots import rebuild_collection, update_manifest

log = logging.getLogger("dashboard.publish")

STATE_COLLECTION = "_publisher"
STATE_DOCUMENT = "state"
PENDING = "pending"
FUNCTION = "publish_snapshot"
# A Firestore document holds at most 1 MiB; a change whose item is larger is published by its
# own leader only.
MAX_PENDING_ITEM_BYTES = 900_000
PENDING_PER_COMMIT = 400
COVERAGE_POLL_S = 0.1
REMOVED_VERSIONS_KEPT = 10_000  # recent deletions' removed versions, per instance


# --- one instance's publisher ------------------------------------------------------------------

@dataclass
class _Ticket:
    """One change waiting to be published; its request waits on `done`."""

    change: Change
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        """Release the waiting request (with the error that fails it, if any)."""
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass
class _Batch:
    """The open batch of an instance: its first request leads, the others follow."""

    tickets: list[_Ticket] = field(default_factory=list)


@dataclass(frozen=True)
class _SlotState:
    """The fields of `_publisher/state` a leader decides on."""

    exists: bool
    update_time: Any
    holder: str
    next_write_at: float
    pending_seq: int
    covered_seq: int
    scan_up_to: int


@dataclass
class FlushStats:
    """Counters of one instance, for tests and the benchmark."""

    flushes: int = 0
    snapshot_writes: int = 0
    parts_written: int = 0
    bytes_written: int = 0
    conflicts: int = 0
    throttled: int = 0
    persisted: int = 0
    scanned: int = 0
    covered_by_others: int = 0


class Publisher:
    """Publishes document changes of one instance (thread-safe; one per process)."""

    def __init__(self, settings: Settings, *, db: Callable[[], Any],
                 storage: Callable[[], Any], instance_id: str | None = None):
        self.settings = settings
        self._db = db
        self._storage = storage
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._open: _Batch | None = None
        # The index of each collection as last written or read, and a bounded cache of parsed
        # parts: memory does not grow with the collection.
        self._indexes: dict[str, SnapshotIndex] = {}
        self._parts = PartCache()
        self._manifest: tuple[dict[str, Any], int] | None = None
        self._next_slot_at = 0.0
        # (collection, id) -> update time (ns) of the version a deletion event removed: tells
        # the tombstone the write API committed with the delete from a later deletion.
        self._removed_versions: dict[tuple[str, str], int] = {}
        self.stats = FlushStats()

    # --- the event path ---------------------------------------------------------------------

    def publish(self, event: DocumentChange) -> str:
        """Publish one change; returns what happened. Raises only errors worth a retry."""
        outcome, change = self._prepare(event)
        if change is None:
            return outcome
        self.submit([change])
        log.info("published %s of %s (event %s)", event.kind, event.document_path,
                 event.event_id)
        return "published"

    def publish_many(self, events: Iterable[DocumentChange]) -> list[str | Unavailable]:
        """Publish several changes in one batch (the local event host's deliveries): what
        happened to each, in order, as `publish` returns it, or the `Unavailable` error of a
        change that was not written (its event is to be retried; the others are done)."""
        events = list(events)
        outcomes: list[str | Unavailable] = []
        changes: list[Change] = []
        for event in events:
            outcome, change = self._prepare(event)
            outcomes.append(outcome)
            if change is not None:
                changes.append(change)
        errors = iter(self._publish_changes(changes))
        published = 0
        for position, event in enumerate(events):
            if outcomes[position] != "published":
                continue
            error = next(errors)
            if error is None:
                published += 1
                log.debug("published %s of %s (event %s)", event.kind, event.document_path,
                          event.event_id)
            else:
                outcomes[position] = error
        if events:
            log.info("published %d of %d changes in one batch (events %s .. %s)", published,
                     len(events), events[0].event_id, events[-1].event_id)
        return outcomes

    def _prepare(self, event: DocumentChange) -> tuple[str, Change | None]:
        """The change to publish for an event, or why there is none (`ignored`, `too_old`,
        `duplicate`: logged here, the event is acknowledged)."""
        settings = self.settings
        if event.collection not in settings.collections:
            log.warning("ignoring event %s for %s: collection %r is not configured",
                        event.event_id, event.document_path, event.collection)
            return "ignored", None
        if event.database != settings.database:
            log.warning("ignoring event %s: database %r is not %r", event.event_id,
                        event.database, settings.database)
            return "ignored", None
        age_s = time.time() - event.event_time_ns / 1e9
        if age_s > settings.max_event_age_s:
            log.error("dropping event %s for %s: %.0f s old, over MAX_EVENT_AGE_S=%g; run "
                      "`python -m ops rebuild --collection %s` if the snapshot drifted",
                      event.event_id, event.document_path, age_s, settings.max_event_age_s,
                      event.collection)
            return "too_old", None
        try:
            item = (None if event.value is None
                    else encode_document(event.document_id, event.value))
        except TypeError as exc:
            log.error("dropping event %s for %s: %s", event.event_id, event.document_path, exc)
            return "ignored", None
        change = Change(event.collection, event.document_id, event.version_ns, item)
        with self._lock:
            if item is None and event.old_update_time_ns is not None:
                self._removed_versions.pop((event.collection, event.document_id), None)
                self._removed_versions[(event.collection, event.document_id)] = \
                    event.old_update_time_ns
                while len(self._removed_versions) > REMOVED_VERSIONS_KEPT:
                    self._removed_versions.pop(next(iter(self._removed_versions)))
            index = self._indexes.get(change.collection)  # its part, if cached, knows
            position = index.locate(change.doc_id) if index is not None else -1
            known = self._parts.get(index.parts[position].name) if position >= 0 else None
            if known is not None and (known.known_version(change.doc_id) or -1) >= \
                    change.version_ns:
                log.info("event %s for %s (%s) is already published", event.event_id,
                         event.document_path, event.kind)
                return "duplicate", None
        return "published", change

    def submit(self, changes: Iterable[Change]) -> None:
        """Join this instance's open batch (or lead a new one) and wait until it is published;
        raises `Unavailable` if any of the changes was not."""
        for error in self._publish_changes(changes):
            if error is not None:
                raise error

    def _publish_changes(self, changes: Iterable[Change]) -> list[Unavailable | None]:
        """Join this instance's open batch (or lead a new one), wait until it is published, and
        say for each change whether it was (None) or why not."""
        tickets = [_Ticket(change) for change in changes]
        if not tickets:
            return []
        with self._lock:
            batch = self._open
            leader = batch is None
            if leader:
                batch = self._open = _Batch()
            batch.tickets.extend(tickets)
        if leader:
            try:
                self._lead(batch)
            except BaseException as exc:
                with self._lock:
                    if self._open is batch:
                        self._open = None
                for ticket in batch.tickets:
                    ticket.finish(exc)
                if not isinstance(exc, Exception):
                    raise
        errors: list[Unavailable | None] = []
        deadline = time.monotonic() + self.settings.publish_wait_s + 5
        for ticket in tickets:
            if not ticket.done.wait(max(0.0, deadline - time.monotonic())):
                errors.append(Unavailable("the batch of this change was not published in time"))
            elif ticket.error is not None:
                error = Unavailable(f"publishing failed: {ticket.error}")
                error.__cause__ = ticket.error
                errors.append(error)
            else:
                errors.append(None)
        return errors

    # --- leading a batch: the write slot, pending entries, coverage ------------------------

    def _lead(self, batch: _Batch) -> None:
        """Publish the batch (growing while we wait): in our own slot, or by handing its
        changes to whoever holds the next one. Returns once every ticket is released."""
        deadline = time.monotonic() + self.settings.publish_wait_s
        persisted = 0
        chunks: list[tuple[int, int, int]] = []  # (seq, first ticket, end) handed over
        own_slot_only = False
        while True:
            if time.monotonic() > deadline:
                raise Unavailable(f"no write slot within PUBLISH_WAIT_S="
                                  f"{self.settings.publish_wait_s:g} s")
            pause = self._next_slot_at - time.time()
            if pause > 0 and not chunks:
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            slot = self._read_slot()
            covered = [chunk for chunk in chunks if chunk[0] <= slot.covered_seq]
            for _, first, end in covered:
                for ticket in batch.tickets[first:end]:
                    ticket.finish()
            chunks = [chunk for chunk in chunks if chunk[0] > slot.covered_seq]
            with self._lock:
                todo = batch.tickets[persisted:]
                if not chunks and not todo and persisted:
                    if self._open is batch:
                        self._open = None
                    self.stats.covered_by_others += 1
                    return
            now = time.time()
            if now >= slot.next_write_at:
                if not self._take_slot(slot, now):
                    continue
                with self._lock:
                    if self._open is batch:
                        self._open = None
                    waiting = [t for t in batch.tickets if not t.done.is_set()]
                scan_up_to = slot.pending_seq if slot.pending_seq > slot.covered_seq else 0
                self._flush([t.change for t in waiting], scan_up_to, deadline,
                            trusted=slot.holder == self.instance_id)
                # Cloud Storage's limit is between successive writes of an object: this
                # instance counts its next interval from the end of this write.
                self._next_slot_at = max(self._next_slot_at,
                                         time.time() + self.settings.publish_interval_s)
                for ticket in waiting:
                    ticket.finish()
                return
            self._next_slot_at = slot.next_write_at
            if todo and not own_slot_only:
                storable = [t.change for t in todo
                            if _item_size(t.change) <= MAX_PENDING_ITEM_BYTES]
                if len(storable) < len(todo):
                    own_slot_only = True
                else:
                    seq = self._persist(slot, storable[:PENDING_PER_COMMIT])
                    if seq is None:
                        continue
                    end = persisted + min(len(storable), PENDING_PER_COMMIT)
                    chunks.append((seq, persisted, end))
                    persisted = end
                    if len(storable) > PENDING_PER_COMMIT:
                        continue
            wait = slot.next_write_at - time.time()
            if chunks and not own_slot_only and slot.scan_up_to >= chunks[0][0]:
                wait = min(wait, COVERAGE_POLL_S)  # a flush that will cover us is running
            wait = max(0.0, wait) + random.uniform(0, 0.02)  # noqa: S311 - jitter
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    def _slot_ref(self) -> Any:
        return self._db().collection(STATE_COLLECTION).document(STATE_DOCUMENT)

    def _read_slot(self) -> _SlotState:
        snapshot = self._slot_ref().get(**self._deadline())
        data = (snapshot.to_dict() or {}) if snapshot.exists else {}
        return _SlotState(exists=snapshot.exists, update_time=snapshot.update_time,
                          holder=str(data.get("holder") or ""),
                          next_write_at=float(data.get("nextWriteAt") or 0.0),
                          pending_seq=int(data.get("pendingSeq") or 0),
                          covered_seq=int(data.get("coveredSeq") or 0),
                          scan_up_to=int(data.get("scanUpTo") or 0))

    def _compare_and_set(self, slot: _SlotState, fields: dict[str, Any],
                         extra: Callable[[Any], None] | None = None) -> bool:
        """Write `fields` to the state document only if it is unchanged since `slot` was read."""
        from google.api_core import exceptions as gexc

        db = self._db()
        batch = db.batch()
        ref = self._slot_ref()
        if slot.exists:
            batch.update(ref, fields,
                         option=db.write_option(last_update_time=slot.update_time))
        else:
            batch.create(ref, {"pendingSeq": 0, "coveredSeq": 0, "scanUpTo": 0, **fields})
        if extra is not None:
            extra(batch)
        try:
            batch.commit(**self._deadline())
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound, gexc.Aborted,
                gexc.Conflict):
            time.sleep(random.uniform(0.005, 0.03))  # noqa: S311 - jitter after contention
            return False
        return True

    def _take_slot(self, slot: _SlotState, now: float) -> bool:
        interval = self.settings.publish_interval_s
        taken = self._compare_and_set(slot, {
            "nextWriteAt": now + interval, "holder": self.instance_id, "takenAt": now,
            "scanUpTo": max(slot.scan_up_to, slot.pending_seq)})
        if taken:
            self._next_slot_at = now + interval
        return taken

    def _persist(self, slot: _SlotState, changes: list[Change]) -> int | None:
        """Copy changes into pending entries with the next sequence number (None: contended)."""
        seq = slot.pending_seq + 1
        pending = self._slot_ref().collection(PENDING)

        def add_entries(batch: Any) -> None:
            for change in changes:
                batch.set(pending.document(_entry_id(change)), {
                    "seq": seq, "collection": change.collection, "id": change.doc_id,
                    # A string: int64 nanoseconds lose precision in JavaScript numbers.
                    "version": str(change.version_ns),
                    "item": None if change.item is None else json.dumps(change.item),
                })

        if not self._compare_and_set(slot, {"pendingSeq": seq}, add_entries):
            return None
        self.stats.persisted += len(changes)
        return seq

    # --- one flush: merge, write, manifest, coverage --------------------------------------

    def _flush(self, changes: list[Change], scan_up_to: int, deadline: float, *,
               trusted: bool) -> None:
        """Merge the changes (and the pending entries up to `scan_up_to`) into their snapshots,
        then the manifest. `trusted`: this instance held the previous slot too, so its cached
        objects are taken as current without asking (a 412 still catches any other writer)."""
        settings = self.settings
        entries: list[Any] = []
        if scan_up_to:
            entries, scanned = self._scan_pending(scan_up_to)
            changes = changes + scanned
        by_collection: dict[str, list[Change]] = {}
        for change in changes:
            if change.collection in settings.collections:
                by_collection.setdefault(change.collection, []).append(change)
        manifest: dict[str, ManifestEntry] = {}
        for collection, group in sorted(by_collection.items()):
            index = self._merge(collection, group, deadline, trusted=trusted)
            listed = (self._manifest or ({}, 0))[0].get(collection) or {}
            if index.exists and listed.get("generation") != str(index.generation):
                manifest[collection] = manifest_entry(index)
        if manifest:
            self._manifest = update_manifest(
                self._storage(), settings.snapshot_bucket, manifest,
                timeout_s=settings.storage_timeout_s, deadline=deadline,
                known=self._manifest if trusted else None)
        if scan_up_to:
            self._finish_pending(scan_up_to, entries)
        self.stats.flushes += 1

    def _merge(self, collection: str, group: list[Change], deadline: float, *,
               trusted: bool) -> SnapshotIndex:
        settings = self.settings
        removed_versions = self._removed_versions

        def record(state: SnapshotState) -> None:
            from shared.tombstones import record_tombstones

            pending = state.unrecorded_tombstones()
            if pending:
                with self._lock:
                    removed = {doc_id: removed_versions[(collection, doc_id)]
                               for doc_id, _ in pending
                               if (collection, doc_id) in removed_versions}
                recorded = record_tombstones(
                    self._db(), collection, pending,
                    retention_s=settings.tombstone_retention_s,
                    timeout_s=max(settings.firestore_timeout_s, 5.0), removed_versions=removed)
                state.mark_recorded([doc_id for doc_id, _ in pending],
                                    recorded or time.time_ns())

        with self._lock:
            known = self._indexes.get(collection)
        outcome = merge_changes(
            self._storage(), settings.snapshot_bucket, collection, group,
            timeout_s=settings.storage_timeout_s, deadline=deadline, known=known,
            verify_known=not trusted, cache=self._parts,
            bootstrap=lambda: self._bootstrap(collection),
            repair=lambda lo, hi: range_state(self._db(), collection, lo, hi,
                                              timeout_s=max(settings.storage_timeout_s, 30.0)),
            record=record,
            prune_before_ns=time.time_ns() - int(settings.tombstone_retention_s * 1e9))
        with self._lock:
            self._indexes[collection] = outcome.index
            self.stats.conflicts += outcome.conflicts
            self.stats.throttled += outcome.throttled
            self.stats.snapshot_writes += int(outcome.written)
            self.stats.parts_written += outcome.parts_written
            self.stats.bytes_written += outcome.bytes_written
        if outcome.pruned:
            from shared.tombstones import delete_tombstones

            delete_tombstones(self._db(), collection, outcome.pruned,
                              timeout_s=max(settings.firestore_timeout_s, 5.0))
        return outcome.index

    def _bootstrap(self, collection: str) -> None:
        """No usable snapshot yet: build it from Firestore first (N reads, once, streamed)."""
        log.warning("no usable snapshot of %s: building it from Firestore first", collection)
        rebuild_collection(self._db(), self._storage(), self.settings.snapshot_bucket,
                           collection, timeout_s=max(self.settings.storage_timeout_s, 30.0),
                           retention_s=self.settings.tombstone_retention_s)

    def _scan_pending(self, scan_up_to: int) -> tuple[list[Any], list[Change]]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._slot_ref().collection(PENDING).where(
            filter=FieldFilter("seq", "<=", scan_up_to))
        entries = list(query.stream(timeout=max(self.settings.firestore_timeout_s, 10.0)))
        changes = []
        for entry in entries:
            data = entry.to_dict() or {}
            try:
                item = data.get("item")
                changes.append(Change(str(data["collection"]), str(data["id"]),
                                      int(data["version"]),
                                      None if item is None else json.loads(item)))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("skipping a malformed pending entry %s: %s", entry.id, exc)
        self.stats.scanned += len(entries)
        return entries, changes

    def _finish_pending(self, scan_up_to: int, entries: list[Any]) -> None:
        """Announce the coverage, then delete the entries this flush published."""
        from google.cloud import firestore

        db = self._db()
        self._slot_ref().update({"coveredSeq": firestore.Maximum(scan_up_to)},
                                **self._deadline())
        for start in range(0, len(entries), PENDING_PER_COMMIT):
            batch = db.batch()
            for entry in entries[start:start + PENDING_PER_COMMIT]:
                batch.delete(entry.reference)
            batch.commit(**self._deadline())

    def _deadline(self) -> dict[str, Any]:
        from shared.clients import firestore_deadline

        return firestore_deadline(self.settings)


def _entry_id(change: Change) -> str:
    key = f"{change.collection}/{change.doc_id}@{change.version_ns}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def _item_size(change: Change) -> int:
    return 0 if change.item is None else len(json.dumps(change.item))
