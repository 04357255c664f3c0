"""One migration run, shared by the `migrate` HTTP function and the CLI: the single code path.

    outcome = run_migration(db, storage, settings, options, source, report=sink)

Steps: scan the source (syntax, shape, count, fingerprint; a 400 before anything is written),
open or resume the run document `_migrations/<runId>`, stream the records, convert them by the
collection's schema, cut them into contiguous batches and let a bounded pool of workers commit
them (`shared.migration_writer`: one atomic commit per batch with its checkpoint), then
optionally delete the documents absent from the source, rebuild the collection's snapshot once,
and write the full report.

Every record ends in exactly one of `written` (`created` + `updated`), `unchanged`, `skipped`
or `failed`, and `written + unchanged + skipped + failed = read`: the checkpoints of the
committed ranges hold the counts and every failed or skipped record (index, id, reason), so
the account survives a kill at any point and a resumed run adds only the ranges that were
never committed.

The run document is the progress anyone with access can read while it runs (`GET
/migrate/<runId>`): state (`running`, `paused`, `failed`, `completed`), counts, reasons, rate,
ETA, the first errors and the checkpoint (all records below `checkpoint.records` are
accounted for). One runner at a time holds the run: it keeps a lease in the document and every
progress write carries the `update_time` of its previous one, so a runner whose run was taken
over (after its lease expired, or with `force`) stops at its next write instead of racing.

Duplicates: the first record with an id claims it; later ones fail `duplicate_id`. The ids
seen are kept as 64-bit hashes (a few dozen bytes per record, the only state that grows with
the file); a collision, about n²/2⁶⁵ for n records, would show as a reported `duplicate_id`,
and for `deleteMissing` only ever as a document kept, never one deleted.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import heapq
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.migrate.source import Layout, Source, iter_records, scan
from functions.migrate.writer import (
    MODES,
    Batch,
    BatchResult,
    BatchWriter,
    Entry,
    Item,
    RampUpLimiter,
    merge_counts,
    new_counts,
    refused_errors,
    short,
)
from shared.encoding import encode_document, encode_value
from shared.errors import AppError, BadRequest, Conflict, NotFound, RunAborted, RunTakenOver
from shared.records import RecordError, convert_record, record_id
from shared.retry import retry_policy
from shared.schema import CollectionSchema, load_schema
from shared.settings import Settings
from shared.times import format_timestamp, utc_now

log = logging.getLogger("dashboard.migrate")

RUNS_COLLECTION = "_migrations"
LEASE_S = 60.0
PROGRESS_INTERVAL_S = 2.0
FIRST_ERRORS = 20
# The run document shows a few converted documents (what a dry run would write), each as JSON
# text: small, and free of Firestore's nesting limits whatever the records hold.
SAMPLE_SIZE = 5
SAMPLE_MAX_CHARS = 2048
# A commit request may carry 10 MiB: a batch closes once its documents pass 8 MiB (one more
# document is at most 1 MiB), and once its failures would make a large checkpoint.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_BATCH_ENTRY_BYTES = 256 * 1024
RUN_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
STATES = ("running", "paused", "failed", "completed")
# Paths of `GET /migrate/<name>` that are not runs (functions/status.py).
RESERVED_RUN_IDS = frozenset({"status", "runs"})


@dataclass(frozen=True)
class MigrationOptions:
    """What to migrate and how (the HTTP query parameters, the CLI flags)."""

    collection: str
    mode: str = "upsert"
    dry_run: bool = False
    delete_missing: bool = False
    run_id: str | None = None
    root: str | None = None
    force: bool = False
    batch_size: int | None = None
    concurrency: int | None = None
    started_by: str | None = None


@dataclass(frozen=True)
class ReportSink:
    """Where the full report goes: `response` (returned), `gcs` (bucket, name), `file` (a
    path) or `none` (only the run document and `GET /migrate/<runId>/report`)."""

    kind: str
    location: Any = None

    def describe(self) -> str | None:
        """The report's address for the run document (None when it is in the response)."""
        if self.kind == "gcs":
            return f"gs://{self.location[0]}/{self.location[1]}"
        if self.kind == "file":
            return str(self.location)
        return None


@dataclass(frozen=True)
class Progress:
    """A progress sample for a UI (the CLI's bar)."""

    run_id: str
    total: int
    done: int
    counts: Mapping[str, int]
    rate: float
    eta_s: float | None


