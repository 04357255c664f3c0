"""Snapshot publisher benchmark (`python bench/publish_bench.py`, or `make bench-publish`).

On a collection of 1,000 user documents in the emulators it measures, with `publish_snapshot`
running in its own process as Cloud Functions runs it (functions-framework on gunicorn,
`THREADS=256`) and the events Eventarc would send (binary mode, protobuf `DocumentEventData`,
built from each write's result) pushed to it over HTTP, concurrently:

  1. a full rebuild: Firestore document reads, snapshot writes, time (targets: reads = N, 1 write);
  2. steady state, one change a second: Firestore document reads per event (target <= 1);
  3. a burst of 500 changes in 5 s: writes of `snapshots/users.json` (target <= 1 per second of
     burst + 1) and the time from the last change until the snapshot holds every change of the
     burst (target <= 3 s).

Reads are the document reads Firestore would bill the project, counted by a gRPC proxy in
front of Google's emulator (`emulators.meter`; the writer reads nothing);
object writes are counted by an HTTP proxy between the function and the storage emulator, which
also counts 429 and 412 answers. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT = "demo-publish-bench"
BUCKET = "demo-publish-bench-snapshots"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--steady", type=int, default=20, help="changes at one per second")
    parser.add_argument("--burst", type=int, default=500, help="changes in the burst")
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.ERROR)
    from emulators.harness import start_firestore, start_storage
    from emulators.meter import ReadMeter
    from tests.storage_proxy import StorageProxy

    firestore_emu = start_firestore(log_path=ROOT / ".dev" / "bench-publish-firestore.log")
    storage_emu = start_storage(log_path=ROOT / ".dev" / "bench-publish-storage.log")
    proxy = StorageProxy(storage_emu.host)
    meter = ReadMeter(firestore_emu.host).start()  # counts the reads Firestore would bill
    os.environ.update({
        # Every Firestore client (the function's too) goes through the read meter.
        "FIRESTORE_EMULATOR_HOST": meter.host,
        # The function's storage client goes through the counting proxy.
        "STORAGE_EMULATOR_HOST": proxy.url,
        "GOOGLE_CLOUD_PROJECT": PROJECT, "SNAPSHOT_BUCKET": BUCKET,
        "PUBLISH_INTERVAL_S": "1", "MAX_LIMIT": str(max(args.docs, 1000)),
    })
    try:
        return _run(args, meter, storage_emu, proxy)
    finally:
        meter.stop()
        proxy.close()
        storage_emu.stop()
        firestore_emu.stop()


def _run(args, meter, storage_emu, proxy) -> int:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage

    from emulators.harness import free_port
    from functions.publish.events import DocumentVersion
    from shared.clients import new_storage_client
    from shared.settings import Settings
    from shared.snapshots import rebuild_collection
    from shared.times import to_ns

    def reads() -> int:
        return meter.reads(PROJECT)

    settings = Settings.from_env()
    db = firestore.Client(project=PROJECT)
    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": storage_emu.host}):
        direct = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    bucket = direct.create_bucket(BUCKET)
    name = "snapshots/users.json"
    current: dict[str, DocumentVersion] = {}

    def doc(i: int, status: str = "active") -> dict:
        return {"name": f"User {i:04d}", "email": f"user{i}@example.com", "role": "creator",
                "status": status, "hourlyRate": 40 + i % 100}

    print(f"seeding {args.docs} users ...", flush=True)
    for start in range(0, args.docs, 400):
        batch = db.batch()
        chunk = range(start, min(start + 400, args.docs))
        for i in chunk:
            batch.set(db.document(f"users/u_{i:04d}"), doc(i))
        results = batch.commit()
        for i, result in zip(chunk, results, strict=True):
            current[f"u_{i:04d}"] = DocumentVersion(doc(i), to_ns(result.update_time))

    # 1. full rebuild ----------------------------------------------------------------------
    before_reads, since = reads(), time.monotonic()
    started = time.perf_counter()
    report = rebuild_collection(db, new_storage_client(settings), BUCKET, "users", timeout_s=60)
    rebuild_s = time.perf_counter() - started
    rebuild_reads = reads() - before_reads
    rebuild_writes = proxy.count(name, since)

    # the function in its own process, as Cloud Functions runs it: functions-framework on
    # gunicorn, with THREADS raised (its default, 4 per CPU, would queue the waiting requests)
    port = free_port()
    log_path = ROOT / ".dev" / "bench-publish-function.log"
    with open(log_path, "wb") as log_file:
        function = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--target", "publish_snapshot",
             "--signature-type", "cloudevent", "--source", str(ROOT / "main.py"),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env={**os.environ, "THREADS": "256", "LOG_FORMAT": "text"},
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        return _measure(args, db, bucket, proxy, reads, report, rebuild_s, rebuild_reads,
                        rebuild_writes, current, doc, url, settings)
    finally:
        function.terminate()
        try:
            function.wait(10)
        except subprocess.TimeoutExpired:
            function.kill()


def _measure(args, db, bucket, proxy, reads, report, rebuild_s, rebuild_reads, rebuild_writes,
             current, doc, url, settings) -> int:
    import requests

    from functions.publish.events import DocumentVersion, encode_event
    from shared.times import to_ns

    name = "snapshots/users.json"

    def snapshot() -> dict:
        return json.loads(bucket.blob(name).download_as_bytes())

    deadline = time.monotonic() + 60
    while True:  # the function is up once it answers at all
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError("publish_snapshot did not start: see .dev/") from None
            time.sleep(0.2)
    session_local = threading.local()
    lock = threading.Lock()
    failures: list[str] = []

    def write(doc_id: str, data: dict) -> tuple[dict, bytes, int]:
        result = db.document(f"users/{doc_id}").set(data)
        version = DocumentVersion(data, to_ns(result.update_time))
        with lock:
            old = current.get(doc_id)
            current[doc_id] = version
        headers, body = encode_event(project=PROJECT, collection="users", document_id=doc_id,
                                     value=version, old_value=old)
        return headers, body, version.update_time_ns

    def post(headers: dict, body: bytes) -> None:
        session = getattr(session_local, "session", None)
        if session is None:
            session = session_local.session = requests.Session()
        for _attempt in range(10):  # Eventarc redelivers on an error
            response = session.post(url, data=body, headers=headers, timeout=120)
            if response.status_code < 300:
                return
            time.sleep(1)
        failures.append(f"{response.status_code} {response.text[:200]}")

    post(*write("u_0000", doc(0, "pending"))[:2])  # warm the instance (clients, imports)

    # 2. steady state: one change a second --------------------------------------------------
    print(f"steady state: {args.steady} changes, one a second ...", flush=True)
    before_reads, since = reads(), time.monotonic()
    latencies = []
    for n in range(args.steady):
        tick = time.monotonic()
        headers, body, _ = write(f"u_{(n * 37) % args.docs:04d}", doc(n, "inactive"))
        post(headers, body)
        latencies.append(time.monotonic() - tick)
        time.sleep(max(0.0, tick + 1.0 - time.monotonic()))
    steady_reads = (reads() - before_reads) / args.steady
    steady_writes = proxy.count(name, since)

    # 3. burst ------------------------------------------------------------------------------
    print(f"burst: {args.burst} changes in {args.burst_seconds:g} s ...", flush=True)
    time.sleep(1.1)  # the previous slot has passed
    before_reads, since = reads(), time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=256)
    futures = []
    burst_started = time.monotonic()
    counter = iter(range(args.burst))
    last_change = [burst_started]

    def writer() -> None:
        # Several writers keep the schedule (one client write takes a few ms here).
        for n in counter:
            time.sleep(max(0.0, burst_started + args.burst_seconds * n / args.burst
                           - time.monotonic()))
            headers, body, _ = write(f"u_{(n * 7919) % args.docs:04d}", doc(n, "pending"))
            with lock:
                last_change[0] = max(last_change[0], time.monotonic())
                futures.append(pool.submit(post, headers, body))

    writers = [threading.Thread(target=writer) for _ in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    last_change = last_change[0]
    burst_s = last_change - burst_started
    expected = {doc_id: version.update_time_ns for doc_id, version in current.items()}

    def holds_everything() -> bool:
        from shared.times import parse_ns

        times = snapshot().get("updateTimes", {})
        return all(parse_ns(times.get(doc_id, "1970-01-01T00:00:00Z")) >= version
                   for doc_id, version in expected.items())

    while not holds_everything():
        if time.monotonic() - last_change > 30:
            break
        time.sleep(0.02)
    visible_after = time.monotonic() - last_change
    concurrent.futures.wait(futures, timeout=120)
    pool.shutdown()
    burst_writes = proxy.count(name, since)
    manifest_writes = proxy.count("snapshots/manifest.json", since)
    burst_throttled = proxy.count(name, since, 429)
    burst_conflicts = proxy.count(name, since, 412)
    burst_reads = reads() - before_reads

    final = {item["id"]: item for item in snapshot()["items"]}
    correct = len(final) == args.docs and all(
        final[doc_id]["status"] == version.data["status"] for doc_id, version in current.items())

    budget = int(args.burst_seconds) + 1
    print(f"\nsnapshot publisher, {args.docs} documents (emulators; functions-framework + "
          f"gunicorn, THREADS=256; PUBLISH_INTERVAL_S={settings.publish_interval_s:g})")
    rows = [
        ("full rebuild: document reads", rebuild_reads, f"= {args.docs}",
         rebuild_reads == args.docs),
        ("full rebuild: snapshot writes", rebuild_writes, "= 1", rebuild_writes == 1),
        ("full rebuild: time (s)", rebuild_s, "-", True),
        ("steady state: document reads per event", steady_reads, "<= 1", steady_reads <= 1),
        ("steady state: snapshot writes per event", steady_writes / args.steady, "-", True),
        ("steady state: median ack latency (s)", sorted(latencies)[len(latencies) // 2], "-",
         True),
        (f"burst: snapshot writes ({args.burst} changes, {burst_s:.2f} s)", burst_writes,
         f"<= {budget}", burst_writes <= budget),
        ("burst: last change -> in snapshot (s)", visible_after, "<= 3",
         visible_after <= 3),
        ("burst: manifest writes", manifest_writes, f"<= {budget}", manifest_writes <= budget),
        ("burst: 429 / 412 answers", f"{burst_throttled} / {burst_conflicts}", "-", True),
        ("burst: document reads (total)", burst_reads, "-", True),
        ("final snapshot equals Firestore", "yes" if correct else "NO", "yes", correct),
        ("failed deliveries", len(failures), "0", not failures),
    ]
    for label, value, target, ok in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {label:<52} {shown:>10}   target {target:<7} {'ok' if ok else 'MISSED'}")
    timeline = [f"{at - burst_started:.2f}" for at, _, code in proxy.uploads(name)
                if at >= since and code == 200]
    print(f"  burst writes at (s after its first change): {', '.join(timeline)}; "
          f"last change at {burst_s:.2f}")
    print(f"  rebuild report: {report.summary()}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
