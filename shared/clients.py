"""The Google clients of one instance (`Clients`), created lazily, once, for one Settings.

Nothing here runs at import time: a cold start pays for a client only when a request needs it.
The owner of an instance's state (`functions.instance.Instance`, or a command of `ops`) holds
one `Clients`; tests build their own. The standard emulator variables are honoured exactly as
the Google clients do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.retry import deadline
from shared.settings import Settings

if TYPE_CHECKING:
    from google.cloud import firestore, storage


def new_firestore_client(settings: Settings) -> firestore.Client:
    """A Firestore client for the settings' project and database."""
    from google.cloud import firestore

    return firestore.Client(project=settings.project, database=settings.database)


def new_storage_client(settings: Settings) -> storage.Client:
    """A Cloud Storage client for the settings' project (anonymous against the emulator)."""
    from google.cloud import storage

    if settings.environ.get("STORAGE_EMULATOR_HOST", ""):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=settings.project, credentials=AnonymousCredentials())
    return storage.Client(project=settings.project)


class Clients:
    """The Firestore and Cloud Storage clients of one instance, each built on first use
    (thread-safe: gen2 serves many requests at once)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        # One lock per client: building one (its library's first import: 0.1 to 0.5 s) must
        # not hold up the other. A cold instance's first read in an outage builds the Firestore
        # client on a worker while the request, past its deadline, needs the storage client.
        self._building = {"firestore": threading.Lock(), "storage": threading.Lock()}
        self._made: dict[str, Any] = {}

    def _once(self, name: str, build: Callable[[Settings], Any]) -> Any:
        client = self._made.get(name)
        if client is None:
            with self._building[name]:
                client = self._made.get(name)
                if client is None:
                    client = build(self.settings)
                    with self._lock:
                        self._made[name] = client
        return client

    def db(self) -> firestore.Client:
        """The Firestore client."""
        return self._once("firestore", new_firestore_client)

    def storage(self) -> storage.Client:
        """The Cloud Storage client."""
        return self._once("storage", new_storage_client)

    def close(self) -> None:
        """Close the clients built so far (their channels and sessions)."""
        with self._lock:
            made = list(self._made.values())
            self._made.clear()
        for client in made:
            client.close()


def firestore_deadline(settings: Settings) -> dict[str, Any]:
    """`retry` and `timeout` arguments that bound one Firestore call by FIRESTORE_TIMEOUT_S."""
    return deadline(settings.firestore_timeout_s)
