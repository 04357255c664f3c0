"""The Google clients of one instance (`Clients`), created lazily, once, for one Settings.

Nothing here runs at import time: a cold start pays for a client only when a request needs it.
The owner of an instance's state (`functions.instance.Instance`, or a command of `ops`) holds
one `Clients`; tests build their own. The standard emulator variables are honoured exactly as
the Google clients do.
"""

from __future__ import annotations

import threading
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
        self._db: firestore.Client | None = None
        self._storage: storage.Client | None = None

    def db(self) -> firestore.Client:
        """The Firestore client."""
        if self._db is None:
            with self._lock:
                if self._db is None:
                    self._db = new_firestore_client(self.settings)
        return self._db

    def storage(self) -> storage.Client:
        """The Cloud Storage client."""
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    self._storage = new_storage_client(self.settings)
        return self._storage

    def close(self) -> None:
        """Close the clients built so far (their channels and sessions)."""
        with self._lock:
            made, self._db, self._storage = [self._db, self._storage], None, None
        for client in made:
            if client is not None:
                client.close()


def firestore_deadline(settings: Settings) -> dict[str, Any]:
    """`retry` and `timeout` arguments that bound one Firestore call by FIRESTORE_TIMEOUT_S."""
    return deadline(settings.firestore_timeout_s)
