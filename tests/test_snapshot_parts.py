"""Snapshots in parts, against the emulators: a change rewrites its part and the index only,
parts split as they grow and merge as they shrink, a rebuild streams into parts, and the read
fallback loads only the parts a request needs."""

from __future__ import annotations

import gzip
import json

import pytest

from shared import snapshot_parts
from shared.snapshot_parts import index_path, parts_prefix
from shared.snapshot_reader import load_view
from tests.test_publish_support import Writer, firestore_items, make_publisher, snapshot_body, user

__all__ = ["make_publisher"]  # the fixture, used by name


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of ~4 KB, so that a few dozen documents make several."""
    monkeypatch.setattr(snapshot_parts, "PART_MAX_BYTES", 4096)
    monkeypatch.setattr(snapshot_parts, "PART_MIN_BYTES", 1024)


def part_names(bucket, collection="users"):
    return sorted(blob.name for blob in bucket.list_blobs(prefix=parts_prefix(collection)))


def index_of(bucket, collection="users"):
    return json.loads(bucket.blob(index_path(collection)).download_as_bytes())


def test_a_change_rewrites_its_part_and_the_index_only(make_publisher, firestore_client, bucket,
                                                       small_parts):
    from shared.snapshots import rebuild_collection

    writer = Writer(firestore_client)
    for i in range(60):
        writer.set(f"u_{i:03d}", user(i))
    rebuild_collection(firestore_client, bucket.client, bucket.name, "users", timeout_s=30)
    before = index_of(bucket)
    assert len(before["parts"]) >= 3, "60 documents in parts of 4 KB"
    assert all(part["bytes"] <= 4096 for part in before["parts"])
    publisher = make_publisher()
    publisher.publish(writer.set("u_031", user(31, name="Changed")))
    after = index_of(bucket)
    changed = [(old["name"], new["name"]) for old, new in zip(before["parts"], after["parts"],
                                                             strict=True)
               if old["name"] != new["name"]]
    assert len(changed) == 1, "one part rewritten, the others kept"
    assert publisher.stats.parts_written == 1 and publisher.stats.snapshot_writes == 1
    assert part_names(bucket) == sorted(part["name"] for part in after["parts"]), \
        "the replaced part is deleted"
    assert snapshot_body(bucket)["items"] == firestore_items(firestore_client)
    assert after["count"] == 60 and after["contentHash"] != before["contentHash"]


def test_parts_split_as_they_grow_and_merge_as_they_shrink(make_publisher, firestore_client,
                                                           bucket, small_parts, monkeypatch):
    writer = Writer(firestore_client)
    publisher = make_publisher()
    publisher.publish(writer.set("u_000", user(0)))
    assert len(index_of(bucket)["parts"]) == 1
    for i in range(1, 50):
        publisher.publish(writer.set(f"u_{i:03d}", user(i)))
    grown = index_of(bucket)["parts"]
    assert len(grown) >= 3 and all(part["rawBytes"] <= 4096 for part in grown)
    assert [part["from"] for part in grown] == sorted(part["from"] for part in grown)
    # Tombstones keep their place until pruned (TOMBSTONE_RETENTION_S): with bounds twice as
    # large, the parts that shrank to their deletions' tombstones join their neighbours.
    monkeypatch.setattr(snapshot_parts, "PART_MAX_BYTES", 8192)
    monkeypatch.setattr(snapshot_parts, "PART_MIN_BYTES", 3500)
    for i in range(1, 50):
        publisher.publish(writer.delete(f"u_{i:03d}"))
    shrunk = index_of(bucket)["parts"]
    assert len(shrunk) < len(grown), "emptied parts merge with their neighbours"
    body = snapshot_body(bucket)
    assert body["items"] == firestore_items(firestore_client)
    assert len(body["tombstones"]) == 49, "the tombstones stay, in their ranges' parts"


def test_equal_data_has_an_equal_hash_whatever_the_parts(firestore_client, bucket, monkeypatch):
    from shared.snapshots import rebuild_collection

    writer = Writer(firestore_client)
    for i in range(40):
        writer.set(f"u_{i:03d}", user(i))
    rebuild_collection(firestore_client, bucket.client, bucket.name, "users", timeout_s=30)
    whole = index_of(bucket)
    bucket.blob(index_path("users")).delete()
    monkeypatch.setattr(snapshot_parts, "PART_MAX_BYTES", 2048)
    rebuild_collection(firestore_client, bucket.client, bucket.name, "users", timeout_s=30)
    cut = index_of(bucket)
    assert len(cut["parts"]) > len(whole["parts"])
    assert cut["contentHash"] == whole["contentHash"]


def test_parts_are_gzipped_when_it_pays(firestore_client, bucket):
    from shared.snapshots import rebuild_collection

    writer = Writer(firestore_client)
    for i in range(200):
        writer.set(f"u_{i:03d}", user(i))
    rebuild_collection(firestore_client, bucket.client, bucket.name, "users", timeout_s=30)
    (part,) = index_of(bucket)["parts"]
    assert part["name"].endswith(".json.gz") and part["bytes"] < part["rawBytes"] / 3
    stored = bucket.blob(part["name"]).download_as_bytes()
    assert len(json.loads(gzip.decompress(stored))["items"]) == 200


def test_the_fallback_reads_only_the_parts_a_request_needs(firestore_client, storage_client,
                                                           bucket, small_parts):
    from functions.collection_api.query import ReadQuery
    from functions.collection_api.read import _id_ordered_page
    from shared.schema import load_schema
    from shared.snapshots import rebuild_collection

    writer = Writer(firestore_client)
    for i in range(80):
        writer.set(f"u_{i:03d}", user(i))
    rebuild_collection(firestore_client, storage_client, bucket.name, "users", timeout_s=30)
    view = load_view(storage_client, bucket.name, "users", timeout_s=10)
    parts = len(view.index.parts)
    assert parts >= 4
    assert view.item("u_050")["name"] == "User 50"
    assert len(view.parsed) == 1, "one document: one part"
    page = _id_ordered_page(view, ReadQuery("users", limit=3), load_schema("users"))
    assert [item["id"] for item in page.items] == ["u_000", "u_001", "u_002"]
    assert len(view.parsed) == 2, "the first page: the first part"
    assert len(view.whole().items) == 80 and len(view.parsed) == parts
    again = load_view(storage_client, bucket.name, "users", timeout_s=10, known=view)
    assert again is view, "same index generation: the same view, nothing parsed again"


def test_the_single_file_view_is_written_on_demand(emulator_env, firestore_client, bucket,
                                                   tmp_path, small_parts):
    from ops.__main__ import main
    from shared.snapshots import rebuild_collection

    writer = Writer(firestore_client)
    for i in range(30):
        writer.set(f"u_{i:03d}", user(i))
    rebuild_collection(firestore_client, bucket.client, bucket.name, "users", timeout_s=30)
    assert main(["snapshot-file", "--collection", "users", "--out", str(tmp_path / "u.json")]) == 0
    local = json.loads((tmp_path / "u.json").read_text())
    assert local["items"] == firestore_items(firestore_client) and local["count"] == 30
    assert local["contentHash"] == index_of(bucket)["contentHash"]
    assert main(["snapshot-file", "--collection", "users"]) == 0
    assert json.loads(bucket.blob("snapshots/users.json").download_as_bytes()) == local
    assert main(["snapshot-file", "--collection", "clients"]) == 2
