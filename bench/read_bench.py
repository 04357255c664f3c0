"""Read-path benchmark (`make bench`): medians, p95 and ratios measured side by side in one run.

For each size (2,000 and 10,000 user documents by default: `--sizes`) it times, in this process,
against the Firestore emulator (`FIRESTORE_EMULATOR_HOST` when set, else one it starts):
  a) the raw client: `stream()` of the whole collection into dicts
  w) the wire floor: the read function's own RunQuery through the client's channel, the
     answer left as bytes (no decoding at all), read on the calling thread as the function
     reads it
  w0) the same with grpc's default stream iterator (a thread hand-off per message), which the
     client's `stream()` uses (for information: the targets are against w)
  b) the read function, uncached (GET /users?limit=N through the WSGI stack)
  c) the same request answered from the per-instance cache
  d) a 304 revalidation (If-None-Match)
  e) the first request after Firestore goes down (a fresh instance each sample)
  f) later requests during the outage (the circuit breaker sends them to the snapshot)
  g) the same with CACHE_TTL_S=0: every request revalidates the snapshot object, and parses it
     only when its generation changed
and counts Firestore document reads per request of b, c, d and of an `updatedSince` poll with
no change, as Firestore bills them (`emulators.meter`, a gRPC proxy: those requests go through
it, the timed ones do not).
a, w, b and w0 are measured in rounds, each round in another order (a w b w0, w b w0 a, ...),
so that machine noise hits them alike; the ratio checks take the median of the per-round
ratios (the ratios of the medians are printed too). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = (2000, 10000)
# The normal read phases keep a deadline well above an uncached read of 10,000 documents; the
# outage phases use a short one so that the first-request samples fit in a minute.
READ_TIMEOUT_S = 10.0
OUTAGE_TIMEOUT_S = 0.5
TARGET_B_A = 0.4
TARGET_B_W = 2.0


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> str:
    return (f"  {name:<52} median {statistics.median(samples) * 1000:8.2f} ms   "
            f"p95 {percentile(samples, 95) * 1000:8.2f} ms   n={len(samples)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma list of collection sizes (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="rounds of a/w/b/w0 per size (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=200,
                        help="samples of the cheap rows c, d, f, g (default: %(default)s)")
    parser.add_argument("--outage-samples", type=int, default=20,
                        help="samples of e, each waits out the deadline (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="5 rounds, 50 requests, 5 outage samples: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.outage_samples = 5, 50, 5
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    import logging

    logging.basicConfig(level=logging.ERROR)  # the outage phase would log a warning a request

    from emulators.harness import firestore_from_env_or_start, storage_from_env_or_start
    from emulators.meter import ReadMeter

    firestore_emu = firestore_from_env_or_start(log_path=ROOT / ".dev" / "bench-firestore.log")
    storage_emu = storage_from_env_or_start(log_path=ROOT / ".dev" / "bench-storage.log")
    os.environ.update({
        "FIRESTORE_EMULATOR_HOST": firestore_emu.host,
        "STORAGE_EMULATOR_HOST": storage_emu.host,
        "FIRESTORE_TIMEOUT_S": str(READ_TIMEOUT_S), "MAX_LIMIT": str(max([*sizes, 1000])),
        "BREAKER_COOLDOWN_S": "600", "READ_ACCESS": "public",
    })
    print(f"Firestore emulator {firestore_emu.host}, Cloud Storage emulator {storage_emu.host}")
    # Reads are counted as Firestore bills them by a gRPC proxy in front of the emulator
    # (Google's keeps no counter); the timed rows talk to the emulator directly.
    meter = ReadMeter(firestore_emu.host).start()
    try:
        results = [_run_size(size, args, firestore_emu, meter) for size in sizes]
    finally:
        meter.stop()
        storage_emu.stop()
        firestore_emu.stop()
    checks = [check for result in results for check in result]
    print("\nchecks")
    for name, value, target, ok in checks:
        print(f"  {name:<56} {value:10.4g}   target {target:<12} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for *_, ok in checks) else 1


def _wire_floors(db, url_query):
    """Two callables that run the read function's own RunQuery through the client's channel
    and drop the answer's bytes undecoded: what the network and the emulator cost alone.
    The first reads the stream as the read function does (on the calling thread), the second
    with grpc's default iterator (what the client's `stream()` uses)."""
    from functions.collection_api.query import to_firestore_query
    from shared.firestore_wire import RUN_QUERY, run_query_request, unary_stream

    request, metadata = run_query_request(db, to_firestore_query(db.collection("users"),
                                                                 url_query))
    channel = db._firestore_api._transport.grpc_channel
    ours = unary_stream(channel, RUN_QUERY)
    default = channel.unary_stream(RUN_QUERY, request_serializer=lambda m: m.SerializeToString())
    return (lambda: sum(1 for _ in ours(request, metadata=metadata, timeout=60)),
            lambda: sum(1 for _ in default(request, metadata=metadata, timeout=60)))


def _snapshot_answers(api, urls: list[str]) -> list[float]:
    """The time of each request, all answered from the snapshot."""
    samples = []
    for url in urls:
        started = time.perf_counter()
        response = api.get(url)
        samples.append(time.perf_counter() - started)
        assert response.headers["X-Data-Source"] == "snapshot", response.status_code
    return samples


def _run_size(docs: int, args, firestore_emu, meter) -> list[tuple[str, float, str, bool]]:
    from emulators.harness import clear_firestore_project
    from functions.collection_api.context import ApiContext as ReadContext
    from functions.collection_api.query import parse_list_query
    from shared.clients import Clients
    from shared.schema import load_schema
    from shared.settings import Settings
    from shared.times import format_timestamp, parse_timestamp
    from tests.helpers import (
        closed_port,
        firestore_client_at,
        publish,
        read_api_client,
        seed_users,
    )

    project = f"demo-bench-{docs}-{uuid.uuid4().hex[:6]}"
    bucket = f"{project}-snapshots"
    env = {"GOOGLE_CLOUD_PROJECT": project, "SNAPSHOT_BUCKET": bucket}

    def settings(**more: str) -> Settings:
        return Settings.from_env({**os.environ, **env, **more})

    base = settings()
    clients = Clients(base)
    db, storage_client = clients.db(), clients.storage()
    storage_client.create_bucket(bucket)
    print(f"\n[{docs} documents] seeding ...", flush=True)
    seed_users(db, docs)
    publish(db, storage_client, bucket)

    def context(db_client=db, **more: str) -> ReadContext:
        return ReadContext.create(settings(**more), db=lambda: db_client,
                                  storage=lambda: storage_client)

    metered = firestore_client_at(meter.host, project)  # the reads it causes are counted
    uncached = read_api_client(context(CACHE_TTL_S="0"))
    cached = read_api_client(context(metered, CACHE_TTL_S="3600"))
    url = f"/users?limit={docs}"
    wire, wire_default = _wire_floors(db, parse_list_query(
        [("limit", str(docs))], load_schema("users"), default_limit=100, max_limit=docs))

    def raw_stream() -> None:
        assert len([snap.to_dict() for snap in db.collection("users").stream(timeout=60)]) \
            == docs

    def function_uncached() -> None:
        response = uncached.get(url)
        assert response.status_code == 200 and response.headers["X-Data-Source"] == "firestore"

    def wire_floor() -> None:
        assert wire() >= docs

    def wire_floor_default() -> None:
        assert wire_default() >= docs

    timed = {"a": raw_stream, "w": wire_floor, "b": function_uncached, "w0": wire_floor_default}
    for _ in range(2):  # warm every path (channel, imports, caches)
        for measure in timed.values():
            measure()
    assert uncached.get(url).json["count"] == docs
    print(f"[{docs} documents] a/w/b/w0: {args.rounds} rounds ...", flush=True)
    samples: dict[str, list[float]] = {name: [] for name in timed}
    order = list(timed)
    for round_ in range(args.rounds):
        for name in order[round_ % len(order):] + order[:round_ % len(order)]:
            started = time.perf_counter()
            timed[name]()
            samples[name].append(time.perf_counter() - started)

    def count() -> int:
        return meter.reads(project)

    def reset() -> None:
        meter.reset(project)

    reset()
    read_api_client(context(metered, CACHE_TTL_S="0")).get(url)
    reads_b = count()

    n = args.requests
    first = cached.get(url)
    etag = first.headers["ETag"]
    reset()
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
    reads_c_d = count()
    # A dashboard polls with the previous answer's asOf: each poll is a new URL (no response
    # cache hit), and the instance's cached newest-tombstone time spares the tombstone query.
    poller = read_api_client(context(metered))
    as_of = poller.get("/users?limit=1").json["asOf"]
    as_of = poller.get(f"/users?updatedSince={as_of}").json["asOf"]
    as_of = format_timestamp(parse_timestamp(as_of) + dt.timedelta(microseconds=1))
    reset()
    poll = poller.get(f"/users?updatedSince={as_of}")
    assert poll.json["items"] == [] and poll.json["deleted"] == [], poll.json
    reads_poll = count()

    print(f"[{docs} documents] outage (Firestore unreachable) ...", flush=True)
    dead = firestore_client_at(closed_port(), project)
    outage = {"FIRESTORE_TIMEOUT_S": str(OUTAGE_TIMEOUT_S)}
    outage_first = []
    for i in range(args.outage_samples):
        api = read_api_client(context(dead, **outage))
        started = time.perf_counter()
        response = api.get(f"/users?limit={1 + i % 50}")
        outage_first.append(time.perf_counter() - started)
        assert response.headers["X-Data-Source"] == "snapshot", response.status_code
    pages = [f"/users?limit={50 + i}&orderBy=-hourlyRate" for i in range(n)]
    outage_later = _snapshot_answers(api, pages)
    revalidating = read_api_client(context(dead, CACHE_TTL_S="0", **outage))
    revalidating.get("/users?limit=1")  # opens the circuit and reads the snapshot once
    outage_uncached = _snapshot_answers(revalidating, pages)
    clear_firestore_project(firestore_emu, project)  # free the emulator's memory

    a, w, b = (statistics.median(samples[name]) for name in "awb")
    c = statistics.median(cache_t)

    def paired(top: str, bottom: str) -> float:
        """The median of the per-round ratios (each round's samples are taken together)."""
        return statistics.median(y / x for x, y in zip(samples[bottom], samples[top],
                                                       strict=True))

    paired_b_a, paired_b_w, paired_b_w0 = paired("b", "a"), paired("b", "w"), paired("b", "w0")
    print(f"\nread path, {docs} documents; FIRESTORE_TIMEOUT_S={READ_TIMEOUT_S} for a-d, "
          f"{OUTAGE_TIMEOUT_S} for e-g")
    for name, values in (("a) raw client stream() into dicts", samples["a"]),
                         ("w) wire floor: RunQuery bytes, no decoding", samples["w"]),
                         ("w0) the same, grpc's default stream iterator", samples["w0"]),
                         ("b) read function, uncached", samples["b"]),
                         ("c) read function, cached", cache_t),
                         ("d) 304 revalidation", revalidate_t),
                         ("e) first request after Firestore goes down", outage_first),
                         ("f) later requests during the outage", outage_later),
                         ("g) later requests during the outage, CACHE_TTL_S=0",
                          outage_uncached)):
        print(row(name, values))
    print(f"  ratios of medians: b/a {b / a:.3f}, b/w {b / w:.3f}, w/a {w / a:.3f}, "
          f"w0/w {statistics.median(samples['w0']) / w:.3f}")
    print(f"  medians of per-round ratios: b/a {paired_b_a:.3f}, b/w {paired_b_w:.3f}, "
          f"b/w0 {paired_b_w0:.3f}, w0/w {paired('w0', 'w'):.3f}")
    checks = [
        (f"{docs}: b/a (uncached function / raw stream, per round)", paired_b_a,
         f"<= {TARGET_B_A}", paired_b_a <= TARGET_B_A),
        (f"{docs}: b/w (uncached function / wire floor, per round)", paired_b_w,
         f"<= {TARGET_B_W}", paired_b_w <= TARGET_B_W),
        (f"{docs}: c/a (cached / raw stream)", c / a, "<= 0.05", c / a <= 0.05),
        (f"{docs}: e p95 first request in outage (s)", percentile(outage_first, 95),
         f"<= {OUTAGE_TIMEOUT_S + 0.5}", percentile(outage_first, 95) <= OUTAGE_TIMEOUT_S + 0.5),
        (f"{docs}: f median later requests in outage (s)", statistics.median(outage_later),
         f"<= {0.1 * OUTAGE_TIMEOUT_S}",
         statistics.median(outage_later) <= 0.1 * OUTAGE_TIMEOUT_S),
    ]
    print(f"  document reads: b {reads_b}, c+d {reads_c_d / (2 * n):g} per request, "
          f"quiet updatedSince poll {reads_poll}")
    checks += [
        (f"{docs}: reads per request, uncached (b)", reads_b, f"= {docs}", reads_b == docs),
        (f"{docs}: reads per request, cached (c) and 304 (d)", reads_c_d / (2 * n), "= 0",
         reads_c_d == 0),
        (f"{docs}: reads per updatedSince poll, no change", reads_poll, "<= 1",
         reads_poll <= 1),
    ]
    return checks


if __name__ == "__main__":
    sys.exit(main())
