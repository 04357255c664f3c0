"""Burst benchmark of the local stack's change events (`python bench/burst_bench.py`, or
`make bench-burst`).

A burst of `--burst` (2,000) user documents is written through Firestore (the Admin SDK, in
batches of `--batch`, not through the write API) to Google's Firestore emulator, which delivers
its own change events (`--functions_emulator`) to the local stack's event host
(`dev/deliveries.py`) and `publish_snapshot` behind it, exactly as `make dev` wires them. The
figure: the time from the end of the burst (its last commit) until the snapshot holds every
document of it, for each event-host mode of `--modes` measured in the same run: `each:N` runs
one functions-framework request of `publish_snapshot` per delivery, N at a time (16: the
stack's fixed pool before issue 20; 240: the deployed function's concurrency x max instances;
2,000: the stack before the batches), `batch:N` hands the deliveries to the publisher in
batches, N under way at a time (the stack's default). Target: the default within 5 s. A mode
that has not converged after `--timeout` s is reported as such, with how many documents of the
burst had arrived. Exit status 1 when the default misses the target.

The snapshot is watched from a child process (as the dashboard watches it from a browser): its
reads must not take the stack's interpreter lock, which the emulator's deliveries wait on.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 5.0
SEED_DOCS = 20


def main() -> int:
    from dev.deliveries import DeliverySettings

    defaults = DeliverySettings.from_env()
    default = _mode_name(defaults.batch, defaults.concurrency)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000, help="documents written")
    parser.add_argument("--batch", type=int, default=500, help="writes per commit (max 500)")
    parser.add_argument("--modes", default=f"each:16,each:240,each:2000,{default}",
                        help="event-host modes to compare (each:N or batch:N), comma separated")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds after the burst before a mode is given up")
    args = parser.parse_args()
    try:
        modes = [_parse_mode(value) for value in args.modes.split(",") if value.strip()]
    except ValueError as exc:
        parser.error(f"--modes: {exc}")
    if not 1 <= args.batch <= 500 or args.burst < 1 or not modes:
        parser.error("--batch must be 1..500, --burst positive, --modes not empty")

    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    from werkzeug.serving import make_server

    from emulators.harness import start_firestore, start_storage

    router = _Router()
    server = make_server("127.0.0.1", 0, router, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logs = ROOT / ".dev"
    logs.mkdir(exist_ok=True)
    firestore_emu = start_firestore(log_path=logs / "bench-burst-firestore.log",
                                    functions_emulator=f"127.0.0.1:{server.server_port}")
    storage_emu = start_storage(log_path=logs / "bench-burst-storage.log")
    os.environ.update({"FIRESTORE_EMULATOR_HOST": firestore_emu.host,
                       "STORAGE_EMULATOR_HOST": storage_emu.host})
    os.environ.pop("PUBLISH_INTERVAL_S", None)  # the default write slot, as `make dev` runs
    try:
        _emulator_alone(args, firestore_emu, router)  # warm-up: the JVM compiles its paths
        floor = _emulator_alone(args, firestore_emu, router)
        results = [_measure(args, batch, concurrency, firestore_emu, router)
                   for batch, concurrency in modes]
    finally:
        server.shutdown()
        storage_emu.stop()
        firestore_emu.stop()
    _report(args, floor, results, default)
    mine = [result for result in results if result["mode"] == default]
    return 0 if mine and all(r["done_s"] is not None and r["done_s"] <= TARGET_S
                             for r in mine) else 1


def _parse_mode(text: str) -> tuple[bool, int]:
    kind, _, number = text.strip().partition(":")
    if kind not in ("each", "batch") or not number.isdigit() or int(number) < 1:
        raise ValueError(f"{text!r} is not each:N or batch:N")
    return kind == "batch", int(number)


def _mode_name(batch: bool, concurrency: int) -> str:
    return f"{'batch' if batch else 'each'}:{concurrency}"


class _Router:
    """The emulator's `--functions_emulator`: hands deliveries to the mode being measured (or,
    with none, answers them 404 at once and counts them)."""

    app = None
    unrouted = 0

    def __call__(self, environ, start_response):
        app = self.app
        if app is None:
            self.unrouted += 1
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)


def _emulator_alone(args, firestore_emu, router: _Router) -> dict:
    """The same burst with every delivery answered at once and nothing published: the
    emulator's own pace, the floor of any event host."""
    from google.cloud import firestore

    from dev.stack import prepare_emulator

    project = f"demo-burst-sink-{uuid.uuid4().hex[:6]}"
    prepare_emulator(firestore_emu, project, ("users",))
    db = firestore.Client(project=project)
    seen = router.unrouted
    started = time.monotonic()
    _write_burst(db, [f"w_{i:05d}" for i in range(args.burst)], args.batch)
    ended = time.monotonic()
    received_s = None
    while time.monotonic() - ended < args.timeout:
        if router.unrouted - seen >= args.burst:
            received_s = time.monotonic() - ended
            break
        time.sleep(0.02)
    db.close()
    return {"write_s": ended - started, "received_s": received_s}