@dataclass
class RunOutcome:
    """The end of a call: the run document (JSON-ready), the report when kept in memory."""

    run: dict[str, Any]
    report: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        """`completed`, `paused`, `failed` (a resumable stop) or `running` (someone else's)."""
        return str(self.run.get("state"))


def new_run_id() -> str:
    """A readable, unique run id: UTC time plus randomness."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_run_id(run_id: str) -> str:
    """A run id is 1-100 characters of letters, digits, `-` and `_` (a safe document id)."""
    if not run_id or len(run_id) > 100 or not set(run_id) <= RUN_ID_CHARS:
        raise BadRequest("runId must be 1-100 letters, digits, '-' or '_'", code="invalid_run_id")
    if run_id in RESERVED_RUN_IDS:
        raise BadRequest(f"runId {run_id!r} is reserved (GET /migrate/{run_id} is not a run)",
                         code="invalid_run_id")
    return run_id


def default_report_name(source_name: str, run_id: str) -> str:
    """`dir/users.json` -> `dir/users.<runId>.report.json` (next to the source)."""
    stem = source_name[:-5] if source_name.lower().endswith(".json") else source_name
    return f"{stem}.{run_id}.report.json"


# --- the run document ----------------------------------------------------------------------------

class RunStore:
    """The run document and its checkpoint subcollections, written by the run's one holder."""

    def __init__(self, db: Any, run_id: str, *, timeout_s: float):
        self.db = db
        self.run_id = run_id
        self.ref = db.collection(RUNS_COLLECTION).document(run_id)
        self.timeout_s = timeout_s
        self.owner = uuid.uuid4().hex
        self.update_time: Any = None
        self.resumed: dict[str, Any] = {}  # the stored document when this call resumes a run

    @property
    def batches(self) -> Any:
        """`_migrations/<runId>/batches`: one checkpoint per committed range of records."""
        return self.ref.collection("batches")

    @property
    def deletions(self) -> Any:
        """`_migrations/<runId>/deletions`: the ids deleted (or to delete, dry run)."""
        return self.ref.collection("deletions")

    def get(self) -> dict[str, Any] | None:
        """The run document, or None."""
        snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
        return snap.to_dict() if snap.exists else None

    def begin(self, params: dict[str, Any], *, force: bool) -> dict[str, Any] | None:
        """Start or take over the run. Returns the stored document when it is already
        completed (nothing to do); raises `Conflict` when another runner holds it, or when the
        stored run was started with other parameters or another source."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        for _ in range(3):
            snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
            lease = {"owner": self.owner, "expiresAt": _after(LEASE_S)}
            if not snap.exists:
                body = {**params, "runId": self.run_id, "state": "running", "attempts": 1,
                        "counts": {**new_counts(), "read": 0}, "reasons": {},
                        "checkpoint": {"records": 0}, "firstErrors": [], "lease": lease,
                        "startedAt": firestore.SERVER_TIMESTAMP,
                        "updatedAt": firestore.SERVER_TIMESTAMP}
                try:
                    result = self.ref.create(body, timeout=self.timeout_s)
                except gexc.AlreadyExists:
                    continue
                self.update_time = result.update_time
                return None
            stored = snap.to_dict()
            _check_same_run(stored, params, self.run_id)
            if stored.get("state") == "completed":
                return stored
            if (stored.get("lease") or {}).get("owner") == self.owner:
                # Our own create or update landed although its call failed (a timeout).
                self.update_time = snap.update_time
                return None
            expires = (stored.get("lease") or {}).get("expiresAt")
            if (stored.get("state") == "running" and not force and expires is not None
                    and expires > utc_now()):
                raise Conflict(f"run {self.run_id} is in progress elsewhere (its lease ends at "
                               f"{format_timestamp(expires)}); retry later, or force",
                               code="run_in_progress")
            try:
                result = self.ref.update(
                    {"state": "running", "attempts": int(stored.get("attempts", 0)) + 1,
                     "lease": lease, "resumedAt": firestore.SERVER_TIMESTAMP,
                     "updatedAt": firestore.SERVER_TIMESTAMP, "error": firestore.DELETE_FIELD},
                    option=self.db.write_option(last_update_time=snap.update_time),
                    timeout=self.timeout_s)
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue
            self.update_time = result.update_time
            self.resumed = stored
            return None
        raise Conflict(f"run {self.run_id} is being started by someone else",
                       code="run_in_progress")

    def write(self, fields: dict[str, Any], *, final: bool = False) -> None:
        """Update the run document as its holder (renewing the lease unless `final`);
        `RunAborted` when another runner has taken the run over."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        body = {**fields, "updatedAt": firestore.SERVER_TIMESTAMP}
        body["lease"] = ({"owner": self.owner, "expiresAt": utc_now()} if final
                         else {"owner": self.owner, "expiresAt": _after(LEASE_S)})
        for _ in range(2):
            try:
                result = self.ref.update(body, timeout=self.timeout_s,
                                         retry=retry_policy(self.timeout_s),
                                         option=self.db.write_option(
                                             last_update_time=self.update_time))
            except (gexc.FailedPrecondition, gexc.NotFound):
                snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
                owner = ((snap.to_dict() or {}).get("lease") or {}).get("owner")
                if snap.exists and owner == self.owner:
                    # A retried call whose first attempt landed: the run is still ours.
                    self.update_time = snap.update_time
                    continue
                raise RunTakenOver("run_taken_over", f"run {self.run_id} was taken over by "
                                                   "another runner; this one stops") from None
            self.update_time = result.update_time
            return
        raise RunTakenOver("run_taken_over", f"run {self.run_id}: its document keeps changing")

    def load_batches(self) -> list[BatchResult]:
        """Every committed range, by start."""
        results = [BatchResult.from_json(snap.to_dict())
                   for snap in self.batches.stream(timeout=self.timeout_s * 4)]
        return sorted(results, key=lambda result: result.start)

    def iter_entries(self) -> Iterator[Entry]:
        """The failed and skipped records of every committed range, in source order."""
        for result in self.load_batches():
            yield from sorted(result.entries, key=lambda entry: entry.index)

    def load_deleted(self) -> list[str]:
        """The ids recorded by the deletion checkpoints, in order."""
        snaps = sorted(self.deletions.stream(timeout=self.timeout_s * 4), key=lambda s: s.id)
        return [doc_id for snap in snaps for doc_id in snap.to_dict().get("ids", [])]


