"""The one owner of a function instance's state.

An `Instance` holds, for one `Settings`, everything a Cloud Functions instance keeps between
requests: its Google clients, the collection API's caches, circuit breaker and executor, the
snapshot publisher, the migrate function's context. Each part is built on first use, so a
function pays only for what it serves. `main.py` holds one `LazyInstance` (nothing is read or
built at import: the settings on the first request); tests build fresh ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from functions.collection_api.context import ApiContext
from functions.migrate.routes import MigrateContext
from functions.publish.catchup_http import CatchUpContext, InvokerCheck
from functions.publish.publisher import Publisher
from shared.clients import Clients
from shared.settings import Settings


class Instance:
    """The state of one instance for one set of settings; its parts built on first use."""

    def __init__(self, settings: Settings, clients: Clients | None = None):
        self.settings = settings
        self.clients = clients or Clients(settings)
        self._lock = threading.Lock()
        self._parts: dict[str, Any] = {}

    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = build()
        return part

    def collection_api(self) -> ApiContext:
        """The collection API's context: response, snapshot and tombstone caches, breaker."""
        return self._part("collection_api", lambda: ApiContext.create(
            self.settings, db=self.clients.db, storage=self.clients.storage))

    def publisher(self) -> Publisher:
        """The snapshot publisher of this instance."""
        return self._part("publisher", lambda: Publisher(
            self.settings, db=self.clients.db, storage=self.clients.storage))

    def catch_up(self) -> CatchUpContext:
        """The catch-up function's context (it publishes through this instance's publisher)."""
        return self._part("catch_up", lambda: CatchUpContext(
            self.settings, self.clients.db, self.clients.storage, self.publisher,
            InvokerCheck(self.settings)))

    def migrate(self) -> MigrateContext:
        """The migrate function's context."""
        return self._part("migrate", lambda: MigrateContext.create(self.settings, self.clients))

    def close(self) -> None:
        """Stop the executor and close the clients (a test's end; an instance going away)."""
        api = self._parts.get("collection_api")
        if api is not None:
            api.close()
        self._parts.clear()
        self.clients.close()


class LazyInstance:
    """The instance of a process, built from the environment on first use (settings errors
    surface then, as a JSON error of the request that met them, and again on the next)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instance: Instance | None = None

    def get(self) -> Instance:
        """This process's instance (built now if it is the first use)."""
        if self._instance is None:
            with self._lock:
                if self._instance is None:
                    self._instance = Instance(Settings.from_env())
        return self._instance

    def collection_api(self) -> ApiContext:
        """`get().collection_api()`."""
        return self.get().collection_api()

    def publisher(self) -> Publisher:
        """`get().publisher()`."""
        return self.get().publisher()

    def catch_up(self) -> CatchUpContext:
        """`get().catch_up()`."""
        return self.get().catch_up()

    def migrate(self) -> MigrateContext:
        """`get().migrate()`."""
        return self.get().migrate()

    def close(self) -> None:
        """Close the instance if it was built (the next use builds a new one)."""
        with self._lock:
            instance, self._instance = self._instance, None
        if instance is not None:
            instance.close()
