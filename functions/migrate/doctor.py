"""The doctor's checks of what runs (the snapshot publisher's last write, the newest migration
runs, the deployed Firestore rules) and `Doctor`, the whole run of `python -m ops doctor`:
every check in order, later ones skipped with why when what they need failed.

The checks of the settings, Firestore and Cloud Storage are `checks.py`'s; `GET
/migrate/status` (`status.py`) runs the same checks concurrently, each with its deadline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.migrate.checks import (
    REBUILD_HINT,
    ROOT,
    Check,
    age,
    check_bucket,
    check_bucket_access,
    check_firestore,
    check_freshness,
    check_schemas,
    check_settings,
    check_snapshot,
    describe,
    fail,
    newest_in_firestore,
    ok,
    skip,
    within,
)
from shared import retry
from shared.settings import Settings

RULES_FILE = ROOT / "firestore.rules"
RULES_API = "https://firebaserules.googleapis.com/v1"
RECENT_RUNS = 5


# --- the publisher and the migrations ---------------------------------------------------------

@dataclass(frozen=True)
class PublisherState:
    """What `_publisher/state` says: the last snapshot write slot taken, and hand-overs waiting."""

    last_write_at: dt.datetime | None
    holder: str
    waiting: int


def read_publisher_state(db: Any, deadline_s: float) -> PublisherState | None:
    """The publisher's state document (one read), None when it has never published."""
    from functions.publish.publisher import STATE_COLLECTION, STATE_DOCUMENT

    ref = db.collection(STATE_COLLECTION).document(STATE_DOCUMENT)
    snap, _ = within(deadline_s + 0.5, lambda: ref.get(**retry.deadline(deadline_s)))
    if not snap.exists:
        return None
    data = snap.to_dict() or {}
    taken = data.get("takenAt")
    last = (dt.datetime.fromtimestamp(float(taken), dt.UTC)
            if isinstance(taken, (int, float)) else None)
    waiting = max(0, int(data.get("pendingSeq") or 0) - int(data.get("coveredSeq") or 0))
    return PublisherState(last, str(data.get("holder") or "?"), waiting)


def check_publisher(settings: Settings, state: PublisherState | None,
                    now: dt.datetime) -> Check:
    """The snapshot publisher's last write, and no hand-over left waiting past PUBLISH_WAIT_S."""
    from shared.times import format_timestamp

    name = "publisher"
    if state is None or state.last_write_at is None:
        return ok(name, "no snapshot write by the publisher recorded yet (_publisher/state is "
                        "empty): the snapshots so far come from rebuilds and migrations")
    when = f"{format_timestamp(state.last_write_at)} ({age(now - state.last_write_at)} ago)"
    idle_s = (now - state.last_write_at).total_seconds()
    if state.waiting and idle_s > settings.publish_wait_s:
        return fail(name, f"{state.waiting} handed-over change set(s) still wait, and no write "
                          f"since {when}: look at the publish-snapshot logs, then run "
                          f"{REBUILD_HINT}")
    return ok(name, f"last snapshot write started {when} by instance {state.holder}")


def check_migrations(runs: list[Mapping[str, Any]]) -> Check:
    """The newest migration run of each collection did not fail or stall (it would need a
    resume); `runs` is `runs.recent_runs`, newest first."""
    name = "migrations"
    if not runs:
        return ok(name, "no migration has run yet")
    newest_per_collection: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        newest_per_collection.setdefault(str(run.get("collection")), run)
    broken = [run for run in newest_per_collection.values()
              if run.get("state") == "failed" or run.get("stalled")]
    if broken:
        run = broken[0]
        why = ("its process is gone (lease expired)" if run.get("stalled")
               else (run.get("error") or {}).get("message", "failed"))
        return fail(name, f"run {run.get('runId')} ({run.get('collection')}) stopped: {why}; "
                          "start it again with the same runId and input to resume it")
    latest = runs[0]
    counts = latest.get("counts") or {}
    return ok(name, f"{len(runs)} recent; the newest, {latest.get('runId')} "
                    f"({latest.get('collection')}{', dry run' if latest.get('dryRun') else ''}), "
                    f"is {latest.get('state')}: {counts.get('written', 0)} written, "
                    f"{counts.get('failed', 0)} failed of {latest.get('total', '?')}")


def publisher_check(settings: Settings, db: Any, now: dt.datetime,
                    deadline_s: float) -> tuple[Check, PublisherState | None]:
    """Read `_publisher/state` and judge it: (the `publisher` check, the state read)."""
    try:
        state = read_publisher_state(db, deadline_s)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return fail("publisher", f"cannot read _publisher/state ({describe(exc)})"), None
    return check_publisher(settings, state, now), state


def migrations_check(db: Any, deadline_s: float) -> tuple[Check, list[dict[str, Any]]]:
    """List the newest runs and judge them: (the `migrations` check, the runs)."""
    from functions.migrate.runs import recent_runs

    try:
        runs, _ = within(deadline_s + 0.5, lambda: recent_runs(db, limit=RECENT_RUNS,
                                                                timeout_s=deadline_s))
    except Exception as exc:  # noqa: BLE001
        return fail("migrations", f"cannot list _migrations ({describe(exc)})"), []
    return check_migrations(runs), runs


# --- deployed rules ----------------------------------------------------------------------------

