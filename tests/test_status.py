"""`GET /migrate/status`, `GET /migrate/runs` and the run sample, on the emulators through the
`migrate` function as functions-framework serves it (what the dashboard's status page and
migration panel call), and the doctor's new `publisher` and `migrations` checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from werkzeug.test import Client

from functions.migrate import doctor
from tests.helpers import closed_port, emulator_id_token, publish, seed_users

DOCTOR_ORDER = ["settings", "schemas", "firestore", "bucket", "bucket not public",
                "snapshot users", "fresh users", "snapshot jobs", "fresh jobs", "publisher",
                "migrations", "rules"]


@pytest.fixture
def status_env(emulator_env, monkeypatch, fresh_instance):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    monkeypatch.setenv("MIGRATION_START_OPS_S", "1000000")
    monkeypatch.setenv("COLLECTIONS", "users,jobs")
    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "2")
    return emulator_env


@pytest.fixture
def app(status_env):
    from dev.app import create_stack_app

    return Client(create_stack_app({"migrate": "http"}))


@pytest.fixture
def admin(project_id):
    return {"Authorization": f"Bearer {emulator_id_token(project_id, admin=True)}"}


@pytest.fixture
def published(status_env, firestore_client, storage_client, bucket):
    seed_users(firestore_client, 4)
    firestore_client.collection("jobs").document("j_1").set({"title": "Edit a reel"})
    publish(firestore_client, storage_client, bucket.name, "users")
    publish(firestore_client, storage_client, bucket.name, "jobs")


def users(count: int, start: int = 0) -> list[dict]:
    return [{"id": f"u_{i:04d}", "name": f"User {i}", "email": f"User{i}@Example.COM",
             "role": "creator", "status": "active", "createdAt": "03/04/2024"}
            for i in range(start, start + count)]


def test_status_runs_every_doctor_check_with_its_latency(app, admin, published):
    migrated = app.post("/migrate?collection=users&runId=first",
                        data=json.dumps(users(3, start=100)), headers=admin)
    assert migrated.status_code == 200, migrated.get_data(as_text=True)
    response = app.get("/migrate/status", headers=admin)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.json
    checks = {check["name"]: check for check in body["checks"]}
    assert [check["name"] for check in body["checks"]] == DOCTOR_ORDER
    # The same checks, in the same words, as `python -m ops doctor`.
    cli = {check.name: check for check in doctor.Doctor(os.environ).run()}
    assert set(cli) == set(checks)
    for name in ("settings", "schemas", "firestore", "bucket", "publisher", "migrations"):
        assert checks[name]["status"] == cli[name].status == "ok", checks[name]
    assert checks["rules"]["status"] == "skip"
    assert all(isinstance(check["latencyMs"], float) for check in checks.values())
    assert checks["firestore"]["latencyMs"] > 0
    # Snapshots from the manifest: count and age, compared with Firestore's count.
    assert body["snapshots"]["users"]["count"] == 7
    assert body["snapshots"]["users"]["firestoreCount"] == 7
    assert "7 documents" in checks["snapshot users"]["detail"]
    assert "manifest.json" in checks["snapshot users"]["detail"]
    assert checks["fresh users"]["status"] == "ok"
    assert body["runs"][0]["runId"] == "first" and body["runs"][0]["state"] == "completed"
    assert "sample" not in body["runs"][0] and "firstErrors" not in body["runs"][0]
    assert "first" in checks["migrations"]["detail"]
    assert body["principal"] == {"uid": "admin-1", "email": None, "admin": True}
    assert body["collections"] == ["users", "jobs"] and body["maxBodyBytes"] == 10 * 1024 * 1024


def test_status_with_firestore_down_fails_it_fast_and_skips_what_needs_it(
        app, admin, published, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed_port())
    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "0.5")
    started = time.monotonic()
    response = app.get("/migrate/status", headers=admin)
    assert time.monotonic() - started < 20
    assert response.status_code == 200
    checks = {check["name"]: check for check in response.json["checks"]}
    assert checks["firestore"]["status"] == "FAIL"
    assert checks["firestore"]["detail"].startswith("does not answer")
    for name in ("fresh users", "fresh jobs", "publisher", "migrations"):
        assert checks[name]["status"] == "skip" and "Firestore" in checks[name]["detail"]
    # The snapshots (what reads fall back to) are still judged, from the manifest.
    assert checks["snapshot users"]["status"] == "ok"
    assert response.json["runs"] == []


def test_status_and_runs_are_for_admins_only(app, project_id, published):
    for path in ("/migrate/status", "/migrate/runs"):
        assert app.get(path).status_code == 401
        viewer = {"Authorization": f"Bearer {emulator_id_token(project_id)}"}
        refused = app.get(path, headers=viewer)
        assert refused.status_code == 403 and refused.json["error"]["code"] == "not_admin"


def test_runs_lists_the_newest_first_and_marks_a_stalled_run(app, admin, published,
                                                             firestore_client):
    for run_id in ("older", "newer"):
        assert app.post(f"/migrate?collection=users&runId={run_id}",
                        data=json.dumps(users(2)), headers=admin).status_code == 200
        time.sleep(0.05)
    body = app.get("/migrate/runs?limit=2", headers=admin).json
    assert [run["runId"] for run in body["runs"]] == ["newer", "older"]
    assert body["runs"][0]["counts"]["unchanged"] == 2 and body["runs"][0]["stalled"] is False
    assert body["principal"]["admin"] is True and body["collections"] == ["users", "jobs"]
    # A runner that died: `running`, its lease expired. The doctor says how to resume it.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    firestore_client.collection("_migrations").document("crashed").set({
        "runId": "crashed", "collection": "users", "state": "running", "total": 10,
        "counts": {"written": 4, "failed": 0}, "startedAt": dt.datetime.now(dt.UTC),
        "lease": {"owner": "gone", "expiresAt": past}})
    runs = app.get("/migrate/runs", headers=admin).json["runs"]
    assert runs[0]["runId"] == "crashed" and runs[0]["stalled"] is True
    assert "lease" not in runs[0] and runs[0]["leaseExpiresAt"]
    check = doctor.check_migrations(runs)
    assert check.status == "FAIL" and "crashed" in check.detail and "resume" in check.detail
    for bad in ("0", "21", "two"):
        refused = app.get(f"/migrate/runs?limit={bad}", headers=admin)
        assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_parameter"


def test_an_older_failed_run_does_not_fail_the_check_once_a_newer_one_completed():
    runs = [{"runId": "b", "collection": "users", "state": "completed", "total": 3,
             "counts": {"written": 3, "failed": 0}},
            {"runId": "a", "collection": "users", "state": "failed", "error": {"message": "x"}}]
    assert doctor.check_migrations(runs).status == "ok"
    assert doctor.check_migrations(runs[1:]).status == "FAIL"
    assert doctor.check_migrations([]).status == "ok"


def test_run_ids_that_name_a_route_are_refused(app, admin, status_env, firestore_client):
    for run_id in ("status", "runs"):
        response = app.post(f"/migrate?collection=users&runId={run_id}",
                            data=json.dumps(users(1)), headers=admin)
        assert response.status_code == 400
        assert response.json["error"]["code"] == "invalid_run_id"
    assert list(firestore_client.collection("users").stream()) == []
    assert list(firestore_client.collection("_migrations").stream()) == []


def test_a_dry_run_shows_a_sample_of_converted_documents_and_writes_nothing(
        app, admin, status_env, firestore_client):
    records = [*users(7), {"id": "u_big", "name": "x" * 5000, "email": "big@example.com",
                           "role": "creator", "status": "active"}]
    records.insert(1, records.pop())  # a large document early: left out of the sample
    response = app.post("/migrate?collection=users&dryRun=true&runId=dry-1",
                        data=json.dumps(records), headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    sample = response.json["run"]["sample"]
    assert [doc["id"] for doc in sample] == ["u_0000", "u_0001", "u_0002", "u_0003", "u_0004"]
    # Converted as they would be stored: dates as timestamps, emails lower-cased.
    assert sample[0]["createdAt"] == "2024-03-04T00:00:00Z"
    assert sample[0]["email"] == "user0@example.com"
    assert app.get("/migrate/dry-1", headers=admin).json["sample"] == sample
    assert list(firestore_client.collection("users").stream()) == []


def test_a_resumed_run_keeps_the_sample_of_its_first_attempt(status_env, firestore_client,
                                                             storage_client):
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import ReportSink
    from functions.migrate.source import bytes_source
    from shared.settings import Settings

    settings = Settings.from_env()
    data = json.dumps(users(12)).encode()

    def run(budget: float | None):
        return run_migration(firestore_client, lambda: storage_client, settings,
                             MigrationOptions(collection="users", run_id="two-steps",
                                              batch_size=4, concurrency=1),
                             bytes_source(data), report=ReportSink("none"),
                             time_budget_s=budget)

    paused = run(0.0)
    assert paused.state == "paused"
    first = [doc["id"] for doc in paused.run["sample"]]
    done = run(None)
    assert done.state == "completed"
    assert [doc["id"] for doc in done.run["sample"]] == first


def test_publisher_check_reports_the_last_write_and_a_stuck_hand_over(status_env):
    from shared.settings import Settings

    settings = Settings.from_env()
    now = dt.datetime.now(dt.UTC)
    recent = doctor.PublisherState(now - dt.timedelta(seconds=30), "abc123", waiting=0)
    check = doctor.check_publisher(settings, recent, now)
    assert check.status == "ok" and "30 s ago" in check.detail and "abc123" in check.detail
    stuck = doctor.PublisherState(now - dt.timedelta(minutes=10), "abc123", waiting=2)
    assert doctor.check_publisher(settings, stuck, now).status == "FAIL"
    assert doctor.check_publisher(settings, None, now).status == "ok"
