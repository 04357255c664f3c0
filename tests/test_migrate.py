"""The migration against the emulators: shapes, the messy set, modes, re-runs, failures, access.

Runs go through the three doors of the one code path: `run_migration` in-process, the CLI
(`python -m ops migrate`, in-process through `ops.__main__.main`) and the HTTP
function built by functions-framework from main.py (`dev.app.create_stack_app`). ID tokens are
unsigned emulator tokens: with FIREBASE_AUTH_EMULATOR_HOST set and a demo- project,
firebase-admin 7.7.0 skips the signature check (`_token_gen.TokenVerifier.verify`), and
everything after it (audience, issuer, subject, the admin claim) is still checked.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from functions.migrate.run import MigrationOptions, run_migration
from functions.migrate.runs import ReportSink
from functions.migrate.source import bytes_source
from shared.settings import Settings

UTC = dt.UTC
LEGACY = Path(__file__).resolve().parent.parent / "data" / "legacy"
MESSY = Path(__file__).resolve().parent / "data" / "legacy-messy"  # copy of ../shared/data

# The defects of ../shared/data/legacy-messy: index -> reason.
MESSY_USERS = {43: "schema", 60: "missing_id", 76: "duplicate_id", 87: "schema",
               96: "too_large", 101: "invalid_id", 115: "not_an_object", 118: "schema",
               119: "invalid_id"}
MESSY_JOBS = {25: "missing_id", 54: "schema", 94: "not_an_object"}


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture
def migrate_env(emulator_env, monkeypatch, fresh_instance):
    """The emulator environment, the auth emulator's token rules, no ramp-up wait."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    monkeypatch.setenv("MIGRATION_START_OPS_S", "1000000")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://dash.example.org")
    return emulator_env


@pytest.fixture
def settings(migrate_env) -> Settings:
    return Settings.from_env()


@pytest.fixture
def app(migrate_env):
    """The `migrate` function as Cloud Functions runs it (functions-framework over main.py)."""
    from dev.app import create_stack_app

    return Client(create_stack_app({"migrate": "http"}))


def emulator_token(project: str, *, admin: bool = True, **claims: Any) -> str:
    """An unsigned ID token as the auth emulator issues them (alg none)."""
    now = int(time.time())
    payload = {"iss": f"https://securetoken.google.com/{project}", "aud": project,
               "sub": "admin-uid", "user_id": "admin-uid", "iat": now, "exp": now + 3600,
               "auth_time": now, "email": "ops@example.org",
               "firebase": {"sign_in_provider": "password"}, **claims}
    if admin:
        payload["admin"] = True

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def auth(project: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator_token(project, **kwargs)}"}


