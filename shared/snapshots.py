"""The JSON snapshots in Cloud Storage: rebuilding one from Firestore, streamed; and the names
the rest of the code imports (reading, merging, the manifest).

A snapshot is an index plus bounded parts (`shared.snapshot_parts`); a change rewrites its
part and the index (`shared.snapshot_merge`); readers load only the parts they need
(`shared.snapshot_reader`); objects and the manifest are `shared.snapshot_io`'s.

A rebuild (`rebuild_collection`) walks Firestore in pages of document ids and the current
parts alongside (both in id order), and writes new parts as they fill: its memory is one
page and one part, whatever the collection's size. Merges are by version, like an event's:
a document the snapshot has with a version newer than the rebuild's start was written
after it (its event published it) and is kept; one Firestore no longer has is removed with a
tombstone. What events published while the rebuild ran is merged into its parts before its
index is written, conditionally: a 412 means more was published, and that is merged too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared import snapshot_parts  # its bounds, read at call time (tests lower them)
from shared.http import dumps
from shared.snapshot_format import DEFAULT_TOMBSTONE_RETENTION_S, Change, SnapshotState
from shared.snapshot_io import (
    Attempts,
    delete_objects,
    load_index,
    load_manifest,
    update_manifest,
    write_index,
)
from shared.snapshot_merge import (
    PartCache,
    manifest_entry,
    read_collection,
    read_range,
    rewrite_parts,
    write_pieces,
    write_snapshot,
)
from shared.snapshot_parts import (
    ITEM_OVERHEAD_BYTES,
    TOMBSTONE_BYTES,
    PartRef,
    SnapshotIndex,
)
from shared.snapshot_reader import load_snapshot, parse_snapshot, read_part

__all__ = [
    "RebuildReport",
    "load_manifest",
    "load_snapshot",
    "parse_snapshot",
    "read_collection",
    "rebuild_collection",
    "rebuild_snapshot",
    "update_manifest",
    "write_snapshot",
]

log = logging.getLogger("dashboard.snapshots")


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild found and changed in one collection's snapshot."""

    collection: str
    documents: int
    added: int
    updated: int
    removed: int
    unchanged: int
    tombstones_pruned: int
    written: bool
    generation: int
    content_hash: str
    reads: int

    def summary(self) -> str:
        """One line for the CLI and the logs."""
        action = "written" if self.written else "already current, not written"
        return (f"{self.collection}: {self.documents} documents, +{self.added} added, "
                f"~{self.updated} updated, -{self.removed} removed, {self.unchanged} unchanged, "
                f"{self.tombstones_pruned} tombstones pruned; {action} "
                f"(generation {self.generation}, {self.content_hash[:19]}, "
                f"{self.reads} document reads)")


def _old_entries(storage_client: Any, bucket: str, index: SnapshotIndex | None, *,
                 timeout_s: float) -> Iterator[tuple[str, SnapshotState]]:
    """Every id of the current snapshot in id order, with its part's state (one part in
    memory at a time); an unreadable part is skipped (the rebuild replaces it)."""
    for ref in (index.parts if index is not None and index.exists else []):
        try:
            parsed = read_part(storage_client, bucket, index.collection, ref.name,
                               timeout_s=timeout_s)
        except ValueError as exc:
            parsed = None
            log.error("snapshot part %s is invalid (%s): rebuilt from Firestore", ref.name, exc)
        if parsed is None:
            continue
        state = SnapshotState.from_snapshot(parsed)
        for doc_id in sorted(set(state.items) | set(state.deleted)):
            yield doc_id, state


