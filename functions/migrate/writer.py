"""Writing one batch of a migration: read what exists, decide, commit atomically with a checkpoint.

A batch is a contiguous range `[start, end)` of record indexes. For it the writer
1. reads the current documents of its converted records (one BatchGetDocuments call);
2. decides per record: `create` (absent), `update` (present and different; in `create` mode
   that is `skipped` instead), or `unchanged` (present and equal, type for type);
3. commits the writes and the range's checkpoint document in ONE atomic Commit.

Why Commit and not BulkWriter/BatchWrite: BatchWrite applies each write on its own, so a
checkpoint written next to the data could claim writes that were lost, or miss writes that
landed. An atomic Commit makes "the data of this range is written" and "this range is counted"
the same event: after a kill at any point, a range is either fully done and counted or not at
all, and a resumed run redoes exactly the ranges without a checkpoint. Every data write carries
a precondition (`exists=false` for a create, the `update_time` that was read for an update)
and the checkpoint is created with `exists=false`, so a document changed since it was read,
or a range already committed by another runner, fails the commit instead of being overwritten
or counted twice; the writer then reads again and decides again.

Errors: transient ones (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED, INTERNAL)
are retried with exponential backoff and a deadline per call; access errors end the run; any
other refusal (INVALID_ARGUMENT, ...) is narrowed down by splitting the range in halves until
the refused write stands alone, which is then reported `write_failed` with Firestore's message
while its neighbours are written. Nothing is dropped without a record.

Writes pass a token bucket that follows Firestore's 500/50/5 ramp-up guidance: at most
`start_ops_s` (500) writes per second, growing by half every five minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import RunAborted, RunUnavailable
from shared.records import ConvertedRecord, same_value
from shared.retry import is_transient

log = logging.getLogger("dashboard.migrate")

STAMP_FIELDS = ("createdAt", "updatedAt")
MESSAGE_CHARS = 300
CONFLICT_ATTEMPTS = 4
TRANSIENT_ATTEMPTS = 6
RAMP_PHASE_S = 300.0
RAMP_FACTOR = 1.5
MODES = ("upsert", "create", "replace")


# --- outcomes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One record that was not written: failed or skipped, with where and why."""

    index: int
    doc_id: str | None
    outcome: str  # "failed" | "skipped"
    reason: str
    message: str
    fields: tuple[tuple[str | None, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in checkpoints and reports."""
        body: dict[str, Any] = {"index": self.index, "id": self.doc_id, "outcome": self.outcome,
                                "reason": self.reason, "message": self.message}
        if self.fields:
            body["fields"] = [{"field": name, "message": text} for name, text in self.fields]
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Entry:
        """The inverse of `to_json`."""
        return cls(int(body["index"]), body.get("id"), str(body["outcome"]), str(body["reason"]),
                   str(body.get("message", "")),
                   tuple((item.get("field"), str(item.get("message", "")))
                         for item in body.get("fields") or ()))


def new_counts() -> dict[str, int]:
    """Zeroed counters of the outcomes (`written` = `created` + `updated`)."""
    return {"written": 0, "created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}


@dataclass
class Item:
    """One record of a batch: converted and ready, or already failed before any write."""

    index: int
    doc_id: str | None
    record: ConvertedRecord | None = None
    failure: Entry | None = None
    size: int = 0


@dataclass
class Batch:
    """A contiguous range `[start, end)` of records and what the conversion made of them."""

    start: int
    end: int
    items: list[Item]


@dataclass
class BatchResult:
    """The account of one committed range (as stored in its checkpoint document)."""

    start: int
    end: int
    counts: dict[str, int]
    reasons: dict[str, int]
    entries: list[Entry]
    writes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The checkpoint body (without the commit stamp)."""
        return {"start": self.start, "end": self.end, "counts": self.counts,
                "reasons": self.reasons, "entries": [entry.to_json() for entry in self.entries]}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BatchResult:
        """A result read back from a checkpoint document."""
        counts = new_counts()
        counts.update({key: int(value) for key, value in (body.get("counts") or {}).items()})
        return cls(int(body["start"]), int(body["end"]), counts,
                   {key: int(value) for key, value in (body.get("reasons") or {}).items()},
                   [Entry.from_json(item) for item in body.get("entries") or ()])


# --- error classes -------------------------------------------------------------------------------

def refused_errors() -> tuple[type[Exception], ...]:
    """What a failed call raises: the API's errors (and a retry that gave up), and the client's
    own refusal of a value it cannot encode (a per-record problem, not a bug of ours)."""
    from google.api_core import exceptions as gexc

    return (gexc.GoogleAPICallError, gexc.RetryError, ValueError)


def is_conflict(exc: BaseException) -> bool:
    """A precondition failed: a document (or the checkpoint) changed since it was read."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.Conflict,
                            gexc.NotFound))


def is_fatal(exc: BaseException) -> bool:
    """Refusals that no other write would escape: credentials, permissions, a missing database."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, (gexc.PermissionDenied, gexc.Unauthenticated, gexc.Unauthorized,
                            gexc.Forbidden))


