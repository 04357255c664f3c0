"""`python -m functions doctor`: what is wrong with this install, one line per check.

Each line reads `ok|FAIL|skip <check>: <detail>`; the exit status is 1 when any check
failed. The checks: the settings (every missing or invalid one), a schema per collection,
Firestore answering within `FIRESTORE_TIMEOUT_S`, the snapshot bucket existing and not being
public, each collection's snapshot (present, readable, its age) and its freshness against the
newest `updatedAt` and the document count in Firestore, the snapshot publisher's last write
(`_publisher/state`), the newest migration runs (none failed or stalled), and the deployed
Firestore rules against `firestore.rules`. It runs against the emulators too (the standard
emulator variables); a check that cannot run there says `skip` and why, never `ok`.

The dashboard's status page sees the same checks through `GET /migrate/status`
(`functions/status.py`), which runs them concurrently, each with its deadline, and reads the
snapshots' counts and ages from the manifest instead of downloading them.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, Unavailable
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "firestore.rules"
RULES_API = "https://firebaserules.googleapis.com/v1"
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
REBUILD_HINT = "python -m functions rebuild"
RECENT_RUNS = 5
# Valid stand-ins so one missing required setting does not hide the next problem.
_PLACEHOLDERS = {"GOOGLE_CLOUD_PROJECT": "demo-placeholder",
                 "SNAPSHOT_BUCKET": "placeholder-bucket"}


@dataclass(frozen=True)
class Check:
    """The outcome of one check: `ok`, `FAIL` or `skip`, its name and a one-line detail."""

    status: str
    name: str
    detail: str

    @property
    def line(self) -> str:
        """`<status> <name>: <detail>`."""
        return f"{self.status} {self.name}: {self.detail}"


def ok(name: str, detail: str) -> Check:
    """A passed check."""
    return Check("ok", name, detail)


def fail(name: str, detail: str) -> Check:
    """A failed check."""
    return Check("FAIL", name, detail)


def skip(name: str, detail: str) -> Check:
    """A check that could not run, with why."""
    return Check("skip", name, detail)


# --- settings ----------------------------------------------------------------------------------

def read_settings(env: Mapping[str, str]) -> tuple[Settings | None, list[str]]:
    """The settings and every problem found (not only the first): (None, problems) if any."""
    env = dict(env)
    problems: list[str] = []
    for _ in range(64):
        try:
            settings = Settings.from_env(env)
        except ConfigError as exc:
            problems.append(exc.message)
            details = exc.details if isinstance(exc.details, dict) else {}
            name = details.get("setting")
            if name is None:
                break
            if name in _PLACEHOLDERS and env.get(name) != _PLACEHOLDERS[name]:
                env[name] = _PLACEHOLDERS[name]
            elif name in env:
                del env[name]
            else:
                break
        else:
            return (None if problems else settings), problems
    return None, problems


def check_settings(env: Mapping[str, str]) -> tuple[Settings | None, list[Check]]:
    """One `settings` line, or one FAIL line per missing or invalid setting."""
    settings, problems = read_settings(env)
    if settings is None:
        return None, [fail("settings", problem) for problem in problems]
    where = (f"emulator at {settings.environ['FIRESTORE_EMULATOR_HOST']}"
             if settings.uses_emulators else f"database {settings.database}")
    detail = (f"project {settings.project} ({where}), bucket {settings.snapshot_bucket}, "
              f"collections {','.join(settings.collections)}, reads {settings.read_access}")
    if settings.allowed_origins:
        detail += f", CORS for {','.join(sorted(settings.allowed_origins))}"
    else:
        detail += ", ALLOWED_ORIGINS empty (browsers on other origins are refused)"
    return settings, [ok("settings", detail)]


def check_schemas(settings: Settings) -> Check:
    """Every configured collection has a usable `schemas/<name>.schema.json`."""
    from shared.schema import load_schema

    problems = []
    for collection in settings.collections:
        try:
            load_schema(collection)
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        return fail("schemas", "; ".join(problems))
    return ok("schemas", f"{len(settings.collections)} found in schemas/")


# --- Firestore ---------------------------------------------------------------------------------

def within(budget_s: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """Run `call` with a hard wall-clock limit; returns (result, seconds) or raises."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="doctor")
    started = time.perf_counter()
    try:
        future = pool.submit(call)
        result = future.result(timeout=budget_s)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return result, time.perf_counter() - started


