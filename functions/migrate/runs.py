"""The run document `_migrations/<runId>` and what is read back from it: run ids, the store
(lease, progress writes, checkpoints), the tally of committed ranges, the views (`GET
/migrate/<runId>`, the newest runs) and the full report, streamed from the checkpoints.

`run.py` drives a run; this module is its memory, which survives a kill at any point.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.migrate.writer import BatchResult, Entry, merge_counts, new_counts
from shared.encoding import encode_value
from shared.errors import BadRequest, Conflict, NotFound, RunTakenOver
from shared.retry import retry_policy
from shared.times import format_timestamp, utc_now

RUNS_COLLECTION = "_migrations"
LEASE_S = 60.0
FIRST_ERRORS = 20
RUN_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
STATES = ("running", "paused", "failed", "completed")
# Paths of `GET /migrate/<name>` that are not runs (status.py).
RESERVED_RUN_IDS = frozenset({"status", "runs"})


@dataclass(frozen=True)
class ReportSink:
    """Where the full report goes: `response` (returned), `gcs` (bucket, name), `file` (a
    path) or `none` (only the run document and `GET /migrate/<runId>/report`)."""

    kind: str
    location: Any = None

    def describe(self) -> str | None:
        """The report's address for the run document (None when it is in the response)."""
        if self.kind == "gcs":
            return f"gs://{self.location[0]}/{self.location[1]}"
        if self.kind == "file":
            return str(self.location)
        return None


def new_run_id() -> str:
    """A readable, unique run id: UTC time plus randomness."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_run_id(run_id: str) -> str:
    """A run id is 1-100 characters of letters, digits, `-` and `_` (a safe document id)."""
    if not run_id or len(run_id) > 100 or not set(run_id) <= RUN_ID_CHARS:
        raise BadRequest("runId must be 1-100 letters, digits, '-' or '_'", code="invalid_run_id")
    if run_id in RESERVED_RUN_IDS:
        raise BadRequest(f"runId {run_id!r} is reserved (GET /migrate/{run_id} is not a run)",
                         code="invalid_run_id")
    return run_id


def default_report_name(source_name: str, run_id: str) -> str:
    """`dir/users.json` -> `dir/users.<runId>.report.json` (next to the source)."""
    stem = source_name[:-5] if source_name.lower().endswith(".json") else source_name
    return f"{stem}.{run_id}.report.json"


# --- the run document ----------------------------------------------------------------------------

class RunStore:
    """The run document and its checkpoint subcollections, written by the run's one holder."""

    def __init__(self, db: Any, run_id: str, *, timeout_s: float):
        self.db = db
        self.run_id = run_id
        self.ref = db.collection(RUNS_COLLECTION).document(run_id)
        self.timeout_s = timeout_s
        self.owner = uuid.uuid4().hex
        self.update_time: Any = None
        self.resumed: dict[str, Any] = {}  # the stored document when this call resumes a run

    @property
    def batches(self) -> Any:
        """`_migrations/<runId>/batches`: one checkpoint per committed range of records."""
        return self.ref.collection("batches")

    @property
    def deletions(self) -> Any:
        """`_migrations/<runId>/deletions`: the ids deleted (or to delete, dry run)."""
        return self.ref.collection("deletions")

    def get(self) -> dict[str, Any] | None:
        """The run document, or None."""
        snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
        return snap.to_dict() if snap.exists else None

    def begin(self, params: dict[str, Any], *, force: bool) -> dict[str, Any] | None:
        """Start or take over the run. Returns the stored document when it is already
        completed (nothing to do); raises `Conflict` when another runner holds it, or when the
        stored run was started with other parameters or another source."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        for _ in range(3):
            snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
            lease = {"owner": self.owner, "expiresAt": _after(LEASE_S)}
            if not snap.exists:
                body = {**params, "runId": self.run_id, "state": "running", "attempts": 1,
                        "counts": {**new_counts(), "read": 0}, "reasons": {},
                        "checkpoint": {"records": 0}, "firstErrors": [], "lease": lease,
                        "startedAt": firestore.SERVER_TIMESTAMP,
                        "updatedAt": firestore.SERVER_TIMESTAMP}
                try:
                    result = self.ref.create(body, timeout=self.timeout_s)
                except gexc.AlreadyExists:
                    continue
                self.update_time = result.update_time
                return None
            stored = snap.to_dict()
            _check_same_run(stored, params, self.run_id)
            if stored.get("state") == "completed":
                return stored
            if (stored.get("lease") or {}).get("owner") == self.owner:
                # Our own create or update landed although its call failed (a timeout).
                self.update_time = snap.update_time
                return None
            expires = (stored.get("lease") or {}).get("expiresAt")
            if (stored.get("state") == "running" and not force and expires is not None
                    and expires > utc_now()):
                raise Conflict(f"run {self.run_id} is in progress elsewhere (its lease ends at "
                               f"{format_timestamp(expires)}); retry later, or force",
                               code="run_in_progress")
            try:
                result = self.ref.update(
                    {"state": "running", "attempts": int(stored.get("attempts", 0)) + 1,
                     "lease": lease, "resumedAt": firestore.SERVER_TIMESTAMP,
                     "updatedAt": firestore.SERVER_TIMESTAMP, "error": firestore.DELETE_FIELD},
                    option=self.db.write_option(last_update_time=snap.update_time),
                    timeout=self.timeout_s)
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue
            self.update_time = result.update_time
            self.resumed = stored
            return None
        raise Conflict(f"run {self.run_id} is being started by someone else",
                       code="run_in_progress")

    def write(self, fields: dict[str, Any], *, final: bool = False) -> None:
        """Update the run document as its holder (renewing the lease unless `final`);
        `RunAborted` when another runner has taken the run over."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        body = {**fields, "updatedAt": firestore.SERVER_TIMESTAMP}
        body["lease"] = ({"owner": self.owner, "expiresAt": utc_now()} if final
                         else {"owner": self.owner, "expiresAt": _after(LEASE_S)})
        for _ in range(2):
            try:
                result = self.ref.update(body, timeout=self.timeout_s,
                                         retry=retry_policy(self.timeout_s),
                                         option=self.db.write_option(
                                             last_update_time=self.update_time))
            except (gexc.FailedPrecondition, gexc.NotFound):
                snap = self.ref.get(timeout=self.timeout_s, retry=retry_policy(self.timeout_s))
                owner = ((snap.to_dict() or {}).get("lease") or {}).get("owner")
                if snap.exists and owner == self.owner:
                    # A retried call whose first attempt landed: the run is still ours.
                    self.update_time = snap.update_time
                    continue
                raise RunTakenOver("run_taken_over", f"run {self.run_id} was taken over by "
                                                   "another runner; this one stops") from None
            self.update_time = result.update_time
            return
        raise RunTakenOver("run_taken_over", f"run {self.run_id}: its document keeps changing")

    def load_batches(self) -> list[BatchResult]:
        """Every committed range, by start."""
        results = [BatchResult.from_json(snap.to_dict())
                   for snap in self.batches.stream(timeout=self.timeout_s * 4)]
        return sorted(results, key=lambda result: result.start)

    def iter_entries(self) -> Iterator[Entry]:
        """The failed and skipped records of every committed range, in source order."""
        for result in self.load_batches():
            yield from sorted(result.entries, key=lambda entry: entry.index)

    def load_deleted(self) -> list[str]:
        """The ids recorded by the deletion checkpoints, in order."""
        snaps = sorted(self.deletions.stream(timeout=self.timeout_s * 4), key=lambda s: s.id)
        return [doc_id for snap in snaps for doc_id in snap.to_dict().get("ids", [])]


