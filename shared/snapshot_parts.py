"""A snapshot in parts, without I/O: the index, its part references, part bodies (gzip when it
pays), and how parts split and merge. Reading and writing them is `shared.snapshots`'.

A collection's snapshot is `snapshots/<collection>/index.json` plus parts
`snapshots/<collection>/parts/<random>.json[.gz]`. Each part holds the documents (and the
tombstones) of one id range, `[from, next part's from)`, in the body format of a whole snapshot
(`snapshot_format.snapshot_body`). The index lists the parts in id order with each one's
`from`, count, sizes and the sum of its items' hashes.

Parts are never overwritten: a change writes a new part object (`if_generation_match=0`) and
then the index, conditional on the index generation it read. The index is therefore the one
mutable object; a reader that holds an index sees one consistent set of parts, and a part's
name names one content (it is parsed once, ever). Parts the index no longer names are deleted
after the index write, and by the catch-up if that failed.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.snapshot_format import SNAPSHOT_PREFIX, SnapshotState

FORMAT = "parts/1"
# Raw JSON bytes of a part before it is split in two: a change rewrites at most this much
# (gzipped ~5x smaller) plus the index.
PART_MAX_BYTES = 256 * 1024
# A part smaller than this is merged with a neighbour when it is rewritten.
PART_MIN_BYTES = PART_MAX_BYTES // 4
# Stored gzipped only when that saves at least this share (measured: ~80% on user records).
GZIP_MIN_SAVING = 0.2
GZIP_LEVEL = 5
HASH_MODULUS = 1 << 256
ITEM_OVERHEAD_BYTES = 48  # its updateTimes entry and separators
TOMBSTONE_BYTES = 110


def index_path(collection: str) -> str:
    """The object name of a collection's snapshot index."""
    return f"{SNAPSHOT_PREFIX}{collection}/index.json"


def parts_prefix(collection: str) -> str:
    """The prefix under which a collection's parts are stored."""
    return f"{SNAPSHOT_PREFIX}{collection}/parts/"


def new_part_name(collection: str, *, gzipped: bool) -> str:
    """A fresh, never used part name (parts are written once)."""
    return f"{parts_prefix(collection)}{secrets.token_hex(10)}.json{'.gz' if gzipped else ''}"


def item_digest(item: Mapping[str, Any]) -> int:
    """One item's hash as a number: the content hash is their sum, so it does not depend on
    how the items are cut into parts (equal data, equal hash)."""
    from shared.http import dumps

    return int.from_bytes(hashlib.sha256(dumps(item)).digest(), "big")


def items_sum(items: Iterable[Mapping[str, Any]]) -> int:
    """The sum of the items' digests (mod 2**256)."""
    return sum(item_digest(item) for item in items) % HASH_MODULUS


@dataclass(frozen=True)
class PartRef:
    """A part as the index lists it."""

    name: str
    lo: str  # its range starts at this id ("" for the first part)
    count: int
    raw_bytes: int
    stored_bytes: int
    digest_sum: int

    def to_json(self) -> dict[str, Any]:
        """The index's JSON object of this part."""
        return {"name": self.name, "from": self.lo, "count": self.count,
                "rawBytes": self.raw_bytes, "bytes": self.stored_bytes,
                "sum": f"{self.digest_sum:064x}"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartRef:
        """Parse one entry of the index (`KeyError`/`TypeError`/`ValueError` when malformed)."""
        return cls(str(data["name"]), str(data["from"]), int(data["count"]),
                   int(data["rawBytes"]), int(data["bytes"]), int(str(data["sum"]), 16))


@dataclass
class SnapshotIndex:
    """A collection's index: its parts in id order, and the index object's generation."""

    collection: str
    parts: list[PartRef] = field(default_factory=list)
    generation: int = 0
    generated_at: str = ""
    exists: bool = False

    @property
    def count(self) -> int:
        """Documents in the snapshot."""
        return sum(part.count for part in self.parts)

    def content_hash(self) -> str:
        """`sha256sum:<hex>`: the sum of every item's sha256 (independent of the parts)."""
        total = sum(part.digest_sum for part in self.parts) % HASH_MODULUS
        return f"sha256sum:{total:064x}"

    def locate(self, doc_id: str) -> int:
        """The position of the part whose range holds `doc_id` (-1 when there is no part)."""
        if not self.parts:
            return -1
        return max(0, bisect.bisect_right([part.lo for part in self.parts], doc_id) - 1)

    def names(self) -> set[str]:
        """The object names of the parts."""
        return {part.name for part in self.parts}

    def body(self, generated_at: str) -> bytes:
        """The JSON body of this index."""
        from shared.http import dumps

        return dumps({"collection": self.collection, "format": FORMAT,
                      "generatedAt": generated_at, "count": self.count,
                      "contentHash": self.content_hash(),
                      "parts": [part.to_json() for part in self.parts]})


def parse_index(collection: str, raw: bytes, generation: int) -> SnapshotIndex:
    """Parse an index body; `ValueError` when it is not one (or its parts are out of order)."""
    try:
        body = json.loads(raw)
        if body.get("format") != FORMAT:
            raise ValueError(f"format {body.get('format')!r} is not {FORMAT!r}")
        parts = [PartRef.from_json(entry) for entry in body["parts"]]
        generated_at = str(body.get("generatedAt") or "")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"missing or mistyped {exc}") from None
    los = [part.lo for part in parts]
    if (los and los[0] != "") or los != sorted(set(los)):
        raise ValueError("parts must start at '' and be in strictly increasing id order")
    return SnapshotIndex(collection, parts, generation, generated_at, exists=True)


