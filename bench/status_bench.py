"""Status page benchmark (`python bench/status_bench.py`, or `make bench-status`).

What one "Run all checks" of the dashboard's status page costs the backend, against the CLI
doctor, on Google's Firestore emulator and the storage emulator with 2,000 users and 500 jobs:

  a) `GET /migrate/status` (the `migrate` function as functions-framework serves it): the
     doctor's checks run concurrently, snapshot counts and ages read from the manifest;
  b) `python -m ops doctor`'s checks (`functions.migrate.doctor.Doctor`), sequential, each
     snapshot downloaded and parsed;

(a) and (b) alternate round by round so that noise hits both alike. Document reads are the
ones Firestore would bill (`emulators.meter`). Then (c): `GET /migrate/status` with Firestore
unreachable, which must answer within a few FIRESTORE_TIMEOUT_S. Exit status 1 when a target
is missed: a/b <= 1, reads per status call <= 15, c <= 3 x FIRESTORE_TIMEOUT_S + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT = "demo-status-bench"
BUCKET = "demo-status-bench-snapshots"
TIMEOUT_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.ERROR)
    from emulators.harness import start_firestore, start_storage
    from emulators.meter import ReadMeter

    firestore_emu = start_firestore(log_path=ROOT / ".dev" / "bench-status-firestore.log")
    storage_emu = start_storage(log_path=ROOT / ".dev" / "bench-status-storage.log")
    meter = ReadMeter(firestore_emu.host).start()
    os.environ.update({
        "FIRESTORE_EMULATOR_HOST": meter.host, "STORAGE_EMULATOR_HOST": storage_emu.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT, "SNAPSHOT_BUCKET": BUCKET,
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "FIRESTORE_TIMEOUT_S": str(TIMEOUT_S),
        "MIGRATION_START_OPS_S": "1000000",
    })
    try:
        return _run(args, meter)
    finally:
        meter.stop()
        storage_emu.stop()
        firestore_emu.stop()


def _seed(args) -> None:
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import ReportSink
    from functions.migrate.source import bytes_source
    from shared.clients import Clients
    from shared.settings import Settings

    settings = Settings.from_env()
    clients = Clients(settings)
    db, storage_client = clients.db(), clients.storage()
    storage_client.create_bucket(BUCKET)
    users = [{"id": f"u_{i:05d}", "name": f"User {i}", "email": f"user{i}@example.com",
              "role": "creator", "status": "active", "createdAt": "2024-01-02"}
             for i in range(args.users)]
    jobs = [{"id": f"j_{i:05d}", "title": f"Job {i}", "status": "open", "budget": 100 + i}
            for i in range(args.jobs)]
    for collection, records in (("users", users), ("jobs", jobs)):
        run_migration(db, lambda: storage_client, settings,
                      MigrationOptions(collection=collection, started_by="bench"),
                      bytes_source(json.dumps(records).encode()), report=ReportSink("none"))


def _run(args, meter) -> int:
    import logging

    from werkzeug.test import Client

    from dev.app import create_stack_app
    from functions.migrate import doctor
    from tests.helpers import closed_port, emulator_id_token

    print(f"seeding {args.users} users and {args.jobs} jobs through the migration ...",
          flush=True)
    _seed(args)
    app = Client(create_stack_app({"migrate": "http"}))
    logging.getLogger("dashboard").setLevel(logging.WARNING)  # no request line per call
    headers = {"Authorization": f"Bearer {emulator_id_token(PROJECT, admin=True)}"}

    def status() -> dict:
        response = app.get("/migrate/status", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    for _ in range(2):  # warm both paths (channels, imports)
        status()
        doctor.Doctor(os.environ).run()
    times: dict[str, list[float]] = {"a": [], "b": []}
    reads: dict[str, list[int]] = {"a": [], "b": []}
    for _ in range(args.rounds):
        for key, call in (("a", status), ("b", lambda: doctor.Doctor(os.environ).run())):
            meter.reset(PROJECT)
            started = time.perf_counter()
            result = call()
            times[key].append(time.perf_counter() - started)
            reads[key].append(meter.reads(PROJECT))
            failed = ([c["name"] for c in result["checks"] if c["status"] == "FAIL"]
                      if key == "a" else [c.name for c in result if c.status == "FAIL"])
            assert not failed, failed

    os.environ["FIRESTORE_EMULATOR_HOST"] = closed_port()
    app = Client(create_stack_app({"migrate": "http"}))  # a fresh instance, Firestore down
    down = []
    for _ in range(3):
        started = time.perf_counter()
        body = status()
        down.append(time.perf_counter() - started)
        assert {c["name"]: c["status"] for c in body["checks"]}["firestore"] == "FAIL"

    def row(name: str, values: list[float]) -> str:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return f"| {name} | {statistics.median(values) * 1000:.0f} ms | {p95 * 1000:.0f} ms |"

    ratio = statistics.median(times["a"]) / statistics.median(times["b"])
    status_reads = max(reads["a"])
    limit_down = 3 * TIMEOUT_S + 2
    print(f"\n{args.users} users, {args.jobs} jobs, {args.rounds} rounds\n")
    print("| measurement | median | p95 |\n| --- | --- | --- |")
    print(row("a) GET /migrate/status (concurrent, manifest)", times["a"]))
    print(row("b) doctor checks (sequential, snapshots downloaded)", times["b"]))
    print(row(f"c) GET /migrate/status, Firestore unreachable (FIRESTORE_TIMEOUT_S="
              f"{TIMEOUT_S:g})", down))
    checks = [("a/b (median)", f"{ratio:.2f}", "<= 1", ratio <= 1),
              ("document reads per status call (max)", str(status_reads), "<= 15",
               status_reads <= 15),
              ("document reads per doctor run (max)", str(max(reads["b"])), "-", True),
              ("c (max)", f"{max(down):.2f} s", f"<= {limit_down:g} s", max(down) <= limit_down)]
    print("\n| check | measured | target |\n| --- | --- | --- |")
    for name, measured, target, _ in checks:
        print(f"| {name} | {measured} | {target} |")
    missed = [name for name, *_, good in checks if not good]
    if missed:
        print(f"\nmissed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
