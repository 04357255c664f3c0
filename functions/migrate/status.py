"""The dashboard's view of the backend: `GET /migrate/status` and `GET /migrate/runs` (admin only).

    GET /migrate/status          the doctor's checks, each with its latency, plus the facts
                                 behind them (snapshot counts and ages from the manifest, the
                                 publisher's last write, the newest migration runs)
    GET /migrate/runs[?limit=N]  the newest migration runs (1-20, default 5), the collections
                                 and the body limit: what the migration panel needs to start

Both are routes of the `migrate` function (no new entry point to deploy). The checks are
`checks.py`'s and `doctor.py`'s own, so the page and `python -m ops doctor` say the same
things in the same words; here they run concurrently, each bounded by a deadline, and a check that
passes its deadline is a FAIL that says so. Checks that need Firestore are skipped, with why,
when Firestore does not answer (as the doctor does).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from functions.migrate import checks, doctor
from shared.errors import BadRequest
from shared.settings import Settings

STATUS_WORKERS = 8
MAX_RUNS = 20
DEFAULT_RUNS = doctor.RECENT_RUNS
# The first Firestore call of an instance opens its channel: the doctor gives it a larger
# budget (see checks.check_firestore); the status page waits that long at most.
FIRESTORE_CHECK_BUDGET_S = 12.0


@dataclass
class TimedCheck:
    """A doctor check with the seconds it took (and, for some, the facts behind it)."""

    check: checks.Check
    seconds: float
    facts: Any = None

    def to_json(self) -> dict[str, Any]:
        """`{"name", "status", "detail", "latencyMs"}`."""
        return {"name": self.check.name, "status": self.check.status,
                "detail": self.check.detail, "latencyMs": round(self.seconds * 1000, 1)}


def runs_view(settings: Settings, db: Any, principal: Any, limit_arg: str | None) -> dict:
    """The body of `GET /migrate/runs`: the newest runs, the collections, the body limit."""
    from functions.migrate.runs import recent_runs

    limit = _limit(limit_arg)
    return {"runs": recent_runs(db, limit=limit, timeout_s=settings.firestore_timeout_s),
            "collections": list(settings.collections), "maxBodyBytes": settings.max_body_bytes,
            "principal": _principal(principal)}


def status_view(settings: Settings, db: Callable[[], Any], storage: Callable[[], Any],
                principal: Any) -> dict[str, Any]:
    """The body of `GET /migrate/status`: every check of the doctor, in the doctor's order."""
    from shared.times import format_timestamp, utc_now

    started = time.perf_counter()
    now = utc_now()
    deadline_s = settings.firestore_timeout_s
    pool = concurrent.futures.ThreadPoolExecutor(STATUS_WORKERS, thread_name_prefix="status")
    try:
        firestore = pool.submit(_timed, "firestore", FIRESTORE_CHECK_BUDGET_S,
                                lambda: (checks.check_firestore(settings, db(), deadline_s), None))
        bucket = pool.submit(_bucket_checks, settings, storage)
        snapshots = pool.submit(_manifest_checks, settings, storage, now)
        rules = pool.submit(_timed, "rules", settings.storage_timeout_s * 2 + 1,
                            lambda: (doctor.check_rules(settings, doctor.RULES_FILE), None))
        state = _firestore_state(settings, db, now, snapshots.result(), pool,
                                 firestore_up=firestore.result().check.status == "ok")
        _, settings_checks = checks.check_settings(settings.environ)
        ordered = [*(TimedCheck(check, 0.0) for check in settings_checks),
                   _timed("schemas", 5.0, lambda: (checks.check_schemas(settings), None)),
                   firestore.result(), *bucket.result()]
        for collection in settings.collections:
            ordered += [snapshots.result()[collection], state["fresh"][collection]]
        ordered += [state["publisher"], state["migrations"], rules.result()]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return {
        "checkedAt": format_timestamp(now),
        "latencyMs": round((time.perf_counter() - started) * 1000, 1),
        "project": settings.project,
        "collections": list(settings.collections),
        "maxBodyBytes": settings.max_body_bytes,
        "principal": _principal(principal),
        "checks": [timed.to_json() for timed in ordered],
        "snapshots": {collection: _snapshot_facts(snapshots.result()[collection],
                                                  state["fresh"][collection])
                      for collection in settings.collections},
        "publisher": state["publisher"].facts,
        "runs": state["migrations"].facts or [],
    }


# --- the checks, timed -------------------------------------------------------------------------

def _timed(name: str, budget_s: float,
           call: Callable[[], tuple[checks.Check, Any]]) -> TimedCheck:
    """Run one check with a hard deadline (`checks.within`); past it, or on an error, a FAIL."""
    started = time.perf_counter()
    try:
        (check, facts), _ = checks.within(budget_s, call)
    except concurrent.futures.TimeoutError:
        check, facts = checks.fail(name, f"no answer within {budget_s:g} s"), None
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        check, facts = checks.fail(name, f"the check failed ({checks.describe(exc)})"), None
    return TimedCheck(check, time.perf_counter() - started, facts)


