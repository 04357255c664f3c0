"""`python -m ops doctor` against the emulators: a healthy install passes, and each
broken thing (a setting, Firestore, the bucket, a snapshot, a stale snapshot, a public bucket)
fails with its own clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from functions.migrate import doctor
from tests.helpers import closed_port, publish, seed_users

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(ok|FAIL|skip) ([^:]+): (.+)$")


@pytest.fixture
def fresh_clients():
    """The doctor builds its clients from the settings and closes them at its end (`Doctor.run`):
    no client outlives a run."""
    yield


@pytest.fixture
def healthy(emulator_env, firestore_client, storage_client, bucket, monkeypatch, fresh_clients):
    """Users and jobs in Firestore, both snapshots written after the last change."""
    monkeypatch.setenv("COLLECTIONS", "users,jobs")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://dash.example.org")
    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "2")
    seed_users(firestore_client, 5)
    firestore_client.collection("jobs").document("j_1").set({"title": "Edit a reel"})
    publish(firestore_client, storage_client, bucket.name, "users")
    publish(firestore_client, storage_client, bucket.name, "jobs")
    return emulator_env


def run_doctor(**kwargs) -> dict[str, doctor.Check]:
    checks = doctor.Doctor(os.environ, **kwargs).run()
    names = [check.name for check in checks]
    assert all(LINE.match(check.line) for check in checks), [c.line for c in checks]
    by_name = {check.name: check for check in checks}
    assert len(by_name) == len(names) or names.count("settings") > 1, names
    return by_name


def failed(checks: dict[str, doctor.Check]) -> list[str]:
    return [check.line for check in checks.values() if check.status == "FAIL"]


def test_healthy_local_stack_passes_and_says_what_it_skipped(healthy):
    checks = run_doctor()
    assert failed(checks) == []
    for name in ("settings", "schemas", "firestore", "bucket", "bucket not public",
                 "snapshot users", "snapshot jobs", "fresh users", "fresh jobs"):
        assert checks[name].status == "ok", checks[name].line
    assert "5 documents" in checks["snapshot users"].detail
    assert "emulator" in checks["settings"].detail
    # The emulator has no deployed rules: said, not passed.
    assert checks["rules"].status == "skip"
    assert "emulator" in checks["rules"].detail


def test_cli_prints_one_line_per_check_and_exit_status(healthy):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ops", "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines and all(LINE.match(line) for line in lines), lines
    assert any(line.startswith("skip rules:") for line in lines)

    env["SNAPSHOT_BUCKET"] = "no-such-bucket-here"
    done = subprocess.run([sys.executable, "-m", "ops", "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "FAIL bucket: gs://no-such-bucket-here does not exist" in done.stdout
    assert "checks failed" in done.stderr


def test_missing_and_invalid_settings_each_get_a_line(emulators, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("SNAPSHOT_BUCKET", raising=False)
    monkeypatch.setenv("READ_ACCESS", "everyone")
    checks = doctor.Doctor(os.environ).run()
    lines = [check.line for check in checks]
    assert "FAIL settings: setting GOOGLE_CLOUD_PROJECT is required but not set" in lines
    assert "FAIL settings: setting SNAPSHOT_BUCKET is required but not set" in lines
    assert any(line.startswith("FAIL settings: setting READ_ACCESS must be one of")
               for line in lines)
    # What needs the settings says so instead of passing.
    assert "skip firestore: the settings are invalid" in lines


def test_collection_without_schema_fails(healthy, monkeypatch):
    monkeypatch.setenv("COLLECTIONS", "users,clients")
    checks = run_doctor()
    assert checks["schemas"].status == "FAIL"
    assert "clients" in checks["schemas"].detail


def test_unreachable_firestore_fails_fast_and_freshness_is_skipped(healthy, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed_port())
    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "0.5")
    started = time.monotonic()
    checks = run_doctor()
    assert time.monotonic() - started < 30
    assert checks["firestore"].status == "FAIL"
    assert checks["firestore"].detail.startswith("does not answer")
    # Snapshots are still checked (they are what reads fall back to) ...
    assert checks["snapshot users"].status == "ok"
    # ... but their freshness cannot be judged without Firestore: skipped, with why.
    assert checks["fresh users"].status == "skip"
    assert "Firestore" in checks["fresh users"].detail


def test_missing_bucket_fails(healthy, monkeypatch):
    monkeypatch.setenv("SNAPSHOT_BUCKET", "no-such-bucket-here")
    checks = run_doctor()
    assert checks["bucket"].line == ("FAIL bucket: gs://no-such-bucket-here does not exist "
                                     "(make deploy creates it)")
    assert checks["snapshot users"].status == "skip"
    assert checks["bucket not public"].status == "skip"


def test_missing_snapshot_fails(healthy, bucket):
    bucket.blob("snapshots/jobs/index.json").delete()
    checks = run_doctor()
    assert checks["snapshot jobs"].status == "FAIL"
    assert "no snapshot of jobs yet" in checks["snapshot jobs"].detail
    assert "python -m ops rebuild" in checks["snapshot jobs"].detail
    assert checks["snapshot users"].status == "ok"
    assert checks["fresh jobs"].status == "skip"


def test_stale_snapshot_older_than_newest_update_fails(healthy, firestore_client):
    from google.cloud import firestore

    time.sleep(0.05)
    firestore_client.collection("users").document("u_0001").update(
        {"name": "Renamed", "updatedAt": firestore.SERVER_TIMESTAMP})
    checks = run_doctor()
    assert checks["fresh users"].status == "FAIL"
    assert checks["fresh users"].detail.startswith("stale by ")
    assert "python -m ops rebuild" in checks["fresh users"].detail
    assert checks["fresh jobs"].status == "ok"


def test_deleted_document_makes_the_snapshot_stale_by_count(healthy, firestore_client):
    firestore_client.collection("users").document("u_0002").delete()
    checks = run_doctor()
    assert checks["fresh users"].status == "FAIL"
    assert "the snapshot has 5 documents, Firestore 4" in checks["fresh users"].detail


def test_invalid_snapshot_fails(healthy, bucket):
    bucket.blob("snapshots/users/index.json").upload_from_string(b"{not json",
                                                           content_type="application/json")
    checks = run_doctor()
    assert checks["snapshot users"].status == "FAIL"
    assert "invalid" in checks["snapshot users"].detail


def test_public_bucket_fails(healthy, bucket):
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    bucket.set_iam_policy(policy)
    checks = run_doctor()
    line = checks["bucket not public"].line
    assert line.startswith(f"FAIL bucket not public: gs://{bucket.name} is public: "
                           "allUsers has roles/storage.objectViewer"), line


def test_rules_check_compares_the_released_ruleset(healthy, tmp_path):
    """Outside the emulators the deployed rules are fetched from the Firebase Rules API."""
    from shared.settings import Settings

    rules = tmp_path / "firestore.rules"
    rules.write_text("rules_version = '2';\nservice cloud.firestore {}\n")
    env = {"GOOGLE_CLOUD_PROJECT": "demo-rules", "SNAPSHOT_BUCKET": "demo-rules-snapshots"}
    settings = Settings.from_env(env)

    class Response:
        def __init__(self, status, body):
            self.status_code, self.body = status, body

        def json(self):
            return self.body

        def raise_for_status(self):
            if self.status_code >= 400:
                raise RuntimeError(f"HTTP {self.status_code}")

    def session(deployed, release_status=200):
        class Session:
            def get(self, url, timeout):
                if url.endswith("/releases/cloud.firestore"):
                    return Response(release_status,
                                    {"rulesetName": "projects/demo-rules/rulesets/abc"})
                assert url.endswith("/projects/demo-rules/rulesets/abc")
                return Response(200, {"source": {"files": [{"name": "firestore.rules",
                                                            "content": deployed}]}})
        return Session

    same = doctor.check_rules(settings, rules,
                              session_factory=session(rules.read_text() + "\n  \n"))
    assert same.status == "ok", same.line
    other = doctor.check_rules(settings, rules, session_factory=session("allow all"))
    assert other.status == "FAIL" and "differ" in other.detail
    missing = doctor.check_rules(settings, rules, session_factory=session("", 404))
    assert missing.status == "FAIL" and "firebase deploy" in missing.detail
    denied = doctor.check_rules(settings, rules, session_factory=session("", 403))
    assert denied.status == "skip" and "403" in denied.detail


def test_bucket_iam_that_cannot_be_read_is_skipped_not_passed():
    """An emulator without IAM (or an identity without getIamPolicy) gives `skip`, with why."""
    from types import SimpleNamespace

    from google.api_core import exceptions as gexc

    from shared.settings import Settings

    settings = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "demo-doctor",
                                  "SNAPSHOT_BUCKET": "demo-doctor-snapshots",
                                  "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"})
    for error, words in ((gexc.NotFound("no route"), "may not implement IAM"),
                         (gexc.MethodNotImplemented("no IAM"), "may not implement IAM"),
                         (gexc.Forbidden("denied"), "getIamPolicy")):
        def refuse(*args, error=error, **kwargs):
            raise error

        bucket = SimpleNamespace(
            name="demo-doctor-snapshots", get_iam_policy=refuse,
            iam_configuration=SimpleNamespace(public_access_prevention=None,
                                              uniform_bucket_level_access_enabled=False))
        check = doctor.check_bucket_access(settings, bucket)
        assert check.status == "skip", check.line
        assert words in check.detail
