"""Snapshot publisher benchmark (`make bench-publish DOCS=1000,10000,100000`, or
`python bench/publish_bench.py --docs 1k,10k,100k`): one column per collection size.

For each size, a fresh project on Google's Firestore emulator and the storage emulator is
seeded (batched commits of 500, 8 in flight), then:

  1. a full rebuild in its own process (`bench/publish_probes.py rebuild`): Firestore document
     reads (= N), object writes, time and the process's own peak RSS (`VmHWM`; streamed:
     flat in N);
  2. steady state, one change a second to ids spread over the collection, delivered to
     `publish_snapshot` running in its own process as Cloud Functions runs it
     (functions-framework, `THREADS=256`) as Eventarc would (binary mode, protobuf
     `DocumentEventData`): document reads per event (<= 1), bytes written per change
     (request bodies of every object upload; <= 1 MB), median ack latency (at the largest size
     <= 1.5x the smallest's), and the publisher process's peak RSS (<= 256 MiB; flat in N);
  3. at the first size only, a burst of `--burst` changes in `--burst-seconds`: index writes
     (<= 1 per second + 1), time from the last change until the snapshot holds every change;
  4. the read fallback with Firestore unreachable (`bench/publish_probes.py fallback`, three
     cold instances; the median's figures, and the slowest first page): the instance's start,
     the first list page and the first document (<= 1 s), later requests (median, <= 50 ms),
     and a first request that needs every part (another order).

Reads are those Firestore would bill, counted by a gRPC proxy in front of the emulator
(`emulators.meter`); uploads are counted and measured by an HTTP proxy in front of the storage
emulator (`tests/storage_proxy.py`). Exit status 1 when a target is missed.
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

FALLBACK_RUNS = 3  # cold instances per size in the outage
PROJECT = "demo-publish-bench"
BUCKET = "demo-publish-bench-snapshots"


def parse_sizes(raw: str) -> list[int]:
    """`1k,10k,100000` -> [1000, 10000, 100000]."""
    sizes = []
    for part in raw.split(","):
        part = part.strip().lower()
        scale = {"k": 1000, "m": 1_000_000}.get(part[-1:], 1)
        sizes.append(int(float(part[:-1] if scale > 1 else part) * scale))
    if not sizes or min(sizes) < 100 or max(sizes) > 1_000_000:
        raise SystemExit("--docs: sizes between 100 and 1,000,000")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="1000,10000",
                        help="collection sizes, comma separated (1k, 10k, 100k, 1M)")
    parser.add_argument("--steady", type=int, default=15, help="changes at one per second")
    parser.add_argument("--burst", type=int, default=500,
                        help="changes in the burst (first size only; 0: none)")
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    args = parser.parse_args()
    sizes = parse_sizes(args.docs)

    import logging

    logging.basicConfig(level=logging.ERROR)
    from emulators.harness import start_firestore, start_storage
    from emulators.meter import ReadMeter
    from tests.storage_proxy import StorageProxy

    firestore_emu = start_firestore(log_path=ROOT / ".dev" / "bench-publish-firestore.log")
    storage_emu = start_storage(log_path=ROOT / ".dev" / "bench-publish-storage.log")
    proxy = StorageProxy(storage_emu.host)
    meter = ReadMeter(firestore_emu.host).start()  # counts the reads Firestore would bill
    results: dict[int, dict] = {}
    try:
        for number, docs in enumerate(sizes):
            results[docs] = _one_size(args, docs, number == 0 and args.burst > 0, meter,
                                      firestore_emu, storage_emu, proxy)
    finally:
        meter.stop()
        proxy.close()
        storage_emu.stop()
        firestore_emu.stop()
    return _report(sizes, results)


def _one_size(args, docs: int, with_burst: bool, meter, firestore_emu, storage_emu,
              proxy) -> dict:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage

    from emulators.harness import free_port
    from functions.publish.events import DocumentVersion

    project = f"demo-publish-bench-{docs}"
    bucket_name = f"demo-publish-bench-{docs}-snapshots"
    os.environ.update({
        # Every Firestore client of the function and the probes goes through the read meter,
        # every storage client through the counting proxy.
        "FIRESTORE_EMULATOR_HOST": meter.host, "STORAGE_EMULATOR_HOST": proxy.url,
        "GOOGLE_CLOUD_PROJECT": project, "SNAPSHOT_BUCKET": bucket_name,
        "PUBLISH_INTERVAL_S": "1",
    })
    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": storage_emu.host,
                                      "FIRESTORE_EMULATOR_HOST": firestore_emu.host}):
        direct = storage.Client(project=project, credentials=AnonymousCredentials())
        seeder = firestore.Client(project=project)  # writes need no meter
    bucket = direct.create_bucket(bucket_name)
    db = firestore.Client(project=project)
    current: dict[str, DocumentVersion] = {}
    print(f"\n== {docs} documents: seeding ...", flush=True)
    started = time.perf_counter()
    _seed(seeder, docs, current)
    seed_s = time.perf_counter() - started

    print("   rebuild (own process) ...", flush=True)
    before_reads, since = meter.reads(project), time.monotonic()
    rebuilt = _probe("rebuild")
    rebuild_reads = meter.reads(project) - before_reads
    rebuild_objects, rebuild_bytes = proxy.bytes_since(since, "snapshots/users/")
    index = json.loads(bucket.blob("snapshots/users/index.json").download_as_bytes())

    port = free_port()
    log_path = ROOT / ".dev" / f"bench-publish-function-{docs}.log"
    with open(log_path, "wb") as log_file:
        function = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--target", "publish_snapshot",
             "--signature-type", "cloudevent", "--source", str(ROOT / "main.py"),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env={**os.environ, "THREADS": "256", "LOG_FORMAT": "text"},
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        measured = _measure(args, docs, with_burst, db, bucket, proxy,
                            lambda: meter.reads(project), current,
                            f"http://127.0.0.1:{port}/", function.pid)
    finally:
        function.terminate()
        try:
            function.wait(10)
        except subprocess.TimeoutExpired:
            function.kill()
    print(f"   fallback with Firestore down ({FALLBACK_RUNS} cold processes) ...", flush=True)
    from emulators.harness import free_port as closed

    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{closed()}",
                                      "STORAGE_EMULATOR_HOST": storage_emu.host,
                                      "FIRESTORE_TIMEOUT_S": "0.2", "READ_ACCESS": "public",
                                      "MAX_LIMIT": "1000"}):
        runs = [_probe("fallback") for _ in range(FALLBACK_RUNS)]
    # The run of the median first page stands for the size; the slowest first page is shown
    # beside it (a cold start on this shared machine varies with its load, not with N).
    runs.sort(key=lambda run: run["first_page_s"])
    fallback = {**runs[len(runs) // 2], "first_page_slowest_s": runs[-1]["first_page_s"]}
    direct.close()
    return {"seed_s": seed_s, "rebuild": rebuilt, "rebuild_reads": rebuild_reads,
            "rebuild_objects": rebuild_objects, "rebuild_bytes": rebuild_bytes,
            "parts": len(index["parts"]), "index_bytes": len(json.dumps(index)),
            "fallback": fallback, **measured}


def _seed(db, docs: int, current: dict) -> None:
    """Batched commits of 500 documents, 8 in flight (a failed commit stops the bench)."""
    from functions.publish.events import DocumentVersion
    from shared.times import to_ns

    def commit(start: int) -> None:
        batch = db.batch()
        chunk = range(start, min(start + 500, docs))
        for i in chunk:
            batch.set(db.document(f"users/u_{i:07d}"), _doc(i))
        results = batch.commit(timeout=120)
        for i, result in zip(chunk, results, strict=True):
            current[f"u_{i:07d}"] = DocumentVersion(_doc(i), to_ns(result.update_time))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(commit, start) for start in range(0, docs, 500)]:
            future.result()


def _doc(i: int, status: str = "active") -> dict:
    """A user record of about 300 bytes, as the sample data's."""
    return {"name": f"User {i:07d}", "email": f"user{i}@example.com", "role": "creator",
            "status": status, "hourlyRate": 40 + i % 100,
            "bio": f"Creator {i} makes short films and photographs for brands; based in city "
                   f"{i % 50}.", "skills": ["video", "photo", "editing"][: 1 + i % 3]}


