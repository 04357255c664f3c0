"""Migration benchmark (`make bench-migrate`): throughput against a naive loop, and flat memory.

In one run, on the local emulators (started here unless FIRESTORE_EMULATOR_HOST /
STORAGE_EMULATOR_HOST name running ones):

1. Throughput on 5,000 legacy user records, documents per second:
   a) the migration (`run_migration`, the code path of the function and the CLI, with its
      default settings: 400 records a commit, 8 commits in flight, Firestore's 500/50/5
      ramp-up): "import" is the time until every record is committed and accounted for
      (scan, run document, reads, commits, checkpoints), "end to end" adds the snapshot
      rebuild and the report, which the naive loop does not do;
   b) a naive import: `json.load` the file, then one `set()` per record;
   both through a TCP proxy that holds every chunk 10 ms in each direction (a cloud round
   trip: on loopback the per-call latency that batching saves is invisible), then both
   directly. Target: the migration imports at least 10x faster than the naive loop through
   the proxy. Extra rows show the migration with the ramp-up lifted (what batching alone
   gives; the ramp-up alone costs (N - 500) / 500 seconds for N writes).
2. Peak memory (the process's own peak RSS, VmHWM) of a CLI dry run over a generated 5 MB
   and 50 MB file, each in its own subprocess. Target: the 50 MB peak at most 1.5x the 5 MB
   peak.

Exit status 1 when a target is missed. Every connection stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "data" / "legacy" / "users.json"
LOG_DIR = ROOT / ".dev"
THROUGHPUT_RECORDS = 5000
DELAY_S = 0.010
TARGET_SPEEDUP = 10.0
TARGET_MEMORY_RATIO = 1.5


# --- a TCP proxy that adds latency ---------------------------------------------------------------

class LatencyProxy:
    """Relays TCP connections to `upstream`, delivering each chunk `delay_s` after it arrived
    (in each direction, order kept): latency without a bandwidth limit. gRPC passes through
    it as through any TCP relay."""

    def __init__(self, upstream: str, delay_s: float):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.delay_s = delay_s
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._serve, daemon=True, name="latency-proxy")

    def __enter__(self) -> LatencyProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT` of the proxy."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def receive() -> None:
            while True:
                data = await source.read(65536)
                queue.put_nowait((loop.time() + self.delay_s, data))
                if not data:
                    return

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        target.close()
                    return
                target.write(data)
                await target.drain()

        await asyncio.gather(receive(), deliver())


# --- data ----------------------------------------------------------------------------------------

def legacy_users(count: int) -> list[dict[str, Any]]:
    """`count` distinct users shaped like the sample file (its mix of date formats)."""
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))["users"]
    records = []
    for i in range(count):
        record = dict(sample[i % len(sample)])
        record["id"] = f"u_{i:07d}"
        record["email"] = f"user{i}@example.com"
        records.append(record)
    return records


def write_file(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write `records` as a wrapped legacy file (indented, as hand-kept files are)."""
    path.write_text(json.dumps({"users": records, "lastUpdated": "2025-06-01T12:00:00Z"},
                               indent=1), encoding="utf-8")
    return path


