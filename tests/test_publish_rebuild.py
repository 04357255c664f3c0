"""The rebuild path: `python -m ops rebuild [--collection C]` and `rebuild_collection`."""

from __future__ import annotations

import time

import pytest

from ops.__main__ import main as cli
from shared.snapshot_format import SnapshotState
from shared.snapshots import rebuild_collection, write_snapshot
from shared.times import format_ns
from tests.test_publish_support import Writer, firestore_items, manifest, snapshot_body, user

pytest_plugins = ["tests.test_publish_support"]


def test_rebuild_command_reports_what_it_changed(emulator_env, fresh_instance, firestore_client,
                                                 bucket, capsys):
    users, jobs = Writer(firestore_client), Writer(firestore_client, "jobs")
    for i in range(5):
        users.set(f"u_{i}", user(i))
    jobs.set("j_1", {"title": "Edit a video", "status": "open"})
    assert cli(["rebuild"]) == 0
    out = capsys.readouterr().out
    assert "users: 5 documents, +5 added, ~0 updated, -0 removed" in out
    assert "jobs: 1 documents, +1 added" in out
    assert snapshot_body(bucket, "jobs")["items"] == firestore_items(firestore_client, "jobs")

    # Drift: writes that never reached the publisher (no events).
    firestore_client.document("users/u_1").delete()
    firestore_client.document("users/u_9").set(user(9))
    firestore_client.document("users/u_2").set(user(2, status="inactive"))
    assert cli(["rebuild", "--collection", "users"]) == 0
    out = capsys.readouterr().out
    assert "users: 5 documents, +1 added, ~1 updated, -1 removed, 3 unchanged" in out
    assert "jobs" not in out
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    assert [t["id"] for t in body["tombstones"]] == ["u_1"]
    assert firestore_client.document("_tombstones/users/ids/u_1").get().exists
    assert manifest(bucket)["collections"]["users"]["count"] == 5

    assert cli(["rebuild", "--collection", "users", "--json"]) == 0
    assert '"written": false' in capsys.readouterr().out


def test_rebuilding_an_unknown_collection_exits_2(emulator_env, fresh_instance, capsys):
    assert cli(["rebuild", "--collection", "clients"]) == 2
    assert "not configured" in capsys.readouterr().err


def test_a_rebuild_reads_each_document_once_and_writes_once(firestore_client, storage_client,
                                                            bucket, reads):
    writer = Writer(firestore_client)
    for i in range(50):
        writer.set(f"u_{i:02d}", user(i))
    reads.reset()
    report = rebuild_collection(firestore_client, storage_client, bucket.name, "users",
                                timeout_s=30)
    assert reads.count() == 50 == report.reads
    assert report.written and report.added == 50 and report.documents == 50
    generation = bucket.get_blob("snapshots/users/index.json").generation
    assert report.generation == generation
    again = rebuild_collection(firestore_client, storage_client, bucket.name, "users",
                               timeout_s=30)
    assert not again.written and again.unchanged == 50
    assert bucket.get_blob("snapshots/users/index.json").generation == generation


def test_a_rebuild_keeps_what_events_published_after_its_read(firestore_client, storage_client,
                                                              bucket):
    """A document the snapshot has with a version newer than the rebuild's read was written
    after the read (its event already published it): the rebuild keeps it. One with an older
    version is gone from Firestore: the rebuild removes it, with a tombstone."""
    writer = Writer(firestore_client)
    writer.set("u_1", user(1))
    state = SnapshotState("users")
    future = time.time_ns() + 3600 * 10**9
    state.items["u_new"] = {"id": "u_new", "name": "created after the read"}
    state.versions["u_new"] = future
    state.items["u_old"] = {"id": "u_old", "name": "deleted before the read"}
    state.versions["u_old"] = 10**18
    write_snapshot(storage_client, bucket.name, "users", state.body(format_ns(time.time_ns())),
                   timeout_s=10)
    report = rebuild_collection(firestore_client, storage_client, bucket.name, "users",
                                timeout_s=30)
    body = snapshot_body(bucket)
    assert [item["id"] for item in body["items"]] == ["u_1", "u_new"]
    assert [t["id"] for t in body["tombstones"]] == ["u_old"]
    assert (report.added, report.removed) == (1, 1)


def test_tombstones_are_pruned_after_their_retention(firestore_client, storage_client, bucket):
    from shared.tombstones import record_tombstones

    writer = Writer(firestore_client)
    writer.set("u_1", user(1))
    old_ns = time.time_ns() - 3600 * 10**9
    record_tombstones(firestore_client, "users", [("u_gone", old_ns)], retention_s=60,
                      timeout_s=10)
    state = SnapshotState("users")
    state.deleted["u_gone"] = state.recorded["u_gone"] = old_ns
    write_snapshot(storage_client, bucket.name, "users", state.body(format_ns(old_ns)),
                   timeout_s=10)
    report = rebuild_collection(firestore_client, storage_client, bucket.name, "users",
                                timeout_s=30, retention_s=60)
    assert report.tombstones_pruned == 1
    assert snapshot_body(bucket)["tombstones"] == []
    assert not firestore_client.document("_tombstones/users/ids/u_gone").get().exists


@pytest.mark.parametrize("retention, age", [("60", "120")])
def test_tombstone_retention_must_outlive_the_oldest_accepted_event(retention, age):
    from shared.errors import ConfigError
    from shared.settings import Settings

    with pytest.raises(ConfigError, match="TOMBSTONE_RETENTION_S"):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "demo-test", "SNAPSHOT_BUCKET": "demo-b",
                           "TOMBSTONE_RETENTION_S": retention, "MAX_EVENT_AGE_S": age})