def _deadline(budget_s: float, attempt_s: float | None = None) -> dict[str, Any]:
    from google.api_core.retry import Retry, if_transient_error

    return {"retry": Retry(predicate=if_transient_error, initial=0.05, maximum=budget_s / 4,
                           multiplier=2.0, timeout=budget_s),
            "timeout": attempt_s or budget_s}


def describe(exc: BaseException) -> str:
    """A one-line account of a failed call (the cause of a retry that gave up)."""
    from google.api_core.exceptions import RetryError

    if isinstance(exc, concurrent.futures.TimeoutError):
        return "no answer"
    if isinstance(exc, RetryError) and exc.cause is not None:
        return f"retried until the deadline, last {describe(exc.cause)}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}".rstrip(": ")


def check_firestore(settings: Settings, db: Any, deadline_s: float) -> Check:
    """Firestore answers a one-document query within the deadline (after a warm-up call)."""
    query = db.collection(settings.collections[0]).limit(1)
    # The first call also opens the channel and fetches a token: it gets a larger budget,
    # the second one is what a request of the read API would see.
    cold_s = max(10.0, deadline_s * 5)
    try:
        _, first_s = within(cold_s + 1, lambda: query.get(**_deadline(deadline_s, cold_s)))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return fail("firestore", f"does not answer ({describe(exc)}); reads are served from "
                                 "the snapshots meanwhile")
    try:
        _, warm_s = within(deadline_s + 0.5, lambda: query.get(**_deadline(deadline_s)))
    except Exception as exc:  # noqa: BLE001
        return fail("firestore", f"answered once, then not within FIRESTORE_TIMEOUT_S="
                                 f"{deadline_s:g} s ({describe(exc)})")
    if warm_s > deadline_s:
        return fail("firestore", f"answered in {warm_s * 1000:.0f} ms, over FIRESTORE_TIMEOUT_S="
                                 f"{deadline_s:g} s: reads would fall back to the snapshots")
    return ok("firestore", f"answered in {warm_s * 1000:.0f} ms (first call "
                           f"{first_s * 1000:.0f} ms), within FIRESTORE_TIMEOUT_S={deadline_s:g} s")


@dataclass(frozen=True)
class Newest:
    """What Firestore says of a collection: its newest `updatedAt` and its document count."""

    updated_at: dt.datetime | None
    count: int | None


def newest_in_firestore(db: Any, collection: str, deadline_s: float) -> Newest:
    """The newest `updatedAt` (None when no document has one) and the count (None if refused)."""
    from google.cloud import firestore

    ordered = db.collection(collection).order_by("updatedAt",
                                                 direction=firestore.Query.DESCENDING)
    docs, _ = within(deadline_s + 0.5, lambda: ordered.limit(1).get(**_deadline(deadline_s)))
    updated_at = docs[0].to_dict().get("updatedAt") if docs else None
    if not isinstance(updated_at, dt.datetime):
        updated_at = None
    try:
        result, _ = within(deadline_s + 0.5,
                            lambda: db.collection(collection).count().get(**_deadline(deadline_s)))
        count = int(result[0][0].value)
    except Exception:  # noqa: BLE001 - the count only sharpens the verdict
        count = None
    return Newest(updated_at, count)


# --- Cloud Storage -----------------------------------------------------------------------------

def check_bucket(settings: Settings, storage_client: Any) -> tuple[Any | None, Check]:
    """The snapshot bucket exists and this identity may read it."""
    from google.api_core import exceptions as gexc

    name = settings.snapshot_bucket
    try:
        bucket = storage_client.get_bucket(name, timeout=settings.storage_timeout_s)
    except gexc.NotFound:
        return None, fail("bucket", f"gs://{name} does not exist (make deploy creates it)")
    except gexc.Forbidden as exc:
        return None, fail("bucket", f"gs://{name}: access denied ({describe(exc)}); the "
                                    "service account needs roles/storage.objectUser on it")
    except Exception as exc:  # noqa: BLE001
        return None, fail("bucket", f"gs://{name} unreachable ({describe(exc)})")
    location = getattr(bucket, "location", None) or "?"
    return bucket, ok("bucket", f"gs://{name} exists (location {location})")


def _public_entries(entries: Iterator[Mapping[str, Any]]) -> list[str]:
    return sorted({f"{entry.get('entity')}:{entry.get('role')}" for entry in entries
                   if entry.get("entity") in PUBLIC_MEMBERS})


