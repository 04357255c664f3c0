"""Merging changes into a snapshot in parts, and reading Firestore in id order.

Format (`shared.snapshot_parts`): `snapshots/<collection>/index.json` lists parts
`snapshots/<collection>/parts/<random>.json[.gz]`, each holding one id range's documents and
tombstones in the body of a whole snapshot: the read API's list shape (sorted by id),
`generatedAt`, `contentHash`, `updateTimes` (each document's Firestore `update_time`, the
version that orders its changes) and `tombstones` (deleted ids with their delete and record
times; see `shared.tombstones`). A part is bounded (`PART_MAX_BYTES` of JSON; it splits past
that and merges with a neighbour below `PART_MIN_BYTES`) and stored gzipped when that pays.

A merge (`merge_changes`) reads the index, the parts its changes fall in (a bounded cache of
parsed parts spares the download), applies the changes by version (`SnapshotState.apply`:
duplicates and older changes change nothing), writes each changed part under a new name
(`if_generation_match=0`) and then the index, conditional on the generation it read: on HTTP
412 another writer came first, and the merge runs again on the newer index, so a newer snapshot
is never replaced by an older one. Parts the new index no longer names are deleted afterwards.
A change therefore writes one part and the index, not the collection.

Rebuilds are `shared.snapshots`'; reading is `shared.snapshot_reader`'s; object I/O and the
manifest are `shared.snapshot_io`'s.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared import snapshot_parts  # its bounds, read at call time (tests lower them)
from shared.errors import Unavailable
from shared.retry import is_transient
from shared.snapshot_format import (
    Change,
    ManifestEntry,
    SnapshotState,
)
from shared.snapshot_io import (
    Attempts,
    call_with_backoff,
    delete_objects,
    load_index,
    remaining,
    sleep_or_give_up,
    write_index,
    write_part,
)
from shared.snapshot_parts import (
    PartRef,
    SnapshotIndex,
    encode_part,
    estimated_bytes,
    items_sum,
    joined,
    new_part_name,
    split,
)
from shared.snapshot_reader import parse_snapshot, read_part

log = logging.getLogger("dashboard.snapshots")

PAGE_SIZE = 1000
PART_CACHE_SIZE = 16


class PartCache:
    """Parsed part states by part name, the most recent `limit` only: a publisher's memory
    stays flat in the collection's size. Names are never reused, so an entry never goes
    stale; callers merge into a copy."""

    def __init__(self, limit: int = PART_CACHE_SIZE):
        self._limit = limit
        self._lock = threading.Lock()
        self._states: collections.OrderedDict[str, SnapshotState] = collections.OrderedDict()

    def get(self, name: str) -> SnapshotState | None:
        """The cached state of a part, or None."""
        with self._lock:
            state = self._states.get(name)
            if state is not None:
                self._states.move_to_end(name)
            return state

    def put(self, name: str, state: SnapshotState) -> None:
        """Remember a part's state (evicting the least recently used)."""
        with self._lock:
            self._states[name] = state
            self._states.move_to_end(name)
            while len(self._states) > self._limit:
                self._states.popitem(last=False)


@dataclass
class MergeOutcome:
    """What a merge did: the index as it is now, and what it wrote."""

    index: SnapshotIndex
    written: bool = False
    conflicts: int = 0
    throttled: int = 0
    parts_written: int = 0
    bytes_written: int = 0
    pruned: list[str] = field(default_factory=list)


RepairRange = Callable[[str, "str | None"], SnapshotState]
RecordTombstones = Callable[[SnapshotState], None]


def manifest_entry(index: SnapshotIndex) -> ManifestEntry:
    """The manifest entry of a written index."""
    return ManifestEntry(index.count, index.content_hash(), index.generation,
                         index.generated_at)


def part_state(storage_client: Any, bucket: str, index: SnapshotIndex, position: int, *,
               timeout_s: float, cache: PartCache | None,
               repair: RepairRange | None, missing_is_damage: bool = True) -> SnapshotState:
    """The mergeable state of one part (cached, downloaded, or, when it is missing or
    unreadable, rebuilt from Firestore by `repair(from, to)`). Network errors raise; a missing
    part raises `PartMissing` unless `missing_is_damage` (the index is known to be current)."""
    ref = index.parts[position]
    cached = cache.get(ref.name) if cache is not None else None
    if cached is not None:
        return cached
    try:
        parsed = read_part(storage_client, bucket, index.collection, ref.name,
                           timeout_s=timeout_s)
    except ValueError as exc:
        parsed, problem = None, f"invalid ({exc})"
    else:
        problem = "missing"
    if parsed is not None:
        state = SnapshotState.from_snapshot(parsed)
    elif problem == "missing" and not missing_is_damage:
        # Most likely the index changed since it was read (the part was replaced and deleted):
        # the caller reads the index again before repairing anything.
        raise PartMissing(ref.name)
    elif repair is not None:
        log.error("snapshot part %s of %s is %s: rebuilding its range from Firestore",
                  ref.name, index.collection, problem)
        upper = index.parts[position + 1].lo if position + 1 < len(index.parts) else None
        state = repair(ref.lo, upper)
    else:
        raise Unavailable(f"snapshot part {ref.name} of {index.collection} is {problem}")
    if cache is not None:
        cache.put(ref.name, state)
    return state