def file_of_size(path: Path, megabytes: float) -> tuple[Path, int]:
    """A wrapped legacy file of about `megabytes` MB, written record by record (this process
    stays small); returns it and its record count."""
    sample = legacy_users(200)
    per_record = sum(len(json.dumps(record, indent=1)) + 2 for record in sample) / 200
    count = int(megabytes * 1_000_000 / per_record)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"users": [\n')
        for i in range(count):
            record = dict(sample[i % len(sample)])
            record["id"] = f"u_{i:07d}"
            record["email"] = f"user{i}@example.com"
            out.write((",\n" if i else "") + json.dumps(record, indent=1))
        out.write('\n], "lastUpdated": "2025-06-01T12:00:00Z"}')
    return path, count


# --- the two importers -----------------------------------------------------------------------

def client_at(host: str, project: str) -> Any:
    """A Firestore client bound to the emulator (or proxy) at `host`."""
    from google.cloud import firestore

    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": host}):
        return firestore.Client(project=project)


def settings_for(project: str, bucket: str, **env: str) -> Any:
    """Validated settings for `project`, with `env` overrides."""
    from shared.settings import Settings

    return Settings.from_env({**os.environ, "GOOGLE_CLOUD_PROJECT": project,
                              "SNAPSHOT_BUCKET": bucket, **env})


def run_migration_once(host: str, storage: Any, bucket: str, source: Path,
                       **env: str) -> tuple[float, dict[str, float]]:
    """Seconds of one full migration (into an empty project) through `host`, and the
    seconds of its phases as the run document records them."""
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import ReportSink
    from functions.migrate.source import file_source

    project = f"demo-bench-{uuid.uuid4().hex[:10]}"
    db = client_at(host, project)
    settings = settings_for(project, bucket, **env)
    started = time.perf_counter()
    outcome = run_migration(db, lambda: storage, settings, MigrationOptions(collection="users"),
                            file_source(source), report=ReportSink("none"))
    elapsed = time.perf_counter() - started
    counts = outcome.run["counts"]
    assert counts["created"] == THROUGHPUT_RECORDS, counts
    assert outcome.run["snapshot"]["rebuilt"], outcome.run["snapshot"]
    db.close()
    return elapsed, outcome.run["durations"]


def run_naive_once(host: str, source: Path) -> float:
    """Seconds of the naive import: load the whole file, one `set()` per record."""
    project = f"demo-naive-{uuid.uuid4().hex[:10]}"
    db = client_at(host, project)
    started = time.perf_counter()
    records = json.loads(source.read_text(encoding="utf-8"))["users"]
    users = db.collection("users")
    for record in records:
        users.document(record["id"]).set({k: v for k, v in record.items() if k != "id"},
                                         timeout=30)
    elapsed = time.perf_counter() - started
    assert sum(1 for _ in users.list_documents()) == THROUGHPUT_RECORDS
    db.close()
    return elapsed


# --- memory --------------------------------------------------------------------------------------

# Runs the CLI in the child and reports the child's own peak: VmHWM of /proc/self/status is
# the high-water mark of this process image. (ru_maxrss is not: after a vfork and exec, Linux
# carries the parent's peak into the child's, so it would report the benchmark's own memory.)
_CHILD = """
import sys
from ops.__main__ import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print("PEAK_KIB", peak, file=sys.stderr)
sys.exit(code)
"""


def dry_run_peak_rss(source: Path, env: dict[str, str], report: Path) -> tuple[int, float]:
    """(peak RSS in KiB, seconds) of `python -m ops migrate SOURCE --dry-run`."""
    project = f"demo-mem-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "migrate", str(source), "--collection", "users",
         "--dry-run", "--progress", "none", "--report", str(report)],
        cwd=ROOT, env={**env, "GOOGLE_CLOUD_PROJECT": project}, capture_output=True,
        text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - started
    peaks = [line.split()[1] for line in done.stderr.splitlines()
             if line.startswith("PEAK_KIB ")]
    if done.returncode != 0 or not peaks:
        raise RuntimeError(f"dry run of {source.name} failed ({done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr[-3000:]}")
    return int(peaks[-1]), seconds


# --- main ----------------------------------------------------------------------------------------