def _after(seconds: float) -> dt.datetime:
    return utc_now() + dt.timedelta(seconds=seconds)


_IDENTITY = ("collection", "mode", "dryRun", "deleteMissing", "shape", "root", "fingerprint")


def _check_same_run(stored: Mapping[str, Any], params: Mapping[str, Any], run_id: str) -> None:
    different = [name for name in _IDENTITY if stored.get(name) != params.get(name)]
    if different:
        raise Conflict(f"run {run_id} exists with other {', '.join(different)}: a run resumes "
                       "only with the same source and options (or use a new runId)",
                       code="run_mismatch", details={"fields": different})


def run_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The run document as JSON (timestamps as RFC 3339), without the lease owner."""
    view = {key: encode_value(value) for key, value in sorted(doc.items()) if key != "lease"}
    if isinstance(doc.get("sample"), list):
        view["sample"] = [json.loads(text) for text in doc["sample"] if isinstance(text, str)]
    lease = doc.get("lease") or {}
    if lease.get("expiresAt") is not None:
        view["leaseExpiresAt"] = encode_value(lease["expiresAt"])
    return view


# --- the tally of a run --------------------------------------------------------------------------

@dataclass
class Tally:
    """Counts of the committed ranges, the first errors and the contiguous checkpoint."""

    counts: dict[str, int] = field(default_factory=new_counts)
    reasons: dict[str, int] = field(default_factory=dict)
    first_errors: list[tuple[int, Entry]] = field(default_factory=list)  # max-heap by -index
    ranges: dict[int, int] = field(default_factory=dict)  # start -> end
    done: int = 0
    low: int = 0

    def add(self, result: BatchResult) -> None:
        """Count one committed range (each range once)."""
        if result.start in self.ranges:
            raise RunTakenOver("overlap", f"records {result.start}-{result.end - 1} were "
                                        "committed twice (two runners at once?)")
        merge_counts(self.counts, result.counts)
        merge_counts(self.reasons, result.reasons)
        for entry in result.entries:
            if entry.outcome != "failed":
                continue
            heapq.heappush(self.first_errors, (-entry.index, entry))
            if len(self.first_errors) > FIRST_ERRORS:
                heapq.heappop(self.first_errors)
        self.ranges[result.start] = result.end
        self.done += result.end - result.start
        while self.low in self.ranges:
            self.low = self.ranges[self.low]

    def errors(self) -> list[Entry]:
        """The first failures, by index."""
        return sorted((entry for _, entry in self.first_errors), key=lambda e: e.index)

    def covered(self) -> list[tuple[int, int]]:
        """The committed ranges, by start."""
        return sorted(self.ranges.items())


class Covered:
    """Answers "is this index inside a committed range?" for increasing indexes."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self.pos = 0

    def __contains__(self, index: int) -> bool:
        while self.pos < len(self.ranges) and self.ranges[self.pos][1] <= index:
            self.pos += 1
        return self.pos < len(self.ranges) and self.ranges[self.pos][0] <= index