def _bucket_checks(settings: Settings, storage: Callable[[], Any]) -> list[TimedCheck]:
    budget = settings.storage_timeout_s + 1

    def find() -> tuple[checks.Check, Any]:
        bucket, check = checks.check_bucket(settings, storage())
        return check, bucket

    found = _timed("bucket", budget, find)
    if found.facts is None:
        return [found, TimedCheck(checks.skip("bucket not public", "no bucket to inspect"), 0)]
    access = _timed("bucket not public", budget * 2,
                    lambda: (checks.check_bucket_access(settings, found.facts), None))
    return [found, access]


def _manifest_checks(settings: Settings, storage: Callable[[], Any],
                     now: Any) -> dict[str, TimedCheck]:
    """`snapshot <collection>` from one read of the manifest (count and age of each)."""
    from shared.snapshots import load_manifest

    def read() -> tuple[checks.Check, Any]:
        entries, _ = load_manifest(storage(), settings.snapshot_bucket,
                                   timeout_s=settings.storage_timeout_s)
        return checks.ok("manifest", "read"), entries

    manifest = _timed("manifest", settings.storage_timeout_s + 1, read)
    timed = {}
    for collection in settings.collections:
        if manifest.facts is None:
            timed[collection] = TimedCheck(checks.fail(
                f"snapshot {collection}", f"the snapshot manifest cannot be read: "
                                          f"{manifest.check.detail}"), manifest.seconds)
            continue
        found, check = checks.check_manifest_entry(settings, collection,
                                                   manifest.facts.get(collection), now)
        timed[collection] = TimedCheck(check, manifest.seconds, found)
    return timed


def _firestore_state(settings: Settings, db: Callable[[], Any], now: Any,
                     snapshots: Mapping[str, TimedCheck], pool: concurrent.futures.Executor, *,
                     firestore_up: bool) -> dict[str, Any]:
    """The checks that read Firestore: freshness per collection, the publisher, the runs."""
    deadline_s = settings.firestore_timeout_s
    budget = deadline_s * 2 + 1
    if not firestore_up:
        why = "Firestore did not answer: nothing to compare with"
        return {"fresh": {c: TimedCheck(checks.skip(f"fresh {c}", why), 0)
                          for c in settings.collections},
                "publisher": TimedCheck(checks.skip("publisher", why), 0),
                "migrations": TimedCheck(checks.skip("migrations", why), 0)}

    def fresh(collection: str) -> tuple[checks.Check, Any]:
        name = f"fresh {collection}"
        found = snapshots[collection].facts
        if found is None:
            return checks.skip(name, "no readable snapshot entry"), None
        newest = checks.newest_in_firestore(db(), collection, deadline_s)
        return checks.check_freshness(collection, found[0], found[1], newest), newest

    def publisher() -> tuple[checks.Check, Any]:
        check, state = doctor.publisher_check(settings, db(), now, deadline_s)
        return check, _publisher_facts(state)

    futures = {c: pool.submit(_timed, f"fresh {c}", budget, lambda c=c: fresh(c))
               for c in settings.collections}
    pub = pool.submit(_timed, "publisher", budget, publisher)
    runs = pool.submit(_timed, "migrations", budget,
                       lambda: doctor.migrations_check(db(), deadline_s))
    return {"fresh": {c: future.result() for c, future in futures.items()},
            "publisher": pub.result(), "migrations": runs.result()}


# --- the facts ----------------------------------------------------------------------------------

def _snapshot_facts(snapshot: TimedCheck, fresh: TimedCheck) -> dict[str, Any] | None:
    from shared.times import format_timestamp

    if snapshot.facts is None:
        return None
    count, generated = snapshot.facts
    facts: dict[str, Any] = {"count": count, "generatedAt": format_timestamp(generated)}
    newest = fresh.facts
    if newest is not None:
        facts["firestoreCount"] = newest.count
        facts["newestUpdatedAt"] = (None if newest.updated_at is None
                                    else format_timestamp(newest.updated_at))
    return facts


def _publisher_facts(state: doctor.PublisherState | None) -> dict[str, Any] | None:
    from shared.times import format_timestamp

    if state is None:
        return None
    return {"lastWriteAt": None if state.last_write_at is None
            else format_timestamp(state.last_write_at),
            "holder": state.holder, "waiting": state.waiting}


def _principal(principal: Any) -> dict[str, Any]:
    return {"uid": principal.uid, "email": principal.email, "admin": principal.admin}


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_RUNS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RUNS:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_RUNS}",
                         code="invalid_parameter")
    return int(raw)