@dataclass
class _PartFiller:
    """Collects the rebuilt entries in id order and writes a part each time one fills."""

    db: Any
    storage_client: Any
    bucket: str
    collection: str
    timeout_s: float
    retention_s: float
    generated_at: str
    prune_before_ns: int
    state: SnapshotState = field(init=False)
    lo: str = ""
    size: int = 0
    parts: list[PartRef] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    attempts: Attempts = field(default_factory=Attempts)

    def __post_init__(self) -> None:
        self.state = SnapshotState(self.collection, exists=True)

    def add(self, doc_id: str, old: SnapshotState | None, change: Change | None) -> None:
        """One id: its old entry (if any), then Firestore's version of it (if any)."""
        if not self.state.items and not self.state.deleted and self.parts:
            self.lo = doc_id
        state = self.state
        if old is not None:
            for source, target in ((old.items, state.items), (old.versions, state.versions),
                                   (old.deleted, state.deleted), (old.recorded, state.recorded)):
                if doc_id in source:
                    target[doc_id] = source[doc_id]
        if change is not None:
            state.apply(change)
        item = state.items.get(doc_id)
        self.size += (len(dumps(item)) + ITEM_OVERHEAD_BYTES if item is not None else 0) + \
            (TOMBSTONE_BYTES if doc_id in state.deleted else 0)
        if self.size >= snapshot_parts.PART_MAX_BYTES // 2:
            self.flush()

    def flush(self) -> None:
        """Write the part collected so far (record its new tombstones, prune old ones)."""
        from shared.tombstones import record_tombstones

        self.pruned.extend(self.state.prune(self.prune_before_ns))

        def record(piece: SnapshotState) -> None:
            pending = piece.unrecorded_tombstones()
            if pending:
                recorded = record_tombstones(self.db, self.collection, pending,
                                             retention_s=self.retention_s,
                                             timeout_s=self.timeout_s)
                piece.mark_recorded([doc_id for doc_id, _ in pending],
                                    recorded or time.time_ns())

        if self.state.items or self.state.deleted or not self.parts:
            self.parts += write_pieces(self.storage_client, self.bucket, self.collection,
                                       [(self.lo, self.state)], self.generated_at,
                                       timeout_s=self.timeout_s, attempts=self.attempts,
                                       record=record)
        self.state = SnapshotState(self.collection, exists=True)
        self.size = 0


def _late_changes(storage_client: Any, bucket: str, current: SnapshotIndex | None,
                  seen: set[str], since_ns: int, *, timeout_s: float) -> list[Change]:
    """What events published while the rebuild ran, from the parts written since it began (the
    index's parts not in `seen`): documents with a version after `since_ns`, and deletions."""
    late: list[Change] = []
    for ref in (current.parts if current is not None and current.exists else []):
        if ref.name in seen:
            continue
        try:
            parsed = read_part(storage_client, bucket, current.collection, ref.name,
                               timeout_s=timeout_s)
        except ValueError:
            parsed = None
        if parsed is None:
            continue
        state = SnapshotState.from_snapshot(parsed)
        late += [Change(current.collection, doc_id, version, state.items[doc_id])
                 for doc_id, version in state.versions.items() if version > since_ns]
        # Every tombstone, however old: a rebuild reads no deleted document, and without its
        # tombstone a late, older event of it would bring it back (merged by version).
        late += [Change(current.collection, doc_id, deleted_ns, None)
                 for doc_id, deleted_ns in state.deleted.items()]
    return late


