"""The `migrate` function: legacy JSON into Firestore over HTTP, and the same as a command.

Both call `shared.migration_run.run_migration`, the one code path; this module only reads the
request or the command line and shows the result.

HTTP (every call but the CORS preflight needs a Firebase ID token with `admin: true`):

    POST /migrate?collection=users[&mode=upsert|create|replace][&dryRun=true]
                 [&deleteMissing=true][&runId=ID][&root=KEY][&force=true]
                 [&source=gs://bucket/path.json]
        The legacy JSON is the request body (at most MAX_BODY_BYTES, else 413), unless
        `source` names a Cloud Storage object. 200 `{"run", "report"}` once completed (the
        report inline for a body, else at `run.reportUri`, next to the source); 202 `{"run"}`
        when the time budget (MIGRATION_TIME_BUDGET_S) ran out first: POST the same again with
        `runId` to continue. Bad JSON is a 400 whose details give line, column and offset.
    GET /migrate/<runId>           the run document: state, counts, rate, ETA, first errors,
                                   a sample of converted documents
    GET /migrate/<runId>/report    the full report (every failed and skipped record)
    GET /migrate/runs[?limit=N]    the newest runs (functions/status.py)
    GET /migrate/status            the doctor's checks for the dashboard's status page

    The POST answers when the run ends (or pauses). To show progress meanwhile, a client picks
    the runId itself, POSTs, and polls `GET /migrate/<runId>` in parallel (404 until the
    source is scanned and the run document exists): the dashboard's migration panel does.

Command line (same options; progress bar on a terminal; exit 0 when every record is written,
unchanged or skipped, 1 when any failed, 2 on an error, 3 when the run stopped and can resume):

    python -m functions migrate data/legacy/users.json --collection users [--dry-run]
        [--mode upsert|create|replace] [--delete-missing] [--run-id ID] [--report PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from flask import Request, Response

from shared import http
from shared.errors import (
    AppError,
    BadRequest,
    Conflict,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from shared.settings import Settings, get_settings

METHODS = ("GET", "HEAD", "POST", "OPTIONS")
PARAMETERS = ("collection", "mode", "dryRun", "deleteMissing", "runId", "root", "force",
              "source")
EXIT_FAILED_RECORDS = 1
EXIT_STOPPED = 3


@dataclass
class MigrateContext:
    """What the function needs: settings and client providers (tests pass emulator clients)."""

    settings: Settings
    db: Callable[[], Any]
    storage: Callable[[], Any]

    @classmethod
    def create(cls, settings: Settings) -> MigrateContext:
        """Clients from the per-instance accessors."""
        from shared.clients import get_db, get_storage

        return cls(settings, lambda: get_db(settings), lambda: get_storage(settings))


def serve(request: Request) -> Response:
    """Entry point body of the `migrate` HTTP function."""
    try:
        context = MigrateContext.create(get_settings())
    except AppError as exc:
        return http.error_response(exc)
    return handle(request, context)


def handle(request: Request, context: MigrateContext) -> Response:
    """Answer one request (CORS and security headers included), logging one structured line."""
    from shared.logs import request_context, request_log

    started = time.perf_counter()
    with request_context(request, function="migrate", collection=request.args.get("collection"),
                         project=context.settings.project):
        response = http.finish(request, _dispatch(request, context), context.settings)
        request_log(response.status_code, None, (time.perf_counter() - started) * 1000, None)
    return response


@http.json_errors
def _dispatch(request: Request, context: MigrateContext) -> Response:
    from shared.auth import authenticate

    settings = context.settings
    if request.method == "OPTIONS":
        return http.preflight_response(request, settings, METHODS)
    if request.method not in METHODS:
        raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=METHODS)
    parts = [part for part in request.path.strip("/").split("/") if part]  # already decoded
    principal = authenticate(request.headers, settings, require_admin=True)
    if request.method == "POST":
        if parts:
            raise NotFound("POST goes to /migrate itself")
        return _start(request, context, principal.uid)
    if not parts:
        raise MethodNotAllowed("GET needs a run id: /migrate/<runId>", allowed=("POST",))
    return _read(request, context, parts, principal)


def _read(request: Request, context: MigrateContext, parts: list[str],
          principal: Any) -> Response:
    from functions import status
    from shared.migration_run import load_run, stream_report

    if parts == ["status"]:
        return _json(200, status.status_view(context.settings, context.db, context.storage,
                                             principal))
    if parts == ["runs"]:
        return _json(200, status.runs_view(context.settings, context.db(), principal,
                                           request.args.get("limit")))
    timeout_s = context.settings.migration_timeout_s
    if len(parts) == 1:
        return _json(200, load_run(context.db(), parts[0], timeout_s=timeout_s))
    if len(parts) == 2 and parts[1] == "report":
        chunks = stream_report(context.db(), parts[0], timeout_s=timeout_s)
        response = Response(chunks, status=200, content_type=http.JSON_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response
    raise NotFound("no such path")


def _start(request: Request, context: MigrateContext, uid: str) -> Response:
    from shared.migration_run import (
        MigrationOptions,
        ReportSink,
        check_run_id,
        default_report_name,
        new_run_id,
        run_migration,
    )
    from shared.migration_source import bytes_source, gcs_source, parse_gs_uri
    from shared.migration_writer import RunAborted

    settings = context.settings
    args = request.args
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}", code="invalid_parameter")
    for name in args:
        if len(args.getlist(name)) > 1:
            raise BadRequest(f"parameter {name!r} is given twice", code="invalid_parameter")
    collection = args.get("collection")
    if not collection:
        raise BadRequest("collection is required", code="invalid_parameter")
    run_id = check_run_id(args["runId"]) if args.get("runId") else new_run_id()
    options = MigrationOptions(
        collection=collection, mode=args.get("mode", "upsert"),
        dry_run=_flag(args, "dryRun"), delete_missing=_flag(args, "deleteMissing"),
        run_id=run_id, root=args.get("root") or None, force=_flag(args, "force"),
        started_by=uid)
    uri = args.get("source")
    if uri:
        if request.content_length:
            raise BadRequest("send either a body or a source, not both", code="invalid_source")
        bucket, name = parse_gs_uri(uri)
        source = gcs_source(uri, context.storage(), timeout_s=settings.storage_timeout_s)
        report = ReportSink("gcs", (bucket, default_report_name(name, run_id)))
    else:
        source = bytes_source(_body(request, settings.max_body_bytes))
        report = ReportSink("response")
    try:
        outcome = run_migration(context.db(), context.storage, settings, options, source,
                                report=report, time_budget_s=settings.migration_time_budget_s)
    except RunAborted as exc:
        message = f"{exc.message} (run {run_id}: POST again with runId={run_id} to resume)"
        if exc.code in ("run_taken_over", "overlap"):
            raise Conflict(message, code=exc.code) from None
        if exc.code == "unavailable":
            raise Unavailable(message, retry_after_s=30) from None
        raise AppError(message, code=exc.code) from None
    status = 202 if outcome.state == "paused" else 200
    body: dict[str, Any] = {"run": outcome.run}
    if outcome.report is not None:
        body["report"] = outcome.report
    return _json(status, body)


def _flag(args: Mapping[str, str], name: str) -> bool:
    value = args.get(name)
    if value is None or value == "":
        return False
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false", code="invalid_parameter")


def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (without reading it all)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body has {length} bytes; the limit is {limit} "
                              "(put larger files in Cloud Storage and pass source=gs://...)")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    if not data:
        raise BadRequest("no records: send the legacy JSON as the body, or pass source",
                         code="invalid_source")
    return data


def _json(status: int, payload: Any) -> Response:
    response = Response(http.dumps(payload), status=status, content_type=http.JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- command line --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `migrate FILE_OR_GS_URI --collection NAME` and its options."""
    from shared.migration_writer import MODES

    parser.add_argument("source", metavar="FILE_OR_GS_URI",
                        help="the legacy JSON: a local file or gs://bucket/path.json")
    parser.add_argument("--collection", required=True, help="target collection (configured)")
    parser.add_argument("--mode", choices=MODES, default="upsert",
                        help="upsert (default): create or update the source's fields; create: "
                             "never touch existing documents; replace: documents become "
                             "exactly the source")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and convert everything, write nothing to the collection")
    parser.add_argument("--delete-missing", action="store_true",
                        help="after a run without failures, delete documents absent from the "
                             "source")
    parser.add_argument("--run-id", help="resume this run (or name a new one)")
    parser.add_argument("--root", help="the key of the array of records in a wrapping object")
    parser.add_argument("--force", action="store_true",
                        help="take over a run whose lease has not expired (its process is "
                             "known to be gone)")
    parser.add_argument("--report", metavar="PATH_OR_GS_URI",
                        help="where the full report goes (default: next to the source)")
    parser.add_argument("--batch-size", type=int, help="records per commit (1-499)")
    parser.add_argument("--concurrency", type=int, help="commits in flight")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                        help="progress display on stderr (auto: a bar on a terminal)")
    parser.add_argument("--json", action="store_true",
                        help="print the run document as JSON instead of the summary table")