class PartMissing(Exception):
    """A part the index names does not exist (the index may be stale)."""


@dataclass
class _Segment:
    """A range of the new index: its first id, the old positions it replaces, and its new
    state (None: the old part is kept as it is)."""

    lo: str
    positions: list[int]
    state: SnapshotState | None = None


@dataclass
class _Rewrite:
    """Parts written for a new index, and the old ones it replaces."""

    parts: list[PartRef]
    written: list[str]
    replaced: list[str]
    bytes_written: int


def rewrite_parts(storage_client: Any, bucket: str, index: SnapshotIndex,
                  changes: Iterable[Change], *, timeout_s: float, deadline: float,
                  attempts: Attempts, cache: PartCache | None = None,
                  repair: RepairRange | None = None, record: RecordTombstones | None = None,
                  prune_before_ns: int | None = None, pruned: list[str] | None = None,
                  generated_at: str, repair_all: Iterable[int] = (),
                  missing_is_damage: bool = True) -> _Rewrite | None:
    """Apply changes to the parts they fall in, split and merge those parts as needed and
    write them under new names; the index is not written. None when nothing changed."""
    collection = index.collection
    segments = [_Segment(ref.lo, [position]) for position, ref in enumerate(index.parts)] or \
        [_Segment("", [])]
    by_position: dict[int, list[Change]] = {}
    for change in changes:
        by_position.setdefault(max(0, index.locate(change.doc_id)), []).append(change)
    for position in repair_all:
        by_position.setdefault(position, [])

    forced = set(repair_all) if repair is not None else set()

    def state_of(position: int) -> SnapshotState:
        if not index.parts:
            return SnapshotState(collection, exists=True)
        if position in forced:
            upper = index.parts[position + 1].lo if position + 1 < len(index.parts) else None
            return repair(index.parts[position].lo, upper)
        return part_state(storage_client, bucket, index, position, timeout_s=timeout_s,
                          cache=cache, repair=repair,
                          missing_is_damage=missing_is_damage).copy()

    for position, group in sorted(by_position.items()):
        state = state_of(position)
        changed = position in forced
        for change in group:
            changed = state.apply(change) or changed
        if prune_before_ns is not None:
            gone = state.prune(prune_before_ns)
            changed = changed or bool(gone)
            if pruned is not None:
                pruned.extend(gone)
        if changed:
            segments[position].state = state
    if all(segment.state is None for segment in segments):
        return None
    segments = _merge_small(segments, state_of)
    parts: list[PartRef] = []
    written: list[str] = []
    replaced: list[str] = []
    total = 0
    for segment in segments:
        if segment.state is None:
            parts.append(index.parts[segment.positions[0]])
            continue
        replaced.extend(index.parts[p].name for p in segment.positions if index.parts)
        pieces = split(segment.lo, segment.state)
        refs = write_pieces(storage_client, bucket, collection, pieces, generated_at,
                            timeout_s=timeout_s, attempts=attempts, record=record,
                            deadline=deadline)
        for ref, (_, piece) in zip(refs, pieces, strict=True):
            written.append(ref.name)
            total += ref.stored_bytes
            parts.append(ref)
            if cache is not None:
                cache.put(ref.name, piece)
    return _Rewrite(parts, written, replaced, total)


def _merge_small(segments: list[_Segment],
                 state_of: Callable[[int], SnapshotState]) -> list[_Segment]:
    """Join each changed part that shrank below `PART_MIN_BYTES` with its next (else previous)
    neighbour, while the two stay well under `PART_MAX_BYTES`."""
    result: list[_Segment] = []
    pending = list(segments)
    while pending:
        segment = pending.pop(0)
        if (segment.state is not None and len(segments) > 1
                and estimated_bytes(segment.state) < snapshot_parts.PART_MIN_BYTES):
            if pending:
                neighbour, after = pending[0], True
            elif result:
                neighbour, after = result[-1], False
            else:
                neighbour = None
            if neighbour is not None:
                other = neighbour.state or state_of(neighbour.positions[0])
                left, right = (segment, neighbour) if after else (neighbour, segment)
                both = joined(left.state or other, right.state or other)
                if estimated_bytes(both) <= snapshot_parts.PART_MAX_BYTES * 3 // 4:
                    merged = _Segment(left.lo, left.positions + right.positions, both)
                    if after:
                        pending[0] = merged
                    else:
                        result[-1] = merged
                    continue
        result.append(segment)
    return result