def main() -> int:
    """Run every measurement; 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=THROUGHPUT_RECORDS)
    parser.add_argument("--small-mb", type=float, default=5)
    parser.add_argument("--large-mb", type=float, default=50)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    globals()["THROUGHPUT_RECORDS"] = args.records

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    from emulators.harness import firestore_from_env_or_start, storage_from_env_or_start

    LOG_DIR.mkdir(exist_ok=True)
    firestore_emu = firestore_from_env_or_start(log_path=LOG_DIR / "bench-migrate-firestore.log")
    storage_emu = storage_from_env_or_start(log_path=LOG_DIR / "bench-migrate-storage.log")
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emu.host
    os.environ["STORAGE_EMULATOR_HOST"] = storage_emu.host
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    storage = gcs.Client(project="demo-bench", credentials=AnonymousCredentials())
    storage.create_bucket(bucket)
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="migrate-bench-") as tmp:
            work = Path(tmp)
            if not args.skip_throughput:
                ok &= throughput(work, firestore_emu.host, storage, bucket)
            if not args.skip_memory:
                ok &= memory(work, bucket, args.small_mb, args.large_mb)
    finally:
        storage_emu.stop()
        firestore_emu.stop()
    print("\nall targets met" if ok else "\nTARGET MISSED")
    return 0 if ok else 1


def throughput(work: Path, host: str, storage: Any, bucket: str) -> bool:
    """Migration versus naive loop, through the proxy and directly; True when on target."""
    source = write_file(work / "users-5000.json", legacy_users(THROUGHPUT_RECORDS))
    n = THROUGHPUT_RECORDS
    print(f"throughput: {n:,} records ({source.stat().st_size / 1e6:.1f} MB), documents/s. "
          "import: until every record is committed and accounted for; end to end: with the "
          "snapshot rebuild and the report (the naive loop has neither)")
    ok = True
    with LatencyProxy(host, DELAY_S) as proxy:
        for label, target in ((f"through the proxy (+{DELAY_S * 1000:.0f} ms each way)",
                               proxy.host), ("direct (loopback)", host)):
            rows = [("migration, 500/50/5 ramp-up (default)",
                     *run_migration_once(target, storage, bucket, source)),
                    ("migration, ramp-up lifted",
                     *run_migration_once(target, storage, bucket, source,
                                         MIGRATION_START_OPS_S="1000000"))]
            naive = run_naive_once(target, source)
            print(f"  {label}: {'import':>9} {'end to end':>11}   seconds")
            for name, elapsed, phases in rows:
                imported = _import_seconds(elapsed, phases)
                print(f"    {name:<38} {n / imported:>7,.0f}/s {n / elapsed:>9,.0f}/s   "
                      f"{_phases(phases)}")
            print(f"    {'naive: one set() per record':<38} {n / naive:>7,.0f}/s "
                  f"{n / naive:>9,.0f}/s   {naive:.1f}")
            default_import = _import_seconds(rows[0][1], rows[0][2])
            speedup = naive / default_import
            print(f"    speed-up, import: {speedup:.1f}x (end to end {naive / rows[0][1]:.1f}x; "
                  f"ramp-up lifted {naive / _import_seconds(rows[1][1], rows[1][2]):.1f}x)")
            if target == proxy.host and speedup < TARGET_SPEEDUP:
                ok = False
    print(f"  target: the migration imports >= {TARGET_SPEEDUP:.0f}x faster than the naive loop "
          f"through the proxy: {'met' if ok else 'MISSED'}")
    return ok


def _import_seconds(elapsed: float, phases: dict[str, float]) -> float:
    return elapsed - phases.get("snapshot", 0.0) - phases.get("report", 0.0)


def _phases(durations: dict[str, float]) -> str:
    names = ("scan", "records", "snapshot")
    return ", ".join(f"{name} {durations.get(name, 0):.1f}" for name in names)


def memory(work: Path, bucket: str, small_mb: float, large_mb: float) -> bool:
    """Peak RSS of dry runs over a small and a large file; True when on target."""
    env = {**os.environ, "SNAPSHOT_BUCKET": bucket}
    print(f"\nmemory: peak RSS of a CLI dry run (subprocess), {small_mb:g} MB vs {large_mb:g} MB")
    results = []
    for megabytes in (small_mb, large_mb):
        path, count = file_of_size(work / f"users-{megabytes:g}mb.json", megabytes)
        peak_kib, seconds = dry_run_peak_rss(path, env, work / "report.json")
        results.append(peak_kib)
        print(f"  {path.stat().st_size / 1e6:6.1f} MB  {count:>8,} records  peak RSS "
              f"{peak_kib / 1024:7.1f} MiB  {seconds:6.1f} s  ({count / seconds:,.0f} "
              "records/s)")
    ratio = results[1] / results[0]
    ok = ratio <= TARGET_MEMORY_RATIO
    print(f"  ratio {ratio:.2f} (target <= {TARGET_MEMORY_RATIO}): {'met' if ok else 'MISSED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