def check_bucket_access(settings: Settings, bucket: Any) -> Check:
    """Nobody outside the project can read the bucket: no public IAM member, no public ACL."""
    from google.api_core import exceptions as gexc

    name = "bucket not public"
    timeout = settings.storage_timeout_s
    config = bucket.iam_configuration
    prevention = (config.public_access_prevention or "inherited").lower()
    uniform = bool(config.uniform_bucket_level_access_enabled)
    try:
        policy = bucket.get_iam_policy(requested_policy_version=3, timeout=timeout)
    except (gexc.NotFound, gexc.MethodNotImplemented, gexc.BadRequest) as exc:
        return skip(name, f"the bucket's IAM policy cannot be read here ({describe(exc)}); "
                          "the storage emulator may not implement IAM")
    except gexc.Forbidden:
        return skip(name, "this identity may not read the bucket's IAM policy "
                          "(needs storage.buckets.getIamPolicy)")
    public = sorted({f"{member} has {binding['role']}" for binding in policy.bindings
                     for member in binding.get("members", ()) if member in PUBLIC_MEMBERS})
    if not uniform:
        from shared.snapshots import snapshot_path

        acls = [bucket.acl, bucket.default_object_acl]
        acls += [bucket.blob(snapshot_path(c)).acl for c in settings.collections]
        for acl in acls:
            try:
                acl.reload(timeout=timeout)
            except gexc.NotFound:
                continue
            public += [f"ACL {entry}" for entry in _public_entries(iter(acl))]
    hardening = (f"uniform access {'on' if uniform else 'OFF'}, "
                 f"public access prevention {prevention}")
    if public and prevention != "enforced":
        return fail(name, f"gs://{bucket.name} is public: {'; '.join(public)} ({hardening}); "
                          "remove them or run make deploy, which enforces prevention")
    if settings.environ.get("STORAGE_EMULATOR_HOST"):
        return ok(name, f"no public IAM member or ACL (emulator: IAM is stored, not enforced; "
                        f"{hardening})")
    if uniform and prevention == "enforced":
        return ok(name, f"no public IAM member ({hardening})")
    return ok(name, f"no public member now, but {hardening}: make deploy hardens it")


def check_snapshot(settings: Settings, storage_client: Any, collection: str,
                   now: dt.datetime) -> tuple[Any | None, Check]:
    """The collection's snapshot exists and parses; reports its age and document count."""
    from shared.encoding import parse_timestamp
    from shared.snapshots import load_snapshot, snapshot_path

    name = f"snapshot {collection}"
    where = f"gs://{settings.snapshot_bucket}/{snapshot_path(collection)}"
    try:
        snapshot = load_snapshot(storage_client, settings.snapshot_bucket, collection,
                                 timeout_s=settings.storage_timeout_s)
    except Unavailable as exc:
        return None, fail(name, f"{where}: {exc.message}; write it with {REBUILD_HINT}")
    try:
        generated = parse_timestamp(snapshot.generated_at)
    except ValueError:
        return None, fail(name, f"{where} has no valid generatedAt; rewrite it with "
                                f"{REBUILD_HINT}")
    return (snapshot, generated), ok(name, f"{where}: {_documents(len(snapshot.items))}, "
                                           f"generated {snapshot.generated_at} "
                                           f"({_age(now - generated)} ago)")


def check_manifest_entry(settings: Settings, collection: str, entry: Mapping[str, Any] | None,
                         now: dt.datetime) -> tuple[tuple[int, dt.datetime] | None, Check]:
    """A collection's line in `snapshots/manifest.json` (what the publisher last wrote): its
    document count and age, without downloading the snapshot; (count, generated) or None."""
    from shared.encoding import parse_timestamp
    from shared.snapshots import MANIFEST_PATH

    name = f"snapshot {collection}"
    where = f"gs://{settings.snapshot_bucket}/{MANIFEST_PATH}"
    if not entry:
        return None, fail(name, f"{collection} is not listed in {where}: write its snapshot "
                                f"with {REBUILD_HINT}")
    try:
        count = int(entry["count"])
        generated = parse_timestamp(str(entry["generatedAt"]))
    except (KeyError, TypeError, ValueError):
        return None, fail(name, f"the entry of {collection} in {where} is invalid; rewrite it "
                                f"with {REBUILD_HINT}")
    return (count, generated), ok(name, f"{_documents(count)}, generated "
                                        f"{entry['generatedAt']} ({_age(now - generated)} ago), "
                                        f"as listed in {where}")