def merge_changes(storage_client: Any, bucket: str, collection: str, changes: list[Change], *,
                  timeout_s: float, deadline: float, known: SnapshotIndex | None = None,
                  verify_known: bool = True, cache: PartCache | None = None,
                  bootstrap: Callable[[], Any] | None = None,
                  repair: RepairRange | None = None, record: RecordTombstones | None = None,
                  prune_before_ns: int | None = None,
                  repair_positions: Iterable[int] = ()) -> MergeOutcome:
    """Merge changes into a collection's snapshot: their parts, then the index, conditionally.

    `known` is the index as last seen: reused without a download while it is current (with
    `verify_known=False`, without even asking; a 412 still catches a stale one). `bootstrap`
    builds the snapshot when there is none (or its index is unreadable). `repair(from, to)`
    rebuilds a missing or unreadable part's range. `record` runs on each part before it is
    written (it records tombstones). `repair_positions` forces those parts to be rewritten.
    `deadline` is a `time.monotonic()` value; past it, `Unavailable` (worth a retry).
    """
    from google.api_core import exceptions as gexc

    from shared.times import format_timestamp, utc_now

    attempts = Attempts()
    outcome = MergeOutcome(known or SnapshotIndex(collection))
    index = known if known is not None and not verify_known else None
    bootstrapped = False
    damaged_at = -1
    while True:
        if index is None:
            index = call_with_backoff(
                lambda reuse=known: load_index(storage_client, bucket, collection,
                                               timeout_s=timeout_s, known=reuse),
                deadline, attempts,
                f"reading the snapshot index of {collection}")
            known = None
            if (index is None or not index.exists) and bootstrap is not None \
                    and not bootstrapped:
                bootstrap()
                bootstrapped, index = True, None
                continue
            if index is None or not index.exists:
                index = SnapshotIndex(collection, generation=index.generation if index else 0)
        generated_at = format_timestamp(utc_now())
        pruned: list[str] = []
        try:
            rewrite = rewrite_parts(storage_client, bucket, index, changes, timeout_s=timeout_s,
                                    deadline=deadline, attempts=attempts, cache=cache,
                                    repair=repair, record=record,
                                    prune_before_ns=prune_before_ns, pruned=pruned,
                                    generated_at=generated_at,
                                    repair_all=repair_positions if index.exists else (),
                                    missing_is_damage=index.generation == damaged_at)
        except PartMissing:
            # Read the index again; still the same generation: the part is really missing.
            damaged_at, index, known = index.generation, None, None
            if time.monotonic() > deadline:
                raise Unavailable(f"a part of the snapshot of {collection} is missing") \
                    from None
            continue
        if rewrite is None and index.exists:
            outcome.index = index
            break
        if rewrite is None:
            rewrite = _Rewrite([], [], [], 0)
        new_index = SnapshotIndex(collection, rewrite.parts, index.generation, generated_at)
        try:
            generation = _write_index_with_backoff(storage_client, bucket, new_index,
                                                   generated_at, timeout_s, deadline, attempts)
        except gexc.PreconditionFailed:
            attempts.conflicts += 1
            delete_objects(storage_client, bucket, rewrite.written, timeout_s=timeout_s)
            if time.monotonic() > deadline:
                raise Unavailable(f"the snapshot of {collection} kept changing while merging "
                                  f"({attempts.conflicts} conflicts)") from None
            log.info("snapshot index of %s changed while merging (412): merging again",
                     collection)
            index = None
            continue
        new_index.generation, new_index.exists = generation, True
        delete_objects(storage_client, bucket, rewrite.replaced, timeout_s=timeout_s)
        outcome = MergeOutcome(new_index, True, parts_written=len(rewrite.written),
                               bytes_written=rewrite.bytes_written + len(
                                   new_index.body(generated_at)), pruned=pruned)
        break
    outcome.conflicts, outcome.throttled = attempts.conflicts, attempts.throttled
    return outcome


