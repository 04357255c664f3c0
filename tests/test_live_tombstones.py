"""Deletions for live dashboards: the write API commits a tombstone with its delete, and the
snapshot publisher keeps it (one tombstone write per deletion, so one read per listening tab).

Against Google's Firestore emulator and the storage emulator (tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from shared.times import to_ns
from shared.tombstones import record_tombstones
from tests.helpers import emulator_id_token, seed_users

pytest_plugins = ["tests.test_publish_support"]

TOMBSTONE = "_tombstones/users/ids/{}"


@pytest.fixture
def admin(emulator_env, project_id, monkeypatch):
    """Headers of an admin of this test's project (the auth emulator path)."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    return {"Authorization": f"Bearer {emulator_id_token(project_id, admin=True)}"}


def test_an_api_delete_commits_its_tombstone_in_the_same_commit(api, admin, firestore_client):
    seed_users(firestore_client, 2)
    before = firestore_client.document("users/u_0001").get()
    assert api.delete("/users/u_0001", headers=admin).status_code == 204

    tombstone = firestore_client.document(TOMBSTONE.format("u_0001")).get()
    assert tombstone.exists, "no publisher ran: the write API wrote it"
    assert tombstone.get("id") == "u_0001"
    assert tombstone.get("deletedAt") == tombstone.get("recordedAt") > before.get("updatedAt")
    assert tombstone.get("expireAt") - tombstone.get("deletedAt") > dt.timedelta(days=29)
    assert tombstone.get("deletedVersion") == to_ns(before.update_time), "the version it removed"
    # A poll from before the delete lists it (the read API reads the same tombstones).
    as_of = before.get("updatedAt").isoformat().replace("+00:00", "Z")
    assert api.get(f"/users?updatedSince={as_of}").json["deleted"] == ["u_0001"]


def test_a_delete_refused_by_its_precondition_writes_no_tombstone(api, admin, firestore_client,
                                                                 monkeypatch):
    """Someone changes the document between the check and the commit: a 412, and neither the
    delete nor the tombstone is written (one atomic batch)."""
    from functions.collection_api import write as write_api

    seed_users(firestore_client, 1)
    checked = write_api._Writer._current

    def check_then_race(self, doc_id):
        snapshot = checked(self, doc_id)
        firestore_client.document(f"users/{doc_id}").update({"hourlyRate": 1})
        return snapshot

    monkeypatch.setattr(write_api._Writer, "_current", check_then_race)
    response = api.delete("/users/u_0000", headers=admin)
    assert response.status_code == 412
    assert response.json["error"]["code"] == "precondition_failed"
    assert firestore_client.document("users/u_0000").get().exists
    assert not firestore_client.document(TOMBSTONE.format("u_0000")).get().exists


def test_record_keeps_a_tombstone_as_new_as_the_deletion_and_rewrites_an_older_one(
        firestore_client):
    firestore_client.document(TOMBSTONE.format("u_kept")).set({"id": "u_kept"})
    kept = firestore_client.document(TOMBSTONE.format("u_kept")).get()
    kept_ns = to_ns(kept.update_time)

    latest = record_tombstones(firestore_client, "users",
                               [("u_kept", kept_ns - 1_000_000), ("u_new", kept_ns)],
                               retention_s=3600, timeout_s=10)
    again = firestore_client.document(TOMBSTONE.format("u_kept")).get()
    assert again.update_time == kept.update_time, "not written again"
    assert "deletedAt" not in again.to_dict()
    fresh = firestore_client.document(TOMBSTONE.format("u_new")).get()
    assert fresh.exists and latest == to_ns(fresh.update_time) > kept_ns

    # A later deletion of the same id (re-created, deleted again) is recorded again.
    later_ns = to_ns(fresh.update_time) + 1
    record_tombstones(firestore_client, "users", [("u_kept", later_ns)], retention_s=3600,
                      timeout_s=10)
    moved = firestore_client.document(TOMBSTONE.format("u_kept")).get()
    assert to_ns(moved.update_time) > kept_ns and to_ns(moved.get("deletedAt")) // 1000 \
        == later_ns // 1000
    assert record_tombstones(firestore_client, "users", [], retention_s=1, timeout_s=1) is None


def test_record_knows_the_same_deletion_by_the_version_it_removed(firestore_client):
    """The emulator's event time is the publish time cut to the second, which can fall after
    the delete's commit: the tombstone then looks older than the deletion, and the version the
    deletion removed (the event's old_value) tells whether it records the same one."""
    firestore_client.document(TOMBSTONE.format("u_1")).set({"id": "u_1", "deletedVersion": 42})
    committed = firestore_client.document(TOMBSTONE.format("u_1")).get().update_time
    later_ns = to_ns(committed) + 500_000_000

    record_tombstones(firestore_client, "users", [("u_1", later_ns)], retention_s=60,
                      timeout_s=10, removed_versions={"u_1": 42})
    assert firestore_client.document(TOMBSTONE.format("u_1")).get().update_time == committed

    record_tombstones(firestore_client, "users", [("u_1", later_ns)], retention_s=60,
                      timeout_s=10, removed_versions={"u_1": 43})  # a version created since
    again = firestore_client.document(TOMBSTONE.format("u_1")).get()
    assert again.update_time > committed and "deletedVersion" not in again.to_dict()


def test_the_publisher_keeps_the_tombstone_of_an_api_delete(
        emulators, emulator_env, fresh_instance, api, admin, firestore_client, storage_client,
        bucket):
    """End to end with the emulator's own event of the delete: the snapshot gets the
    tombstone, and the one in Firestore is not written a second time."""
    from dev.app import create_stack_app
    from dev.stack import trigger_id
    from emulators import harness
    from tests.helpers import publish
    from tests.test_publish_support import snapshot_body

    if emulators.events is None:
        pytest.skip("FIRESTORE_EMULATOR_HOST names an emulator this session did not start: "
                    "its --functions_emulator does not point at this test's receiver")
    seed_users(firestore_client, 3)
    publish(firestore_client, storage_client, bucket.name)
    emulators.events.route(firestore_client.project, create_stack_app(
        {"publish_snapshot": "cloudevent"}, static_dir=None))
    harness.register_trigger(emulators.firestore, firestore_client.project,
                             trigger_id("users"), "users/{docId}")

    assert api.delete("/users/u_0002", headers=admin).status_code == 204
    written = firestore_client.document(TOMBSTONE.format("u_0002")).get()
    deadline = time.monotonic() + 10
    while "u_0002" not in {t["id"] for t in snapshot_body(bucket).get("tombstones", [])}:
        assert time.monotonic() < deadline, "the delete never reached the snapshot"
        time.sleep(0.05)
    assert [item["id"] for item in snapshot_body(bucket)["items"]] == ["u_0000", "u_0001"]
    after = firestore_client.document(TOMBSTONE.format("u_0002")).get()
    assert after.update_time == written.update_time
