"""Google clients, created lazily and once per instance, behind one accessor each.

Nothing here runs at import time: a cold start pays for a client only when a request needs it.
The accessors take the settings so tests (and the CLI) can build clients for any project;
the standard emulator variables are honoured exactly as the Google clients do.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from google.cloud import firestore, storage

_lock = threading.Lock()
_firestore_clients: dict[tuple[str, str, str], firestore.Client] = {}
_storage_clients: dict[tuple[str, str], storage.Client] = {}


def get_db(settings: Settings) -> firestore.Client:
    """The Firestore client of this instance for the settings' project and database."""
    key = (settings.project, settings.database, settings.environ.get("FIRESTORE_EMULATOR_HOST", ""))
    client = _firestore_clients.get(key)
    if client is None:
        with _lock:
            client = _firestore_clients.get(key)
            if client is None:
                from google.cloud import firestore

                client = firestore.Client(project=settings.project, database=settings.database)
                _firestore_clients[key] = client
    return client


def get_storage(settings: Settings) -> storage.Client:
    """The Cloud Storage client of this instance (anonymous against the emulator)."""
    emulator = settings.environ.get("STORAGE_EMULATOR_HOST", "")
    key = (settings.project, emulator)
    client = _storage_clients.get(key)
    if client is None:
        with _lock:
            client = _storage_clients.get(key)
            if client is None:
                from google.cloud import storage

                if emulator:
                    from google.auth.credentials import AnonymousCredentials

                    client = storage.Client(project=settings.project,
                                            credentials=AnonymousCredentials())
                else:
                    client = storage.Client(project=settings.project)
                _storage_clients[key] = client
    return client


def reset_clients() -> None:
    """Forget every client (tests use it to simulate a fresh instance)."""
    with _lock:
        _firestore_clients.clear()
        _storage_clients.clear()


def firestore_deadline(settings: Settings) -> dict[str, Any]:
    """`retry` and `timeout` arguments that bound one Firestore call by FIRESTORE_TIMEOUT_S.

    A `timeout` alone does not bound a call: the client's default retry keeps retrying
    transient errors for minutes. This retry gives up when the same budget is spent.
    """
    from google.api_core.retry import Retry, if_transient_error

    budget = settings.firestore_timeout_s
    return {"retry": Retry(predicate=if_transient_error, initial=0.05, maximum=budget / 4,
                           multiplier=2.0, timeout=budget),
            "timeout": budget}
