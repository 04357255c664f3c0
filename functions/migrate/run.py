"""One migration run, shared by the `migrate` HTTP function and the CLI: the single code path.

    outcome = run_migration(db, storage, settings, options, source, report=sink)

Steps: scan the source (syntax, shape, count, fingerprint; a 400 before anything is written),
open or resume the run document `_migrations/<runId>`, stream the records, convert them by the
collection's schema, cut them into contiguous batches and let a bounded pool of workers commit
them (`writer.py`: one atomic commit per batch with its checkpoint), then
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
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.migrate.deletion import MissingDeleter
from functions.migrate.runs import (
    Covered,
    ReportSink,
    RunStore,
    Tally,
    check_run_id,
    new_run_id,
    report_chunks,
    report_header,
    report_if_kept,
    run_view,
)
from functions.migrate.source import Layout, Source, iter_records, scan
from functions.migrate.writer import (
    MODES,
    Batch,
    BatchResult,
    BatchWriter,
    Entry,
    Item,
    RampUpLimiter,
    refused_errors,
    short,
)
from shared.encoding import encode_document
from shared.errors import AppError, BadRequest, NotFound, RunAborted
from shared.records import RecordError, convert_record, record_id
from shared.schema import CollectionSchema, load_schema
from shared.settings import Settings

log = logging.getLogger("dashboard.migrate")

PROGRESS_INTERVAL_S = 2.0
# The run document shows a few converted documents (what a dry run would write), each as JSON
# text: small, and free of Firestore's nesting limits whatever the records hold.
SAMPLE_SIZE = 5
SAMPLE_MAX_CHARS = 2048
# A commit request may carry 10 MiB: a batch closes once its documents pass 8 MiB (one more
# document is at most 1 MiB), and once its failures would make a large checkpoint.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_BATCH_ENTRY_BYTES = 256 * 1024


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
        return RunOutcome(run_view(finished), report_if_kept(store, finished, report))
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
        self.tally = Tally()
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
        covered = Covered(self.tally.covered())
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

    def _batches(self, covered: Covered) -> Iterator[Batch]:
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
        return MissingDeleter(self).execute()

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
        header = report_header(self.store.run_id, self.store.get() or {}, final)
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