def _after(seconds: float) -> dt.datetime:
    return utc_now() + dt.timedelta(seconds=seconds)


_IDENTITY = ("collection", "mode", "dryRun", "deleteMissing", "shape", "root", "fingerprint")


def _check_same_run(stored: Mapping[str, Any], params: Mapping[str, Any], run_id: str) -> None:
    different = [name for name in _IDENTITY if stored.get(name) != params.get(name)]
    if different:
        raise Conflict(f"run {run_id} exists with other {', '.join(different)}: a run resumes "
                       "only with the same source and options (or use a new runId)",
                       code="run_mismatch", details={"fields": different})


def run_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The run document as JSON (timestamps as RFC 3339), without the lease owner."""
    view = {key: encode_value(value) for key, value in sorted(doc.items()) if key != "lease"}
    if isinstance(doc.get("sample"), list):
        view["sample"] = [json.loads(text) for text in doc["sample"] if isinstance(text, str)]
    lease = doc.get("lease") or {}
    if lease.get("expiresAt") is not None:
        view["leaseExpiresAt"] = encode_value(lease["expiresAt"])
    return view


# --- the tally of a run --------------------------------------------------------------------------

@dataclass
class _Tally:
    """Counts of the committed ranges, the first errors and the contiguous checkpoint."""

    counts: dict[str, int] = field(default_factory=new_counts)
    reasons: dict[str, int] = field(default_factory=dict)
    first_errors: list[tuple[int, Entry]] = field(default_factory=list)  # max-heap by -index
    ranges: dict[int, int] = field(default_factory=dict)  # start -> end
    done: int = 0
    low: int = 0

    def add(self, result: BatchResult) -> None:
        """Count one committed range (each range once)."""
        if result.start in self.ranges:
            raise RunTakenOver("overlap", f"records {result.start}-{result.end - 1} were "
                                        "committed twice (two runners at once?)")
        merge_counts(self.counts, result.counts)
        merge_counts(self.reasons, result.reasons)
        for entry in result.entries:
            if entry.outcome != "failed":
                continue
            heapq.heappush(self.first_errors, (-entry.index, entry))
            if len(self.first_errors) > FIRST_ERRORS:
                heapq.heappop(self.first_errors)
        self.ranges[result.start] = result.end
        self.done += result.end - result.start
        while self.low in self.ranges:
            self.low = self.ranges[self.low]

    def errors(self) -> list[Entry]:
        """The first failures, by index."""
        return sorted((entry for _, entry in self.first_errors), key=lambda e: e.index)

    def covered(self) -> list[tuple[int, int]]:
        """The committed ranges, by start."""
        return sorted(self.ranges.items())


class _Covered:
    """Answers "is this index inside a committed range?" for increasing indexes."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self.pos = 0

    def __contains__(self, index: int) -> bool:
        while self.pos < len(self.ranges) and self.ranges[self.pos][1] <= index:
            self.pos += 1
        return self.pos < len(self.ranges) and self.ranges[self.pos][0] <= index


