"""The JSON snapshots in Cloud Storage (`snapshots/<collection>.json`) and their manifest.

A snapshot body has the read API's list shape with every document (sorted by id), plus
`generatedAt`, `contentHash` (sha256 of the items), `updateTimes` (each document's Firestore
`update_time`, the version that orders its changes) and `tombstones` (deleted ids with their
delete and record times; see `shared.tombstones`). It is written with `Content-Type:
application/json; charset=utf-8` and `Cache-Control: private, max-age=0, no-cache`: the data is
personal and must never sit in a shared cache, and a client that fetches it must revalidate.

`snapshots/manifest.json` holds per collection the count, content hash, object generation and
`generatedAt`: one small request tells a client whether its copy is current.

Every write is conditional on the generation that was read (`if_generation_match`, 0 for a
new object): when another publisher wrote in between (HTTP 412), the merge runs again on the
newer object, so a newer snapshot is never overwritten by an older one. Merges are by version
(`SnapshotState.apply`): applying a change twice, or an older change after a newer one, changes
nothing. Cloud Storage answers 429 past about one write per second to one object name; those
writes, and 5xx, are retried with exponential backoff within the caller's deadline.

Reads have a deadline; `load_snapshot` (the read API's fallback) maps every failure to
`Unavailable`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import Unavailable
from shared.retry import is_transient, retry_policy
from shared.snapshot_format import (
    DEFAULT_TOMBSTONE_RETENTION_S,
    JSON_CONTENT_TYPE,
    MANIFEST_PATH,
    SNAPSHOT_CACHE_CONTROL,
    Change,
    ManifestEntry,
    Snapshot,
    SnapshotState,
    Tombstone,
    manifest_entry,
    snapshot_path,
)

log = logging.getLogger("dashboard.snapshots")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 8.0


def load_snapshot(storage_client: Any, bucket: str, collection: str, *, timeout_s: float,
                  known: Snapshot | None = None) -> Snapshot:
    """Download and parse a snapshot; `Unavailable` when it is missing, unreadable or invalid.

    `known` is a snapshot parsed earlier: while the object is still at its generation, it comes
    back as it is (a conditional GET answered 304: no download, no parse).
    """
    from google.api_core import exceptions as gexc
    retry = retry_policy(timeout_s)
    unless = known.generation if known is not None else None
    try:
        found = _download(storage_client, bucket, snapshot_path(collection), timeout_s=timeout_s,
                          unless_generation=unless, retry=retry)
    except (gexc.GoogleAPIError, OSError, ValueError) as exc:
        raise Unavailable(f"snapshot of {collection} unreadable: {type(exc).__name__}") from None
    if found is None:
        raise Unavailable(f"no snapshot of {collection} yet")
    raw, generation = found
    if known is not None and unless and generation == unless and not raw:
        return known
    try:
        return parse_snapshot(collection, raw, generation)
    except ValueError as exc:
        raise Unavailable(f"snapshot of {collection} is invalid: {exc}") from None


def parse_snapshot(collection: str, raw: bytes, generation: int | None) -> Snapshot:
    """Parse a snapshot body; `ValueError` when it is not one."""
    try:
        body = json.loads(raw)
        items = body["items"]
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in items
        ):
            raise ValueError("items must be objects with a string id")
        generated_at = str(body.get("generatedAt") or body.get("asOf") or "")
        update_times = body.get("updateTimes") or {}
        raw_tombstones = body.get("tombstones") or []
        if not isinstance(update_times, dict) or not isinstance(raw_tombstones, list):
            raise ValueError("updateTimes must be an object and tombstones a list")
        tombstones = tuple(Tombstone(str(t["id"]), str(t["deletedAt"]), str(t["recordedAt"]))
                           for t in raw_tombstones)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"missing or mistyped {exc}") from None
    return Snapshot(collection, tuple(items), generated_at, generation, tombstones,
                    {str(k): str(v) for k, v in update_times.items()})


def write_snapshot(storage_client: Any, bucket: str, collection: str, body: bytes, *,
                   timeout_s: float, if_generation_match: int | None = None) -> int | None:
    """Upload a snapshot body; returns the new object generation."""
    return _upload(storage_client, bucket, snapshot_path(collection), body,
                   timeout_s=timeout_s, if_generation_match=if_generation_match)


def _upload(storage_client: Any, bucket: str, name: str, body: bytes, *, timeout_s: float,
            if_generation_match: int | None) -> int | None:
    blob = storage_client.bucket(bucket).blob(name)
    blob.cache_control = SNAPSHOT_CACHE_CONTROL
    kwargs: dict[str, Any] = {"content_type": JSON_CONTENT_TYPE, "timeout": timeout_s,
                              "retry": None}
    if if_generation_match is not None:
        kwargs["if_generation_match"] = if_generation_match
    blob.upload_from_string(body, **kwargs)
    return blob.generation


def _download(storage_client: Any, bucket: str, name: str, *, timeout_s: float,
              unless_generation: int | None = None,
              retry: Any = None) -> tuple[bytes, int] | None:
    """(body, generation) of an object, None when it does not exist; other errors raise.

    With `unless_generation`, an object still at that generation is not downloaded again:
    `(b"", unless_generation)` comes back (HTTP 304).
    """
    from google.api_core import exceptions as gexc

    blob = storage_client.bucket(bucket).blob(name)
    kwargs: dict[str, Any] = {"timeout": timeout_s, "retry": retry}
    if unless_generation:
        kwargs["if_generation_not_match"] = unless_generation
    try:
        raw = blob.download_as_bytes(**kwargs)
    except gexc.NotFound:
        return None
    except gexc.NotModified:
        return b"", int(unless_generation or 0)
    return raw, int(blob.generation or 0)


# --- merging -----------------------------------------------------------------------------------

def load_state(storage_client: Any, bucket: str, collection: str, *, timeout_s: float,
               known: SnapshotState | None = None) -> SnapshotState | None:
    """The current snapshot as a mergeable state; None when it is missing or unusable.

    `known` is a state read earlier: while the object is still at its generation it is reused
    without a download. Network failures raise (the caller retries); a body that does not parse
    counts as missing, so the caller rebuilds it from Firestore rather than merging into garbage.
    """
    unless = known.generation if known is not None and known.exists else None
    found = _download(storage_client, bucket, snapshot_path(collection), timeout_s=timeout_s,
                      unless_generation=unless)
    if found is None:
        return None
    raw, generation = found
    if known is not None and unless and generation == unless and not raw:
        return known
    try:
        state = SnapshotState.from_snapshot(parse_snapshot(collection, raw, generation))
    except ValueError as exc:
        log.error("snapshot of %s is invalid (%s): it will be rebuilt from Firestore",
                  collection, exc)
        return SnapshotState(collection, generation=generation, exists=False)
    return state


@dataclass
class WriteOutcome:
    """What a conditional merge-and-write did."""

    state: SnapshotState
    written: bool = False
    conflicts: int = 0
    throttled: int = 0


def merge_and_write(storage_client: Any, bucket: str, collection: str,
                    mutate: Callable[[SnapshotState], bool], *, timeout_s: float,
                    deadline: float, base: SnapshotState | None = None,
                    bootstrap: Callable[[], SnapshotState] | None = None,
                    before_write: Callable[[SnapshotState], None] | None = None,
                    verify_base: bool = True) -> WriteOutcome:
    """Merge into the current snapshot and write it conditionally; retry 412, back off on 429.

    `mutate` changes a copy of the snapshot state and says whether anything changed (nothing
    changed: nothing is written). `base` is a state read earlier: it is reused unless the object
    has a newer generation now (a 304 instead of a download); with `verify_base=False` it is
    used without asking (a 412 still catches a stale one). `bootstrap` builds the state when
    there is no usable snapshot yet. `before_write` runs before every write attempt (it records
    tombstones). `deadline` is a `time.monotonic()` value; past it, `Unavailable` is raised
    (worth a retry).
    """
    from google.api_core import exceptions as gexc

    from shared.times import format_timestamp, utc_now

    outcome = WriteOutcome(SnapshotState(collection))
    delay = BACKOFF_INITIAL_S
    known, base = (base, None) if verify_base or base is None else (None, base)
    while True:
        if base is None:
            base = _call_with_backoff(
                lambda reuse=known: load_state(storage_client, bucket, collection,
                                               timeout_s=timeout_s, known=reuse),
                deadline, outcome, f"reading the snapshot of {collection}")
            known = None
            if base is None or not base.exists:
                generation = base.generation if base is not None else 0
                base = bootstrap() if bootstrap is not None else SnapshotState(collection)
                base.generation = generation
        state = base.copy()
        changed = mutate(state)
        if not changed and base.exists:
            outcome.state = state
            return outcome
        if before_write is not None:
            before_write(state)
        generated_at = format_timestamp(utc_now())
        body = state.body(generated_at)
        try:
            generation = _upload(storage_client, bucket, snapshot_path(collection), body,
                                 timeout_s=_remaining(deadline, timeout_s),
                                 if_generation_match=state.generation)
        except gexc.PreconditionFailed:
            outcome.conflicts += 1
            if time.monotonic() > deadline:
                raise Unavailable(f"the snapshot of {collection} kept changing while merging "
                                  f"({outcome.conflicts} conflicts)") from None
            log.info("snapshot of %s changed while merging (412): merging again", collection)
            base = None
            continue
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            outcome.throttled += 1
            delay = _sleep_or_give_up(delay, deadline, exc, f"writing the snapshot of "
                                                            f"{collection}")
            continue  # the same base again: the precondition still names its generation
        state.generation = int(generation or 0)
        state.generated_at = generated_at
        state.exists = True
        outcome.state, outcome.written = state, True
        return outcome


def _remaining(deadline: float, timeout_s: float) -> float:
    return max(0.5, min(timeout_s, deadline - time.monotonic()))


def _sleep_or_give_up(delay: float, deadline: float, exc: BaseException, what: str) -> float:
    """Sleep `delay` (with jitter) before a retry, or raise `Unavailable` past the deadline."""
    pause = delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    if time.monotonic() + pause > deadline:
        raise Unavailable(f"{what} kept failing ({type(exc).__name__}: {str(exc)[:200]})")
    log.warning("%s failed (%s): retrying in %.2f s", what, type(exc).__name__, pause)
    time.sleep(pause)
    return min(delay * 2, BACKOFF_MAX_S)


def _call_with_backoff(call: Callable[[], Any], deadline: float, outcome: WriteOutcome,
                       what: str) -> Any:
    delay = BACKOFF_INITIAL_S
    while True:
        try:
            return call()
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            outcome.throttled += 1
            delay = _sleep_or_give_up(delay, deadline, exc, what)


# --- manifest ----------------------------------------------------------------------------------

def load_manifest(storage_client: Any, bucket: str, *,
                  timeout_s: float) -> tuple[dict[str, Any], int]:
    """The manifest's `collections` map and its generation (0 when it does not exist)."""
    found = _download(storage_client, bucket, MANIFEST_PATH, timeout_s=timeout_s)
    if found is None:
        return {}, 0
    raw, generation = found
    try:
        collections = json.loads(raw).get("collections") or {}
        if not isinstance(collections, dict):
            raise ValueError("collections is not an object")
    except (ValueError, AttributeError) as exc:
        log.error("manifest is invalid (%s): writing a new one", exc)
        return {}, generation
    return collections, generation