def migrate(db, storage_client, settings, payload, **options):
    """One in-process run over `payload` (JSON-encoded unless bytes), report in the outcome."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    options.setdefault("collection", "users")
    budget = options.pop("time_budget_s", None)
    on_progress = options.pop("on_progress", None)
    return run_migration(db, lambda: storage_client, settings, MigrationOptions(**options),
                         bytes_source(data), report=ReportSink("response"),
                         time_budget_s=budget, on_progress=on_progress)


def documents(db, collection: str = "users") -> dict[str, dict[str, Any]]:
    return {snap.id: snap.to_dict() for snap in db.collection(collection).stream()}


def update_times(db, collection: str = "users") -> dict[str, Any]:
    return {snap.id: snap.update_time for snap in db.collection(collection).stream()}


def without_stamps(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc_id: {k: v for k, v in data.items() if k != "updatedAt"}
            for doc_id, data in docs.items()}


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"u_{i:04d}", "name": f"User {i}", "email": f"User{i}@Example.com",
            "role": "creator", "status": "active", "hourlyRate": 50 + i,
            "createdAt": f"2023-01-{1 + i % 28:02d}T10:00:00Z", **extra}


def check_identity(counts: dict[str, int], total: int) -> None:
    assert counts["read"] == total
    assert counts["written"] + counts["unchanged"] + counts["skipped"] + counts["failed"] == total
    assert counts["written"] == counts["created"] + counts["updated"]


def cli(*args: str) -> int:
    from ops.__main__ import main

    return main(["migrate", *args, "--progress", "none"])


# --- the sample and the messy files ----------------------------------------------------------

def test_sample_files_migrate_with_timestamps_and_a_snapshot(settings, firestore_client,
                                                            storage_client, tmp_path, capsys):
    from shared.snapshots import load_snapshot

    for collection, count in (("users", 240), ("jobs", 360)):
        report = tmp_path / f"{collection}.report.json"
        assert cli(str(LEGACY / f"{collection}.json"), "--collection", collection,
                   "--report", str(report)) == 0
        out = capsys.readouterr().out
        assert "completed" in out and f"snapshot rebuilt ({count} documents)" in out
        body = json.loads(report.read_text())
        assert body["counts"]["written"] == body["counts"]["created"] == count
        assert body["failures"] == [] and body["shape"] == "wrapped"
        check_identity(body["counts"], count)
        snapshot = load_snapshot(storage_client, settings.snapshot_bucket, collection,
                                 timeout_s=10)
        assert len(snapshot.items) == count
    users = documents(firestore_client, "users")
    first = users["u_0700000"]
    assert first["createdAt"] == dt.datetime(2023, 10, 15, 12, 2, tzinfo=UTC)
    assert users["u_0700001"]["createdAt"] == dt.datetime(2023, 3, 8, tzinfo=UTC)
    assert all(isinstance(doc["createdAt"], dt.datetime) and isinstance(doc["updatedAt"],
                                                                        dt.datetime)
               for doc in users.values())
    assert all(doc["email"] == doc["email"].lower() for doc in users.values())
    raw = json.loads((LEGACY / "jobs.json").read_text())["jobs"]
    jobs = documents(firestore_client, "jobs")
    us_dated = next(job for job in raw if "/" in str(job["dueDate"]))
    month, day, year = (int(part) for part in us_dated["dueDate"].split("/"))
    assert jobs[us_dated["id"]]["dueDate"] == dt.datetime(year, month, day, tzinfo=UTC)
    epoch = next(job for job in raw if isinstance(job["createdAt"], int))
    assert jobs[epoch["id"]]["createdAt"] == dt.datetime.fromtimestamp(
        epoch["createdAt"] / 1000, tz=UTC)


@pytest.mark.parametrize(("collection", "defects", "total"),
                         [("users", MESSY_USERS, 129), ("jobs", MESSY_JOBS, 154)])
def test_messy_files_account_for_every_record(settings, firestore_client, tmp_path, capsys,
                                              collection, defects, total):
    report = tmp_path / "report.json"
    code = cli(str(MESSY / f"{collection}.json"), "--collection", collection,
               "--report", str(report))
    assert code == 1  # some records failed
    body = json.loads(report.read_text())
    assert {entry["index"]: entry["reason"] for entry in body["failures"]} == defects
    counts = body["counts"]
    check_identity(counts, total)
    assert counts["failed"] == len(defects) and counts["written"] == total - len(defects)
    assert len(documents(firestore_client, collection)) == total - len(defects)
    by_index = {entry["index"]: entry for entry in body["failures"]}
    if collection == "users":
        assert by_index[76]["id"] == "u_1100000" and "record 3" in by_index[76]["message"]
        assert by_index[119]["id"] == "bad/slash"
        assert {item["field"] for item in by_index[87]["fields"]} >= {"hourlyRate"}
        assert {item["field"] for item in by_index[43]["fields"]} >= {"createdAt"}
        # the first record with the duplicated id is the one stored
        assert documents(firestore_client)["u_1100000"]["name"] == "Yuki Mensah"
    out = capsys.readouterr().out
    for reason in set(defects.values()):
        assert reason in out


# --- shapes, dry runs, re-runs, modes --------------------------------------------------------

@pytest.mark.parametrize("shape", ["array", "wrapped", "keyed"])
def test_each_input_shape_through_http(app, firestore_client, project_id, shape):
    records = [user(i) for i in range(5)]
    payload: Any = {
        "array": records,
        "wrapped": {"lastUpdated": "2025-06-01T12:00:00Z", "users": records, "version": 3},
        "keyed": {record["id"]: {k: v for k, v in record.items() if k != "id"}
                  for record in records},
    }[shape]
    response = app.post("/migrate?collection=users", data=json.dumps(payload),
                        headers=auth(project_id), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    run = response.json["run"]
    assert run["shape"] == shape and run["state"] == "completed"
    assert run["counts"]["created"] == 5 and response.json["report"]["failures"] == []
    stored = documents(firestore_client)
    assert sorted(stored) == [f"u_{i:04d}" for i in range(5)]
    assert stored["u_0003"]["email"] == "user3@example.com" and "id" not in stored["u_0003"]


def test_dry_run_validates_everything_and_writes_nothing(settings, firestore_client,
                                                        storage_client):
    firestore_client.collection("users").document("u_0001").set(
        {**{k: v for k, v in user(1).items() if k != "id"}, "name": "Old"})
    records = [user(i) for i in range(4)] + [{"id": "bad/id"}]
    before = update_times(firestore_client)
    outcome = migrate(firestore_client, storage_client, settings, records, dry_run=True)
    counts = outcome.run["counts"]
    assert counts["created"] == 3 and counts["updated"] == 1 and counts["failed"] == 1
    check_identity(counts, 5)
    assert update_times(firestore_client) == before  # nothing written to the collection
    assert outcome.run["dryRun"] is True and outcome.run["snapshot"]["rebuilt"] is False
    assert outcome.report["failures"][0]["reason"] == "invalid_id"


def test_a_rerun_writes_nothing_new(settings, firestore_client, storage_client, monkeypatch):
    import shared.snapshots

    rebuilds = []
    real = shared.snapshots.rebuild_snapshot
    monkeypatch.setattr(shared.snapshots, "rebuild_snapshot",
                        lambda *a, **k: rebuilds.append(a[3]) or real(*a, **k))
    undated = {k: v for k, v in user(40).items() if k != "createdAt"}
    records = [user(i) for i in range(30)] + [undated]
    first = migrate(firestore_client, storage_client, settings, records, batch_size=7)
    assert first.run["counts"]["created"] == 31 and rebuilds == ["users"]
    stamped = documents(firestore_client)["u_0040"]["createdAt"]  # server time: none in source
    before = update_times(firestore_client)
    second = migrate(firestore_client, storage_client, settings, records, batch_size=7)
    assert second.run["counts"]["unchanged"] == 31 and second.run["counts"]["written"] == 0
    assert update_times(firestore_client) == before
    assert documents(firestore_client)["u_0040"]["createdAt"] == stamped
    assert second.run["snapshot"] == {"rebuilt": False, "reason": "nothing changed"}
    assert rebuilds == ["users"]  # once for the first run, never per document


def test_modes_upsert_create_and_replace(settings, firestore_client, storage_client):
    coll = firestore_client.collection("users")
    created = dt.datetime(2020, 1, 1, tzinfo=UTC)
    base = {k: v for k, v in user(1).items() if k not in ("id", "createdAt")}
    coll.document("u_0001").set({**base, "name": "Old", "bio": "kept?", "createdAt": created,
                                 "updatedAt": created})
    source = [{k: v for k, v in user(1).items() if k != "createdAt"}, user(2)]

    outcome = migrate(firestore_client, storage_client, settings, source, mode="create")
    counts = outcome.run["counts"]
    assert (counts["created"], counts["skipped"], counts["updated"]) == (1, 1, 0)
    assert outcome.report["skipped"][0]["reason"] == "exists"
    assert coll.document("u_0001").get().to_dict()["name"] == "Old"

    outcome = migrate(firestore_client, storage_client, settings, source, mode="upsert")
    assert outcome.run["counts"]["updated"] == 1 and outcome.run["counts"]["unchanged"] == 1
    doc = coll.document("u_0001").get().to_dict()
    assert doc["name"] == "User 1" and doc["bio"] == "kept?" and doc["createdAt"] == created

    outcome = migrate(firestore_client, storage_client, settings, source, mode="replace")
    assert outcome.run["counts"]["updated"] == 1
    doc = coll.document("u_0001").get().to_dict()
    assert "bio" not in doc and doc["createdAt"] == created and doc["updatedAt"] > created
    again = migrate(firestore_client, storage_client, settings, source, mode="replace")
    assert again.run["counts"]["unchanged"] == 2


def test_delete_missing_only_after_a_clean_run(settings, firestore_client, storage_client):
    migrate(firestore_client, storage_client, settings, [user(i) for i in range(6)])
    smaller = [user(i) for i in range(3)] + [{"id": "u_bad", "name": "x"}]
    outcome = migrate(firestore_client, storage_client, settings, smaller, delete_missing=True)
    assert outcome.run["deletion"]["done"] is False and outcome.run["counts"]["deleted"] == 0
    assert len(documents(firestore_client)) == 6

    dry = migrate(firestore_client, storage_client, settings, smaller[:3], delete_missing=True,
                  dry_run=True)
    assert dry.report["deleted"] == ["u_0003", "u_0004", "u_0005"]
    assert len(documents(firestore_client)) == 6

    outcome = migrate(firestore_client, storage_client, settings, smaller[:3],
                      delete_missing=True)
    assert outcome.run["counts"]["deleted"] == 3 and outcome.run["deletion"]["done"] is True
    assert outcome.report["deleted"] == ["u_0003", "u_0004", "u_0005"]
    assert sorted(documents(firestore_client)) == ["u_0000", "u_0001", "u_0002"]

    empty = migrate(firestore_client, storage_client, settings, [], delete_missing=True)
    assert empty.run["deletion"]["done"] is False and "no records" in \
        empty.run["deletion"]["reason"]
    assert len(documents(firestore_client)) == 3


# --- failures are reported, not lost ---------------------------------------------------------

class FaultyClient:
    """A Firestore client whose batch commits pass through `before_commit` first (and
    `after_commit` once the commit is applied)."""

    def __init__(self, client: Any, before_commit: Any, after_commit: Any = None):
        self._client = client
        self._before_commit = before_commit
        self._after_commit = after_commit or (lambda paths: None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch(self) -> Any:
        return _FaultyBatch(self._client.batch(), self._before_commit, self._after_commit)


class _FaultyBatch:
    def __init__(self, batch: Any, before_commit: Any, after_commit: Any):
        self._batch = batch
        self._before_commit = before_commit
        self._after_commit = after_commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def commit(self, **kwargs: Any) -> Any:
        paths = [path.rsplit("/documents/", 1)[-1] for path in self._batch._document_references]
        self._before_commit(paths)
        writes = list(self._batch._write_pbs)
        result = self._batch.commit(**kwargs)
        try:
            self._after_commit(paths)
        except Exception:
            # As when the call itself fails: the batch still holds its writes for a retry.
            self._batch._write_pbs = writes
            raise
        return result


def test_a_commit_that_landed_but_timed_out_is_counted_once(settings, firestore_client,
                                                           storage_client):
    from google.api_core import exceptions as gexc

    lost = []

    def lose_the_answer(paths):
        if len(lost) < 2 and any(path.startswith("users/") for path in paths):
            lost.append(paths)
            raise gexc.DeadlineExceeded("the answer was lost on the way back")

    outcome = migrate(FaultyClient(firestore_client, lambda paths: None, lose_the_answer),
                      storage_client, settings, [user(i) for i in range(12)], batch_size=5)
    counts = outcome.run["counts"]
    assert len(lost) == 2 and counts["created"] == 12 and counts["unchanged"] == 0
    check_identity(counts, 12)


def test_a_refused_write_is_reported_and_its_neighbours_written(settings, firestore_client,
                                                               storage_client):
    from google.api_core import exceptions as gexc

    def refuse(paths):
        if "users/u_0007" in paths:
            raise gexc.InvalidArgument("the backend refused this document")

    faulty = FaultyClient(firestore_client, refuse)
    outcome = migrate(faulty, storage_client, settings, [user(i) for i in range(20)],
                      batch_size=10)
    counts = outcome.run["counts"]
    assert counts["failed"] == 1 and counts["created"] == 19
    check_identity(counts, 20)
    failure = outcome.report["failures"][0]
    assert (failure["index"], failure["id"], failure["reason"]) == (7, "u_0007", "write_failed")
    assert "refused this document" in failure["message"]
    assert sorted(documents(firestore_client)) == [f"u_{i:04d}" for i in range(20) if i != 7]


def test_transient_errors_are_retried(settings, firestore_client, storage_client):
    from google.api_core import exceptions as gexc

    failures = [gexc.ServiceUnavailable("blip"), gexc.DeadlineExceeded("slow")]

    def flaky(paths):
        if failures:
            raise failures.pop(0)

    outcome = migrate(FaultyClient(firestore_client, flaky), storage_client, settings,
                      [user(i) for i in range(5)])
    assert outcome.run["counts"]["created"] == 5 and outcome.run["counts"]["failed"] == 0
    assert failures == []


def test_a_document_changed_between_read_and_write_is_read_again(settings, firestore_client,
                                                                 storage_client):
    coll = firestore_client.collection("users")
    coll.document("u_0002").set({"name": "Someone else's edit"})
    meddled = []

    def meddle(paths):
        if not meddled and "users/u_0002" in paths:
            meddled.append(True)
            coll.document("u_0002").set({"name": "A concurrent edit"})

    outcome = migrate(FaultyClient(firestore_client, meddle), storage_client, settings,
                      [user(i) for i in range(4)], mode="replace")
    assert meddled and outcome.run["counts"]["updated"] == 1
    assert coll.document("u_0002").get().to_dict()["name"] == "User 2"


def test_when_firestore_stays_down_the_run_fails_and_resumes(settings, firestore_client,
                                                             storage_client, monkeypatch):
    from google.api_core import exceptions as gexc

    import functions.migrate.writer as writer
    from shared.errors import RunAborted

    monkeypatch.setattr(writer, "TRANSIENT_ATTEMPTS", 2)
    down = {"on": False, "commits": 0}

    def outage(paths):
        down["commits"] += 1
        if down["commits"] > 3:
            raise gexc.ServiceUnavailable("Firestore is down")

    records = [user(i) for i in range(40)]
    with pytest.raises(RunAborted) as caught:
        migrate(FaultyClient(firestore_client, outage), storage_client, settings, records,
                batch_size=5, concurrency=1, run_id="outage")
    assert caught.value.code == "unavailable"
    run = firestore_client.collection("_migrations").document("outage").get().to_dict()
    assert run["state"] == "failed" and run["error"]["code"] == "unavailable"
    assert 0 < run["counts"]["read"] < 40
    outcome = migrate(firestore_client, storage_client, settings, records, batch_size=5,
                      run_id="outage")
    assert outcome.run["counts"]["created"] == 40 and outcome.run["attempts"] == 2
    assert len(documents(firestore_client)) == 40


class Crash(BaseException):
    """Stands for the process dying in the middle of a batch."""


@pytest.mark.parametrize("crash_at", [1, 4, 9])
def test_a_crashed_run_resumes_to_the_same_documents(settings, firestore_client, storage_client,
                                                     crash_at):
    records = [user(i) for i in range(45)] + [{"id": "u_0003", "name": "dup"}, "junk"]
    reference = migrate(firestore_client, storage_client, settings, records, batch_size=5,
                        run_id="reference")
    expected = without_stamps(documents(firestore_client))
    for snap in firestore_client.collection("users").stream():
        snap.reference.delete()
    commits = {"n": 0}

    def crash(paths):
        commits["n"] += 1
        if commits["n"] == crash_at:
            raise Crash

    with pytest.raises(Crash):
        migrate(FaultyClient(firestore_client, crash), storage_client, settings, records,
                batch_size=5, run_id="crashy")
    resumed = migrate(firestore_client, storage_client, settings, records, batch_size=5,
                      run_id="crashy")
    assert without_stamps(documents(firestore_client)) == expected
    for key in ("counts", "reasons", "firstErrors"):
        assert resumed.run[key] == reference.run[key]
    assert resumed.report["failures"] == reference.report["failures"]


def test_a_time_budget_pauses_the_run_and_the_same_call_continues(settings, firestore_client,
                                                                  storage_client):
    records = [user(i) for i in range(30)]
    paused = migrate(firestore_client, storage_client, settings, records, batch_size=5,
                     run_id="budget", time_budget_s=0.0)
    assert paused.state == "paused" and paused.run["counts"]["read"] < 30
    finished = migrate(firestore_client, storage_client, settings, records, batch_size=5,
                       run_id="budget")
    assert finished.state == "completed" and finished.run["counts"]["created"] == 30
    again = migrate(firestore_client, storage_client, settings, records, run_id="budget")
    assert again.run["counts"] == finished.run["counts"]  # completed: nothing more to do


def test_progress_is_readable_while_the_run_goes(settings, firestore_client, storage_client,
                                                monkeypatch):
    import functions.migrate.run as engine

    monkeypatch.setattr(engine, "PROGRESS_INTERVAL_S", 0.0)
    seen = []

    def look(progress):
        doc = firestore_client.collection("_migrations").document("watched").get().to_dict()
        seen.append((doc["state"], doc["counts"]["read"], progress.done, progress.total))

    migrate(firestore_client, storage_client, settings, [user(i) for i in range(20)],
            batch_size=4, concurrency=1, run_id="watched", on_progress=look)
    assert {state for state, *_ in seen} == {"running"}
    reads = [read for _, read, _, _ in seen]
    assert reads == sorted(reads) and 0 < max(reads) and seen[-1][3] == 20


def test_one_runner_at_a_time(settings, firestore_client, storage_client):
    from functions.migrate.runs import RunStore
    from shared.errors import Conflict

    store = RunStore(firestore_client, "busy", timeout_s=10)
    params = {"collection": "users", "mode": "upsert", "dryRun": False, "deleteMissing": False}
    store.begin(params, force=False)  # someone else holds it now
    records = [user(i) for i in range(3)]
    with pytest.raises(Conflict) as caught:
        migrate(firestore_client, storage_client, settings, records, run_id="busy")
    assert caught.value.code == "run_mismatch"  # and it was started with another source
    migrate(firestore_client, storage_client, settings, records, run_id="held")
    with pytest.raises(Conflict) as caught:
        migrate(firestore_client, storage_client, settings, records[:2], run_id="held")
    assert caught.value.code == "run_mismatch"


def test_a_live_lease_blocks_a_second_runner_unless_forced(settings, firestore_client,
                                                           storage_client, monkeypatch):
    from functions.migrate.source import scan
    from shared.errors import Conflict

    records = [user(i) for i in range(3)]
    data = json.dumps(records).encode()
    layout = scan(bytes_source(data), collection="users")
    from functions.migrate.runs import RunStore

    RunStore(firestore_client, "leased", timeout_s=10).begin(
        {"collection": "users", "mode": "upsert", "dryRun": False, "deleteMissing": False,
         "shape": "array", "root": None,
         "fingerprint": {"sha256": layout.sha256, "size": layout.size}}, force=False)
    with pytest.raises(Conflict) as caught:
        migrate(firestore_client, storage_client, settings, data, run_id="leased")
    assert caught.value.code == "run_in_progress"
    outcome = migrate(firestore_client, storage_client, settings, data, run_id="leased",
                      force=True)
    assert outcome.run["counts"]["created"] == 3 and outcome.run["attempts"] == 2


# --- HTTP ------------------------------------------------------------------------------------

def test_http_needs_an_admin_token(app, project_id, firestore_client):
    body = json.dumps([user(1)])
    assert app.post("/migrate?collection=users", data=body).status_code == 401
    bad = app.post("/migrate?collection=users", data=body,
                   headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    other = app.post("/migrate?collection=users", data=body,
                     headers=auth("demo-other-project"))
    assert other.status_code == 401 and other.json["error"]["code"] == "wrong_audience"
    user_only = app.post("/migrate?collection=users", data=body,
                         headers=auth(project_id, admin=False))
    assert user_only.status_code == 403 and user_only.json["error"]["code"] == "not_admin"
    assert app.get("/migrate/anything").status_code == 401
    assert documents(firestore_client) == {}
    preflight = app.options("/migrate", headers={"Origin": "https://dash.example.org",
                                                 "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_http_bounds_the_body_and_locates_bad_json(app, project_id, monkeypatch,
                                                   fresh_instance):
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    headers = auth(project_id)
    big = app.post("/migrate?collection=users", data=json.dumps([user(i) for i in range(40)]),
                   headers=headers)
    assert big.status_code == 413 and big.json["error"]["code"] == "payload_too_large"
    bad = app.post("/migrate?collection=users", data='[\n  {"id": "a"},\n  {"id": }\n]',
                   headers=headers)
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_json"
    assert bad.json["error"]["details"] == {"offset": 26, "line": 3, "column": 10}
    assert "line 3, column 10" in bad.json["error"]["message"]
    for query in ("", "?collection=nope", "?collection=users&mode=merge",
                  "?collection=users&dryRun=maybe", "?collection=users&colour=red",
                  "?collection=users&runId=a/b"):
        response = app.post(f"/migrate{query}", data="[]", headers=headers)
        assert response.status_code in (400, 404), (query, response.status_code)
    empty = app.post("/migrate?collection=users", data="", headers=headers)
    assert empty.status_code == 400


def test_http_progress_and_report_of_a_run(app, project_id):
    headers = auth(project_id)
    records = [user(i) for i in range(6)] + [{"id": "x/y"}]
    started = app.post("/migrate?collection=users&runId=web-1", data=json.dumps(records),
                       headers=headers)
    assert started.status_code == 200
    run = app.get("/migrate/web-1", headers=headers)
    assert run.status_code == 200 and run.headers["Cache-Control"] == "no-store"
    body = run.json
    assert body["state"] == "completed" and body["counts"]["failed"] == 1
    assert body["firstErrors"][0]["reason"] == "invalid_id"
    assert body["checkpoint"] == {"records": 7} and body["startedBy"] == "admin-uid"
    report = app.get("/migrate/web-1/report", headers=headers)
    assert report.status_code == 200 and report.json["failures"][0]["id"] == "x/y"
    assert app.get("/migrate/nope", headers=headers).status_code == 404
    again = app.post("/migrate?collection=users&runId=web-1", data=json.dumps(records),
                     headers=headers)
    assert again.status_code == 200 and again.json["run"]["counts"] == body["counts"]


def test_http_paused_run_answers_202(settings, firestore_client, storage_client, project_id,
                                     monkeypatch):
    import flask

    from functions.migrate.routes import MigrateContext, handle

    context = MigrateContext(dataclasses.replace(settings, migration_time_budget_s=0.0),
                             lambda: firestore_client, lambda: storage_client)
    app = flask.Flask("direct")
    body = json.dumps([user(i) for i in range(3)])
    with app.test_request_context("/?collection=users&runId=slow", method="POST", data=body,
                                  headers=auth(project_id)):
        response = handle(flask.request, context)
    assert response.status_code == 202 and response.json["run"]["state"] == "paused"
    context.settings = settings
    with app.test_request_context("/?collection=users&runId=slow", method="POST", data=body,
                                  headers=auth(project_id)):
        response = handle(flask.request, context)
    assert response.status_code == 200 and response.json["run"]["counts"]["created"] == 3


def test_gcs_source_report_next_to_it_and_one_snapshot(app, project_id, bucket,
                                                       firestore_client, monkeypatch):
    import shared.snapshots

    calls = []
    real = shared.snapshots.rebuild_snapshot
    monkeypatch.setattr(shared.snapshots, "rebuild_snapshot",
                        lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    records = [user(i) for i in range(25)] + ["junk"]
    bucket.blob("imports/users.json").upload_from_string(json.dumps({"users": records}),
                                                         content_type="application/json")
    response = app.post(f"/migrate?collection=users&runId=gcs-1&source=gs://{bucket.name}"
                        "/imports/users.json", headers=auth(project_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    run = response.json["run"]
    assert run["reportUri"] == f"gs://{bucket.name}/imports/users.gcs-1.report.json"
    assert "report" not in response.json and calls == ["users"]
    report = json.loads(bucket.blob("imports/users.gcs-1.report.json").download_as_bytes())
    assert report["failures"][0]["reason"] == "not_an_object" and report["total"] == 26
    assert len(documents(firestore_client)) == 25
    missing = app.post(f"/migrate?collection=users&source=gs://{bucket.name}/none.json",
                       headers=auth(project_id))
    assert missing.status_code == 404