# --- the run -------------------------------------------------------------------------------------

def run_migration(db: Any, storage: Callable[[], Any], settings: Settings,
                  options: MigrationOptions, source: Source, *, report: ReportSink,
                  time_budget_s: float | None = None,
                  on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Run (or resume) one migration to completion, or until `time_budget_s` passes (then the
    run is `paused` and the same call with the same run id continues it).

    `storage` gives the Cloud Storage client when one is needed (snapshot, gs:// report).
    Raises `BadRequest` (bad JSON with its position, bad options), `NotFound`, `Conflict`
    (run held elsewhere or started differently) and, for failures of Firestore that stop the
    run, `RunAborted` after marking the run `failed` (it resumes from its checkpoints).
    """
    started = time.monotonic()
    if options.collection not in settings.collections:
        raise NotFound(f"collection {options.collection!r} is not configured",
                       code="unknown_collection")
    if options.mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}", code="invalid_mode")
    schema = load_schema(options.collection)
    layout = scan(source, collection=options.collection, root=options.root)
    scanned = time.monotonic() - started
    run_id = check_run_id(options.run_id or new_run_id())
    store = RunStore(db, run_id, timeout_s=settings.migration_timeout_s)
    params = {
        "collection": options.collection, "mode": options.mode, "dryRun": options.dry_run,
        "deleteMissing": options.delete_missing, "source": source.label, "shape": layout.shape,
        "root": layout.root, "fingerprint": {"sha256": layout.sha256, "size": layout.size},
        "total": layout.total, "warnings": list(layout.warnings), "startedBy": options.started_by,
        "reportUri": report.describe(),
        "batchSize": options.batch_size or settings.migration_batch_size,
    }
    finished = store.begin(params, force=options.force)
    if finished is not None:
        log.info("run %s is already completed: nothing to do", run_id)
        return RunOutcome(run_view(finished), _report_if_kept(store, finished, report))
    run = _Run(db, storage, settings, options, schema, layout, source, store, report,
               deadline=None if time_budget_s is None else started + time_budget_s,
               on_progress=on_progress)
    run.durations["scan"] = round(scanned, 3)
    try:
        return run.execute()
    except (RunAborted, AppError) as exc:
        run.fail(exc.code, exc.message)
        raise
    except BaseException as exc:
        run.fail("interrupted" if isinstance(exc, KeyboardInterrupt) else "internal",
                 short(f"{type(exc).__name__}: {exc}"))
        raise


class _Pause(Exception):
    """The time budget ran out: stop cleanly between batches."""


class _Run:
    """The state of one call of `run_migration` after the run document is held."""

    def __init__(self, db: Any, storage: Callable[[], Any], settings: Settings,
                 options: MigrationOptions, schema: CollectionSchema, layout: Layout,
                 source: Source, store: RunStore, report: ReportSink, *,
                 deadline: float | None, on_progress: Callable[[Progress], None] | None):
        self.db, self.storage, self.settings = db, storage, settings
        self.options, self.schema, self.layout = options, schema, layout
        self.source, self.store, self.report = source, store, report
        self.deadline = deadline
        self.on_progress = on_progress
        self.batch_size = max(1, min(options.batch_size or settings.migration_batch_size, 499))
        self.concurrency = max(1, options.concurrency or settings.migration_concurrency)
        self.tally = _Tally()
        self.started = time.monotonic()
        self.done_at_start = 0
        self.last_write = 0.0
        self.seen: dict[int, int] = {}
        self.durations: dict[str, float] = {}
        # A resumed run keeps the sample of its first attempt (those records are not converted
        # again).
        self.sample: list[str] = list(store.resumed.get("sample") or [])
        self.sample_open = not self.sample
        self.limiter = (None if options.dry_run
                        else RampUpLimiter(settings.migration_start_ops_s))
        self.writer = BatchWriter(db, options.collection, store.batches, mode=options.mode,
                                  dry_run=options.dry_run, limiter=self.limiter,
                                  timeout_s=settings.migration_timeout_s)

    # --- the phases ---
    def execute(self) -> RunOutcome:
        """Records, then deleteMissing, snapshot, report and the final run document."""
        for result in self.store.load_batches():
            self.tally.add(result)
        self.done_at_start = self.tally.done
        try:
            self._timed("records", self._write_records)
        except _Pause:
            self._progress(force=True, state="paused")
            log.info("run %s paused at %d/%d records (time budget)", self.store.run_id,
                     self.tally.done, self.layout.total)
            return RunOutcome(run_view(self.store.get() or {}))
        if self.tally.done != self.layout.total:
            raise RunAborted("incomplete", f"{self.tally.done} of {self.layout.total} records "
                                           "are accounted for")
        counts = self.tally.counts
        identity = sum(counts[key] for key in ("written", "unchanged", "skipped", "failed"))
        if identity != self.layout.total:
            raise RunAborted("miscount", f"outcomes add up to {identity}, not "
                                         f"{self.layout.total}")
        deletion = self._timed("deleteMissing", self._delete_missing)
        snapshot = self._timed("snapshot", lambda: self._rebuild_snapshot(deletion.get("count",
                                                                                     0)))
        final = self._final_fields(deletion, snapshot)
        try:
            report_body = self._timed("report", lambda: self._write_report(final))
        except (OSError, *refused_errors()) as exc:
            log.error("report of run %s not written: %s", self.store.run_id, exc)
            report_body = None
            final["reportUri"] = None
            final["reportError"] = short(f"{type(exc).__name__}: {exc}")
        self.store.write({**final, "state": "completed", "durations": self.durations,
                          "finishedAt": _server_timestamp()}, final=True)
        doc = self.store.get() or {}
        return RunOutcome(run_view(doc), report_body)

    def _timed(self, phase: str, step: Callable[[], Any]) -> Any:
        """Run one phase, keeping its seconds (this attempt) for the run document."""
        began = time.monotonic()
        try:
            return step()
        finally:
            self.durations[phase] = round(time.monotonic() - began, 3)

    def fail(self, code: str, message: str) -> None:
        """Mark the run `failed` (best effort: Firestore may be what failed)."""
        try:
            self.store.write({**self._progress_fields(), "state": "failed",
                              "error": {"code": code, "message": message}}, final=True)
        except (RunAborted, *refused_errors()) as exc:
            log.warning("could not mark run %s failed: %s", self.store.run_id, exc)

    # --- records ---
    def _write_records(self) -> None:
        covered = _Covered(self.tally.covered())
        executor = concurrent.futures.ThreadPoolExecutor(self.concurrency,
                                                         thread_name_prefix="migrate")
        in_flight: set[concurrent.futures.Future[list[BatchResult]]] = set()
        failure: BaseException | None = None
        batches = self._batches(covered)
        try:
            for batch in batches:
                while len(in_flight) >= self.concurrency:
                    self._collect(in_flight, concurrent.futures.FIRST_COMPLETED)
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise _Pause
                in_flight.add(executor.submit(self.writer.process, batch))
                self._collect(in_flight, None)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            try:
                while in_flight:
                    self._collect(in_flight, concurrent.futures.FIRST_COMPLETED)
            except BaseException:
                if failure is None:
                    raise
            finally:
                batches.close()  # closes the source now, not at garbage collection
                executor.shutdown(wait=True, cancel_futures=True)
        self._progress(force=True)

    def _collect(self, in_flight: set[Any], return_when: str | None) -> None:
        """Take the results of finished batches (waiting for one when `return_when`)."""
        if return_when is not None:
            done, _ = concurrent.futures.wait(in_flight, timeout=1.0, return_when=return_when)
        else:
            done = {future for future in in_flight if future.done()}
        for future in done:
            in_flight.discard(future)
            for result in future.result():
                self.tally.add(result)
        self._progress()

    def _batches(self, covered: _Covered) -> Iterator[Batch]:
        items: list[Item] = []
        size = entry_bytes = 0
        for index, key, raw in iter_records(self.source, self.layout):
            claimed = self._claim(index, key, raw)
            if index in covered:
                if items:
                    yield Batch(items[0].index, items[-1].index + 1, items)
                    items, size, entry_bytes = [], 0, 0
                continue
            item = claimed if claimed.failure is not None else self._convert(claimed, raw)
            items.append(item)
            size += item.size
            if item.failure is not None:
                entry_bytes += len(item.failure.message) + len(item.doc_id or "") + 200
            if (len(items) >= self.batch_size or size >= MAX_BATCH_BYTES
                    or entry_bytes >= MAX_BATCH_ENTRY_BYTES):
                yield Batch(items[0].index, index + 1, items)
                items, size, entry_bytes = [], 0, 0
        if items:
            yield Batch(items[0].index, items[-1].index + 1, items)

    def _claim(self, index: int, key: str | None, raw: Any) -> Item:
        """Identify one record and claim its id (also in committed ranges, so that duplicates
        and `deleteMissing` see every id of the source)."""
        try:
            doc_id = record_id(raw, self.schema, key=key)
        except RecordError as exc:
            shown = key if key is not None else _raw_id(raw, self.schema.id_field)
            return Item(index, shown, failure=Entry(index, shown, "failed", exc.reason,
                                                    short(exc.message)))
        fingerprint = hash(doc_id)
        first = self.seen.get(fingerprint)
        if first is not None:
            return Item(index, doc_id, failure=Entry(
                index, doc_id, "failed", "duplicate_id",
                f"id {doc_id[:80]!r} was already used by record {first}"))
        self.seen[fingerprint] = index
        return Item(index, doc_id)

    def _convert(self, item: Item, raw: Any) -> Item:
        """Convert a record whose id is claimed: ready to write, or failed with its reason."""
        index, doc_id = item.index, item.doc_id
        assert doc_id is not None
        try:
            converted = convert_record(raw, self.schema, doc_id=doc_id)
        except RecordError as exc:
            fields = tuple((problem.field, short(problem.message, 160))
                           for problem in exc.problems[:10])
            return Item(index, doc_id, failure=Entry(index, doc_id, "failed", exc.reason,
                                                     short(exc.message), fields))
        self._keep_sample(converted)
        return Item(index, doc_id, record=converted, size=converted.size)

    def _keep_sample(self, converted: Any) -> None:
        """Keep the first few converted documents (small ones) for the run document."""
        if not self.sample_open:
            return
        text = json.dumps(encode_document(converted.doc_id, converted.data), ensure_ascii=False)
        if len(text) <= SAMPLE_MAX_CHARS:
            self.sample.append(text)
        self.sample_open = len(self.sample) < SAMPLE_SIZE

    # --- progress ---
    def _progress_fields(self) -> dict[str, Any]:
        tally = self.tally
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (tally.done - self.done_at_start) / elapsed
        remaining = self.layout.total - tally.done
        return {"counts": {**tally.counts, "read": tally.done}, "reasons": dict(tally.reasons),
                "checkpoint": {"records": tally.low}, "rate": round(rate, 1),
                "etaSeconds": round(remaining / rate, 1) if rate > 0 else None,
                "firstErrors": [entry.to_json() for entry in tally.errors()],
                "sample": list(self.sample)}

    def _progress(self, *, force: bool = False, state: str | None = None) -> None:
        now = time.monotonic()
        if self.on_progress is not None:
            fields = self._progress_fields()
            self.on_progress(Progress(self.store.run_id, self.layout.total, self.tally.done,
                                      fields["counts"], fields["rate"], fields["etaSeconds"]))
        if force or now - self.last_write >= PROGRESS_INTERVAL_S:
            self.last_write = now
            fields = self._progress_fields()
            if state is not None:
                fields["state"] = state
            try:
                self.store.write(fields, final=state is not None)
            except refused_errors() as exc:
                if force:
                    raise
                # Progress is best effort; the checkpoints hold the account.
                log.warning("progress of run %s not written: %s", self.store.run_id, exc)

    # --- deleteMissing ---
    def _delete_missing(self) -> dict[str, Any]:
        if not self.options.delete_missing:
            return {}
        failed = self.tally.counts["failed"]
        if failed:
            return {"requested": True, "done": False, "count": 0,
                    "reason": f"{failed} records failed: nothing was deleted"}
        if self.layout.total == 0:
            return {"requested": True, "done": False, "count": 0,
                    "reason": "the source has no records: the collection was left whole"}
        return _MissingDeleter(self).execute()

    # --- the end ---
    def _rebuild_snapshot(self, deleted: int) -> dict[str, Any]:
        if self.options.dry_run:
            return {"rebuilt": False, "reason": "dry run"}
        if self.tally.counts["written"] + deleted == 0:
            return {"rebuilt": False, "reason": "nothing changed"}
        from shared.snapshots import rebuild_snapshot

        try:
            count = rebuild_snapshot(self.db, self.storage(), self.settings.snapshot_bucket,
                                     self.options.collection,
                                     timeout_s=max(self.settings.migration_timeout_s, 60.0))
        except Exception as exc:  # noqa: BLE001 - the data is in; the publisher catches up
            log.error("snapshot of %s not rebuilt after run %s: %s", self.options.collection,
                      self.store.run_id, exc)
            return {"rebuilt": False, "error": short(f"{type(exc).__name__}: {exc}")}
        return {"rebuilt": True, "documents": count}

    def _final_fields(self, deletion: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
        fields = self._progress_fields()
        fields["counts"]["deleted"] = int(deletion.get("count", 0))
        fields["deletion"] = deletion or {"requested": False}
        fields["snapshot"] = snapshot
        fields["etaSeconds"] = 0
        return fields

    def _write_report(self, final: dict[str, Any]) -> dict[str, Any] | None:
        header = _report_header(self.store.run_id, self.store.get() or {}, final)
        chunks = report_chunks(self.store, header)
        if self.report.kind == "response":
            return json.loads("".join(chunks))
        if self.report.kind == "gcs":
            bucket, name = self.report.location
            blob = self.storage().bucket(bucket).blob(name)
            with blob.open("wb", content_type="application/json; charset=utf-8",
                           chunk_size=1024 * 1024,
                           timeout=self.settings.migration_timeout_s) as out:
                for chunk in chunks:
                    out.write(chunk.encode("utf-8"))
            return None
        if self.report.kind == "file":
            path = Path(self.report.location)
            temporary = path.with_name(path.name + ".tmp")
            with temporary.open("w", encoding="utf-8") as out:
                for chunk in chunks:
                    out.write(chunk)
            temporary.replace(path)
        return None


def _server_timestamp() -> Any:
    from google.cloud import firestore

    return firestore.SERVER_TIMESTAMP


def _raw_id(raw: Any, id_field: str) -> str | None:
    """The id as the record wrote it, for a report line (None when there is none)."""
    if isinstance(raw, Mapping) and raw.get(id_field) is not None:
        return short(str(raw.get(id_field)), 120)
    return None


class _MissingDeleter:
    """`deleteMissing`: delete (dry run: list) the documents whose ids the source lacks,
    in atomic batches each with its own checkpoint, so the count is exact across resumes."""

    def __init__(self, run: _Run):
        self.run = run
        self.db = run.db
        self.store = run.store
        self.collection = run.db.collection(run.options.collection)

    def execute(self) -> dict[str, Any]:
        """Delete (or list) every document whose id the source lacks; the account."""
        from google.cloud.firestore_v1.field_path import FieldPath

        recorded = self.store.load_deleted()
        already = set(recorded)
        sequence = len(list(self.store.deletions.list_documents(
            timeout=self.run.settings.migration_timeout_s)))
        count = len(recorded)
        last = None
        page_size = 500
        while True:
            query = (self.collection.select([FieldPath.document_id()])
                     .order_by(FieldPath.document_id()).limit(page_size))
            if last is not None:
                query = query.start_after(last)
            page = list(self.run.writer.call(lambda q=query: list(q.stream(
                timeout=self.run.settings.migration_timeout_s, retry=None))))
            if not page:
                break
            last = page[-1]
            doomed = [snap.id for snap in page
                      if hash(snap.id) not in self.run.seen and snap.id not in already]
            for chunk_start in range(0, len(doomed), self.run.batch_size):
                chunk = doomed[chunk_start:chunk_start + self.run.batch_size]
                count += self._commit(sequence, chunk)
                sequence += 1
            if len(page) < page_size:
                break
        return {"requested": True, "done": True, "count": count}

    def _commit(self, sequence: int, ids: list[str]) -> int:
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        for _ in range(3):
            batch = self.db.batch()
            if not self.run.options.dry_run:
                for doc_id in ids:
                    batch.delete(self.collection.document(doc_id),
                                 option=self.db.write_option(exists=True))
            batch.create(self.store.deletions.document(f"{sequence:08d}"),
                         {"ids": ids, "count": len(ids),
                          "committedAt": firestore.SERVER_TIMESTAMP})
            if ids and self.run.limiter is not None:
                self.run.limiter.acquire(len(ids))
            try:
                self.run.writer.call(lambda b=batch: b.commit(
                    timeout=self.run.settings.migration_timeout_s, retry=None))
                return len(ids)
            except (gexc.NotFound, gexc.FailedPrecondition, gexc.AlreadyExists):
                done = self.store.deletions.document(f"{sequence:08d}").get(
                    timeout=self.run.settings.migration_timeout_s)
                if done.exists:
                    return int(done.to_dict().get("count", 0))
                refs = [self.collection.document(doc_id) for doc_id in ids]
                present = {snap.id for snap in self.db.get_all(
                    refs, timeout=self.run.settings.migration_timeout_s) if snap.exists}
                ids = [doc_id for doc_id in ids if doc_id in present]
        raise RunAborted("delete_failed", "documents kept changing while they were deleted")


# --- reports -------------------------------------------------------------------------------------

def _report_header(run_id: str, doc: Mapping[str, Any], final: Mapping[str, Any]) -> dict:
    return {
        "runId": run_id, "collection": doc.get("collection"), "source": doc.get("source"),
        "shape": doc.get("shape"), "root": doc.get("root"), "mode": doc.get("mode"),
        "dryRun": doc.get("dryRun"), "deleteMissing": doc.get("deleteMissing"),
        "state": final.get("state", "completed"), "total": doc.get("total"),
        "counts": final.get("counts", doc.get("counts")),
        "reasons": final.get("reasons", doc.get("reasons")),
        "deletion": final.get("deletion", doc.get("deletion")),
        "warnings": doc.get("warnings", []),
        "generatedAt": format_timestamp(utc_now()),
    }


def report_chunks(store: RunStore, header: Mapping[str, Any]) -> Iterator[str]:
    """The full report as JSON text, streamed: the header, then `failures`, `skipped` and
    `deleted` read back from the checkpoints (never all in memory at once)."""
    head = json.dumps({key: encode_value(value) for key, value in header.items()},
                      ensure_ascii=False)
    yield head[:-1]
    for name, outcome in (("failures", "failed"), ("skipped", "skipped")):
        yield f', "{name}": ['
        first = True
        for entry in store.iter_entries():
            if entry.outcome == outcome:
                yield ("" if first else ", ") + json.dumps(entry.to_json(), ensure_ascii=False)
                first = False
        yield "]"
    yield ', "deleted": ['
    yield ", ".join(json.dumps(doc_id, ensure_ascii=False) for doc_id in store.load_deleted())
    yield "]}"


def _report_if_kept(store: RunStore, doc: Mapping[str, Any],
                    sink: ReportSink) -> dict[str, Any] | None:
    if sink.kind != "response":
        return None
    return json.loads("".join(report_chunks(store, _report_header(store.run_id, doc, doc))))


def load_run(db: Any, run_id: str, *, timeout_s: float) -> dict[str, Any]:
    """The run document as JSON; `NotFound` when there is no such run."""
    doc = RunStore(db, check_run_id(run_id), timeout_s=timeout_s).get()
    if doc is None:
        raise NotFound(f"no migration run {run_id!r}", code="not_found")
    return run_view(doc)


def stream_report(db: Any, run_id: str, *, timeout_s: float) -> Iterator[str]:
    """The full report of a run (finished or not) as streamed JSON; `NotFound` when absent."""
    store = RunStore(db, check_run_id(run_id), timeout_s=timeout_s)
    doc = store.get()
    if doc is None:
        raise NotFound(f"no migration run {run_id!r}", code="not_found")
    return report_chunks(store, _report_header(run_id, doc, doc))


RUN_SUMMARY_FIELDS = ("runId", "collection", "state", "mode", "dryRun", "source", "total",
                      "counts", "startedBy", "startedAt", "updatedAt", "finishedAt",
                      "lease.expiresAt", "error")


def recent_runs(db: Any, *, limit: int, timeout_s: float) -> list[dict[str, Any]]:
    """The newest runs (by `startedAt`), summarised: no sample, no errors list, no lease owner.

    A run still `running` whose lease has expired is marked `stalled: true` (its process is
    gone; starting it again with its runId resumes it). Costs one document read per run.
    """
    from google.cloud import firestore

    query = (db.collection(RUNS_COLLECTION).select(list(RUN_SUMMARY_FIELDS))
             .order_by("startedAt", direction=firestore.Query.DESCENDING).limit(limit))
    now = utc_now()
    runs = []
    for snap in query.stream(timeout=timeout_s, retry=retry_policy(timeout_s)):
        doc = snap.to_dict()
        view = run_view({**doc, "runId": doc.get("runId") or snap.id})
        expires = (doc.get("lease") or {}).get("expiresAt")
        view["stalled"] = bool(doc.get("state") == "running" and expires is not None
                               and expires < now)
        runs.append(view)
    return runs