def run(args: argparse.Namespace) -> int:
    """Run one migration from the command line; the exit status."""
    from shared.clients import get_db, get_storage
    from shared.migration_run import MigrationOptions, check_run_id, new_run_id, run_migration
    from shared.migration_source import open_source
    from shared.migration_writer import RunAborted

    settings = Settings.from_env()
    if args.batch_size is not None and not 1 <= args.batch_size <= 499:
        raise BadRequest("--batch-size must be between 1 and 499")
    if args.concurrency is not None and not 1 <= args.concurrency <= 64:
        raise BadRequest("--concurrency must be between 1 and 64")
    run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
    storage = _lazy(lambda: get_storage(settings))
    source = open_source(args.source, storage, timeout_s=settings.storage_timeout_s)
    report = _report_sink(args.report, source, run_id)
    options = MigrationOptions(
        collection=args.collection, mode=args.mode, dry_run=args.dry_run,
        delete_missing=args.delete_missing, run_id=run_id, root=args.root, force=args.force,
        batch_size=args.batch_size, concurrency=args.concurrency, started_by="cli")
    bar = ProgressBar(sys.stderr, args.progress)
    started = time.monotonic()
    try:
        outcome = run_migration(get_db(settings), storage, settings, options, source,
                                report=report, on_progress=bar.update)
    except RunAborted as exc:
        bar.close()
        print(f"error: {exc.message}\nthe run stopped; its work so far is kept: run the same "
              f"command with --run-id {run_id} to resume", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        bar.close()
    if args.json:
        print(json.dumps(outcome.run, indent=2, ensure_ascii=False))
    else:
        print(summary_table(outcome.run, time.monotonic() - started))
    return EXIT_FAILED_RECORDS if int(outcome.run.get("counts", {}).get("failed", 0)) else 0


def _lazy(factory: Callable[[], Any]) -> Callable[[], Any]:
    made: list[Any] = []

    def get() -> Any:
        if not made:
            made.append(factory())
        return made[0]

    return get


def _report_sink(option: str | None, source: Any, run_id: str) -> Any:
    """`--report`, else next to the source (`users.json` -> `users.<runId>.report.json`)."""
    from shared.migration_run import ReportSink, default_report_name
    from shared.migration_source import parse_gs_uri

    if option:
        if option.startswith("gs://"):
            return ReportSink("gcs", parse_gs_uri(option))
        return ReportSink("file", Path(option).expanduser().resolve())
    if source.gcs is not None:
        bucket, name = source.gcs
        return ReportSink("gcs", (bucket, default_report_name(name, run_id)))
    path = source.local_path
    return ReportSink("file", path.with_name(default_report_name(path.name, run_id)))


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, or a line every few seconds."""

    WIDTH = 28

    def __init__(self, stream: TextIO, mode: str = "auto"):
        self.stream = stream
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.last = 0.0
        self.shown = -1
        self.drawn = False

    def update(self, progress: Any) -> None:
        """Show one progress sample (rate-limited)."""
        now = time.monotonic()
        interval = 0.1 if self.mode == "bar" else 5.0
        if self.mode == "none" or progress.done == self.shown or (
                now - self.last < interval and progress.done < progress.total):
            return
        self.last, self.shown = now, progress.done
        total = max(progress.total, 1)
        share = progress.done / total
        eta = "--" if progress.eta_s is None else _duration(progress.eta_s)
        text = (f"{progress.done:,}/{progress.total:,} records {share:6.1%}  "
                f"{progress.rate:,.0f} records/s  ETA {eta}  failed {progress.counts['failed']:,}")
        if self.mode == "bar":
            filled = round(self.WIDTH * share)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(f"{progress.run_id}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def summary_table(run: Mapping[str, Any], elapsed_s: float) -> str:
    """The closing table of the CLI: outcomes, reasons, first failures, where the report is."""
    counts = run.get("counts", {})
    dry = bool(run.get("dryRun"))
    lines = [f"run {run.get('runId')}: {run.get('state')}"
             f"{' (dry run: nothing was written)' if dry else ''}",
             f"  {run.get('collection')} <- {run.get('source')} ({run.get('shape')}"
             f"{', root ' + repr(run.get('root')) if run.get('root') else ''}), "
             f"mode {run.get('mode')}", ""]
    verb = "would be " if dry else ""
    rows = [("written", f"{verb}created {counts.get('created', 0):,}, {verb}updated "
                        f"{counts.get('updated', 0):,}"),
            ("unchanged", "same content already stored"),
            ("skipped", "create mode: existing documents left as they are"),
            ("failed", "see the reasons below")]
    lines.append(f"  {'outcome':<10} {'records':>9}")
    for name, note in rows:
        lines.append(f"  {name:<10} {counts.get(name, 0):>9,}   {note}")
    lines.append(f"  {'read':<10} {counts.get('read', 0):>9,}   = written + unchanged + "
                 "skipped + failed")
    deletion = run.get("deletion") or {}
    if deletion.get("requested"):
        what = "would be deleted" if dry else "deleted"
        note = what if deletion.get("done") else f"not done: {deletion.get('reason')}"
        lines.append(f"  {'deleted':<10} {counts.get('deleted', 0):>9,}   {note}")
    reasons = run.get("reasons") or {}
    if reasons:
        lines += ["", "  reasons: " + ", ".join(f"{name} {count:,}"
                                                for name, count in sorted(reasons.items()))]
    errors = run.get("firstErrors") or []
    if errors:
        lines += ["", "  first failures:"]
        for entry in errors[:10]:
            lines.append(f"    #{entry['index']:<7} {str(entry.get('id'))[:24]:<24} "
                         f"{entry['reason']:<14} {entry['message'][:90]}")
    snapshot = run.get("snapshot") or {}
    lines.append("")
    if snapshot.get("rebuilt"):
        lines.append(f"  snapshot rebuilt ({snapshot.get('documents')} documents)")
    elif snapshot:
        lines.append(f"  snapshot not rebuilt: {snapshot.get('reason') or snapshot.get('error')}")
    if run.get("reportUri"):
        lines.append(f"  report   {run['reportUri']}")
    rate = counts.get("read", 0) / elapsed_s if elapsed_s > 0 else 0
    lines.append(f"  {elapsed_s:.1f} s, {rate:,.0f} records/s")
    for warning in run.get("warnings") or []:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)
