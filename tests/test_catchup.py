"""The scheduled catch-up (`catch_up_snapshots`): who may call it, and that it heals.

Healing is shown under writes: deliveries are killed (events never delivered) and the
publisher fails (Cloud Storage answers 503 through a proxy) while documents are written and
deleted as the write API does (`updatedAt` server time; a delete commits its tombstone). The
snapshot then differs from Firestore; one catch-up run, driven by the test, makes it equal.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from unittest import mock

import pytest
from google.cloud import firestore

from emulators.oidc_issuer import LocalIssuer
from functions.publish.catchup import run_catch_up
from shared.errors import Unavailable
from shared.settings import Settings
from shared.snapshot_parts import index_path, parts_prefix
from tests.storage_proxy import StorageProxy
from tests.test_publish_support import FAST, firestore_items, make_publisher, snapshot_body

__all__ = ["make_publisher"]  # the fixture, used by name

INVOKER = "dashboard-scheduler@demo-test.iam.gserviceaccount.com"
AUDIENCE = "https://europe-west1-demo-test.cloudfunctions.net/catch-up-snapshots"


def write_like_the_api(db, doc_id: str, data: dict) -> None:
    """A write as the write API commits it: with `updatedAt` the server's time."""
    from google.cloud import firestore

    db.collection("users").document(doc_id).set({**data, "updatedAt": firestore.SERVER_TIMESTAMP})


def delete_like_the_api(db, doc_id: str) -> None:
    """A delete as the write API commits it: its tombstone in the same batch."""
    from shared.tombstones import stage_tombstone

    ref = db.collection("users").document(doc_id)
    current = ref.get()
    batch = db.batch()
    batch.delete(ref)
    stage_tombstone(batch, db, "users", doc_id, deleted_version=current.update_time,
                    retention_s=86400)
    batch.commit()


def person(i: int, **changes) -> dict:
    return {"name": f"User {i}", "email": f"user{i}@example.com", "role": "creator",
            "status": "active", "hourlyRate": 40 + i, **changes}


@pytest.fixture
def catch_up(emulator_env, firestore_client, storage_client, make_publisher):
    """`catch_up()`: one run with a publisher of this test's project."""
    publisher = make_publisher()

    def run(**env: str):
        settings = Settings.from_env({**os.environ, **FAST, **env})
        return {report.collection: report for report in run_catch_up(
            settings, firestore_client, storage_client, publisher)}

    run.publisher = publisher
    return run


def test_the_snapshot_equals_firestore_one_catch_up_after_lost_and_failed_deliveries(
        emulators, firestore_client, storage_client, bucket, make_publisher, catch_up):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tests.test_publish_support import Writer

    for i in range(30):
        write_like_the_api(firestore_client, f"u_{i:03d}", person(i))
    first = catch_up()
    assert first["users"].rebuilt, "no watermark yet: the first run builds the snapshot"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)

    proxy = StorageProxy(emulators.storage.host)
    with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": proxy.url}):
        frozen_storage = storage.Client(project=firestore_client.project,
                                        credentials=AnonymousCredentials())
    proxy.intercept = lambda request: (503, {"error": {"code": 503, "message": "frozen"}})
    failing = make_publisher(storage=frozen_storage, PUBLISH_WAIT_S="1")
    writer = Writer(firestore_client)
    failures = []

    def writes(start: int) -> None:
        for i in range(start, start + 10):
            if i % 3 == 0:  # deletions: their events are never delivered
                delete_like_the_api(firestore_client, f"u_{i - 20:03d}")
            if i % 2 == 0:  # half the writes' events reach a publisher whose storage is frozen
                stamped = person(i, status="paused", updatedAt=dt.datetime.now(dt.UTC))
                try:
                    failing.publish(writer.set(f"u_{i:03d}", stamped))
                except Unavailable as exc:
                    failures.append(exc)
            else:  # the other half are never delivered
                write_like_the_api(firestore_client, f"u_{i:03d}", person(i, status="paused"))

    threads = [threading.Thread(target=writes, args=(start,)) for start in (25, 35)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    proxy.close()
    frozen_storage.close()
    assert failures, "the frozen storage failed the publisher"
    assert snapshot_body(bucket)["items"] != firestore_items(firestore_client), \
        "the lost and failed deliveries left the snapshot behind"

    report = catch_up()["users"]
    assert not report.rebuilt and report.changes >= 20 and report.deletions >= 5
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    deleted = {doc_id for doc_id in (f"u_{i - 20:03d}" for i in range(25, 45) if i % 3 == 0)}
    assert deleted <= {t["id"] for t in body["tombstones"]}


def test_a_catch_up_reads_what_changed_not_the_collection(firestore_client, bucket, reads,
                                                          catch_up):
    for i in range(200):
        write_like_the_api(firestore_client, f"u_{i:03d}", person(i))
    catch_up()
    for i in (5, 50, 150):
        write_like_the_api(firestore_client, f"u_{i:03d}", person(i, name="Lost event"))
    reads.reset()
    report = catch_up(CATCHUP_MARGIN_S="0")["users"]  # the writes just before: outside it
    assert report.changes == 3
    assert reads.count() < 20, f"{reads.count()} reads for 3 changes in 200 documents"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)