def _write_burst(db, ids: list[str], batch_size: int) -> None:
    """The burst: every id written as a new user document, `batch_size` per commit."""
    from tests.test_publish_support import user

    for start in range(0, len(ids), batch_size):
        batch = db.batch()
        for doc_id in ids[start:start + batch_size]:
            batch.set(db.document(f"users/{doc_id}"), user(int(doc_id[2:]), status="pending"))
        batch.commit()


def _measure(args, batch: bool, concurrency: int, firestore_emu, router: _Router) -> dict:
    """One mode: a fresh project and bucket, the stack's event host in that mode, the burst,
    and the times at which the host had every delivery and the snapshot every change."""
    import logging
    import multiprocessing

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore, storage

    from dev.app import create_stack_app
    from dev.deliveries import DeliverySettings
    from dev.stack import prepare_emulator
    from tests.helpers import publish
    from tests.test_publish_support import firestore_items, snapshot_body, user

    run = uuid.uuid4().hex[:8]
    project = f"demo-burst-{run}"
    os.environ.update({"GOOGLE_CLOUD_PROJECT": project,
                       "SNAPSHOT_BUCKET": f"demo-burst-{run}-snapshots"})
    db = firestore.Client(project=project)
    storage_client = storage.Client(project=project, credentials=AnonymousCredentials())
    bucket = storage_client.create_bucket(os.environ["SNAPSHOT_BUCKET"])
    for i in range(SEED_DOCS):
        db.document(f"users/u_{i:05d}").set(user(i))
    publish(db, storage_client, bucket.name)
    app = create_stack_app({"publish_snapshot": "cloudevent"}, static_dir=None,
                           deliveries=DeliverySettings(concurrency=concurrency, batch=batch))
    host = app.event_host
    logging.getLogger().setLevel(logging.WARNING)  # main.py's line per event: retries, drops
    router.app = app
    prepare_emulator(firestore_emu, project, ("users",))

    ids = [f"b_{i:05d}" for i in range(args.burst)]
    spawn = multiprocessing.get_context("spawn")
    answers, answer = spawn.Pipe(duplex=False)
    watcher = spawn.Process(target=_watch, args=(project, bucket.name, ids,
                                                 args.timeout + 30, answer), daemon=True)
    watcher.start()
    if not answers.poll(60) or answers.recv() != "ready":
        raise RuntimeError("the snapshot watcher did not start")
    started = time.monotonic()
    _write_burst(db, ids, args.batch)
    ended = time.monotonic()
    received_s = None
    done_at = arrived = None
    while time.monotonic() - ended < args.timeout:
        if received_s is None and host.stats.received >= args.burst:
            received_s = time.monotonic() - ended
        if answers.poll(0.05):
            done_at, arrived = answers.recv()
            break
    watcher.kill()
    watcher.join()
    done_s = None if done_at is None else done_at - ended
    router.app = None
    app.close()  # a mode that did not converge: its queued deliveries are dropped
    equal = done_s is not None and snapshot_body(bucket)["items"] == firestore_items(db)
    if done_s is None:
        arrived = len(set(ids) & {item["id"] for item in snapshot_body(bucket)["items"]})
    db.close()
    return {"mode": _mode_name(batch, concurrency), "batch": batch, "concurrency": concurrency,
            "write_s": ended - started, "received_s": received_s, "done_s": done_s,
            "arrived": arrived, "equal": equal, "retried": host.stats.retried,
            "dropped": host.stats.dropped}


