"""The doctor's checks of the settings, Firestore and Cloud Storage: what is wrong with this
install, one `Check` each (`python -m ops doctor` prints one line per check).

The checks (with `doctor.py`'s): the settings (every missing or invalid one), a schema per
collection, Firestore answering within `FIRESTORE_TIMEOUT_S`, the snapshot bucket existing and
not being public, each collection's snapshot (present, readable, its age) and its freshness
against the newest `updatedAt` and the document count in Firestore, the snapshot publisher's
last write (`_publisher/state`), the newest migration runs (none failed or stalled), and the
deployed Firestore rules against `firestore.rules`. It runs against the emulators too (the
standard emulator variables); a check that cannot run there says `skip` and why, never `ok`.

The dashboard's status page sees the same checks through `GET /migrate/status`
(`status.py`), which runs them concurrently, each with its deadline, and reads the
snapshots' counts and ages from the manifest instead of downloading them.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import retry
from shared.errors import ConfigError, Unavailable
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
REBUILD_HINT = "python -m ops rebuild"
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
        _, first_s = within(cold_s + 1, lambda: query.get(**retry.deadline(deadline_s, cold_s)))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return fail("firestore", f"does not answer ({describe(exc)}); reads are served from "
                                 "the snapshots meanwhile")
    try:
        _, warm_s = within(deadline_s + 0.5, lambda: query.get(**retry.deadline(deadline_s)))
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
    docs, _ = within(deadline_s + 0.5, lambda: ordered.limit(1).get(**retry.deadline(deadline_s)))
    updated_at = docs[0].to_dict().get("updatedAt") if docs else None
    if not isinstance(updated_at, dt.datetime):
        updated_at = None
    try:
        count_query = db.collection(collection).count()
        result, _ = within(deadline_s + 0.5,
                           lambda: count_query.get(**retry.deadline(deadline_s)))
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
        from shared.snapshot_parts import index_path

        acls = [bucket.acl, bucket.default_object_acl]
        acls += [bucket.blob(index_path(c)).acl for c in settings.collections]
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
    from shared.snapshot_parts import index_path
    from shared.snapshots import load_snapshot
    from shared.times import parse_timestamp

    name = f"snapshot {collection}"
    where = f"gs://{settings.snapshot_bucket}/{index_path(collection)}"
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
                                           f"({age(now - generated)} ago)")


def check_manifest_entry(settings: Settings, collection: str, entry: Mapping[str, Any] | None,
                         now: dt.datetime) -> tuple[tuple[int, dt.datetime] | None, Check]:
    """A collection's line in `snapshots/manifest.json` (what the publisher last wrote): its
    document count and age, without downloading the snapshot; (count, generated) or None."""
    from shared.snapshot_format import MANIFEST_PATH
    from shared.times import parse_timestamp

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
                                        f"{entry['generatedAt']} ({age(now - generated)} ago), "
                                        f"as listed in {where}")


def check_freshness(collection: str, count: int, generated: dt.datetime,
                    newest: Newest) -> Check:
    """The snapshot (`count` documents, generated at `generated`) is not older than the newest
    `updatedAt` and counts the same documents as Firestore."""
    from shared.times import format_timestamp

    name = f"fresh {collection}"
    if newest.updated_at is not None and newest.updated_at > generated:
        return fail(name, f"stale by {age(newest.updated_at - generated)}: a document was "
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


def age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"
