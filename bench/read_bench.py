"""Read-path benchmark (`make bench`): medians, p95 and ratios measured side by side in one run.

On 2,000 user documents in the Firestore emulator it times, in this process:
  a) the raw client: `stream()` of the whole collection into dicts
  b) the read function, uncached (GET /users?limit=2000 through the WSGI stack)
  c) the same request answered from the per-instance cache
  d) a 304 revalidation (If-None-Match)
  e) the first request after Firestore goes down (a fresh instance each sample)
  f) later requests during the outage (the circuit breaker sends them to the snapshot)
and counts Firestore document reads (as Firestore bills them, by `emulators.meter`) per
request of b, c, d and of an `updatedSince` poll with no change. (a) and (b) alternate request
by request so that machine noise hits both alike. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = 2000
# Reading 2,000 documents through the Python client takes over a second on this machine, so
# the normal read phases keep the default deadline; the outage phases use a short one so that
# 200 samples of "first request after Firestore goes down" fit in a couple of minutes.
READ_TIMEOUT_S = 5.0
OUTAGE_TIMEOUT_S = 0.5


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> str:
    return (f"  {name:<44} median {statistics.median(samples) * 1000:8.2f} ms   "
            f"p95 {percentile(samples, 95) * 1000:8.2f} ms   n={len(samples)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="samples per measurement")
    parser.add_argument("--docs", type=int, default=DOCS)
    args = parser.parse_args()
    n = args.requests
    import logging

    logging.basicConfig(level=logging.ERROR)  # the outage phase would log a warning a request

    from emulators.harness import start_firestore, start_storage
    from emulators.meter import ReadMeter

    firestore_emu = start_firestore(log_path=ROOT / ".dev" / "bench-firestore.log")
    storage_emu = start_storage(log_path=ROOT / ".dev" / "bench-storage.log")
    project = "demo-bench"
    os.environ.update({
        "FIRESTORE_EMULATOR_HOST": firestore_emu.host,
        "STORAGE_EMULATOR_HOST": storage_emu.host,
        "GOOGLE_CLOUD_PROJECT": project, "SNAPSHOT_BUCKET": "demo-bench-snapshots",
        "FIRESTORE_TIMEOUT_S": str(READ_TIMEOUT_S), "MAX_LIMIT": str(max(args.docs, 1000)),
        "BREAKER_COOLDOWN_S": "600", "READ_ACCESS": "public",
    })
    # Reads are counted as Firestore bills them by a gRPC proxy (Google's emulator keeps no
    # counter); the timed rows talk to the emulator directly, the counted ones through it.
    meter = ReadMeter(firestore_emu.host).start()
    try:
        return _run(args, n, firestore_emu, project, meter)
    finally:
        meter.stop()
        storage_emu.stop()
        firestore_emu.stop()


def _run(args, n, firestore_emu, project, meter) -> int:
    from functions.read_api import ReadContext
    from shared.clients import get_db, get_storage
    from shared.encoding import format_timestamp, parse_timestamp
    from shared.settings import Settings
    from tests.helpers import firestore_client_at, publish, read_api_client, seed_users

    def settings(**env: str) -> Settings:
        return Settings.from_env({**os.environ, **env})

    base = settings()
    db, storage_client = get_db(base), get_storage(base)
    storage_client.create_bucket(base.snapshot_bucket)
    print(f"seeding {args.docs} users ...", flush=True)
    seed_users(db, args.docs)
    publish(db, storage_client, base.snapshot_bucket)

    metered = firestore_client_at(meter.host, project)

    def reads() -> int:
        return meter.reads(project)

    uncached = read_api_client(ReadContext.create(settings(CACHE_TTL_S="0"), db=lambda: db,
                                                  storage=lambda: storage_client))
    uncached_metered = read_api_client(ReadContext.create(
        settings(CACHE_TTL_S="0"), db=lambda: metered, storage=lambda: storage_client))
    cached_ctx = ReadContext.create(settings(CACHE_TTL_S="3600"), db=lambda: metered,
                                    storage=lambda: storage_client)
    cached = read_api_client(cached_ctx)
    url = f"/users?limit={args.docs}"

    for _ in range(3):  # warm both paths (channel, imports)
        list(db.collection("users").stream())
        uncached.get(url)

    raw_t, fn_t = [], []
    for _ in range(n):
        started = time.perf_counter()
        docs = [snap.to_dict() for snap in db.collection("users").stream(timeout=30)]
        raw_t.append(time.perf_counter() - started)
        assert len(docs) == args.docs
        started = time.perf_counter()
        response = uncached.get(url)
        fn_t.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json["count"] == args.docs
        assert response.headers["X-Data-Source"] == "firestore"

    meter.reset(project)
    uncached_metered.get(url)
    reads_b = reads()

    first = cached.get(url)
    etag = first.headers["ETag"]
    meter.reset(project)
    cache_t, revalidate_t = [], []
    for _ in range(n):
        started = time.perf_counter()
        response = cached.get(url)
        cache_t.append(time.perf_counter() - started)
        assert response.status_code == 200
        started = time.perf_counter()
        response = cached.get(url, headers={"If-None-Match": etag})
        revalidate_t.append(time.perf_counter() - started)
        assert response.status_code == 304
    reads_c_d = reads()

    # A dashboard polls with the previous answer's asOf: each poll is a new URL (no response
    # cache hit), and the instance's cached newest-tombstone time spares the tombstone query.
    poller = read_api_client(ReadContext.create(settings(), db=lambda: metered,
                                                storage=lambda: storage_client))
    as_of = poller.get("/users?limit=1").json["asOf"]
    as_of = poller.get(f"/users?updatedSince={as_of}").json["asOf"]
    as_of = format_timestamp(parse_timestamp(as_of) + dt.timedelta(microseconds=1))
    meter.reset(project)
    poll = poller.get(f"/users?updatedSince={as_of}")
    assert poll.json["items"] == [] and poll.json["deleted"] == [], poll.json
    reads_poll = reads()

    print("stopping the Firestore emulator (outage) ...", flush=True)
    firestore_emu.stop()
    outage_first, outage_later = [], []
    for i in range(n):
        context = ReadContext.create(settings(FIRESTORE_TIMEOUT_S=str(OUTAGE_TIMEOUT_S)),
                                     db=lambda: db, storage=lambda: storage_client)
        api = read_api_client(context)
        started = time.perf_counter()
        response = api.get(f"/users?limit={1 + i % 50}")
        outage_first.append(time.perf_counter() - started)
        assert response.headers["X-Data-Source"] == "snapshot", response.status_code
    for i in range(n):
        started = time.perf_counter()
        response = api.get(f"/users?limit={50 + i}&orderBy=-hourlyRate")
        outage_later.append(time.perf_counter() - started)
        assert response.headers["X-Data-Source"] == "snapshot"

    a, b, c = (statistics.median(s) for s in (raw_t, fn_t, cache_t))
    checks = [
        ("b/a (uncached function / raw stream)", b / a, "<= 1.3", b / a <= 1.3),
        ("c/a (cached / raw stream)", c / a, "<= 0.05", c / a <= 0.05),
        ("e p95 first request in outage (s)", percentile(outage_first, 95),
         f"<= {OUTAGE_TIMEOUT_S + 0.5}", percentile(outage_first, 95) <= OUTAGE_TIMEOUT_S + 0.5),
        ("f median later requests in outage (s)", statistics.median(outage_later),
         f"<= {0.1 * OUTAGE_TIMEOUT_S}",
         statistics.median(outage_later) <= 0.1 * OUTAGE_TIMEOUT_S),
        ("reads per request, uncached (b)", reads_b, f"= {args.docs}", reads_b == args.docs),
        ("reads per request, cached (c) and 304 (d)", reads_c_d / (2 * n), "= 0",
         reads_c_d == 0),
        ("reads per updatedSince poll, no change", reads_poll, "<= 1", reads_poll <= 1),
    ]
    print(f"\nread path, {args.docs} documents; FIRESTORE_TIMEOUT_S={READ_TIMEOUT_S} for a-d, "
          f"{OUTAGE_TIMEOUT_S} for e-f")
    for name, samples in (("a) raw client stream() into dicts", raw_t),
                          ("b) read function, uncached", fn_t),
                          ("c) read function, cached", cache_t),
                          ("d) 304 revalidation", revalidate_t),
                          ("e) first request after Firestore goes down", outage_first),
                          ("f) later requests during the outage", outage_later)):
        print(row(name, samples))
    print()
    for name, value, target, ok in checks:
        print(f"  {name:<44} {value:10.4g}   target {target:<10} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
