"""Live-mode benchmark (`make bench-live`): propagation and cost, measured side by side in one run.

In headless Chromium (Debian's, through Playwright) on the local stack (`python -m dev.stack` on
Google's Firestore emulator, the functions with their default settings):

1. Propagation. Tab A (the writer) makes N creates, N updates and N deletes of users through
   the write API with its client, one every 200 ms. Two other tabs watch at the same time: B in
   live mode (Firestore listeners) and C polling the functions every 5 s (live off). Then the
   same again for D, on the alternative not chosen: a server-sent-events stream from a function
   (bench/sse_feed.py; apart, because its listeners run in this process). For each change: from
   the write's response in A to the first `usersDataChanged` event in B or C (or SSE message in
   D) that shows it; p50 / p95 / max per mode. The tabs' clocks are the same machine's
   (`Date.now()`), so a change can show up before its own response arrives (< 0 ms).
2. Cost. Reads per change in each watching tab, and then, with nothing changing, Q seconds
   (60) with one fresh tab per mode: the function calls (the browser's own requests, counted by
   Playwright) and the document reads, counted from the moment the listeners had answered.

Reads are counted in the browser as Firestore bills them, since the emulator keeps no counter:
a listener costs one read per document added or changed in its result and one for an empty
first answer (data-client.js `usage().listenReads`, from the SDK's `docChanges()`: Google's
emulator resends the whole result after every change, production sends only what changed); a
function's answer costs at most one read per document it lists or reports deleted and one when
it is empty (`usage().pollReads`; its instance cache can make it less); the SSE stream's
listeners are billed the same way on the server. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.verdict import verdict  # noqa: E402 (after the path, like the other imports)

# The functions' defaults (the browser tests shorten them), but a 5 s Firestore deadline: on a
# 2-core machine shared with other work a commit sometimes takes over the default 2 s.
STACK_SETTINGS = {"CACHE_TTL_S": "10", "FIRESTORE_TIMEOUT_S": "5", "BREAKER_COOLDOWN_S": "15"}
POLL_MS = 5000
NEVER_MS = 3_600_000  # a tab that must not poll during the run
LIVE_TIMEOUT_MS = 60_000
TARGET_P95_MS = 300
TARGET_READS_PER_CHANGE = 1.0

RECORD_EVENTS = """
window.__bench = [];
window.addEventListener('usersDataChanged', (event) => {
  const docs = {};
  for (const item of event.detail.items) {
    if (item.id.startsWith('bench-')) docs[item.id] = item.updatedAt;
  }
  window.__bench.push({ t: Date.now(), docs });
});
"""

OPEN_SSE = """async (base) => {
  window.__sse = [];
  const opened = ['users', 'jobs'].map((name) => new Promise((resolve) => {
    const since = encodeURIComponent(window.dashboard.client.state(name).asOf);
    const source = new EventSource(`${base}/sse/${name}?since=${since}`);
    source.onopen = resolve;
    source.onmessage = (event) => window.__sse.push({ t: Date.now(), ...JSON.parse(event.data) });
  }));
  await Promise.all(opened);
}"""

WRITE_CHANGES = """async ({ ids, interval }) => {
  const client = window.dashboard.client;
  const plan = [...ids.map((id) => ['create', id]), ...ids.map((id) => ['update', id]),
    ...ids.map((id) => ['delete', id])];
  const one = async (kind, id, k) => {
    const t0 = Date.now();
    try {
      let item = null;
      if (kind === 'create') {
        item = await client.create('users', { id, name: `Bench ${id}`, email: `${id}@example.com`,
          role: 'creator', status: 'active' });
      } else if (kind === 'update') {
        item = await client.update('users', id, { location: `Place ${k}` }, { ifMatch: false });
      } else {
        await client.remove('users', id, { ifMatch: false });
      }
      return { kind, id, t0, t1: Date.now(), updatedAt: item?.updatedAt ?? null };
    } catch (error) {
      return { kind, id, t0, t1: Date.now(), error: String(error) };
    }
  };
  return Promise.all(plan.map(([kind, id], k) => new Promise((resolve) => {
    setTimeout(() => one(kind, id, k).then(resolve), k * interval);
  })));
}"""

USAGE = """() => ['users', 'jobs'].reduce((sum, name) => {
  const usage = window.dashboard.client.usage(name);
  return { calls: sum.calls + usage.calls, pollReads: sum.pollReads + usage.pollReads,
    listenReads: sum.listenReads + usage.listenReads, modes: [...sum.modes, usage.mode] };
}, { calls: 0, pollReads: 0, listenReads: 0, modes: [] })"""


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


class Tab:
    """A page in its own browser context, with the function calls it makes counted."""

    def __init__(self, browser, stack, url: str, record: bool = False):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.calls: list[str] = []
        functions = (f"{stack.url}/users", f"{stack.url}/jobs")
        self.page.on("request", lambda request: request.url.startswith(functions)
                     and self.calls.append(request.url))
        self.probes: list[str] = []
        emulator = f"http://{stack.firestore.host}/"
        self.page.on("request", lambda request: request.url == emulator
                     and self.probes.append(request.url))
        if record:
            self.page.add_init_script(RECORD_EVENTS)
        from tests.browser.dashboard import open_signed_in

        open_signed_in(self.page, url)  # the sample admin, through the page's sign-in

    def wait_for(self, expression: str, timeout_ms: int = LIVE_TIMEOUT_MS) -> None:
        """Until `expression` is true in the page (polled from here: the page's CSP forbids
        the string evaluation that `wait_for_function` does there)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while not self.page.evaluate(f"() => Boolean({expression})"):
            if time.monotonic() > deadline:
                raise SystemExit(f"not within {timeout_ms / 1000:.0f} s: {expression}")
            self.page.wait_for_timeout(100)

    def usage(self) -> dict:
        return self.page.evaluate(USAGE)

    def close(self) -> None:
        self.context.close()


