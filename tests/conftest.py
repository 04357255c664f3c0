"""Shared fixtures: the local emulators, and real Google clients pointed at them.

Session scope
    ``emulators``: a Firestore and a Cloud Storage emulator, started once per test session by
    ``emulators.harness`` and stopped at its end. When ``FIRESTORE_EMULATOR_HOST`` /
    ``STORAGE_EMULATOR_HOST`` are already set (Google's emulator, a running ``make dev``), those
    are used instead and left running. Our emulators log to ``test-artifacts/*.log``.

Function scope
    ``project_id``       a fresh ``demo-test-<hex>``; a new project is an empty Firestore, so
                         tests never see each other's documents (``demo-`` projects never reach
                         a real Google project).
    ``firestore_client`` ``google.cloud.firestore.Client(project=project_id)`` on the emulator
                         (``FIRESTORE_EMULATOR_HOST`` set with monkeypatch).
    ``storage_client``   ``google.cloud.storage.Client`` with anonymous credentials on the
                         emulator (``STORAGE_EMULATOR_HOST`` set with monkeypatch).
    ``bucket``           a fresh bucket ``test-<hex>``.
    ``emulator_env``     the environment the application reads, monkeypatched:
                         ``FIRESTORE_EMULATOR_HOST``, ``STORAGE_EMULATOR_HOST``,
                         ``GOOGLE_CLOUD_PROJECT=project_id``, ``SNAPSHOT_BUCKET=<bucket name>``;
                         returns them as a dict.

Tests that need the Firestore emulator's admin endpoints (statistics) read
``emulators.firestore.admin_url`` and skip when it is None (an external emulator).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, storage

from emulators import harness

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Emulators:
    firestore: harness.RunningEmulator
    storage: harness.RunningEmulator


@pytest.fixture(scope="session")
def emulators():
    firestore_emulator = harness.firestore_from_env_or_start(
        log_path=ARTIFACTS / "firestore-emulator.log"
    )
    try:
        storage_emulator = harness.storage_from_env_or_start(
            log_path=ARTIFACTS / "storage-emulator.log"
        )
    except BaseException:
        firestore_emulator.stop()
        raise
    yield Emulators(firestore=firestore_emulator, storage=storage_emulator)
    storage_emulator.stop()
    firestore_emulator.stop()


@pytest.fixture
def project_id() -> str:
    return f"demo-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def firestore_client(emulators, project_id, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore.host)
    client = firestore.Client(project=project_id)
    yield client
    client.close()
    # The project is never used again: free the emulator's memory (best effort).
    with contextlib.suppress(harness.EmulatorError):
        harness.clear_firestore_project(emulators.firestore, project_id)


@pytest.fixture
def storage_client(emulators, project_id, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulators.storage.host)
    client = storage.Client(project=project_id, credentials=AnonymousCredentials())
    yield client
    client.close()


@pytest.fixture
def bucket(storage_client):
    created = storage_client.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
    yield created
    with contextlib.suppress(Exception):
        created.delete(force=True)


@pytest.fixture
def emulator_env(emulators, project_id, bucket, monkeypatch) -> dict[str, str]:
    env = {
        "FIRESTORE_EMULATOR_HOST": emulators.firestore.host,
        "STORAGE_EMULATOR_HOST": emulators.storage.host,
        "GOOGLE_CLOUD_PROJECT": project_id,
        "SNAPSHOT_BUCKET": bucket.name,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


# --- application fixtures ---
# Read-API contexts, HTTP test clients and billed-read counters live in tests/app_fixtures.py.
pytest_plugins = ["tests.app_fixtures"]