def check_freshness(collection: str, count: int, generated: dt.datetime,
                    newest: Newest) -> Check:
    """The snapshot (`count` documents, generated at `generated`) is not older than the newest
    `updatedAt` and counts the same documents as Firestore."""
    from shared.encoding import format_timestamp

    name = f"fresh {collection}"
    if newest.updated_at is not None and newest.updated_at > generated:
        return fail(name, f"stale by {_age(newest.updated_at - generated)}: a document was "
                          f"updated at {format_timestamp(newest.updated_at)}, after the "
                          f"snapshot ({format_timestamp(generated)}); run {REBUILD_HINT}")
    if newest.count is not None and newest.count != count:
        return fail(name, f"the snapshot has {_documents(count)}, Firestore "
                          f"{newest.count} (a deletion or a write without updatedAt since); "
                          f"run {REBUILD_HINT}")
    counted = ("same document count" if newest.count is not None
               else "document count not compared (count refused)")
    if newest.updated_at is None:
        return ok(name, f"no document has updatedAt; {counted}")
    return ok(name, f"newer than the newest updatedAt ({format_timestamp(newest.updated_at)}); "
                    f"{counted}")


def _documents(count: int) -> str:
    return f"{count} document{'' if count == 1 else 's'}"


def _age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"


# --- the publisher and the migrations ---------------------------------------------------------

@dataclass(frozen=True)
class PublisherState:
    """What `_publisher/state` says: the last snapshot write slot taken, and hand-overs waiting."""

    last_write_at: dt.datetime | None
    holder: str
    waiting: int


def read_publisher_state(db: Any, deadline_s: float) -> PublisherState | None:
    """The publisher's state document (one read), None when it has never published."""
    from functions.publish_snapshot import STATE_COLLECTION, STATE_DOCUMENT

    ref = db.collection(STATE_COLLECTION).document(STATE_DOCUMENT)
    snap, _ = within(deadline_s + 0.5, lambda: ref.get(**_deadline(deadline_s)))
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
    from shared.encoding import format_timestamp

    name = "publisher"
    if state is None or state.last_write_at is None:
        return ok(name, "no snapshot write by the publisher recorded yet (_publisher/state is "
                        "empty): the snapshots so far come from rebuilds and migrations")
    when = f"{format_timestamp(state.last_write_at)} ({_age(now - state.last_write_at)} ago)"
    idle_s = (now - state.last_write_at).total_seconds()
    if state.waiting and idle_s > settings.publish_wait_s:
        return fail(name, f"{state.waiting} handed-over change set(s) still wait, and no write "
                          f"since {when}: look at the publish-snapshot logs, then run "
                          f"{REBUILD_HINT}")
    return ok(name, f"last snapshot write started {when} by instance {state.holder}")


def check_migrations(runs: list[Mapping[str, Any]]) -> Check:
    """The newest migration run of each collection did not fail or stall (it would need a
    resume); `runs` is `shared.migration_run.recent_runs`, newest first."""
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
    from shared.migration_run import recent_runs

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
        from shared.clients import get_db, get_storage
        from shared.encoding import utc_now

        settings, lines = check_settings(self.env)
        self.checks.extend(lines)
        if settings is None:
            for what in ("schemas", "firestore", "bucket", "snapshots", "rules"):
                self.checks.append(skip(what, "the settings are invalid"))
            return self.checks
        self.checks.append(check_schemas(settings))
        deadline = self.deadline_s or settings.firestore_timeout_s
        db = get_db(settings)
        firestore_check = check_firestore(settings, db, deadline)
        self.checks.append(firestore_check)
        storage_client = get_storage(settings)
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


def add_arguments(parser: Any) -> None:
    """Options of `python -m functions doctor`."""
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="Firestore deadline to check against (default FIRESTORE_TIMEOUT_S)")
    parser.add_argument("--rules", type=Path, default=RULES_FILE, metavar="FILE",
                        help="the rules file the deployed rules must match "
                             "(default firestore.rules)")


def run(args: Any) -> int:
    """Print one line per check; 1 when any check failed, else 0."""
    checks = Doctor(os.environ, rules_file=args.rules, deadline_s=args.timeout).run()
    for check in checks:
        print(check.line, flush=True)
    failed = [check for check in checks if check.status == "FAIL"]
    if failed:
        print(f"doctor: {len(failed)} of {len(checks)} checks failed", file=sys.stderr)
        return 1
    return 0
