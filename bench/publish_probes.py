"""Probes of the publisher benchmark, each run in its own process so that its peak RSS is its
own (`python bench/publish_probes.py rebuild|fallback`, settings from the environment; one JSON
line out).

- `rebuild`: `rebuild_collection` of `users` (streamed: Firestore in pages, parts as they
  fill); its time and the process's peak RSS.
- `fallback`: the `users` read function (functions-framework's app over main.py) with Firestore
  unreachable: the first request of a cold instance (a page in id order, then one document),
  the same requests later (median), and a first request that needs every part (another order).
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
    """This process's peak resident set size, MiB."""
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


def fallback() -> dict:
    from functions_framework import create_app
    from werkzeug.test import Client

    client = Client(create_app(target="users", source=str(ROOT / "main.py"),
                               signature_type="http"))

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
    sources = {source for _, _, source in [first_page, first_get, *later, whole_first]}
    statuses = {status for _, status, _ in [first_page, first_get, *later, whole_first]}
    return {"first_page_s": first_page[0], "first_get_s": first_get[0],
            "later_median_s": statistics.median(t for t, _, _ in later),
            "whole_first_s": whole_first[0],
            "whole_later_median_s": statistics.median(t for t, _, _ in whole_later),
            "sources": sorted(sources), "statuses": sorted(statuses),
            "rss_mib": peak_rss_mib()}


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    print(json.dumps({"rebuild": rebuild, "fallback": fallback}[sys.argv[1]]()))