def update_manifest(storage_client: Any, bucket: str, entries: Mapping[str, ManifestEntry], *,
                    timeout_s: float, deadline: float,
                    known: tuple[dict[str, Any], int] | None = None) -> tuple[dict[str, Any], int]:
    """Put the entries into the manifest unless it already holds a newer generation of the same
    collection; conditional on the manifest's generation (412: read and merge again).

    `known` is the manifest as last seen (`(collections, generation)`), used without reading it
    again; returns the manifest as it is now.
    """
    from google.api_core import exceptions as gexc

    from shared.http import dumps
    from shared.times import format_timestamp, utc_now

    outcome = WriteOutcome(SnapshotState(""))
    delay = BACKOFF_INITIAL_S
    loaded = known
    while True:
        if loaded is None:
            loaded = _call_with_backoff(
                lambda: load_manifest(storage_client, bucket, timeout_s=timeout_s), deadline,
                outcome, "reading the manifest")
        collections, generation = dict(loaded[0]), loaded[1]
        changed = False
        for collection, entry in entries.items():
            current = collections.get(collection)
            try:
                newer = current is not None and int(current.get("generation", 0)) >= \
                    entry.generation
            except (TypeError, ValueError, AttributeError):
                newer = False
            if not newer:
                collections[collection] = entry.to_json()
                changed = True
        if not changed:
            return collections, generation
        body = dumps({"generatedAt": format_timestamp(utc_now()),
                      "collections": dict(sorted(collections.items()))})
        try:
            written = _upload(storage_client, bucket, MANIFEST_PATH, body,
                              timeout_s=_remaining(deadline, timeout_s),
                              if_generation_match=generation)
        except gexc.PreconditionFailed:
            loaded = None
            continue
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            delay = _sleep_or_give_up(delay, deadline, exc, "writing the manifest")
            continue
        return collections, int(written or 0)