LOADED = "window.dashboard && ['users', 'jobs'].every((n) => window.dashboard.client.state(n).mode)"
LIVE = "['users', 'jobs'].every((n) => window.dashboard.client.state(n).mode === 'live')"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="creates (and updates, deletes)")
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--quiet-s", type=float, default=60.0)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from bench.sse_feed import SseFeed
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, LocalStack

    print("starting the local stack (Google's Firestore emulator, storage emulator, functions)",
          flush=True)
    stack = LocalStack(f"bench-live-{uuid.uuid4().hex[:6]}", [], env=STACK_SETTINGS)
    sse = SseFeed(stack.firestore_client(), origin=stack.url)
    server = make_server("127.0.0.1", 0, sse, threaded=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sse_url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS)
            propagation = measure_propagation(browser, stack, sse, sse_url, args)
            quiet = measure_quiet(browser, stack, sse, sse_url, args.quiet_s)
            browser.close()
    finally:
        server.shutdown()
        stack.stop()
    return report(propagation, quiet, args)


def measure_propagation(browser, stack, sse, sse_url: str, args) -> dict:
    """Live and polling side by side on the same changes; then the SSE stream on changes of
    its own (run apart: its listeners in this process would slow the other two)."""
    live = Tab(browser, stack, stack.page_url(poll_ms=NEVER_MS), record=True)
    polling = Tab(browser, stack, stack.page_url(poll_ms=POLL_MS, live=False), record=True)
    live.wait_for(LIVE)
    polling.wait_for(LOADED)
    before = {"live": live.usage(), "polling": polling.usage(), "calls": len(live.calls)}
    writes = write_changes(browser, stack, args)
    last = writes[-1]["id"]
    polling.wait_for(f"window.__bench.length > 0 && !window.__bench.at(-1).docs['{last}']",
                     timeout_ms=3 * POLL_MS + 20_000)
    time.sleep(1)
    after = {"live": live.usage(), "polling": polling.usage(), "calls": len(live.calls)}
    result = {
        "writes": writes,
        "live": delays(writes, live.page.evaluate("window.__bench"), events_show),
        "polling": delays(writes, polling.page.evaluate("window.__bench"), events_show),
        "reads": {"live": after["live"]["listenReads"] - before["live"]["listenReads"],
                  "polling": after["polling"]["pollReads"] - before["polling"]["pollReads"]},
        "live_calls": after["calls"] - before["calls"],
        "live_modes": after["live"]["modes"],
    }
    for tab in (live, polling):
        tab.close()

    streamed = Tab(browser, stack, stack.page_url(poll_ms=NEVER_MS, live=False))
    streamed.wait_for(LOADED)
    streamed.page.evaluate(OPEN_SSE, sse_url)
    time.sleep(2)  # the stream's listeners' first answers
    reads = sse.reads
    sse_writes = write_changes(browser, stack, args)
    time.sleep(2)
    result["sse"] = delays(sse_writes, streamed.page.evaluate("window.__sse"), stream_shows)
    result["reads"]["sse"] = sse.reads - reads
    streamed.close()
    return result


