"""The local stack's event host: Google's Firestore emulator's trigger deliveries, run the way
Eventarc runs them against a deployed `publish_snapshot`.

The emulator (`--functions_emulator HOST:PORT`) POSTs each change of a registered trigger to
`/functions/projects/<project>/triggers/<triggerId>` once, one at a time, and never retries.
Eventarc instead pushes events to the function's Cloud Run service concurrently and redelivers a
failed one (a non-2xx answer, or none) with exponential backoff. This host bridges the two:

- Each delivery is answered 202 at once (so the emulator goes on delivering) and run on its own
  worker thread, up to `concurrency` at a time. `publish_snapshot` holds a request until its
  change is in a written snapshot (about one write slot a second, every change that arrived
  meanwhile in the same write), so a worker waits mostly idle: the concurrency has to cover a
  whole burst, or the burst queues behind held requests and is written a wave per slot. The
  default (2,000) holds a burst that size at once; a held worker is an idle thread (2,000 held:
  about 45 MiB). Deployed, a function takes concurrency x max instances (80 x 3) at once and
  Eventarc backs off beyond that (see `DeliverySettings`).
- A failed attempt (non-2xx, or an exception) is tried again after `retry_min_s`, doubling up to
  `retry_max_s`, until `max_attempts` attempts or `max_age_s` since the first one; each retry is
  logged, and so is the final drop. Waiting retries hold no worker: one dispatcher thread hands
  queued deliveries and due retries to the workers. A retry is the same event (same `ce-id`,
  same bytes): the publisher is idempotent.
- At most `max_outstanding` deliveries are held (queued, under way or waiting for a retry); one
  more is refused with 503 and logged, so memory stays bounded under any flood.
"""

from __future__ import annotations

import base64
import binascii
import collections
import concurrent.futures
import heapq
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from werkzeug.wrappers import Request, Response

log = logging.getLogger("dashboard.stack")

# The path the Firestore emulator POSTs a trigger's events to (below the `/functions` mount).
DELIVERY_PATH = re.compile(r"^/projects/(?P<project>[^/]+)/triggers/(?P<trigger>[^/]+)$")


@dataclass(frozen=True)
class DeliverySettings:
    """How the event host runs deliveries (local stack only: never deployed).

    Environment: `EVENT_DELIVERY_CONCURRENCY` (deliveries under way at once; default 2,000: a
    burst of that size is held in one go; the deployed function takes `DEPLOY_PUBLISH_CONCURRENCY`
    x `DEPLOY_PUBLISH_MAX_INSTANCES` per collection, then Cloud Run answers 429 and Eventarc backs
    off), `EVENT_RETRY_MIN_S` (0.5; Eventarc: 10), `EVENT_RETRY_MAX_S` (8; Eventarc: 600),
    `EVENT_RETRY_ATTEMPTS` (attempts in all, first included; 6), `EVENT_RETRY_MAX_AGE_S` (no
    retry starts later than this after the first attempt; 60; Eventarc: 24 h),
    `EVENT_MAX_OUTSTANDING` (20,000).
    """

    concurrency: int = 2000
    retry_min_s: float = 0.5
    retry_max_s: float = 8.0
    max_attempts: int = 6
    max_age_s: float = 60.0
    max_outstanding: int = 20_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeliverySettings:
        """Read and validate (`os.environ` by default); `ConfigError` names the first bad
        variable."""
        from shared.errors import ConfigError
        from shared.settings import _Reader  # the application's typed reader, same messages

        reader = _Reader(os.environ if env is None else env)
        settings = cls(
            concurrency=int(reader.number("EVENT_DELIVERY_CONCURRENCY", cls.concurrency,
                                          low=1, high=10_000)),
            retry_min_s=reader.number("EVENT_RETRY_MIN_S", cls.retry_min_s, low=0, high=600),
            retry_max_s=reader.number("EVENT_RETRY_MAX_S", cls.retry_max_s, low=0, high=600),
            max_attempts=int(reader.number("EVENT_RETRY_ATTEMPTS", cls.max_attempts,
                                           low=1, high=100)),
            max_age_s=reader.number("EVENT_RETRY_MAX_AGE_S", cls.max_age_s, low=0, high=86400),
            max_outstanding=int(reader.number("EVENT_MAX_OUTSTANDING", cls.max_outstanding,
                                              low=1, high=1_000_000)),
        )
        if settings.retry_max_s < settings.retry_min_s:
            raise ConfigError("setting EVENT_RETRY_MAX_S must not be below EVENT_RETRY_MIN_S",
                              code="invalid_setting", details={"setting": "EVENT_RETRY_MAX_S"})
        return settings

    def backoff_s(self, failed_attempts: int) -> float:
        """The wait before the next attempt, after `failed_attempts` (>= 1) failed ones."""
        return min(self.retry_max_s, self.retry_min_s * 2 ** (failed_attempts - 1))


