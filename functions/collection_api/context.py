"""The per-instance state of the collection API (`ApiContext`), shared by reads and writes."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from functions.collection_api.breaker import CircuitBreaker
from functions.collection_api.cache import CachedResponse, TTLCache, WriteFence
from shared.settings import Settings
from shared.snapshot_reader import SnapshotView


@dataclass
class ApiContext:
    """The per-instance state of the collection API: settings, client providers, the response,
    snapshot and tombstone caches, the circuit breaker and the Firestore executor. One per
    instance (`functions.instance`); tests build one with emulator clients."""

    settings: Settings
    db: Callable[[], Any]
    storage: Callable[[], Any]
    cache: TTLCache[CachedResponse]
    snapshots: TTLCache[SnapshotView]
    tombstones: TTLCache[tuple[Any, Any]]
    breaker: CircuitBreaker
    executor: concurrent.futures.ThreadPoolExecutor
    # This instance's writes in flight, per collection (write.py): see WriteFence.
    fence: WriteFence = field(default_factory=WriteFence)
    # The last snapshot view of each collection: reused while its index keeps its generation;
    # its parsed parts carry over to the next generation.
    parsed: dict[str, SnapshotView] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, *, db: Callable[[], Any],
               storage: Callable[[], Any]) -> ApiContext:
        """A fresh context on these client providers."""
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            cache=TTLCache(settings.cache_ttl_s),
            snapshots=TTLCache(settings.cache_ttl_s, max_entries=32),
            tombstones=TTLCache(settings.cache_ttl_s, max_entries=32),
            breaker=CircuitBreaker(settings.breaker_cooldown_s),
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=32,
                                                           thread_name_prefix="firestore"),
        )

    def close(self) -> None:
        """Stop the executor's threads (a discarded instance, a test's end)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