def write_changes(browser, stack, args) -> list[dict]:
    """The creates, updates and deletes, from a tab of their own (with no listeners)."""
    writer = Tab(browser, stack, stack.page_url(poll_ms=NEVER_MS, live=False))
    writer.wait_for(LOADED)
    ids = [f"bench-{uuid.uuid4().hex[:6]}-{i:03d}" for i in range(args.changes)]
    print(f"writing {3 * len(ids)} changes, one every {args.interval_ms} ms ...", flush=True)
    writes = writer.page.evaluate(WRITE_CHANGES, {"ids": ids, "interval": args.interval_ms})
    writer.close()
    failed = [w for w in writes if "error" in w]
    if failed:
        raise SystemExit(f"{len(failed)} writes failed, e.g. {failed[0]}")
    add_commit_times(stack, writes)
    return writes


def add_commit_times(stack, writes: list[dict]) -> None:
    """`committed` (ms since the epoch, the server's clock, the same machine's): a write's
    server timestamp, and for a delete its tombstone's (committed with it)."""
    from shared.times import parse_timestamp
    from shared.tombstones import tombstone_collection

    ids = [write["id"] for write in writes if write["kind"] == "delete"]
    refs = [tombstone_collection(stack.firestore_client(), "users").document(i) for i in ids]
    deleted = {snapshot.id: snapshot.get("deletedAt")
               for snapshot in stack.firestore_client().get_all(refs) if snapshot.exists}
    for write in writes:
        stamp = deleted.get(write["id"]) if write["kind"] == "delete" \
            else parse_timestamp(write["updatedAt"])
        write["committed"] = stamp.timestamp() * 1000 if stamp else None


def events_show(record: dict, write: dict) -> bool:
    """Whether a `usersDataChanged` record of a tab shows a write."""
    from shared.times import parse_timestamp

    version = record["docs"].get(write["id"])
    if write["kind"] == "delete":
        return version is None
    return version is not None and parse_timestamp(version) >= parse_timestamp(write["updatedAt"])


def stream_shows(message: dict, write: dict) -> bool:
    """Whether an SSE message is the write."""
    from shared.times import parse_timestamp

    if message["id"] != write["id"]:
        return False
    if write["kind"] == "delete":
        return bool(message.get("deleted"))
    return not message.get("deleted") and \
        parse_timestamp(message["updatedAt"]) >= parse_timestamp(write["updatedAt"])


def delays(writes: list[dict], records: list[dict], shows) -> dict[str, list]:
    """Per kind of write: ms from its response to the first record after its start that shows
    it; `commit`: ms from its commit for every write; `missing`: never seen."""
    out: dict[str, list] = {"create": [], "update": [], "delete": [], "commit": [],
                            "missing": []}
    for write in writes:
        seen = next((r["t"] for r in records if r["t"] >= write["t0"] and shows(r, write)), None)
        if seen is None:
            out["missing"].append(write["id"])
            continue
        out[write["kind"]].append(seen - write["t1"])
        if write.get("committed"):
            out["commit"].append(seen - write["committed"])
    return out


