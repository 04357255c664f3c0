"""Probes of the publisher benchmark, each run in its own process so that its peak RSS is its
own (`python bench/publish_probes.py rebuild|fallback`, settings from the environment; one JSON
line out).

- `rebuild`: `rebuild_collection` of `users` (streamed: Firestore in pages, parts as they
  fill); its time and the process's peak RSS.
- `format N`: no emulator: N generated user records cut into parts exactly as a rebuild cuts
  them, each part encoded (gzip when it pays) and the index built, streamed; what one change
  writes (its part + the index), and the peak RSS (how the 1,000,000 column is made).
- `fallback`: the `users` read function (functions-framework's app over main.py) with Firestore
  unreachable: the instance's start (main.py imported, before it takes traffic), the first
  request of a cold instance (a page in id order, then one document), the same requests later
  (median), and a first request that needs every part (another order).

Peak RSS is the process's own `VmHWM` (see `peak_rss_mib`).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    """This process's own peak resident set size, MiB: `VmHWM` of /proc/self/status.

    Not `getrusage`'s `ru_maxrss`: Linux carries the peak of the image a process replaced
    into it, and a child started by fork + exec begins as a copy of its parent, so a probe's
    `ru_maxrss` is at least the benchmark's RSS at the fork (which holds every seeded
    document: what made the rebuild look 181 MiB at 100,000 documents)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rebuild() -> dict:
    from shared.clients import Clients
    from shared.settings import Settings
    from shared.snapshots import rebuild_collection

    settings = Settings.from_env()
    clients = Clients(settings)
    started = time.perf_counter()
    report = rebuild_collection(clients.db(), clients.storage(), settings.snapshot_bucket,
                                "users", timeout_s=120)
    return {"seconds": time.perf_counter() - started, "rss_mib": peak_rss_mib(),
            "documents": report.documents, "summary": report.summary()}


def format_only(docs: int) -> dict:
    from shared import snapshot_parts
    from shared.http import dumps
    from shared.snapshot_format import SnapshotState
    from shared.snapshot_parts import PartRef, SnapshotIndex, encode_part, items_sum

    sys.path.insert(0, str(ROOT / "bench"))
    from publish_bench import _doc

    started = time.perf_counter()
    index = SnapshotIndex("users")
    state, size, lo = SnapshotState("users", exists=True), 0, ""
    stored_sizes = []

    def flush() -> None:
        body = state.body("2026-12-07T00:00:00Z")
        stored, _ = encode_part(body)
        stored_sizes.append(len(stored))
        index.parts.append(PartRef(f"snapshots/users/parts/{len(index.parts):020x}.json.gz",
                                   lo, len(state.items), len(body), len(stored),
                                   items_sum(state.items.values())))

    for i in range(docs):
        doc_id = f"u_{i:07d}"
        if not state.items and index.parts:
            lo = doc_id
        item = {"id": doc_id, **_doc(i), "updatedAt": "2026-12-07T00:00:00.000Z"}
        state.items[doc_id], state.versions[doc_id] = item, 1_765_000_000_000_000_000 + i
        size += len(dumps(item)) + snapshot_parts.ITEM_OVERHEAD_BYTES
        if size >= snapshot_parts.PART_MAX_BYTES // 2:
            flush()
            state, size = SnapshotState("users", exists=True), 0
    if state.items:
        flush()
    index_bytes = len(index.body("2026-12-07T00:00:00Z"))
    average = sum(stored_sizes) / len(stored_sizes)
    return {"seconds": time.perf_counter() - started, "rss_mib": peak_rss_mib(),
            "parts": len(index.parts), "index_bytes": index_bytes,
            "bytes_per_change": average + index_bytes}


def fallback() -> dict:
    from functions_framework import create_app
    from werkzeug.test import Client

    from shared.clients import Clients
    from shared.settings import Settings
    from shared.snapshot_reader import load_view

    started = time.perf_counter()
    client = Client(create_app(target="users", source=str(ROOT / "main.py"),
                               signature_type="http"))
    startup = time.perf_counter() - started  # main.py imported: before the instance serves

    def timed(path: str) -> tuple[float, int, str]:
        started = time.perf_counter()
        answer = client.get(path)
        return (time.perf_counter() - started, answer.status_code,
                answer.headers.get("X-Data-Source", ""))

    first_page = timed("/?limit=100")
    first_get = timed("/u_0000042")
    # Distinct queries, so the response cache does not answer them: each runs on the parts.
    later = [timed(path) for n in range(20) for path in
             (f"/?limit={50 + n}", f"/u_{(n * 7919) % 1000:07d}")]
    whole_first = timed("/?orderBy=-hourlyRate&limit=20")
    whole_later = [timed(f"/?orderBy=-hourlyRate&limit={21 + n}") for n in range(5)]
    # The snapshot's share of a first page (after the app's requests: imports are warm): a new
    # client, the index, the first part.
    started = time.perf_counter()
    settings = Settings.from_env()
    view = load_view(Clients(settings).storage(), settings.snapshot_bucket, "users",
                     timeout_s=settings.storage_timeout_s)
    view.part(0)
    snapshot_share = time.perf_counter() - started
    sources = {source for _, _, source in [first_page, first_get, *later, whole_first]}
    statuses = {status for _, status, _ in [first_page, first_get, *later, whole_first]}
    return {"startup_s": startup, "first_page_s": first_page[0], "first_get_s": first_get[0],
            "snapshot_share_s": snapshot_share,
            "later_median_s": statistics.median(t for t, _, _ in later),
            "whole_first_s": whole_first[0],
            "whole_later_median_s": statistics.median(t for t, _, _ in whole_later),
            "sources": sorted(sources), "statuses": sorted(statuses),
            "rss_mib": peak_rss_mib()}


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    if sys.argv[1] == "format":
        print(json.dumps(format_only(int(sys.argv[2]))))
    else:
        print(json.dumps({"rebuild": rebuild, "fallback": fallback}[sys.argv[1]]()))
