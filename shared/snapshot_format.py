"""The data of the JSON snapshots, without I/O: object names, the parsed `Snapshot`, the body
a snapshot is written as, the mergeable `SnapshotState` with its `Change`s, and the manifest's
entries. Reading, writing and merging in Cloud Storage are `shared.snapshots`'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SNAPSHOT_PREFIX = "snapshots/"
MANIFEST_PATH = f"{SNAPSHOT_PREFIX}manifest.json"
SNAPSHOT_CACHE_CONTROL = "private, max-age=0, no-cache"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
DEFAULT_TOMBSTONE_RETENTION_S = 30 * 86400.0


def snapshot_path(collection: str) -> str:
    """The object name of a collection's snapshot."""
    return f"{SNAPSHOT_PREFIX}{collection}.json"


@dataclass(frozen=True)
class Tombstone:
    """A deleted document as the snapshot records it (RFC 3339 times)."""

    id: str
    deleted_at: str
    recorded_at: str


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot: encoded items (sorted by id) and when they were generated.

    `memo` holds what queries derive from the items (an index by id, decoded columns, sort
    orders: `functions.collection_api.query.run_on_items`), computed once per parsed generation.
    """

    collection: str
    items: tuple[dict[str, Any], ...]
    generated_at: str
    generation: int | None
    tombstones: tuple[Tombstone, ...] = ()
    update_times: Mapping[str, str] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def item(self, doc_id: str) -> dict[str, Any] | None:
        """The item of a document id, or None."""
        index = self.memo.get("by_id")
        if index is None:
            index = self.memo["by_id"] = {item["id"]: item for item in self.items}
        return index.get(doc_id)

    def deleted_since(self, since: Any) -> list[str]:
        """Ids whose tombstone was recorded after `since` (an aware datetime), sorted."""
        from shared.times import parse_ns, to_ns

        floor = to_ns(since)
        return sorted(t.id for t in self.tombstones if parse_ns(t.recorded_at) > floor)


def snapshot_body(collection: str, items: list[dict[str, Any]], generated_at: str, *,
                  update_times: Mapping[str, str] | None = None,
                  tombstones: Iterable[Tombstone] = (),
                  content_hash: str | None = None) -> bytes:
    """The snapshot JSON: the read API's list shape (items sorted by id) plus `generatedAt`
    (a part's body, or the single-file view's, with the whole snapshot's `content_hash`)."""
    from shared.http import dumps

    ordered = sorted(items, key=lambda item: item["id"])
    return dumps({"collection": collection, "items": ordered, "count": len(ordered),
                  "nextPageToken": None, "source": "snapshot", "asOf": generated_at,
                  "generatedAt": generated_at,
                  "contentHash": content_hash or "sha256:" + hashlib.sha256(
                      dumps(ordered)).hexdigest(),
                  "updateTimes": dict(sorted((update_times or {}).items())),
                  "tombstones": [{"id": t.id, "deletedAt": t.deleted_at,
                                  "recordedAt": t.recorded_at}
                                 for t in sorted(tombstones, key=lambda t: t.id)]})


@dataclass(frozen=True)
class Change:
    """One document change to merge: its encoded item (None when deleted) and its version."""

    collection: str
    doc_id: str
    version_ns: int
    item: Mapping[str, Any] | None

    @property
    def deleted(self) -> bool:
        """True for a deletion."""
        return self.item is None


@dataclass
class SnapshotState:
    """A snapshot being merged: items, versions and tombstones by id, and its generation."""

    collection: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    generated_at: str = ""
    exists: bool = False

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> SnapshotState:
        """The mergeable state of a parsed snapshot (versions unknown for older snapshots)."""
        from shared.times import parse_ns

        state = cls(snapshot.collection, generation=int(snapshot.generation or 0),
                    generated_at=snapshot.generated_at, exists=True)
        for item in snapshot.items:
            state.items[item["id"]] = dict(item)
        for doc_id, text in snapshot.update_times.items():
            if doc_id in state.items:
                state.versions[doc_id] = parse_ns(text)
        for tombstone in snapshot.tombstones:
            state.deleted[tombstone.id] = parse_ns(tombstone.deleted_at)
            state.recorded[tombstone.id] = parse_ns(tombstone.recorded_at)
        return state

    def copy(self) -> SnapshotState:
        """An independent copy (a merge attempt works on one, so a retry starts clean)."""
        return SnapshotState(self.collection, {k: v for k, v in self.items.items()},
                             dict(self.versions), dict(self.deleted), dict(self.recorded),
                             self.generation, self.generated_at, self.exists)

    def known_version(self, doc_id: str) -> int | None:
        """The newest version this snapshot knows of the document (written or deleted)."""
        known = [v for v in (self.versions.get(doc_id), self.deleted.get(doc_id))
                 if v is not None]
        return max(known) if known else None

    def apply(self, change: Change) -> bool:
        """Merge one change unless the snapshot already knows a version as new; True if applied."""
        known = self.known_version(change.doc_id)
        if known is not None and change.version_ns <= known:
            return False
        if change.item is None:
            # Even a document the snapshot never had gets a tombstone: it stops a late, older
            # write of it from bringing it back.
            self.items.pop(change.doc_id, None)
            self.versions.pop(change.doc_id, None)
            self.deleted[change.doc_id] = change.version_ns
            self.recorded.pop(change.doc_id, None)
        else:
            self.items[change.doc_id] = dict(change.item)
            self.versions[change.doc_id] = change.version_ns
        return True

    def unrecorded_tombstones(self) -> list[tuple[str, int]]:
        """Deletions merged but not yet recorded in Firestore: `(id, deleted_ns)`."""
        return sorted((doc_id, deleted_ns) for doc_id, deleted_ns in self.deleted.items()
                      if doc_id not in self.recorded)

    def mark_recorded(self, ids: Iterable[str], recorded_ns: int) -> None:
        """Note the Firestore commit time of the tombstones just recorded."""
        for doc_id in ids:
            self.recorded[doc_id] = recorded_ns

    def prune(self, cutoff_ns: int) -> list[str]:
        """Drop tombstones of deletions before `cutoff_ns`; returns their ids."""
        gone = sorted(doc_id for doc_id, deleted_ns in self.deleted.items()
                      if deleted_ns < cutoff_ns and doc_id in self.recorded)
        for doc_id in gone:
            del self.deleted[doc_id]
            del self.recorded[doc_id]
        return gone

    def body(self, generated_at: str) -> bytes:
        """The JSON body of this state."""
        from shared.times import format_ns

        tombstones = [Tombstone(doc_id, format_ns(deleted_ns),
                                format_ns(self.recorded.get(doc_id, deleted_ns)))
                      for doc_id, deleted_ns in self.deleted.items()]
        return snapshot_body(self.collection, list(self.items.values()), generated_at,
                             update_times={doc_id: format_ns(v)
                                           for doc_id, v in self.versions.items()},
                             tombstones=tombstones)


@dataclass(frozen=True)
class ManifestEntry:
    """A collection's line in the manifest."""

    count: int
    content_hash: str
    generation: int
    generated_at: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this entry."""
        return {"count": self.count, "contentHash": self.content_hash,
                "generation": str(self.generation), "generatedAt": self.generated_at}