def rebuild_collection(db: Any, storage_client: Any, bucket: str, collection: str, *,
                       timeout_s: float,
                       retention_s: float = DEFAULT_TOMBSTONE_RETENTION_S,
                       deadline_s: float = 600.0) -> RebuildReport:
    """Read the whole collection once (N reads, in pages) and merge it into its snapshot,
    streamed (see the module's docstring). Nothing is written when nothing changed."""
    from google.api_core import exceptions as gexc

    from shared.times import format_timestamp, utc_now
    from shared.tombstones import delete_tombstones

    started_ns = time.time_ns()
    deadline = time.monotonic() + deadline_s
    start = load_index(storage_client, bucket, collection, timeout_s=timeout_s)
    filler = _PartFiller(db, storage_client, bucket, collection, timeout_s, retention_s,
                         format_timestamp(utc_now()), started_ns - int(retention_s * 1e9))
    counts = dict(added=0, updated=0, removed=0, unchanged=0)
    reads = 0
    fresh = read_range(db, collection, timeout_s=timeout_s)
    old = _old_entries(storage_client, bucket, start, timeout_s=timeout_s)
    new, was = next(fresh, None), next(old, None)
    while new is not None or was is not None:
        new_id = new[0].doc_id if new is not None else None
        old_id = was[0] if was is not None else None
        if was is not None and (new_id is None or old_id < new_id):
            doc_id, state = was
            version = state.versions.get(doc_id)
            if doc_id in state.items and (version is None or version <= started_ns):
                counts["removed"] += 1
                filler.add(doc_id, state, Change(collection, doc_id,
                                                 max(started_ns, (version or 0) + 1), None))
            else:
                filler.add(doc_id, state, None)
            was = next(old, None)
            continue
        change = new[0]
        reads += 1
        before = None
        if was is not None and old_id == new_id:
            before = was[1].items.get(new_id)
            if was[1].known_version(new_id) is not None and \
                    was[1].known_version(new_id) >= change.version_ns:
                counts["unchanged"] += 1
            else:
                counts["added" if before is None else
                       "updated" if before != change.item else "unchanged"] += 1
            filler.add(new_id, was[1], change)
            was = next(old, None)
        else:
            counts["added"] += 1
            filler.add(new_id, None, change)
        new = next(fresh, None)
    filler.flush()
    changed = (counts["added"] or counts["updated"] or counts["removed"] or filler.pruned
               or start is None or not start.exists
               or sum(ref.count for ref in filler.parts) != (start.count if start else 0))
    seen = start.names() if start is not None else set()
    written = False
    index = start
    while changed:
        current = load_index(storage_client, bucket, collection, timeout_s=timeout_s)
        late = _late_changes(storage_client, bucket, current, seen, started_ns,
                             timeout_s=timeout_s)
        generation = current.generation if current is not None else 0
        ours = SnapshotIndex(collection, list(filler.parts), generation, exists=True)
        rewrite = rewrite_parts(storage_client, bucket, ours, late, timeout_s=timeout_s,
                                deadline=deadline, attempts=filler.attempts,
                                cache=PartCache(), generated_at=filler.generated_at) \
            if late else None
        index = SnapshotIndex(collection, rewrite.parts if rewrite else ours.parts, generation,
                              filler.generated_at)
        try:
            index.generation = write_index(storage_client, bucket, index, filler.generated_at,
                                           timeout_s=timeout_s)
        except gexc.PreconditionFailed:
            if rewrite is not None:
                delete_objects(storage_client, bucket, rewrite.written, timeout_s=timeout_s)
            if time.monotonic() > deadline:
                raise
            continue
        index.exists = written = True
        stale = (seen | (current.names() if current is not None else set())) - index.names()
        delete_objects(storage_client, bucket, sorted(stale | set(
            rewrite.replaced if rewrite else [])), timeout_s=timeout_s)
        break
    if not written:
        delete_objects(storage_client, bucket, [ref.name for ref in filler.parts],
                       timeout_s=timeout_s)
    if filler.pruned and written:
        delete_tombstones(db, collection, filler.pruned, timeout_s=timeout_s)
    if written:
        update_manifest(storage_client, bucket, {collection: manifest_entry(index)},
                        timeout_s=timeout_s, deadline=deadline)
    index = index or SnapshotIndex(collection)
    return RebuildReport(collection=collection, documents=index.count, added=counts["added"],
                         updated=counts["updated"], removed=counts["removed"],
                         unchanged=counts["unchanged"],
                         tombstones_pruned=len(filler.pruned) if written else 0,
                         written=written, generation=index.generation,
                         content_hash=index.content_hash(), reads=max(1, reads))


def rebuild_snapshot(db: Any, storage_client: Any, bucket: str, collection: str, *,
                     timeout_s: float) -> int:
    """Rebuild a collection's snapshot from Firestore (see `rebuild_collection`); returns the
    number of documents it holds."""
    return rebuild_collection(db, storage_client, bucket, collection,
                              timeout_s=timeout_s).documents
