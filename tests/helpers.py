"""Helpers shared by the tests: sample documents, a local HTTP host for the read API."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from typing import Any

import flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.routing import Rule
from werkzeug.test import Client

from functions.collection_api import serve as read_api
from functions.collection_api.context import ApiContext
from shared.snapshots import rebuild_snapshot

UTC = dt.UTC
ROLES = ("creator", "editor", "admin")
STATUSES = ("active", "inactive", "pending")


def user_doc(i: int) -> dict[str, Any]:
    """A deterministic, varied user document (typed as Firestore stores it)."""
    return {
        "name": f"User {i:03d}",
        "email": f"user{i}@example.com",
        "role": ROLES[i % 3],
        "status": STATUSES[(i // 3) % 3],
        "hourlyRate": [40, 55.5, 80, 100, 150][i % 5],
        "skills": [["editing"], ["sound", "drone"], [], ["editing", "color"]][i % 4],
        "createdAt": dt.datetime(2023, 1, 1, tzinfo=UTC) + dt.timedelta(days=7 * i),
    }


def seed_users(db: Any, count: int, *, start: int = 0) -> dict[str, dict[str, Any]]:
    """Write `count` users `u_<i>` with a server `updatedAt`; returns {id: data}."""
    from google.cloud import firestore

    written = {}
    batch = db.batch()
    for i in range(start, start + count):
        doc_id = f"u_{i:04d}"
        data = user_doc(i)
        batch.set(db.collection("users").document(doc_id),
                  {**data, "updatedAt": firestore.SERVER_TIMESTAMP})
        written[doc_id] = data
        if len(written) % 400 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return written


def publish(db: Any, storage_client: Any, bucket: str, collection: str = "users") -> int:
    """Write the collection's snapshot from Firestore's current state."""
    return rebuild_snapshot(db, storage_client, bucket, collection, timeout_s=30)


def read_api_client(context: ApiContext) -> Client:
    """A WSGI test client that serves `/<collection>/...` through `read_api.handle`, mounted
    the way Cloud Functions (and dev/app.py) hand requests to a function."""
    mounts = {}
    for collection in context.settings.collections:
        app = flask.Flask(f"test-{collection}")

        def view(path: str = "", collection: str = collection) -> flask.Response:
            return read_api.handle(flask.request, collection, context)

        # Like functions-framework: every method reaches the function, on every path.
        app.url_map.add(Rule("/", defaults={"path": ""}, endpoint="run"))
        app.url_map.add(Rule("/<path:path>", endpoint="run"))
        app.view_functions["run"] = view
        mounts[f"/{collection}"] = app
    dispatcher = DispatcherMiddleware(flask.Flask("none"), mounts)

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO", "").count("/") == 1:
            environ["PATH_INFO"] += "/"
        return dispatcher(environ, start_response)

    return Client(wsgi)


class BlackHole:
    """A TCP port that accepts connections and never answers (a hung Firestore)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


def closed_port() -> str:
    """A loopback address where nothing listens (a stopped emulator)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"


def firestore_client_at(host: str, project: str) -> Any:
    """A real Firestore client bound to the emulator address `host` (read at construction)."""
    import os
    from unittest import mock

    from google.cloud import firestore

    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": host}):
        return firestore.Client(project=project)


def emulator_id_token(project: str, uid: str = "admin-1", **claims: Any) -> str:
    """An unsigned Firebase ID token of the same shape the Auth emulator issues.

    Minted here, not signed in at the emulator, because these function-level tests run on the
    session's Firestore and Storage emulators only (no Auth emulator: it costs 7-13 s to start)
    and test what the functions do with a token's claims, not sign-in. firebase-admin accepts
    it only while FIREBASE_AUTH_EMULATOR_HOST is set; the real signature path is tested in
    tests/test_auth.py, and sign-in through the Auth emulator in tests/browser/.
    """
    import base64
    import json
    import time

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    now = int(time.time())
    payload = {"iss": f"https://securetoken.google.com/{project}", "aud": project, "sub": uid,
               "user_id": uid, "iat": now, "exp": now + 3600, "auth_time": now, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."