@dataclass
class Delivery:
    """One event as received: its WSGI environ (without a body) and its decoded bytes."""

    environ: dict[str, Any]
    data: bytes
    first_attempt_at: float = field(default_factory=time.monotonic)
    attempts: int = 0

    @property
    def event_id(self) -> str:
        """The CloudEvent id (`ce-id`), for logs."""
        return str(self.environ.get("HTTP_CE_ID") or "?")

    @property
    def subject(self) -> str:
        """The CloudEvent subject (`documents/<path>`), for logs."""
        return str(self.environ.get("HTTP_CE_SUBJECT") or "?")

    def request_environ(self) -> dict[str, Any]:
        """A fresh environ for one attempt (its own body stream)."""
        return {**self.environ, "wsgi.input": BytesIO(self.data)}


@dataclass
class DeliveryStats:
    """What the host did, for tests and the benchmark."""

    received: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    refused: int = 0


class EventHost:
    """The WSGI app mounted at `/functions`: takes the emulator's deliveries and runs each with
    `cloud_event_app` (a functions-framework CloudEvent app), retrying failures (see the
    module). `close()` drops what is queued or waiting for a retry and waits for what runs."""

    def __init__(self, cloud_event_app: Callable, settings: DeliverySettings | None = None):
        self.app = cloud_event_app
        self.settings = settings or DeliverySettings()
        self.stats = DeliveryStats()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="delivery")
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the dispatcher waits on it
        self._idle = threading.Condition(self._lock)  # `wait_idle` waits on it
        self._ready: collections.deque[Delivery] = collections.deque()
        self._retries: list[tuple[float, int, Delivery]] = []  # a heap by due time
        self._order = itertools.count()
        self._outstanding = 0
        self._dispatcher: threading.Thread | None = None
        self._closed = False

    # --- the emulator's side ----------------------------------------------------------------

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or not DELIVERY_PATH.match(
                environ.get("PATH_INFO", "")):
            return _error(environ, start_response, 404, "not_found", "no function at this path")
        try:
            data = base64.b64decode(Request(environ).get_data(cache=False), validate=True)
        except (binascii.Error, ValueError):
            return _error(environ, start_response, 400, "bad_event",
                          "the body is not the base64 text of an event")
        kept = {key: value for key, value in environ.items()
                if key.startswith(("HTTP_", "CONTENT_", "SERVER_", "wsgi.", "REMOTE_"))
                or key in ("REQUEST_METHOD", "QUERY_STRING")}
        delivery = Delivery({**kept, "PATH_INFO": "/", "SCRIPT_NAME": "",
                             "CONTENT_LENGTH": str(len(data)), "wsgi.errors": sys.stderr}, data)
        with self._lock:
            self.stats.received += 1
            refused = self._closed or self._outstanding >= self.settings.max_outstanding
            if refused:
                self.stats.refused += 1
            else:
                self._outstanding += 1
                self._schedule(delivery, None)
        if refused:
            log.error("event host full or closed (%d held): refusing event %s of %s",
                      self.settings.max_outstanding, delivery.event_id, delivery.subject)
            return _error(environ, start_response, 503, "unavailable",
                          "the event host holds too many deliveries")
        return Response(status=202)(environ, start_response)

    # --- attempts and retries ---------------------------------------------------------------

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        failure = self._run(delivery)
        if failure is None:
            self._finish(delivered=True)
            return
        settings = self.settings
        age_s = time.monotonic() - delivery.first_attempt_at
        wait_s = settings.backoff_s(delivery.attempts)
        if delivery.attempts >= settings.max_attempts or age_s + wait_s > settings.max_age_s:
            log.error("dropping event %s of %s after %d attempts over %.1f s (retry budget: "
                      "EVENT_RETRY_ATTEMPTS=%d, EVENT_RETRY_MAX_AGE_S=%g); last failure: %s",
                      delivery.event_id, delivery.subject, delivery.attempts, age_s,
                      settings.max_attempts, settings.max_age_s, failure)
            self._finish(delivered=False)
            return
        log.warning("event %s of %s: attempt %d failed (%s); retrying in %.2f s",
                    delivery.event_id, delivery.subject, delivery.attempts, failure, wait_s)
        with self._lock:
            if self._closed:
                self._outstanding -= 1
                self._idle.notify_all()
                return
            self.stats.retried += 1
            self._schedule(delivery, time.monotonic() + wait_s)

    def _run(self, delivery: Delivery) -> str | None:
        """One attempt; None when the function answered 2xx, else what went wrong."""
        status: list[str] = []
        try:
            body = self.app(delivery.request_environ(),
                            lambda answer, headers, *_: status.append(answer))
            try:
                answer = b"".join(body)
            finally:
                if hasattr(body, "close"):
                    body.close()
        except Exception as exc:  # a delivery's failure must not stop the others
            log.debug("event %s raised", delivery.event_id, exc_info=True)
            return f"{type(exc).__name__}: {exc}"
        if status and status[0].startswith("2"):
            return None
        return (f"{status[0] if status else 'no answer'} "
                f"{answer[:200].decode('utf-8', 'replace')}").strip()

    def _finish(self, *, delivered: bool) -> None:
        with self._lock:
            self._outstanding -= 1
            if delivered:
                self.stats.delivered += 1
            else:
                self.stats.dropped += 1
            self._idle.notify_all()

    def _schedule(self, delivery: Delivery, due: float | None) -> None:
        """Queue a delivery now (`due` None) or as a retry at `due` (the lock held)."""
        if due is None:
            self._ready.append(delivery)
        else:
            heapq.heappush(self._retries, (due, next(self._order), delivery))
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                                name="delivery-dispatcher")
            self._dispatcher.start()
        self._work.notify()

    def _dispatch(self) -> None:
        """The dispatcher thread: hands queued deliveries, and retries once due, to the pool.
        Starting a worker thread takes a while, and the emulator waits for each answer before
        its next delivery: so the request only queues, and this thread starts the workers."""
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._ready or (self._retries and self._retries[0][0] <= now):
                        break
                    self._work.wait(self._retries[0][0] - now if self._retries else None)
                due = list(self._ready)
                self._ready.clear()
                while self._retries and self._retries[0][0] <= now:
                    due.append(heapq.heappop(self._retries)[2])
            for delivery in due:
                try:
                    self._pool.submit(self._attempt, delivery)
                except RuntimeError:  # closed meanwhile: the rest is dropped
                    return

    # --- the stack's side -------------------------------------------------------------------

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted delivery was delivered or dropped; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Stop: drop the deliveries queued or waiting for a retry, wait for those under way."""
        with self._lock:
            self._closed = True
            waiting = len(self._ready) + len(self._retries)
            self._ready.clear()
            self._retries.clear()
            self._work.notify_all()
        if waiting:
            log.warning("event host closed: %d queued or retrying deliveries dropped", waiting)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _error(environ, start_response, status: int, code: str, message: str):
    """The functions' JSON error shape, for requests that are not deliveries."""
    return Response(json.dumps({"error": {"code": code, "message": message}}), status=status,
                    content_type="application/json")(environ, start_response)
