"""The local event bridge: Firestore emulator changes become the CloudEvents Eventarc sends.

The emulators have no Eventarc. The bridge listens to each configured collection
(`on_snapshot`) and POSTs every change to the `publish_snapshot` function as Eventarc would:
binary mode, `Content-Type: application/protobuf`, a `DocumentEventData` body, and the same
attributes (`ce-type` `google.cloud.firestore.document.v1.written`, `ce-source`,
`ce-subject` `documents/<collection>/<id>`, `ce-document`, `ce-database`, `ce-namespace`,
`ce-project`, `ce-time`, `ce-id`). Like Eventarc it delivers concurrently (so out of order)
and retries a failed delivery (HTTP 429 / 5xx / connection errors) with backoff.

It differs from Eventarc where a listener must: the first snapshot of a collection (the data
already there when the bridge starts) sends nothing; several writes to one document between two
listener snapshots arrive as one change; a delete's `time` is the read time of the snapshot
that saw it gone (at or after the delete, before any re-creation).

    python -m dev.bridge --target http://127.0.0.1:8080/publish_snapshot   # COLLECTIONS, ...

`make dev` starts it next to the functions (`dev/stack.py`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from shared.events import DocumentVersion, encode_event, to_ns

log = logging.getLogger("dashboard.bridge")

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass
class BridgeStats:
    """What the bridge did so far."""

    changes: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    in_flight: int = 0


class EventBridge:
    """Listen to collections of a Firestore (emulator) and POST their changes as CloudEvents."""

    def __init__(self, db: Any, target_url: str, collections: tuple[str, ...] | list[str], *,
                 project: str, database: str = "(default)", workers: int = 64,
                 timeout_s: float = 60.0, retry_for_s: float = 120.0):
        self.db = db
        self.target_url = target_url
        self.collections = tuple(collections)
        self.project = project
        self.database = database
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.stats = BridgeStats()
        self._lock = threading.Condition()
        self._known: dict[tuple[str, str], DocumentVersion] = {}
        self._primed: set[str] = set()
        self._watches: list[Any] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                               thread_name_prefix="bridge")
        self._session_local = threading.local()

    def start(self) -> EventBridge:
        """Start one listener per collection; returns once each has its first snapshot."""
        for collection in self.collections:
            primed = threading.Event()
            watch = self.db.collection(collection).on_snapshot(
                lambda docs, changes, read_time, c=collection, p=primed:
                self._on_snapshot(c, docs, changes, read_time, p))
            self._watches.append(watch)
            if not primed.wait(30):
                raise RuntimeError(f"the listener of {collection} got no first snapshot in 30 s")
        log.info("bridge: %s -> %s", ", ".join(self.collections), self.target_url)
        return self

    def stop(self) -> None:
        """Stop listening and wait for the deliveries in flight."""
        for watch in self._watches:
            watch.unsubscribe()
        self._watches.clear()
        self._executor.shutdown(wait=True, cancel_futures=False)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until no delivery is in flight (tests); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.stats.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # --- listener -------------------------------------------------------------------------

    def _on_snapshot(self, collection: str, docs: list[Any], changes: list[Any],
                     read_time: Any, primed: threading.Event) -> None:
        if collection not in self._primed:
            # The data that was there before the bridge: Eventarc would not send it either.
            for doc in docs:
                self._known[(collection, doc.id)] = _version(doc)
            self._primed.add(collection)
            primed.set()
            return
        for change in changes:
            doc = change.document
            key = (collection, doc.id)
            old = self._known.get(key)
            if change.type.name == "REMOVED":
                self._known.pop(key, None)
                value, event_time_ns = None, to_ns(read_time)
                old = old or _version(doc)
            else:
                value = _version(doc)
                self._known[key] = value
                event_time_ns = value.update_time_ns
            headers, body = encode_event(project=self.project, database=self.database,
                                         collection=collection, document_id=doc.id,
                                         value=value, old_value=old,
                                         event_time_ns=event_time_ns)
            with self._lock:
                self.stats.changes += 1
                self.stats.in_flight += 1
            self._executor.submit(self._deliver, headers, body)

    # --- delivery -------------------------------------------------------------------------

    def _session(self) -> Any:
        import requests

        session = getattr(self._session_local, "session", None)
        if session is None:
            session = self._session_local.session = requests.Session()
        return session

    def _deliver(self, headers: dict[str, str], body: bytes) -> None:
        import requests

        give_up = time.monotonic() + self.retry_for_s
        delay = 0.2
        outcome = "failed"
        try:
            while True:
                try:
                    response = self._session().post(self.target_url, data=body,
                                                     headers=headers, timeout=self.timeout_s)
                    status = response.status_code
                except requests.RequestException as exc:
                    status, detail = 0, type(exc).__name__
                else:
                    detail = response.text[:200]
                if 200 <= status < 300:
                    outcome = "delivered"
                    return
                if status and status not in RETRYABLE_STATUS:
                    log.error("bridge: %s for %s refused with %s: %s", headers["ce-id"],
                              headers["ce-document"], status, detail)
                    return
                if time.monotonic() + delay > give_up:
                    log.error("bridge: giving up on %s for %s after %s", headers["ce-id"],
                              headers["ce-document"], status or detail)
                    return
                with self._lock:
                    self.stats.retried += 1
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, 10.0)
        finally:
            with self._lock:
                self.stats.in_flight -= 1
                if outcome == "delivered":
                    self.stats.delivered += 1
                else:
                    self.stats.failed += 1
                self._lock.notify_all()


def _version(doc: Any) -> DocumentVersion:
    return DocumentVersion(doc.to_dict() or {}, to_ns(doc.update_time),
                           to_ns(doc.create_time) if doc.create_time else None)


def main(argv: list[str] | None = None) -> int:
    """Run the bridge in the foreground against the emulator of FIRESTORE_EMULATOR_HOST."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="http://127.0.0.1:8080/publish_snapshot",
                        help="URL of the publish_snapshot function")
    parser.add_argument("--collection", action="append",
                        help="collection to watch (repeatable; default: COLLECTIONS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from shared.clients import get_db
    from shared.settings import get_settings

    settings = get_settings()
    if not settings.uses_emulators:
        parser.error("FIRESTORE_EMULATOR_HOST is not set: the bridge is for the local emulator")
    bridge = EventBridge(get_db(settings), args.target,
                         args.collection or settings.collections,
                         project=settings.project, database=settings.database).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
