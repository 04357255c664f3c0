"""`python -m ops migrate`: legacy JSON into a collection from the command line.

The same run as `POST /migrate` (`functions.migrate.run.run_migration`, the one code path);
this module reads the command line and shows the progress and the result. Exit 0 when every
record is written, unchanged or skipped, 1 when any failed, 2 on an error, 3 when the run
stopped and can resume:

    python -m ops migrate data/legacy/users.json --collection users [--dry-run]
        [--mode upsert|create|replace] [--delete-missing] [--run-id ID] [--report PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from shared.errors import BadRequest
from shared.settings import Settings

EXIT_FAILED_RECORDS = 1
EXIT_STOPPED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `migrate FILE_OR_GS_URI --collection NAME` and its options."""
    from functions.migrate.writer import MODES

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
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import check_run_id, new_run_id
    from functions.migrate.source import open_source
    from shared.clients import Clients
    from shared.errors import RunAborted

    settings = Settings.from_env()
    if args.batch_size is not None and not 1 <= args.batch_size <= 499:
        raise BadRequest("--batch-size must be between 1 and 499")
    if args.concurrency is not None and not 1 <= args.concurrency <= 64:
        raise BadRequest("--concurrency must be between 1 and 64")
    run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
    clients = Clients(settings)
    storage = clients.storage
    source = open_source(args.source, storage, timeout_s=settings.storage_timeout_s)
    report = _report_sink(args.report, source, run_id)
    options = MigrationOptions(
        collection=args.collection, mode=args.mode, dry_run=args.dry_run,
        delete_missing=args.delete_missing, run_id=run_id, root=args.root, force=args.force,
        batch_size=args.batch_size, concurrency=args.concurrency, started_by="cli")
    bar = ProgressBar(sys.stderr, args.progress)
    started = time.monotonic()
    try:
        outcome = run_migration(clients.db(), storage, settings, options, source,
                                report=report, on_progress=bar.update)
    except RunAborted as exc:
        bar.close()
        print(f"error: {exc.message}\nthe run stopped; its work so far is kept: run the same "
              f"command with --run-id {run_id} to resume", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        bar.close()
        clients.close()
    if args.json:
        print(json.dumps(outcome.run, indent=2, ensure_ascii=False))
    else:
        print(summary_table(outcome.run, time.monotonic() - started))
    return EXIT_FAILED_RECORDS if int(outcome.run.get("counts", {}).get("failed", 0)) else 0


def _report_sink(option: str | None, source: Any, run_id: str) -> Any:
    """`--report`, else next to the source (`users.json` -> `users.<runId>.report.json`)."""
    from functions.migrate.runs import ReportSink, default_report_name
    from functions.migrate.source import parse_gs_uri

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