def encode_part(body: bytes) -> tuple[bytes, bool]:
    """The stored bytes of a part body and whether they are gzipped (only when it pays)."""
    packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    if len(packed) <= len(body) * (1 - GZIP_MIN_SAVING):
        return packed, True
    return body, False


def decode_part(stored: bytes) -> bytes:
    """The JSON body of stored part bytes (`ValueError` when gzip data is corrupt)."""
    if stored[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(stored)
        except (OSError, EOFError) as exc:
            raise ValueError(f"corrupt gzip data: {exc}") from None
    return stored


def entry_sizes(state: SnapshotState) -> list[tuple[str, int]]:
    """Every id of a part (items and tombstones) with the bytes it adds, in id order."""
    from shared.http import dumps

    sizes = {doc_id: len(dumps(item)) + ITEM_OVERHEAD_BYTES
             for doc_id, item in state.items.items()}
    for doc_id in state.deleted:
        sizes[doc_id] = sizes.get(doc_id, 0) + TOMBSTONE_BYTES
    return sorted(sizes.items())


def sub_state(state: SnapshotState, ids: Iterable[str]) -> SnapshotState:
    """The part of `state` holding only `ids`."""
    part = SnapshotState(state.collection, exists=True)
    for doc_id in ids:
        if doc_id in state.items:
            part.items[doc_id] = state.items[doc_id]
        for source, target in ((state.versions, part.versions), (state.deleted, part.deleted),
                               (state.recorded, part.recorded)):
            if doc_id in source:
                target[doc_id] = source[doc_id]
    return part


def split(lo: str, state: SnapshotState) -> list[tuple[str, SnapshotState]]:
    """Cut a part's state into pieces of at most about half `PART_MAX_BYTES` when it has grown
    past `PART_MAX_BYTES` (else the one piece); each piece with the id its range starts at."""
    sizes = entry_sizes(state)
    total = sum(size for _, size in sizes)
    if total <= PART_MAX_BYTES or len(sizes) < 2:
        return [(lo, state)]
    pieces: list[list[str]] = [[]]
    filled = 0
    for doc_id, size in sizes:
        if pieces[-1] and filled + size > PART_MAX_BYTES // 2:
            pieces.append([])
            filled = 0
        pieces[-1].append(doc_id)
        filled += size
    return [(lo if number == 0 else ids[0], sub_state(state, ids))
            for number, ids in enumerate(pieces)]


def estimated_bytes(state: SnapshotState) -> int:
    """About the raw JSON bytes of a part's body."""
    return sum(size for _, size in entry_sizes(state))


def joined(left: SnapshotState, right: SnapshotState) -> SnapshotState:
    """Two neighbouring parts' states as one."""
    whole = left.copy()
    whole.items.update(right.items)
    whole.versions.update(right.versions)
    whole.deleted.update(right.deleted)
    whole.recorded.update(right.recorded)
    return whole