# --- full rebuild --------------------------------------------------------------------------------

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


def read_collection(db: Any, collection: str, *,
                    timeout_s: float) -> tuple[dict[str, Change], int | None]:
    """Every document of a collection (one read each) as a change to merge, by id, and the
    read time in ns (None when the collection is empty).

    The documents come as raw protobuf (`shared.firestore_wire`) and are encoded once, by the
    encoder of the read API.
    """
    from shared.encoding import encode_document_pb
    from shared.firestore_wire import run_query

    changes: dict[str, Change] = {}
    read_ns: int | None = None
    for doc in run_query(db, db.collection(collection), timeout=timeout_s):
        read_ns = read_ns or doc.read_time_ns
        doc_id = doc.id
        changes[doc_id] = Change(collection, doc_id, doc.update_time_ns,
                                 encode_document_pb(doc_id, doc.document.fields))
    return changes, read_ns


def rebuild_collection(db: Any, storage_client: Any, bucket: str, collection: str, *,
                       timeout_s: float,
                       retention_s: float = DEFAULT_TOMBSTONE_RETENTION_S,
                       deadline_s: float = 120.0) -> RebuildReport:
    """Read the whole collection once (N reads) and merge it into its snapshot (one write).

    The merge is by version, like an event's, so documents that changed after the read (already
    published by the event path) are kept as they are; snapshot documents Firestore no longer
    has are removed with a tombstone, unless they are newer than the read.
    """
    from shared.times import to_ns, utc_now
    from shared.tombstones import delete_tombstones, record_tombstones

    started_ns = to_ns(utc_now())
    deadline = time.monotonic() + deadline_s
    fresh, read_ns = read_collection(db, collection, timeout_s=timeout_s)
    read_ns = read_ns or started_ns
    counts: dict[str, int] = {}
    pruned: list[str] = []

    def mutate(state: SnapshotState) -> bool:
        counts.update(added=0, updated=0, removed=0, unchanged=0)
        changed = False
        for doc_id, change in fresh.items():
            before = state.items.get(doc_id)
            if state.apply(change):
                changed = True
                counts["added" if before is None else
                       "updated" if before != change.item else "unchanged"] += 1
            elif doc_id in state.items:
                counts["unchanged"] += 1
        for doc_id in [d for d in state.items if d not in fresh]:
            version = state.versions.get(doc_id)
            if version is not None and version > read_ns:
                continue  # created after the read: the event path published it
            state.apply(Change(collection, doc_id, max(read_ns, (version or 0) + 1), None))
            counts["removed"] += 1
            changed = True
        pruned[:] = state.prune(read_ns - int(retention_s * 1e9))
        return changed or bool(pruned)

    def record(state: SnapshotState) -> None:
        pending = state.unrecorded_tombstones()
        if pending:
            recorded = record_tombstones(db, collection, pending, retention_s=retention_s,
                                         timeout_s=timeout_s)
            state.mark_recorded([doc_id for doc_id, _ in pending], recorded or read_ns)

    outcome = merge_and_write(storage_client, bucket, collection, mutate, timeout_s=timeout_s,
                              deadline=deadline, before_write=record)
    if pruned:
        delete_tombstones(db, collection, pruned, timeout_s=timeout_s)
    state = outcome.state
    if outcome.written:
        update_manifest(storage_client, bucket, {collection: manifest_entry(state)},
                        timeout_s=timeout_s, deadline=deadline)
    return RebuildReport(collection=collection, documents=len(state.items),
                         added=counts.get("added", 0), updated=counts.get("updated", 0),
                         removed=counts.get("removed", 0),
                         unchanged=counts.get("unchanged", 0),
                         tombstones_pruned=len(pruned), written=outcome.written,
                         generation=state.generation, content_hash=state.content_hash(),
                         reads=max(1, len(fresh)))


def rebuild_snapshot(db: Any, storage_client: Any, bucket: str, collection: str, *,
                     timeout_s: float) -> int:
    """Rebuild a collection's snapshot from Firestore (see `rebuild_collection`); returns the
    number of documents it holds."""
    return rebuild_collection(db, storage_client, bucket, collection,
                              timeout_s=timeout_s).documents