def test_the_changes_since_the_watermark_are_read_in_pages(firestore_client, bucket,
                                                           catch_up, monkeypatch):
    """A page per query, each read whole before its changes are published; documents with
    the same `updatedAt` (one commit) are not lost or repeated across a page's end."""
    from functions.publish import catchup
    from shared import firestore_wire

    for i in range(5):
        write_like_the_api(firestore_client, f"u_{i:03d}", person(i))
    catch_up()
    batch = firestore_client.batch()
    for i in range(100, 107):  # one commit: one server time for all seven
        batch.set(firestore_client.document(f"users/u_{i:03d}"),
                  {**person(i), "updatedAt": firestore.SERVER_TIMESTAMP})
    batch.commit()
    for i in range(4):
        delete_like_the_api(firestore_client, f"u_{i:03d}")
    pages: list[int] = []
    real = firestore_wire.run_query

    def counted(*args, **kwargs):
        found = list(real(*args, **kwargs))
        if sys._getframe(1).f_code.co_name == "_pages":  # the catch-up's, not the publisher's
            pages.append(len(found))
        return iter(found)

    monkeypatch.setattr(firestore_wire, "run_query", counted)
    monkeypatch.setattr(catchup, "PAGE_SIZE", 3)
    report = catch_up(CATCHUP_MARGIN_S="0")["users"]
    assert (report.changes, report.deletions) == (7, 4)
    # users: its updated documents, then its tombstones; jobs: none of either
    assert pages == [3, 3, 1, 3, 1, 0, 0], pages
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    assert {f"u_{i:03d}" for i in range(4)} <= {t["id"] for t in body["tombstones"]}


def test_missing_and_damaged_parts_are_repaired(firestore_client, bucket, catch_up,
                                                monkeypatch):
    import json

    from shared import snapshot_parts

    monkeypatch.setattr(snapshot_parts, "PART_MAX_BYTES", 4096)
    monkeypatch.setattr(snapshot_parts, "PART_MIN_BYTES", 1024)
    for i in range(60):
        write_like_the_api(firestore_client, f"u_{i:03d}", person(i))
    catch_up()
    parts = json.loads(bucket.blob(index_path("users")).download_as_bytes())["parts"]
    assert len(parts) >= 3
    bucket.blob(parts[0]["name"]).delete()
    bucket.blob(parts[1]["name"]).upload_from_string(b"{damaged")
    bucket.blob(f"{parts_prefix('users')}orphan.json").upload_from_string(b"{}")
    report = catch_up()["users"]
    assert report.repaired_parts == 2
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    listed = {blob.name for blob in bucket.list_blobs(prefix=parts_prefix("users"))}
    assert f"{parts_prefix('users')}orphan.json" in listed, "orphans are swept after a grace"


def test_only_the_scheduler_account_may_run_the_catch_up(emulator_env, monkeypatch, bucket,
                                                         fresh_instance):
    from functions_framework import create_app
    from werkzeug.test import Client

    from tests.test_publish_support import ROOT

    issuer = LocalIssuer()
    try:
        for name, value in {**FAST, "CATCHUP_INVOKER": INVOKER, "CATCHUP_AUDIENCE": AUDIENCE,
                            "CATCHUP_CERTS_URL": issuer.certs_url}.items():
            monkeypatch.setenv(name, value)
        client = Client(create_app(target="catch_up_snapshots", source=str(ROOT / "main.py"),
                                   signature_type="http"))

        def call(token: str | None, method: str = "POST"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return client.open("/", method=method, headers=headers)

        assert call(None).status_code == 401
        assert call("not-a-token").status_code == 401
        assert call(issuer.token("someone@example.com", AUDIENCE)).status_code == 403
        assert call(issuer.token(INVOKER, "https://elsewhere")).status_code == 401
        assert call(issuer.token(INVOKER, AUDIENCE, verified=False)).status_code == 403
        assert call(issuer.token(INVOKER, AUDIENCE), method="GET").status_code == 405
        answer = call(issuer.token(INVOKER, AUDIENCE))
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert [entry["collection"] for entry in answer.json["collections"]] == ["users",
                                                                                 "jobs"]
    finally:
        issuer.stop()
        # functions-framework keeps its last app process-wide, and main.py's import registers
        # an error handler on it: leave a fresh, unused one (the deploy's tests import main.py).
        create_app(target="catch_up_snapshots", source=str(ROOT / "main.py"),
                   signature_type="http")


def test_a_local_issuer_is_refused_outside_demo_projects():
    from shared.errors import ConfigError

    with pytest.raises(ConfigError, match="CATCHUP_CERTS_URL"):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "real-project", "SNAPSHOT_BUCKET": "b-1",
                           "CATCHUP_CERTS_URL": "http://127.0.0.1:1/certs"})
