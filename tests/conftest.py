"""Shared fixtures: the local emulators, and real Google clients pointed at them.

Session scope
    ``emulators``: Google's Firestore emulator and a Cloud Storage emulator, started once per
    test session by ``emulators.harness`` and stopped at its end. When
    ``FIRESTORE_EMULATOR_HOST`` / ``STORAGE_EMULATOR_HOST`` are already set (a running
    ``make dev``, an emulator of your own), those are used instead and left running. Our
    emulators log to a scratch directory, kept as ``test-artifacts/*.log`` only when a test
    failed. The clients reach Firestore through
    ``emulators.meter`` (``emulators.firestore_host``), a gRPC proxy that counts the document
    reads Firestore would bill (Google's emulator keeps no such counter); the emulator's REST
    endpoints (clearing a project, loading rules, registering triggers) are reached at
    ``emulators.firestore.host``. The emulator delivers the change events of registered
    triggers to ``emulators.events`` (an ``EventRouter``, by project).

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

Billed reads of a test's project: the ``reads`` fixture (tests/app_fixtures.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, storage

from emulators import harness
from emulators.meter import ReadMeter

# A run's emulator logs and browser pictures go to a scratch directory; `pytest_sessionfinish`
# moves them to test-artifacts/ when a test failed (or KEEP_TEST_ARTIFACTS=1 asks for them, e.g.
# for the pictures of the docs) and deletes them after a green run.
KEPT_ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARTIFACTS = Path(tempfile.mkdtemp(prefix="test-artifacts-"))
# Under pytest-xdist (`make test`) each worker has its own emulators: their logs carry its name.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
WORKER_SUFFIX = f"-{WORKER}" if WORKER else ""


def pytest_sessionfinish(session, exitstatus):
    """Keep the run's logs and pictures (in test-artifacts/) only when something failed."""
    keep = exitstatus != 0 or os.environ.get("KEEP_TEST_ARTIFACTS") == "1"
    harness.keep_or_discard(ARTIFACTS, keep, KEPT_ARTIFACTS)


class EventRouter:
    """The session emulator's ``--functions_emulator``: takes its trigger deliveries
    (``/functions/projects/<project>/triggers/<id>``) and hands each to the WSGI app a test
    registered for that project with ``route(project, app)`` (404 for the others)."""

    def __init__(self) -> None:
        from werkzeug.serving import make_server

        self.apps: dict[str, object] = {}
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, project: str, app) -> None:
        """Hand the project's deliveries to `app` (None: answer them 404 again); the app it
        replaces is closed (`dev.app.create_stack_app`'s `close`: its queued deliveries end)."""
        previous = self.apps.get(project)
        self.apps[project] = app
        if previous is not None and previous is not app and hasattr(previous, "close"):
            previous.close()

    def __call__(self, environ, start_response):
        match = re.match(r"^/functions/projects/([^/]+)/", environ.get("PATH_INFO", ""))
        app = self.apps.get(match.group(1)) if match else None
        if app is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        for project in list(self.apps):
            self.route(project, None)


@dataclass
class Emulators:
    firestore: harness.RunningEmulator
    storage: harness.RunningEmulator
    meter: ReadMeter
    events: EventRouter | None  # None: an external emulator (its deliveries go elsewhere)

    @property
    def firestore_host(self) -> str:
        """What the clients use as FIRESTORE_EMULATOR_HOST: the counting proxy."""
        return self.meter.host


@pytest.fixture(scope="session")
def emulators():
    with contextlib.ExitStack() as stack:
        events = EventRouter()
        stack.callback(events.stop)
        firestore_emulator = harness.firestore_from_env_or_start(
            log_path=ARTIFACTS / f"firestore-emulator{WORKER_SUFFIX}.log",
            functions_emulator=events.host)
        stack.callback(firestore_emulator.stop)
        storage_emulator = harness.storage_from_env_or_start(
            log_path=ARTIFACTS / f"storage-emulator{WORKER_SUFFIX}.log")
        stack.callback(storage_emulator.stop)
        meter = ReadMeter(firestore_emulator.host).start()
        stack.callback(meter.stop)
        yield Emulators(firestore=firestore_emulator, storage=storage_emulator, meter=meter,
                        events=events if firestore_emulator.process is not None else None)


@pytest.fixture
def project_id() -> str:
    return f"demo-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def firestore_client(emulators, project_id, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulators.firestore_host)
    client = firestore.Client(project=project_id)
    yield client
    if emulators.events is not None:  # the project's late deliveries reach no test any more
        emulators.events.route(project_id, None)
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
        "FIRESTORE_EMULATOR_HOST": emulators.firestore_host,
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