def measure_quiet(browser, stack, sse, sse_url: str, seconds: float) -> dict:
    live = Tab(browser, stack, stack.page_url(poll_ms=POLL_MS))
    polling = Tab(browser, stack, stack.page_url(poll_ms=POLL_MS, live=False))
    streamed = Tab(browser, stack, stack.page_url(poll_ms=NEVER_MS, live=False))
    live.wait_for(LIVE)
    for tab in (polling, streamed):
        tab.wait_for(LOADED)
    streamed.page.evaluate(OPEN_SSE, sse_url)
    time.sleep(2)
    start = {"live": live.usage(), "polling": polling.usage(), "sse": sse.reads,
             "calls": {tab: len(tab.calls) for tab in (live, polling, streamed)},
             "probes": len(live.probes)}
    print(f"{seconds:.0f} quiet seconds, one tab per mode ...", flush=True)
    live.page.wait_for_timeout(seconds * 1000)
    end = {"live": live.usage(), "polling": polling.usage(), "sse": sse.reads}
    result = {
        "seconds": seconds,
        "live": (len(live.calls) - start["calls"][live],
                 end["live"]["listenReads"] - start["live"]["listenReads"]
                 + end["live"]["pollReads"] - start["live"]["pollReads"]),
        "polling": (len(polling.calls) - start["calls"][polling],
                    end["polling"]["pollReads"] - start["polling"]["pollReads"]),
        "sse": (sse.open_streams, end["sse"] - start["sse"]),
        "probes": len(live.probes) - start["probes"],
        "live_modes": end["live"]["modes"],
    }
    for tab in (live, polling, streamed):
        tab.close()
    return result


def report(propagation: dict, quiet: dict, args) -> int:
    changes = len(propagation["writes"])
    print(f"\nPropagation: write response in tab A -> the change in another tab "
          f"({changes} changes: {args.changes} creates, updates and deletes of users, one every "
          f"{args.interval_ms} ms; live and polling tabs watch the same changes, the SSE tab "
          "watches a second run of them)")
    print(f"  {'mode':<34} {'p50':>8} {'p95':>8} {'max':>8}   reads/change/tab   missing"
          "   from the commit: p50 / p95")
    rows = (("live (Firestore listeners)", "live"), ("polling every 5 s", "polling"),
            ("SSE stream from a function", "sse"))
    for label, key in rows:
        found = propagation[key]
        every = found["create"] + found["update"] + found["delete"]
        per_change = propagation["reads"][key] / changes
        commit = found["commit"]
        print(f"  {label:<34} {statistics.median(every):6.0f}ms {p95(every):6.0f}ms "
              f"{max(every):6.0f}ms   {per_change:8.2f}{'':>10}{len(found['missing']):>4}"
              f"   {statistics.median(commit):8.0f}ms / {p95(commit):.0f}ms")
        if found["missing"] and key == "polling":
            print(f"    ({len(found['missing'])} versions never shown: superseded before the "
                  "next poll)")
        for kind in ("create", "update", "delete"):
            print(f"    {kind:<32} {statistics.median(found[kind]):6.0f}ms "
                  f"{p95(found[kind]):6.0f}ms {max(found[kind]):6.0f}ms")
    print(f"  live tab: {propagation['live_calls']} function calls during the changes; "
          f"modes at the end: {propagation['live_modes']}")

    hour = 3600 / quiet["seconds"]
    print(f"\nQuiet: {quiet['seconds']:.0f} s, one tab per mode, counted after the listeners' "
          "first answers (function calls / document reads; per tab-hour)")
    calls, reads = quiet["live"]
    print(f"  live (Firestore listeners)         {calls:4d} / {reads:4d}     "
          f"{calls * hour:6.0f} / {reads * hour:6.0f}   (+{quiet['probes']} reachability "
          "probes of the Firestore host: no call, no read)")
    calls, reads = quiet["polling"]
    print(f"  polling every 5 s                  {calls:4d} / {reads:4d}     "
          f"{calls * hour:6.0f} / {reads * hour:6.0f}   (reads: at most; the functions' "
          "instance cache answers some)")
    streams, reads = quiet["sse"]
    print(f"  SSE stream from a function         {streams:4d} / {reads:4d}     "
          f"{streams:6d} / {reads * hour:6.0f}   (requests held open the whole time: "
          f"{streams} x 3600 s of function instance per tab-hour)")

    live = propagation["live"]
    every = live["create"] + live["update"] + live["delete"]
    checks = [
        (f"live p95 <= {TARGET_P95_MS} ms", p95(every) <= TARGET_P95_MS and not live["missing"]),
        ("quiet minute in live mode: 0 function calls, 0 document reads",
         quiet["live"] == (0, 0) and set(quiet["live_modes"]) == {"live"}),
        (f"live reads per change per tab <= {TARGET_READS_PER_CHANGE:g}",
         propagation["reads"]["live"] / changes <= TARGET_READS_PER_CHANGE),
        ("live tab made no function call during the changes", propagation["live_calls"] == 0),
    ]
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