# --- reports -------------------------------------------------------------------------------------

def report_header(run_id: str, doc: Mapping[str, Any], final: Mapping[str, Any]) -> dict:
    return {
        "runId": run_id, "collection": doc.get("collection"), "source": doc.get("source"),
        "shape": doc.get("shape"), "root": doc.get("root"), "mode": doc.get("mode"),
        "dryRun": doc.get("dryRun"), "deleteMissing": doc.get("deleteMissing"),
        "state": final.get("state", "completed"), "total": doc.get("total"),
        "counts": final.get("counts", doc.get("counts")),
        "reasons": final.get("reasons", doc.get("reasons")),
        "deletion": final.get("deletion", doc.get("deletion")),
        "warnings": doc.get("warnings", []),
        "generatedAt": format_timestamp(utc_now()),
    }


def report_chunks(store: RunStore, header: Mapping[str, Any]) -> Iterator[str]:
    """The full report as JSON text, streamed: the header, then `failures`, `skipped` and
    `deleted` read back from the checkpoints (never all in memory at once)."""
    head = json.dumps({key: encode_value(value) for key, value in header.items()},
                      ensure_ascii=False)
    yield head[:-1]
    for name, outcome in (("failures", "failed"), ("skipped", "skipped")):
        yield f', "{name}": ['
        first = True
        for entry in store.iter_entries():
            if entry.outcome == outcome:
                yield ("" if first else ", ") + json.dumps(entry.to_json(), ensure_ascii=False)
                first = False
        yield "]"
    yield ', "deleted": ['
    yield ", ".join(json.dumps(doc_id, ensure_ascii=False) for doc_id in store.load_deleted())
    yield "]}"


def report_if_kept(store: RunStore, doc: Mapping[str, Any],
                    sink: ReportSink) -> dict[str, Any] | None:
    if sink.kind != "response":
        return None
    return json.loads("".join(report_chunks(store, report_header(store.run_id, doc, doc))))


def load_run(db: Any, run_id: str, *, timeout_s: float) -> dict[str, Any]:
    """The run document as JSON; `NotFound` when there is no such run."""
    doc = RunStore(db, check_run_id(run_id), timeout_s=timeout_s).get()
    if doc is None:
        raise NotFound(f"no migration run {run_id!r}", code="not_found")
    return run_view(doc)


def stream_report(db: Any, run_id: str, *, timeout_s: float) -> Iterator[str]:
    """The full report of a run (finished or not) as streamed JSON; `NotFound` when absent."""
    store = RunStore(db, check_run_id(run_id), timeout_s=timeout_s)
    doc = store.get()
    if doc is None:
        raise NotFound(f"no migration run {run_id!r}", code="not_found")
    return report_chunks(store, report_header(run_id, doc, doc))


RUN_SUMMARY_FIELDS = ("runId", "collection", "state", "mode", "dryRun", "source", "total",
                      "counts", "startedBy", "startedAt", "updatedAt", "finishedAt",
                      "lease.expiresAt", "error")


def recent_runs(db: Any, *, limit: int, timeout_s: float) -> list[dict[str, Any]]:
    """The newest runs (by `startedAt`), summarised: no sample, no errors list, no lease owner.

    A run still `running` whose lease has expired is marked `stalled: true` (its process is
    gone; starting it again with its runId resumes it). Costs one document read per run.
    """
    from google.cloud import firestore

    query = (db.collection(RUNS_COLLECTION).select(list(RUN_SUMMARY_FIELDS))
             .order_by("startedAt", direction=firestore.Query.DESCENDING).limit(limit))
    now = utc_now()
    runs = []
    for snap in query.stream(timeout=timeout_s, retry=retry_policy(timeout_s)):
        doc = snap.to_dict()
        view = run_view({**doc, "runId": doc.get("runId") or snap.id})
        expires = (doc.get("lease") or {}).get("expiresAt")
        view["stalled"] = bool(doc.get("state") == "running" and expires is not None
                               and expires < now)
        runs.append(view)
    return runs
