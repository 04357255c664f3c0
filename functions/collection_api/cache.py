"""The collection API's per-instance caches: a TTL cache safe under gen2 concurrency (many
threads, one process), the write fence, the cached response and the one place its keys are
built and read (`list_key`, `get_key`, `key_collection`).

`get_or_compute` lets one thread compute a missing entry while the others asking for the same
key wait for it, so a burst of identical requests costs one Firestore read, not one each.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared import http

if TYPE_CHECKING:
    from functions.collection_api.query import ReadQuery

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Least-recently-used entries that expire `ttl_s` seconds after they were stored."""

    def __init__(self, ttl_s: float, max_entries: int = 512,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable) -> V | None:
        """The live entry for `key`, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V, ttl_s: float | None = None) -> None:
        """Store `value` for `ttl_s` (default: the cache's TTL); a TTL of 0 stores nothing."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], tuple[V, float | None]]) -> V:
        """The cached value, or `compute()`'s (value, ttl) stored; one computation per key."""
        while True:
            value = self.get(key)
            if value is not None:
                return value
            with self._lock:
                waiter = self._inflight.get(key)
                if waiter is None:
                    waiter = self._inflight[key] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                waiter.wait(timeout=30)
                with self._lock:
                    still_running = self._inflight.get(key) is waiter
                if still_running:
                    continue
                value = self.get(key)
                if value is not None:
                    return value
                continue
            try:
                value, ttl = compute()
                self.put(key, value, ttl)
                return value
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                waiter.set()

    def invalidate(self, predicate: Callable[[Hashable], bool] | None = None) -> None:
        """Drop every entry (or those whose key matches `predicate`)."""
        with self._lock:
            if predicate is None:
                self._entries.clear()
            else:
                for key in [k for k in self._entries if predicate(k)]:
                    del self._entries[key]


class WriteFence:
    """Keeps an instance's cached reads of a collection from outliving its own writes.

    A write is *in flight* from before its commit until its answer is ready. Firestore may
    already have it then (a listener in another tab shows it), so while one is, reads of that
    collection skip the cache; and an answer computed across a write (it may predate the
    commit) is not stored. The write drops the collection's entries before it ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._generation: dict[str, int] = {}

    def generation(self, collection: str) -> int | None:
        """The collection's write count, or None while a write of it is in flight."""
        with self._lock:
            if self._in_flight.get(collection):
                return None
            return self._generation.get(collection, 0)

    def begin(self, collection: str) -> None:
        """A write of `collection` starts (call `end` in a `finally`)."""
        with self._lock:
            self._in_flight[collection] = self._in_flight.get(collection, 0) + 1
            self._generation[collection] = self._generation.get(collection, 0) + 1

    def end(self, collection: str) -> None:
        """One write of `collection` (each `begin` has its `end`) is over."""
        with self._lock:
            self._in_flight[collection] -= 1
            self._generation[collection] += 1

    def cached(self, cache: TTLCache[V], collection: str, key: Hashable,
               compute: Callable[[], tuple[V, float | None]]) -> V:
        """`cache.get_or_compute(key, compute)` unless a write of `collection` is in flight
        (then `compute()`'s value, not stored); stored only if no write began meanwhile."""
        generation = self.generation(collection)
        if generation is None:
            return compute()[0]

        def compute_unless_written() -> tuple[V, float | None]:
            value, ttl_s = compute()
            return value, (ttl_s if self.generation(collection) == generation else 0)

        return cache.get_or_compute(key, compute_unless_written)


@dataclass(frozen=True)
class CachedResponse:
    """An encoded answer, kept per instance: body, weak ETag, where it came from."""

    status: int
    body: bytes
    etag: str
    source: str
    count: int | None = None
    gzipped: list[bytes] = field(default_factory=list, compare=False)

    def gzip_body(self) -> bytes:
        """The gzip of the body, computed once per entry."""
        if not self.gzipped:
            self.gzipped.append(http.gzip_bytes(self.body))
        return self.gzipped[0]


# --- the keys of the response cache: built and read only here -----------------------------------

def list_key(query: ReadQuery) -> tuple[str, ReadQuery]:
    """The cache key of a list answer."""
    return ("list", query)


def get_key(collection: str, doc_id: str, fields: tuple[str, ...] | None) -> tuple[Any, ...]:
    """The cache key of a single document's answer."""
    return ("get", collection, doc_id, fields)


def key_collection(key: Any) -> str | None:
    """The collection a response-cache key belongs to (what a write invalidates)."""
    if key[0] == "list":
        return key[1].collection
    return key[1]
