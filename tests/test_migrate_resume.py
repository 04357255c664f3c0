"""Kill and resume: a CLI run killed with SIGKILL at several points, then run again with the
same run id, ends with exactly the documents, counts and failures of an uninterrupted run.

The killed process gets no chance to clean up (no `finally`, no final write): its run document
still says `running` under a live lease, which is why the resume passes `--force` (and why,
without it, the CLI refuses with `run_in_progress`). The ramp-up limit is lowered so that the
run lasts a few seconds and the kills land between commits, not after the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from functions.migrate.run import MigrationOptions, run_migration
from functions.migrate.runs import ReportSink
from functions.migrate.source import file_source
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 600
BATCH = 20


def legacy_records(count: int) -> list[Any]:
    """Users in every date format, with a defect every so often (as legacy files have)."""
    dates = ["2023-04-0{d}T08:30:00Z", "2023-04-0{d}", "04/0{d}/2023", "1680{d}00000000",
             "2023-04-0{d}T10:30:00+02:00"]
    records: list[Any] = []
    for i in range(count):
        record: Any = {"id": f"u_{i:05d}", "name": f"Creator {i}", "email": f"C{i}@Example.org",
                       "role": ("creator", "editor")[i % 2], "status": "active",
                       "skills": ["editing"] * (i % 3), "hourlyRate": 40 + i % 60,
                       "createdAt": dates[i % 5].format(d=1 + i % 9)}
        if i % 5 == 3:
            record["createdAt"] = int(record["createdAt"])
        if i % 97 == 5:
            record["id"] = f"u_{i - 1:05d}"  # duplicate of the previous record
        elif i % 89 == 7:
            record["hourlyRate"] = "sixty"
        elif i % 151 == 9:
            record = ["not", "an", "object"]
        records.append(record)
    return records


def comparable(db: Any) -> dict[str, dict[str, Any]]:
    return {snap.id: {key: value for key, value in snap.to_dict().items() if key != "updatedAt"}
            for snap in db.collection("users").stream()}


def batches_done(db: Any, run_id: str) -> int:
    return sum(1 for _ in db.collection("_migrations").document(run_id)
               .collection("batches").list_documents())


def cli(env: dict[str, str], source: Path, run_id: str, report: Path, *extra: str):
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "migrate", str(source), "--collection", "users",
         "--run-id", run_id, "--report", str(report), "--progress", "none", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def reference(emulator_env, storage_client, tmp_path, project_id):
    """The same file migrated without interruption, into a project of its own."""
    source = tmp_path / "users.json"
    source.write_text(json.dumps({"users": legacy_records(RECORDS), "lastUpdated": "x"}))
    env = {**emulator_env, "MIGRATION_START_OPS_S": "1000000"}
    settings = Settings.from_env({**os.environ, **env,
                                  "GOOGLE_CLOUD_PROJECT": f"{project_id}-ref"})
    db = firestore.Client(project=settings.project)
    outcome = run_migration(db, lambda: storage_client, settings,
                            MigrationOptions(collection="users", batch_size=50),
                            file_source(source), report=ReportSink("response"))
    assert outcome.run["snapshot"]["rebuilt"] is True
    yield source, outcome, comparable(db)
    db.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 1, 12, 27])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(
        reference, emulator_env, firestore_client, tmp_path, kill_after):
    source, expected_outcome, expected_docs = reference
    total_batches = -(-RECORDS // BATCH)
    env = {**os.environ, **emulator_env, "MIGRATION_BATCH_SIZE": str(BATCH),
           "MIGRATION_CONCURRENCY": "2", "MIGRATION_START_OPS_S": "150"}
    run_id = f"killed-{kill_after}"
    report = tmp_path / "report.json"

    process = cli(env, source, run_id, report)
    deadline = time.monotonic() + 60
    run_ref = firestore_client.collection("_migrations").document(run_id)
    while time.monotonic() < deadline and process.poll() is None:
        if kill_after == 0 and run_ref.get().exists:
            break
        if kill_after and batches_done(firestore_client, run_id) >= kill_after:
            break
        time.sleep(0.01)
    assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    killed_at = batches_done(firestore_client, run_id)
    assert killed_at < total_batches
    assert run_ref.get().to_dict()["state"] == "running"  # nobody could say otherwise

    refused = cli(env, source, run_id, report)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "in progress" in err

    resumed = cli(env, source, run_id, report, "--force")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 1, err  # 1: some records of the file failed, as expected
    assert "completed" in out

    assert comparable(firestore_client) == expected_docs
    run = run_ref.get().to_dict()
    assert run["attempts"] == 2 and run["state"] == "completed"
    for key in ("reasons", "firstErrors"):
        assert run[key] == expected_outcome.run[key]
    assert {k: v for k, v in run["counts"].items() if k != "deleted"} == {
        k: v for k, v in expected_outcome.run["counts"].items() if k != "deleted"}
    body = json.loads(report.read_text())
    assert body["failures"] == expected_outcome.report["failures"]
    counts = body["counts"]
    assert counts["written"] + counts["unchanged"] + counts["skipped"] + counts["failed"] \
        == counts["read"] == RECORDS
