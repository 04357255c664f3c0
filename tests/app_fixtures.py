"""Fixtures of the application: read-API contexts and clients on the emulators, read counts."""

from __future__ import annotations

from collections import Counter

import pytest


@pytest.fixture
def make_context(emulator_env, firestore_client, storage_client, monkeypatch):
    """Build read contexts (one per simulated instance) on the emulator clients.

    `make_context(db=..., NAME="value", ...)` sets settings variables first; `db` replaces the
    Firestore client provider (e.g. a real client aimed at a dead port).
    """
    from functions.collection_api.context import ApiContext as ReadContext
    from shared.settings import Settings

    monkeypatch.setenv("ALLOWED_ORIGINS", "https://dash.example.org")
    monkeypatch.setenv("READ_ACCESS", "public")  # reads with tokens: tests/test_auth.py
    contexts = []

    def make(db=None, **env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        context = ReadContext.create(Settings.from_env(),
                                     db=db or (lambda: firestore_client),
                                     storage=lambda: storage_client)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def make_api(make_context):
    """`make_api(**env)`: an HTTP test client of the read API on a fresh instance."""
    from tests.helpers import read_api_client

    return lambda **env: read_api_client(make_context(**env))


@pytest.fixture
def api(make_api):
    """The read API on the emulators, as one instance."""
    return make_api()


@pytest.fixture
def snapshot_api(make_context, project_id):
    """The read API of an instance whose Firestore is down (nothing listens on its port)."""
    from tests.helpers import closed_port, firestore_client_at, read_api_client

    dead = firestore_client_at(closed_port(), project_id)
    return read_api_client(make_context(db=lambda: dead, FIRESTORE_TIMEOUT_S="1"))


class _Reads:
    """Firestore document reads of this test's project, as Firestore bills them (counted by the
    session's gRPC proxy, ``emulators.meter``)."""

    def __init__(self, meter, project):
        self.meter, self.project = meter, project

    def count(self) -> int:
        return self.meter.reads(self.project)

    def reset(self) -> None:
        self.meter.reset(self.project)


@pytest.fixture
def reads(emulators, project_id):
    """Billed document reads of this test's project."""
    return _Reads(emulators.meter, project_id)


@pytest.fixture
def fresh_instance():
    """A fresh function instance. The state of an instance is its `functions.instance`
    `Instance`: every app a test builds over main.py (`dev.app.create_stack_app`) loads main.py
    anew, with its own, and each command of `ops` builds its own. What stays process-wide is
    firebase-admin's registry of apps (its certificate caches): forgotten before and after."""
    from shared.auth import reset_firebase_apps

    reset_firebase_apps()
    yield
    reset_firebase_apps()


# Outcomes of the hostile-input suite, {(function, "2xx"|"4xx"): count}, printed at the end.
HOSTILE_OUTCOMES: Counter = Counter()


def pytest_terminal_summary(terminalreporter):
    """Print the hostile-input suite's request count and outcome table."""
    if not HOSTILE_OUTCOMES:
        return
    terminalreporter.section("hostile input")
    functions = sorted({name for name, _ in HOSTILE_OUTCOMES})
    outcomes = sorted({outcome for _, outcome in HOSTILE_OUTCOMES})
    terminalreporter.write_line(f"{'function':<20}" + "".join(f"{o:>8}" for o in outcomes))
    for name in functions:
        terminalreporter.write_line(f"{name:<20}" + "".join(
            f"{HOSTILE_OUTCOMES[(name, o)]:>8}" for o in outcomes))
    server_errors = sum(v for (_, o), v in HOSTILE_OUTCOMES.items() if o == "5xx")
    terminalreporter.write_line(f"requests tried: {sum(HOSTILE_OUTCOMES.values())}, "
                                f"5xx: {server_errors}")