def _probe(which: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "publish_probes.py"), which],
                          cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"probe {which} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tree_peak_rss_mib(pid: int) -> float:
    """The largest peak RSS (VmHWM) in a process and its children (gunicorn's worker)."""
    pids, peak = [pid], 0.0
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pids += [int(child) for child in children]
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
    return peak


def _measure(args, docs, with_burst, db, bucket, proxy, reads, current, url, pid) -> dict:
    import requests

    from functions.publish.events import DocumentVersion, encode_event
    from shared.snapshot_reader import load_view
    from shared.times import parse_ns, to_ns

    index_name = "snapshots/users/index.json"

    def snapshot():
        return load_view(bucket.client, bucket.name, "users", timeout_s=30).whole()

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
        headers, body = encode_event(project=db.project, collection="users",
                                     document_id=doc_id, value=version, old_value=old)
        return headers, body, version.update_time_ns

    def post(headers: dict, body: bytes) -> None:
        session = getattr(session_local, "session", None)
        if session is None:
            session = session_local.session = requests.Session()
        failure = ""
        for _attempt in range(10):  # Eventarc redelivers on an error, or when no answer came
            try:
                response = session.post(url, data=body, headers=headers, timeout=120)
            except requests.RequestException as exc:  # e.g. a keep-alive closed meanwhile
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return
                failure = f"{response.status_code} {response.text[:200]}"
            time.sleep(1)
        failures.append(failure)

    post(*write("u_0000000", _doc(0, "pending"))[:2])  # warm the instance (clients, imports)

    # 2. steady state: one change a second, ids spread over the collection ----------------
    print(f"   steady state: {args.steady} changes, one a second ...", flush=True)
    time.sleep(1.1)
    before_reads, since = reads(), time.monotonic()
    latencies = []
    for n in range(args.steady):
        tick = time.monotonic()
        headers, body, _ = write(f"u_{(n * 7919 + 13) % docs:07d}", _doc(n, "inactive"))
        post(headers, body)
        latencies.append(time.monotonic() - tick)
        time.sleep(max(0.0, tick + 1.0 - time.monotonic()))
    result = {"steady_reads": (reads() - before_reads) / args.steady,
              "ack_median_s": sorted(latencies)[len(latencies) // 2]}
    uploads, uploaded = proxy.bytes_since(since, "snapshots/")
    result.update(objects_per_change=uploads / args.steady,
                  bytes_per_change=uploaded / args.steady,
                  publisher_rss_mib=_tree_peak_rss_mib(pid))

    # 3. burst (first size) ------------------------------------------------------------------
    if with_burst:
        result.update(_burst(args, docs, write, post, proxy, snapshot, current, index_name,
                             parse_ns))
    result["failures"] = len(failures)
    return result


def _burst(args, docs, write, post, proxy, snapshot, current, index_name, parse_ns) -> dict:
    print(f"   burst: {args.burst} changes in {args.burst_seconds:g} s ...", flush=True)
    time.sleep(1.1)  # the previous slot has passed
    since = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=256)
    futures = []
    lock = threading.Lock()
    burst_started = time.monotonic()
    counter = iter(range(args.burst))
    last_change = [burst_started]

    def writer() -> None:
        # Several writers keep the schedule (one client write takes a few ms here).
        for n in counter:
            time.sleep(max(0.0, burst_started + args.burst_seconds * n / args.burst
                           - time.monotonic()))
            headers, body, _ = write(f"u_{(n * 7919) % docs:07d}", _doc(n, "pending"))
            with lock:
                last_change[0] = max(last_change[0], time.monotonic())
                futures.append(pool.submit(post, headers, body))

    writers = [threading.Thread(target=writer) for _ in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    ended = last_change[0]
    expected = {doc_id: version.update_time_ns for doc_id, version in current.items()}

    def holds_everything() -> bool:
        times = snapshot().update_times
        return all(parse_ns(times.get(doc_id, "1970-01-01T00:00:00Z")) >= version
                   for doc_id, version in expected.items())

    while not holds_everything():
        if time.monotonic() - ended > 60:
            break
        time.sleep(0.05)
    visible_after = time.monotonic() - ended
    for future in futures:  # every delivery acknowledged (or counted as failed) first
        future.result(timeout=600)
    pool.shutdown()
    final = {item["id"]: item for item in snapshot().items}
    correct = len(final) == docs and all(
        final[doc_id]["status"] == version.data["status"] for doc_id, version in current.items())
    return {"burst_index_writes": proxy.count(index_name, since),
            "burst_window_s": ended - burst_started, "burst_visible_s": visible_after,
            "burst_correct": correct}


def _report(sizes: list[int], results: dict[int, dict]) -> int:
    """Print the figures side by side, one column per size, with the targets."""
    first, last = results[sizes[0]], results[sizes[-1]]
    rows = [
        ("seed (s, batched commits)", lambda r: r["seed_s"], "-", None),
        ("rebuild: document reads", lambda r: r["rebuild_reads"], "N (+1: a last empty page)",
         lambda r, n: n <= r["rebuild_reads"] <= n + 1),
        ("rebuild: objects written", lambda r: r["rebuild_objects"], "-", None),
        ("rebuild: time (s)", lambda r: r["rebuild"]["seconds"], "-", None),
        ("rebuild: peak RSS (MiB)", lambda r: r["rebuild"]["rss_mib"], "flat in N",
         lambda r, n: r["rebuild"]["rss_mib"] <= first["rebuild"]["rss_mib"] * 1.5 + 32),
        ("parts / index bytes", lambda r: f"{r['parts']} / {r['index_bytes']}", "-", None),
        ("steady: document reads per event", lambda r: r["steady_reads"], "<= 1",
         lambda r, n: r["steady_reads"] <= 1),
        ("steady: objects written per change", lambda r: r["objects_per_change"], "-", None),
        ("steady: bytes written per change", lambda r: r["bytes_per_change"], "<= 1 MB",
         lambda r, n: r["bytes_per_change"] <= 1_000_000),
        ("steady: median ack latency, flush (s)", lambda r: r["ack_median_s"],
         "<= 1.5x smallest", lambda r, n: r["ack_median_s"] <= 1.5 * first["ack_median_s"]),
        ("steady: publisher peak RSS (MiB)", lambda r: r["publisher_rss_mib"],
         "<= 256, flat", lambda r, n: r["publisher_rss_mib"] <= 256),
        ("outage: instance start, imports (s)", lambda r: r["fallback"]["startup_s"], "-",
         None),
        (f"outage: first page, cold, median of {FALLBACK_RUNS} (s)",
         lambda r: r["fallback"]["first_page_s"], "<= 1",
         lambda r, n: r["fallback"]["first_page_s"] <= 1),
        (f"outage: first page, cold, slowest of {FALLBACK_RUNS} (s)",
         lambda r: r["fallback"]["first_page_slowest_s"], "-", None),
        ("outage: of which index + first part (s)",
         lambda r: r["fallback"]["snapshot_share_s"], "-", None),
        ("outage: first document (s)", lambda r: r["fallback"]["first_get_s"], "<= 1",
         lambda r, n: r["fallback"]["first_get_s"] <= 1),
        ("outage: later requests, median (s)", lambda r: r["fallback"]["later_median_s"],
         "<= 0.05", lambda r, n: r["fallback"]["later_median_s"] <= 0.05),
        ("outage: first request, every part (s)", lambda r: r["fallback"]["whole_first_s"],
         "-", None),
        ("outage: later, every part (s)", lambda r: r["fallback"]["whole_later_median_s"],
         "-", None),
        ("outage: answered from", lambda r: "/".join(r["fallback"]["sources"]), "snapshot",
         lambda r, n: r["fallback"]["sources"] == ["snapshot"]),
        ("failed deliveries", lambda r: r["failures"], "0", lambda r, n: r["failures"] == 0),
    ]
    print("\nsnapshot publisher at scale (emulators; functions-framework, THREADS=256; "
          "PUBLISH_INTERVAL_S=1; FIRESTORE_TIMEOUT_S=0.2 in the outage)")
    print(f"  {'':<46}" + "".join(f"{n:>14,}" for n in sizes) + "   target")
    missed = False
    for label, value, target, check in rows:
        cells = []
        for n in sizes:
            shown = value(results[n])
            ok = check is None or check(results[n], n)
            missed |= not ok
            text = f"{shown:.3f}" if isinstance(shown, float) else str(shown)
            cells.append(f"{text + ('' if ok else ' !'):>14}")
        print(f"  {label:<46}" + "".join(cells) + f"   {target}")
    if "burst_index_writes" in first:
        budget = int(first["burst_window_s"]) + 2
        ok = first["burst_index_writes"] <= budget and first["burst_correct"]
        missed |= not ok
        print(f"  burst at {sizes[0]:,}: {first['burst_index_writes']} index writes in "
              f"{first['burst_window_s']:.2f} s (target <= {budget}), in the snapshot "
              f"{first['burst_visible_s']:.2f} s after the last change, final snapshot equals "
              f"Firestore: {'yes' if first['burst_correct'] else 'NO'}")
    ratio = last["ack_median_s"] / first["ack_median_s"]
    print(f"  ack latency {sizes[-1]:,} / {sizes[0]:,}: {ratio:.2f}x (target <= 1.5x); "
          f"rows marked ! missed their target")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
