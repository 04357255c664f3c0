"""The migration panel in headless Chromium on the local stack (`#migrate`).

- a dry run then a migration of the messy sample end with the CLI's account (120 written, 9
  failed, every reason listed) and the CLI's documents; the report downloads as JSON and the
  users table reloads by itself;
- every bad input is explained on the page, and nothing is written;
- a migration of a few thousand records (the stack's write rate held down with
  MIGRATION_START_OPS_S) moves the progress bar, survives a reload (the run id is in the URL)
  and, paused at the function's time budget (MIGRATION_TIME_BUDGET_S), resumes with Resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.admin import (
    account,
    choose_file,
    message,
    open_migration,
    progress,
    reasons,
    run_id,
    sample,
    wait_for_new_run,
    wait_until_completed,
)
from tests.browser.conftest import BUCKET, ROOT, picture
from tests.browser.dashboard import FAST_S, rows, wait_for
from tests.helpers import firestore_client_at
from tests.test_migrate import MESSY_USERS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

MESSY = ROOT / "tests" / "data" / "legacy-messy" / "users.json"
SERVER_STAMPS = ("updatedAt",)


def count(db, collection: str) -> int:
    return int(db.collection(collection).count().get()[0][0].value)


def cli_migration(stack, tmp_path: Path) -> tuple[dict, object]:
    """`python -m ops migrate` of the messy sample into a fresh project on the stack's
    emulators (the same Firestore, its own bucket); (its run document, that project's client)."""
    project = f"demo-cli-{uuid.uuid4().hex[:8]}"
    bucket = f"{project}-snapshots"
    request = urllib.request.Request(
        f"{stack.storage.host}/storage/v1/b?project={project}", method="POST",
        data=json.dumps({"name": bucket}).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FIRESTORE_EMULATOR", "STORAGE_EMULATOR", "FIREBASE_AUTH"))}
    env.update({"GOOGLE_CLOUD_PROJECT": project, "SNAPSHOT_BUCKET": bucket,
                "FIRESTORE_EMULATOR_HOST": stack.firestore.host,
                "STORAGE_EMULATOR_HOST": stack.storage.host, "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "ops", "migrate", str(MESSY), "--collection", "users",
         "--json", "--progress", "none", "--report", str(tmp_path / "cli-report.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr  # 1: some records failed
    return json.loads(done.stdout), firestore_client_at(stack.firestore.host, project)


def stored(db, ids: set[str]) -> dict[str, dict]:
    """The documents `ids`, without the server's own stamps (`updatedAt`; `createdAt` where
    the source had none)."""
    from shared.encoding import encode_value

    sources = {record.get("id"): record for record in json.loads(MESSY.read_text())
               if isinstance(record, dict)}
    found = {}
    for snap in db.get_all([db.collection("users").document(doc_id) for doc_id in ids]):
        if not snap.exists:
            continue
        data = {key: encode_value(value) for key, value in snap.to_dict().items()
                if key not in SERVER_STAMPS}
        if "createdAt" not in sources.get(snap.id, {}):
            assert data.pop("createdAt")  # a server timestamp: present, but of its own time
        found[snap.id] = data
    return found


def test_dry_run_then_migration_of_the_messy_users_ends_as_the_cli_does(stack, new_page,
                                                                        tmp_path):
    page = new_page()
    open_migration(page, stack.page_url())
    db = stack.firestore_client()
    users_before = count(db, "users")

    # The dry run: the account before anything is written.
    choose_file(page, "users.json", MESSY.read_bytes())
    expect(page.locator("#migration-start")).to_be_disabled()  # a dry run comes first
    page.locator("#migration-dry-run").click()
    dry_id = wait_for_new_run(page, None)
    assert page.url.endswith(f"#migrate/{dry_id}")
    wait_until_completed(page)
    assert account(page) == {"written": 120, "unchanged": 0, "skipped": 0, "failed": 9,
                             "read": 129}
    listed = reasons(page)
    assert {index: reason for index, (_, reason) in listed.items()} == MESSY_USERS
    assert listed[119] == ("bad/slash", "invalid_id")
    converted = sample(page)
    assert len(converted) == 5 and converted[0]["id"] == "u_1100003"
    assert converted[0]["createdAt"] == "2024-05-30T00:00:00Z"  # "2024-05-30", converted
    expect(message(page)).to_contain_text("Nothing was written")
    assert count(db, "users") == users_before

    # Migrate: the same account, the report, and the table reloads by itself.
    expect(page.locator("#migration-start")).to_have_text("Migrate (9 records will fail)")
    page.locator("#migration-start").click()
    real_id = wait_for_new_run(page, dry_id)
    wait_until_completed(page)
    assert account(page) == {"written": 120, "unchanged": 0, "skipped": 0, "failed": 9,
                             "read": 129}
    assert {index: reason for index, (_, reason) in reasons(page).items()} == MESSY_USERS
    assert count(db, "users") == users_before + 120
    with page.expect_download() as download:
        page.locator("#migration-download").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert report["runId"] == real_id and report["counts"]["written"] == 120
    assert {entry["index"]: entry["reason"] for entry in report["failures"]} == MESSY_USERS
    expect(message(page)).to_contain_text("The users table was reloaded")
    page.wait_for_timeout(300)
    picture(page, "migration-panel.png", full_page=True)
    page.locator('#tabs [data-tab="data"]').click()
    expect(rows(page, "users")).to_have_count(users_before + 120, timeout=FAST_S * 1000)

    # The CLI, on the same file into an empty project: the same account, the same documents.
    status, _, page_run = stack.api("GET", f"/migrate/{real_id}")
    assert status == 200
    cli_run, cli_db = cli_migration(stack, tmp_path)
    for key in ("created", "updated", "written", "unchanged", "skipped", "failed", "read"):
        assert cli_run["counts"][key] == page_run["counts"][key], key
    assert cli_run["reasons"] == page_run["reasons"]
    ids = {snap.id for snap in cli_db.collection("users").stream()}
    assert len(ids) == 120
    assert stored(db, ids) == stored(cli_db, ids)
    assert new_page.problems.errors == []


def test_bad_inputs_are_explained_and_nothing_is_written(stack, new_page):
    page = new_page()
    open_migration(page, stack.page_url())
    db = stack.firestore_client()
    before = (count(db, "users"), count(db, "_migrations"))

    def dry_run_says(*texts: str) -> None:
        page.locator("#migration-dry-run").click()
        for text in texts:
            expect(message(page)).to_contain_text(text, timeout=FAST_S * 1000)

    choose_file(page, "users.csv", b"name,email\nAda,ada@example.com\n")
    dry_run_says("The file is not valid JSON", "line 1", "Nothing was written")
    choose_file(page, "users.json", b'"a list of users"')
    dry_run_says("not a list of records", "an array of records", "Nothing was written")
    choose_file(page, "empty.json", b"")
    dry_run_says("empty.json is empty", "Nothing was sent")
    big = b"[" + b" " * (10 * 1024 * 1024) + b"]"  # over MAX_BODY_BYTES (10 MiB)
    choose_file(page, "huge.json", big)
    dry_run_says("the function accepts at most 10.5 MB", "gs://", "Nothing was sent")
    # A page configured with a collection the backend does not serve.
    page.locator("#migration-collection").evaluate(
        "select => { select.add(new Option('clients', 'clients')); select.value = 'clients'; }")
    choose_file(page, "clients.json", json.dumps([{"id": "c1", "name": "Acme"}]).encode())
    dry_run_says("does not serve this collection", "COLLECTIONS", "Nothing was written")
    page.locator("#migration-collection").select_option("users")
    page.locator('input[name="source-kind"][value="gcs"]').check()
    page.locator("#migration-gcs").fill("users.json")
    dry_run_says("gs://my-bucket/legacy/users.json", "Nothing was sent")
    page.locator("#migration-gcs").fill("gs://demo-dashboard-snapshots/legacy/none.json")
    dry_run_says("no such object", "Nothing was written")

    # The backend refuses the admin's calls (here: they carry the viewer's real token, as when
    # the claim was revoked after the page read it): the panel says so and offers nothing.
    token = stack.id_token("viewer")
    page.route(f"{stack.url}/migrate**", lambda route: route.continue_(
        headers={**route.request.headers, "authorization": f"Bearer {token}"}))
    page.reload()
    expect(message(page)).to_contain_text("Your account may not do this")
    expect(message(page)).to_contain_text("python -m ops admin grant")
    expect(page.locator("#migration-dry-run")).to_be_disabled()
    assert (count(db, "users"), count(db, "_migrations")) == before


def test_a_cloud_storage_object_is_dry_run_by_its_address(stack, new_page, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    name = f"legacy/users-{uuid.uuid4().hex[:6]}.json"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", stack.storage.host)
    client = storage.Client(project="demo-dashboard", credentials=AnonymousCredentials())
    client.bucket(BUCKET).blob(name).upload_from_string(MESSY.read_bytes(),
                                                        content_type="application/json")
    client.close()
    page = new_page()
    open_migration(page, stack.page_url())
    page.locator('input[name="source-kind"][value="gcs"]').check()
    page.locator("#migration-gcs").fill(f"gs://{BUCKET}/{name}")
    page.locator("#migration-dry-run").click()
    wait_for_new_run(page, None)
    wait_until_completed(page)
    expect(page.locator(".run-source")).to_contain_text(f"gs://{BUCKET}/{name}")
    counts = account(page)
    # 120 would be written, or are unchanged when the messy test migrated them already.
    assert counts["written"] + counts["unchanged"] == 120 and counts["failed"] == 9
    assert counts["read"] == 129
    assert {index: reason for index, (_, reason) in reasons(page).items()} == MESSY_USERS


BULK_RECORDS = 2400  # enough for two calls of the function (see below)


def test_a_large_migration_moves_the_bar_survives_a_reload_and_resumes_when_paused(
        make_stack, new_page):
    # 150 writes/s and 25 records a commit: 2,400 records take about 16 s; each call of the
    # function pauses after 10 s (202), so the run needs a resume.
    stack = make_stack(MIGRATION_START_OPS_S="150", MIGRATION_BATCH_SIZE="25",
                       MIGRATION_TIME_BUDGET_S="10")
    records = [{"id": f"u_bulk_{i:05d}", "name": f"Bulk {i}", "email": f"bulk{i}@example.com",
                "role": "creator", "status": "active", "createdAt": "2024-01-02"}
               for i in range(BULK_RECORDS)]
    data = json.dumps(records).encode()
    page = new_page()
    open_migration(page, stack.page_url())
    choose_file(page, "bulk-users.json", data)
    page.locator("#migration-dry-run").click()
    dry_id = wait_for_new_run(page, None)
    wait_until_completed(page)
    page.locator("#migration-start").click()
    real_id = wait_for_new_run(page, dry_id)

    # The bar moves while the run goes.
    first = wait_for(lambda: progress(page) or None, 20, "the progress bar never moved")
    second = wait_for(lambda: progress(page) > first and progress(page), 20,
                      f"the progress bar stayed at {first}")
    expect(page.locator("#migration-progress-text")).to_contain_text("records/s")
    assert first < second < BULK_RECORDS
    picture(page, "migration-progress.png")

    # A reload shows the same run, still going.
    page.reload()
    expect(page.locator("#migration-run-id")).to_have_text(real_id)
    wait_for(lambda: progress(page) > second, 30,
             f"after the reload the run did not go on from {second}")

    # Nobody re-POSTs it after the reload: it pauses at the time budget; Resume continues it
    # (for a file sent as the body, once the same file is chosen again).
    expect(page.locator("#migration-state")).to_have_text("paused", timeout=40_000)
    expect(message(page)).to_contain_text("Choose the same file")
    paused_at = progress(page)
    assert second < paused_at < BULK_RECORDS
    choose_file(page, "bulk-users.json", data)
    page.locator("#migration-resume").click()
    wait_until_completed(page, timeout_s=120)
    assert run_id(page) == real_id
    assert account(page)["written"] == BULK_RECORDS and account(page)["failed"] == 0
    db = stack.firestore_client()
    assert count(db, "users") >= BULK_RECORDS
    status, _, run = stack.api("GET", f"/migrate/{real_id}")
    assert status == 200 and run["attempts"] >= 2 and run["counts"]["created"] == BULK_RECORDS