def short(message: str, limit: int = MESSAGE_CHARS) -> str:
    """A message cut to `limit` characters (reports stay small)."""
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[:limit - 3] + "..."


# --- ramp-up -------------------------------------------------------------------------------------

class RampUpLimiter:
    """A token bucket for Firestore's 500/50/5 rule: start at `start_ops_s` operations per
    second and allow 50% more every five minutes (as the client libraries' BulkWriter does)."""

    def __init__(self, start_ops_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.start_ops_s = float(start_ops_s)
        self.clock = clock
        self.sleep = sleep
        self.started = clock()
        self.tokens = self.start_ops_s
        self.updated = self.started
        self.lock = threading.Lock()

    def rate(self, now: float | None = None) -> float:
        """The allowed operations per second at `now`."""
        elapsed = (self.clock() if now is None else now) - self.started
        return self.start_ops_s * RAMP_FACTOR ** int(max(0.0, elapsed) // RAMP_PHASE_S)

    def acquire(self, count: int) -> float:
        """Reserve `count` operations and wait until the bucket covers them; returns the wait.

        Reservations queue up as debt, so concurrent callers are served in turn and the
        average rate never passes the allowed one; the bucket holds one second of budget.
        """
        with self.lock:
            now = self.clock()
            rate = self.rate(now)
            self.tokens = min(rate, self.tokens + (now - self.updated) * rate)
            self.updated = now
            self.tokens -= count
            wait = -self.tokens / rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


# --- the writer ----------------------------------------------------------------------------------

@dataclass
class _Plan:
    """What the writer decided for the items of one range."""

    actions: dict[int, str] = field(default_factory=dict)  # item position -> action
    snapshots: dict[str, Any] = field(default_factory=dict)

    def writes(self) -> list[int]:
        """Positions of the items that need a write."""
        return [pos for pos, action in self.actions.items() if action in ("create", "update")]


class BatchWriter:
    """Plans and commits batches of one run (thread-safe: one instance serves every worker)."""

    def __init__(self, db: Any, collection: str, checkpoints: Any, *, mode: str,
                 dry_run: bool, limiter: RampUpLimiter | None, timeout_s: float,
                 sleep: Callable[[float], None] = time.sleep):
        self.db = db
        self.collection = db.collection(collection)
        self.checkpoints = checkpoints  # the run's `batches` subcollection
        self.mode = mode
        self.dry_run = dry_run
        self.limiter = limiter
        self.timeout_s = timeout_s
        self.sleep = sleep

    # The one public step: everything of a batch, possibly as several checkpointed ranges.
    def process(self, batch: Batch) -> list[BatchResult]:
        """Commit a batch; returns the results of the range(s) it was committed as."""
        return self._commit_range(batch.start, batch.end, list(batch.items))

    def _commit_range(self, start: int, end: int, items: list[Item]) -> list[BatchResult]:
        forced: dict[int, Entry] = {}
        for _attempt in range(CONFLICT_ATTEMPTS):
            plan = self._plan(items, forced)
            result = self._result(start, end, items, plan, forced)
            try:
                self._commit(start, plan, items, result)
                return [result]
            except refused_errors() as exc:
                if is_fatal(exc):
                    raise RunAborted("permission_denied", f"Firestore refused the write: "
                                                          f"{short(str(exc))}") from exc
                done = self._read_checkpoint(start)
                if done is not None:
                    log.info("range %d-%d was already committed (another attempt)", start, end)
                    return [done]
                if is_conflict(exc):
                    continue
                last_error = exc
                break
        else:
            last_error = RuntimeError("documents kept changing while they were written")
        writes = plan.writes()
        if len(writes) > 1:
            middle = writes[len(writes) // 2]
            split = items[middle].index
            return (self._commit_range(start, split, items[:middle])
                    + self._commit_range(split, end, items[middle:]))
        if len(writes) == 1:
            pos = writes[0]
            item = items[pos]
            forced[pos] = Entry(item.index, item.doc_id, "failed", "write_failed",
                                short(f"{type(last_error).__name__}: {last_error}"))
            log.warning("record %d (%s) was refused by Firestore: %s", item.index, item.doc_id,
                        last_error)
            plan = self._plan(items, forced)
            result = self._result(start, end, items, plan, forced)
            self._commit_with_conflict_check(start, plan, items, result)
            return [result]
        raise RunAborted("checkpoint_failed", f"cannot write the checkpoint of records "
                                              f"{start}-{end - 1}: {short(str(last_error))}")

    def _commit_with_conflict_check(self, start: int, plan: _Plan, items: list[Item],
                                    result: BatchResult) -> None:
        try:
            self._commit(start, plan, items, result)
        except refused_errors() as exc:
            if self._read_checkpoint(start) is None:
                raise RunAborted("checkpoint_failed", f"cannot write the checkpoint of record "
                                                      f"{start}: {short(str(exc))}") from exc

    # --- reading and deciding ---
    def _plan(self, items: list[Item], forced: Mapping[int, Entry]) -> _Plan:
        plan = _Plan()
        wanted = [pos for pos, item in enumerate(items)
                  if item.record is not None and pos not in forced]
        if not wanted:
            return plan
        refs = [self.collection.document(items[pos].doc_id) for pos in wanted]
        snapshots = self.call(lambda: {snap.id: snap for snap in self.db.get_all(
            refs, timeout=self.timeout_s, retry=None)})
        plan.snapshots = snapshots
        for pos in wanted:
            item = items[pos]
            assert item.record is not None and item.doc_id is not None
            snap = snapshots.get(item.doc_id)
            stored = snap.to_dict() if snap is not None and snap.exists else None
            if stored is None:
                plan.actions[pos] = "create"
            elif self._same(item.record.data, stored):
                plan.actions[pos] = "unchanged"
            elif self.mode == "create":
                plan.actions[pos] = "skip"
            else:
                plan.actions[pos] = "update"
        return plan

    def _same(self, data: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
        if any(name not in stored for name in STAMP_FIELDS):
            return False
        if any(name not in stored or not same_value(value, stored[name])
               for name, value in data.items()):
            return False
        if self.mode == "replace":
            return set(stored) - set(STAMP_FIELDS) <= set(data)
        return True

    def _result(self, start: int, end: int, items: list[Item], plan: _Plan,
                forced: Mapping[int, Entry]) -> BatchResult:
        counts = new_counts()
        reasons: dict[str, int] = {}
        entries: list[Entry] = []
        for pos, item in enumerate(items):
            entry = forced.get(pos) or item.failure
            action = plan.actions.get(pos)
            if entry is None and action == "skip":
                entry = Entry(item.index, item.doc_id, "skipped", "exists",
                              "create mode: the document exists with other content")
            if entry is not None:
                counts[entry.outcome] += 1
                reasons[entry.reason] = reasons.get(entry.reason, 0) + 1
                entries.append(entry)
            elif action == "unchanged":
                counts["unchanged"] += 1
            else:
                counts["written"] += 1
                counts["created" if action == "create" else "updated"] += 1
        missing = (end - start) - sum(counts[key] for key in
                                      ("written", "unchanged", "skipped", "failed"))
        if missing:
            raise AssertionError(f"range {start}-{end} accounts for {missing} records too few")
        return BatchResult(start, end, counts, reasons, entries, writes=len(plan.writes()))

    # --- writing ---
    def _commit(self, start: int, plan: _Plan, items: list[Item], result: BatchResult) -> None:
        from google.cloud import firestore

        batch = self.db.batch()
        writes = 0 if self.dry_run else len(plan.writes())
        if not self.dry_run:
            for pos in plan.writes():
                self._add_write(batch, items[pos], plan)
        batch.create(self.checkpoints.document(checkpoint_id(start)),
                     {**result.to_json(), "committedAt": firestore.SERVER_TIMESTAMP})
        if writes and self.limiter is not None:
            self.limiter.acquire(writes)
        self.call(lambda: batch.commit(timeout=self.timeout_s, retry=None))

    def _add_write(self, batch: Any, item: Item, plan: _Plan) -> None:
        from google.cloud import firestore
        from google.cloud.firestore_v1.field_path import FieldPath

        assert item.record is not None and item.doc_id is not None
        ref = self.collection.document(item.doc_id)
        data = dict(item.record.data)
        snap = plan.snapshots.get(item.doc_id)
        stored = snap.to_dict() if snap is not None and snap.exists else None
        if stored is None:
            data.setdefault("createdAt", firestore.SERVER_TIMESTAMP)
            data["updatedAt"] = firestore.SERVER_TIMESTAMP
            batch.create(ref, data)
            return
        if "createdAt" not in data and "createdAt" not in stored:
            data["createdAt"] = firestore.SERVER_TIMESTAMP
        data["updatedAt"] = firestore.SERVER_TIMESTAMP
        if self.mode == "replace":
            for name in set(stored) - set(data) - set(STAMP_FIELDS):
                data[name] = firestore.DELETE_FIELD
        # update() reads keys as dotted paths: quote each name so `a.b` stays one field.
        updates = {FieldPath(name).to_api_repr(): value for name, value in data.items()}
        batch.update(ref, updates,
                     option=self.db.write_option(last_update_time=snap.update_time))

    def _read_checkpoint(self, start: int) -> BatchResult | None:
        try:
            snap = self.call(lambda: self.checkpoints.document(checkpoint_id(start)).get(
                timeout=self.timeout_s, retry=None))
        except RunAborted:
            raise
        return BatchResult.from_json(snap.to_dict()) if snap.exists else None

    def call(self, call: Callable[[], Any]) -> Any:
        """Run one Firestore call, retrying transient errors with backoff (bounded)."""
        delay = 0.25
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return call()
            except refused_errors() as exc:
                if not is_transient(exc):
                    raise
                if attempt == TRANSIENT_ATTEMPTS:
                    raise RunUnavailable("unavailable", f"Firestore kept failing ({attempt} "
                                                    f"attempts): {short(str(exc))}") from exc
                log.warning("transient Firestore error (attempt %d): %s", attempt, exc)
                self.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")


def checkpoint_id(start: int) -> str:
    """The id of a range's checkpoint document (zero-padded: ids sort as indexes do)."""
    return f"{start:012d}"


def merge_counts(total: dict[str, int], part: Mapping[str, int]) -> None:
    """Add `part` into `total`."""
    for key, value in part.items():
        total[key] = total.get(key, 0) + int(value)