def _write_index_with_backoff(storage_client: Any, bucket: str, index: SnapshotIndex,
                              generated_at: str, timeout_s: float, deadline: float,
                              attempts: Attempts) -> int:
    """Write an index conditionally, retrying 429 and 5xx; 412 is the caller's."""
    from shared.snapshot_io import BACKOFF_INITIAL_S

    delay = BACKOFF_INITIAL_S
    while True:
        try:
            return write_index(storage_client, bucket, index, generated_at,
                               timeout_s=remaining(deadline, timeout_s))
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            attempts.throttled += 1
            delay = sleep_or_give_up(delay, deadline, exc, f"writing the snapshot index of "
                                                           f"{index.collection}")


def write_snapshot(storage_client: Any, bucket: str, collection: str, body: bytes, *,
                   timeout_s: float, if_generation_match: int | None = None) -> int:
    """Write a whole snapshot body (an import, a test's fixture) as parts and an index;
    returns the index generation. Without `if_generation_match`, it replaces any index."""
    from shared.times import format_timestamp, utc_now

    state = SnapshotState.from_snapshot(parse_snapshot(collection, body, None))
    if if_generation_match is None:
        current = load_index(storage_client, bucket, collection, timeout_s=timeout_s)
        if_generation_match = current.generation if current is not None else 0
    generated_at = format_timestamp(utc_now())
    attempts = Attempts()
    parts = write_pieces(storage_client, bucket, collection, split("", state), generated_at,
                          timeout_s=timeout_s, attempts=attempts)
    return write_index(storage_client, bucket,
                       SnapshotIndex(collection, parts, if_generation_match), generated_at,
                       timeout_s=timeout_s)


def write_pieces(storage_client: Any, bucket: str, collection: str,
                 pieces: list[tuple[str, SnapshotState]], generated_at: str, *,
                 timeout_s: float, attempts: Attempts, record: RecordTombstones | None = None,
                 deadline: float | None = None) -> list[PartRef]:
    """Write each `(from, state)` as a new part (its tombstones recorded first, by `record`);
    returns their index entries. Transient failures are retried until `deadline`."""
    parts = []
    for lo, piece in pieces:
        if record is not None:
            record(piece)
        body = piece.body(generated_at)
        stored, gzipped = encode_part(body)
        name = new_part_name(collection, gzipped=gzipped)
        write_part(storage_client, bucket, name, stored, gzipped,
                   deadline=deadline or time.monotonic() + max(timeout_s, 30.0),
                   timeout_s=timeout_s, attempts=attempts)
        parts.append(PartRef(name, lo, len(piece.items), len(body), len(stored),
                             items_sum(piece.items.values())))
    return parts


# --- reading Firestore in id order ---------------------------------------------------------------

def read_range(db: Any, collection: str, lo: str = "", hi: str | None = None, *,
               timeout_s: float, page_size: int = PAGE_SIZE) -> Iterator[tuple[Change, int]]:
    """The documents with ids in `[lo, hi)` in id order, as `(change, read time ns)`, read in
    pages of `page_size` (one read per document; memory of one page)."""
    from shared.encoding import encode_document_pb
    from shared.firestore_wire import run_query

    after: str | None = None
    while True:
        query = db.collection(collection).order_by("__name__")
        if after is not None:
            query = query.start_after({"__name__": after})
        elif lo:
            query = query.start_at({"__name__": lo})
        if hi is not None:
            query = query.end_before({"__name__": hi})
        received = 0
        for doc in run_query(db, query.limit(page_size), timeout=timeout_s):
            received += 1
            after = doc.id
            yield (Change(collection, doc.id, doc.update_time_ns,
                          encode_document_pb(doc.id, doc.document.fields)), doc.read_time_ns)
        if received < page_size:
            return


def read_collection(db: Any, collection: str, *,
                    timeout_s: float) -> tuple[dict[str, Change], int | None]:
    """Every document of a collection as a change, by id, and the first read time in ns (None
    when empty). Holds the whole collection: for small ones and tests; rebuilds stream."""
    changes: dict[str, Change] = {}
    read_ns: int | None = None
    for change, read_time in read_range(db, collection, timeout_s=timeout_s):
        read_ns = read_ns or read_time
        changes[change.doc_id] = change
    return changes, read_ns


def range_state(db: Any, collection: str, lo: str, hi: str | None, *,
                timeout_s: float) -> SnapshotState:
    """A part's state rebuilt from Firestore (its range's documents; its tombstones are lost:
    a late, older event of a deleted document in this range could bring it back until the
    next catch-up)."""
    state = SnapshotState(collection, exists=True)
    for change, _ in read_range(db, collection, lo, hi, timeout_s=timeout_s):
        state.apply(change)
    return state

