"""Reading a snapshot in parts (the read API's fallback, the doctor, the tests): a
`SnapshotView` is one index generation; it downloads and parses a part only when a request
needs it (one document: one part; a page in id order: the parts from the cursor on), and each
part once, ever (a part's name names one content, so parsed parts carry over to the next
index generation). `load_snapshot` gives the whole collection as one `Snapshot`.

Every failure (missing, unreadable, invalid) is `Unavailable`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.errors import Unavailable
from shared.retry import retry_policy
from shared.snapshot_format import Snapshot, Tombstone, snapshot_body
from shared.snapshot_io import download, load_index
from shared.snapshot_parts import SnapshotIndex, decode_part

T = TypeVar("T")


def parse_snapshot(collection: str, raw: bytes, generation: int | None) -> Snapshot:
    """Parse a snapshot body (a part's, or a whole snapshot's); `ValueError` when it is not
    one."""
    try:
        body = json.loads(decode_part(raw))
        items = body["items"]
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in items
        ):
            raise ValueError("items must be objects with a string id")
        generated_at = str(body.get("generatedAt") or body.get("asOf") or "")
        update_times = body.get("updateTimes") or {}
        raw_tombstones = body.get("tombstones") or []
        if not isinstance(update_times, dict) or not isinstance(raw_tombstones, list):
            raise ValueError("updateTimes must be an object and tombstones a list")
        tombstones = tuple(Tombstone(str(t["id"]), str(t["deletedAt"]), str(t["recordedAt"]))
                           for t in raw_tombstones)
    except (KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"missing or mistyped {exc}") from None
    return Snapshot(collection, tuple(items), generated_at, generation, tombstones,
                    {str(k): str(v) for k, v in update_times.items()})


def read_part(storage_client: Any, bucket: str, collection: str, name: str, *,
              timeout_s: float, retry: Any = None) -> Snapshot | None:
    """Download and parse one part; None when it does not exist, `ValueError` when it does not
    parse; network errors raise."""
    found = download(storage_client, bucket, name, timeout_s=timeout_s, retry=retry)
    if found is None:
        return None
    raw, generation = found
    return parse_snapshot(collection, raw, generation)


# A view whose part was replaced meanwhile is read again from a fresh index, this many times.
READ_ATTEMPTS = 3


class SnapshotChanged(Unavailable):
    """A part the index lists is gone: a newer index replaced it while this one was read. Read
    again from the current index (`read_current`)."""


@dataclass
class SnapshotView:
    """One generation of a collection's index, with the parts parsed so far."""

    collection: str
    index: SnapshotIndex
    storage_client: Any = field(repr=False)
    bucket: str
    timeout_s: float
    parsed: dict[str, Snapshot] = field(default_factory=dict, repr=False)
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def generation(self) -> int:
        """The index object's generation."""
        return self.index.generation

    @property
    def generated_at(self) -> str:
        """When the index was written."""
        return self.index.generated_at

    def part(self, position: int) -> Snapshot:
        """The parsed part at `position` of the index (downloaded on first use)."""
        ref = self.index.parts[position]
        with self._lock:
            found = self.parsed.get(ref.name)
        if found is not None:
            return found
        from google.api_core import exceptions as gexc
        try:
            found = read_part(self.storage_client, self.bucket, self.collection, ref.name,
                              timeout_s=self.timeout_s, retry=retry_policy(self.timeout_s))
        except (gexc.GoogleAPIError, OSError) as exc:
            raise Unavailable(f"a snapshot part of {self.collection} is unreadable: "
                              f"{type(exc).__name__}") from None
        except ValueError as exc:
            raise Unavailable(f"a snapshot part of {self.collection} is invalid: {exc}") \
                from None
        if found is None:
            raise SnapshotChanged(f"a snapshot part of {self.collection} is gone (the snapshot "
                                  f"changed while it was read)")
        with self._lock:
            self.parsed[ref.name] = found
        return found

    def item(self, doc_id: str) -> dict[str, Any] | None:
        """One document's item (one part read at most), or None."""
        position = self.index.locate(doc_id)
        return None if position < 0 else self.part(position).item(doc_id)

    def whole(self) -> Snapshot:
        """Every part as one `Snapshot` (built once per view; its memo serves the queries)."""
        with self._lock:
            found = self.memo.get("whole")
        if found is not None:
            return found
        parts = [self.part(position) for position in range(len(self.index.parts))]
        update_times: dict[str, str] = {}
        for part in parts:
            update_times.update(part.update_times)
        whole = Snapshot(self.collection, tuple(item for part in parts for item in part.items),
                         self.index.generated_at, self.index.generation,
                         tuple(t for part in parts for t in part.tombstones), update_times)
        whole.memo["view"] = self
        with self._lock:
            self.memo["whole"] = whole
        return whole


def load_view(storage_client: Any, bucket: str, collection: str, *, timeout_s: float,
              known: SnapshotView | None = None) -> SnapshotView:
    """The current index of a collection as a view; `known` comes back as it is while the
    index is still at its generation (a conditional GET answered 304), and its parsed parts
    carry over otherwise."""
    from google.api_core import exceptions as gexc
    try:
        index = load_index(storage_client, bucket, collection, timeout_s=timeout_s,
                           known=known.index if known is not None else None,
                           retry=retry_policy(timeout_s))
    except (gexc.GoogleAPIError, OSError, ValueError) as exc:
        raise Unavailable(f"snapshot of {collection} unreadable: {type(exc).__name__}") from None
    if index is None:
        raise Unavailable(f"no snapshot of {collection} yet")
    if not index.exists:
        raise Unavailable(f"snapshot of {collection} is invalid")
    if known is not None and index is known.index:
        return known
    names = index.names()
    carried = {name: part for name, part in (known.parsed if known else {}).items()
               if name in names}
    return SnapshotView(collection, index, storage_client, bucket, timeout_s, carried)


def read_current(load: Callable[[], SnapshotView], use: Callable[[SnapshotView], T],
                 forget: Callable[[], None] = lambda: None) -> T:
    """`use(load())`, and once more from a fresh index (after `forget()` drops a remembered
    view) while the view's parts are replaced under it (`SnapshotChanged`)."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return use(load())
        except SnapshotChanged:
            if attempt == READ_ATTEMPTS - 1:
                raise
            forget()
    raise AssertionError("unreachable")


def load_snapshot(storage_client: Any, bucket: str, collection: str, *, timeout_s: float,
                  known: Snapshot | None = None) -> Snapshot:
    """The whole snapshot of a collection as one `Snapshot`; `Unavailable` when it is missing,
    unreadable or invalid. `known` (parsed earlier) comes back as it is while the index is
    at its generation; its parts that did not change are not downloaded or parsed again."""
    previous = known.memo.get("view") if known is not None else None
    view = load_view(storage_client, bucket, collection, timeout_s=timeout_s, known=previous)
    if known is not None and view is previous:
        return known
    loaded = [view]  # the first attempt uses it; a retry loads the index anew
    return read_current(lambda: loaded.pop() if loaded else load_view(
        storage_client, bucket, collection, timeout_s=timeout_s), lambda current: current.whole())


def single_file_body(view: SnapshotView) -> bytes:
    """The whole snapshot as one object's body (`snapshots/<collection>.json`, the single-file
    view some consumers read): the read API's list shape with every document, `generatedAt`,
    `updateTimes`, `tombstones`, and the index's `contentHash`."""
    whole = view.whole()
    return snapshot_body(view.collection, list(whole.items), whole.generated_at,
                         update_times=whole.update_times, tombstones=whole.tombstones,
                         content_hash=view.index.content_hash())