def _watch(project: str, bucket_name: str, ids: list[str], timeout_s: float, answer) -> None:
    """The child process that watches the snapshot: sends "ready", then the monotonic time
    (system-wide on Linux) at which the snapshot held every id, and how many it held."""
    sys.path.insert(0, str(ROOT))
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tests.test_publish_support import snapshot_body

    bucket = storage.Client(project=project,
                            credentials=AnonymousCredentials()).bucket(bucket_name)
    wanted, generation = set(ids), None
    answer.send("ready")
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        # The manifest is written after every flush: the snapshot is read only when it moved.
        manifest = bucket.get_blob("snapshots/manifest.json")
        if manifest is not None and manifest.generation != generation:
            generation = manifest.generation
            held = {item["id"] for item in snapshot_body(bucket)["items"]}
            if wanted <= held:
                answer.send((time.monotonic(), len(wanted)))
                return
        time.sleep(0.05)


def _seconds(value: float | None, timeout: float) -> str:
    return f">{timeout:.0f} s" if value is None else f"+{value:.2f} s"


def _report(args, floor: dict, results: list[dict], default: str) -> None:
    print(f"\nburst of {args.burst} new documents written through Firestore in batches of "
          f"{args.batch}; Google's emulator delivers its own events; PUBLISH_INTERVAL_S=1")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"(times after the burst's last commit; load average at the end: {load} on "
          f"{os.cpu_count()} CPUs)")
    print(f"{'event host':<40}{'burst written':>14}{'all delivered':>15}"
          f"{'in the snapshot':>19}{'== Firestore':>14}")
    print(f"{'emulator alone (answered at once)':<40}{floor['write_s']:>12.2f} s"
          f"{_seconds(floor['received_s'], args.timeout):>15}{'-':>19}{'-':>14}")
    for result in results:
        kind = "batches" if result["batch"] else "a request each"
        name = f"{kind}, {result['concurrency']}" + (
            " (default)" if result["mode"] == default else
            " (before: 16 workers)" if result["mode"] == "each:16" else
            " (deployed: 80 x 3)" if result["mode"] == "each:240" else
            " (before)" if result["mode"] == "each:2000" else "")
        done = _seconds(result["done_s"], args.timeout)
        if result["done_s"] is None:
            done += f" ({result['arrived']}/{args.burst})"
        print(f"{name:<40}{result['write_s']:>12.2f} s"
              f"{_seconds(result['received_s'], args.timeout):>15}{done:>19}"
              f"{'yes' if result['equal'] else 'no':>14}")
    before = next((r for r in results if r["mode"] == "each:2000"), None)
    for result in results:
        if result["mode"] != default or result["done_s"] is None:
            continue
        versus = ""
        if before is not None and before["done_s"] is not None:
            versus = (f"a request each (2,000): +{before['done_s']:.2f} s, "
                      f"{before['done_s'] / result['done_s']:.1f}x later")
        verdict = "met" if result["done_s"] <= TARGET_S else "MISSED"
        print(f"default: in the snapshot +{result['done_s']:.2f} s after the burst (target "
              f"<= {TARGET_S:g} s: {verdict}); {versus}")

if __name__ == "__main__":
    sys.exit(main())