def _normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def check_rules(settings: Settings, rules_file: Path, *,
                session_factory: Callable[[], Any] | None = None) -> Check:
    """The Firestore rules released in the project are the repository's `firestore.rules`."""
    name = "rules"
    if settings.uses_emulators:
        return skip(name, "the Firestore emulator has no deployed rules to compare; "
                          f"{rules_file.name} is released by make deploy")
    try:
        local = rules_file.read_text(encoding="utf-8")
    except OSError as exc:
        return fail(name, f"cannot read {rules_file}: {exc}")
    release = "cloud.firestore" if settings.database == "(default)" \
        else f"cloud.firestore/{settings.database}"
    try:
        session = (session_factory or _authorized_session)()
        response = session.get(f"{RULES_API}/projects/{settings.project}/releases/{release}",
                               timeout=settings.storage_timeout_s)
        if response.status_code == 404:
            return fail(name, f"no Firestore rules released in {settings.project}: run "
                              "firebase deploy --only firestore:rules")
        if response.status_code in (401, 403):
            return skip(name, f"cannot read the deployed rules (HTTP {response.status_code}: "
                              "needs roles/firebaserules.viewer)")
        response.raise_for_status()
        ruleset = session.get(f"{RULES_API}/{response.json()['rulesetName']}",
                              timeout=settings.storage_timeout_s)
        ruleset.raise_for_status()
        files = ruleset.json().get("source", {}).get("files", [])
    except Exception as exc:  # noqa: BLE001 - unreadable is a skip, never a pass
        return skip(name, f"cannot read the deployed rules ({describe(exc)})")
    deployed = "\n".join(file.get("content", "") for file in files)
    if _normalized(deployed) != _normalized(local):
        return fail(name, f"the deployed rules differ from {rules_file.name}: run "
                          "firebase deploy --only firestore:rules")
    return ok(name, f"the deployed rules match {rules_file.name}")


def _authorized_session() -> Any:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


# --- the whole run -----------------------------------------------------------------------------

@dataclass
class Doctor:
    """Runs every check in order; later checks skip with why when what they need failed."""

    env: Mapping[str, str]
    rules_file: Path = RULES_FILE
    deadline_s: float | None = None
    checks: list[Check] = field(default_factory=list)

    def run(self) -> list[Check]:
        """Every check of this install, in order."""
        from shared.clients import Clients

        settings, lines = check_settings(self.env)
        self.checks.extend(lines)
        if settings is None:
            for what in ("schemas", "firestore", "bucket", "snapshots", "rules"):
                self.checks.append(skip(what, "the settings are invalid"))
            return self.checks
        self.checks.append(check_schemas(settings))
        clients = Clients(settings)
        try:
            return self._run(settings, clients, self.deadline_s or settings.firestore_timeout_s)
        finally:
            clients.close()

    def _run(self, settings: Settings, clients: Any, deadline: float) -> list[Check]:
        from shared.times import utc_now

        db = clients.db()
        firestore_check = check_firestore(settings, db, deadline)
        self.checks.append(firestore_check)
        storage_client = clients.storage()
        bucket, bucket_check = check_bucket(settings, storage_client)
        self.checks.append(bucket_check)
        if bucket is None:
            self.checks.append(skip("bucket not public", "no bucket to inspect"))
        else:
            self.checks.append(check_bucket_access(settings, bucket))
        now = utc_now()
        for collection in settings.collections:
            self._snapshot_checks(settings, db, storage_client, bucket, collection, now,
                                  firestore_up=firestore_check.status == "ok",
                                  deadline_s=deadline)
        self.checks.extend(self._firestore_state_checks(
            settings, db, now, firestore_up=firestore_check.status == "ok", deadline_s=deadline))
        self.checks.append(check_rules(settings, self.rules_file))
        return self.checks

    @staticmethod
    def _firestore_state_checks(settings: Settings, db: Any, now: dt.datetime, *,
                                firestore_up: bool, deadline_s: float) -> list[Check]:
        if not firestore_up:
            why = "Firestore did not answer: its state cannot be read"
            return [skip("publisher", why), skip("migrations", why)]
        return [publisher_check(settings, db, now, deadline_s)[0],
                migrations_check(db, deadline_s)[0]]

    def _snapshot_checks(self, settings: Settings, db: Any, storage_client: Any, bucket: Any,
                         collection: str, now: dt.datetime, *, firestore_up: bool,
                         deadline_s: float) -> None:
        if bucket is None:
            self.checks.append(skip(f"snapshot {collection}", "no bucket"))
            self.checks.append(skip(f"fresh {collection}", "no bucket"))
            return
        found, check = check_snapshot(settings, storage_client, collection, now)
        self.checks.append(check)
        if found is None:
            self.checks.append(skip(f"fresh {collection}", "no readable snapshot"))
            return
        if not firestore_up:
            self.checks.append(skip(f"fresh {collection}",
                                    "Firestore did not answer: nothing to compare with"))
            return
        try:
            newest = newest_in_firestore(db, collection, deadline_s)
        except Exception as exc:  # noqa: BLE001
            self.checks.append(fail(f"fresh {collection}",
                                    f"cannot read the newest updatedAt ({describe(exc)})"))
            return
        self.checks.append(check_freshness(collection, len(found[0].items), found[1], newest))
