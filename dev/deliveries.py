"""The local stack's event host: Google's Firestore emulator's trigger deliveries, run the way
Eventarc runs them against a deployed `publish_snapshot`.

The emulator (`--functions_emulator HOST:PORT`) POSTs each change of a registered trigger to
`/functions/projects/<project>/triggers/<triggerId>` once, one at a time, and never retries.
Eventarc instead pushes events to the function's Cloud Run service concurrently and redelivers a
failed one (a non-2xx answer, or none) with exponential backoff. This host bridges the two:

- Each delivery is answered 202 at once (so the emulator goes on delivering), up to
  `concurrency` are under way at a time. The publisher holds a change until it is in a written
  snapshot (about one write slot a second, every change that arrived meanwhile in the same
  write), so the concurrency has to cover a whole burst, or the burst queues behind held
  changes and is written a wave per slot. The default (2,000) holds a burst that size at once.
  Deployed, a function takes concurrency x max instances (80 x 3) at once and Eventarc backs
  off beyond that (see `DeliverySettings`).
- Batches (the stack's way, `batch_app`): what arrived within `BATCH_LINGER_S` goes, decoded,
  to the publisher in one call (`functions.publish.serve.handle_events`), on one worker
  thread, which answers for each event. The emulator waits for each answer before its next
  delivery, and the answers share this process's interpreter lock with the work: an event's
  own request through functions-framework (a thread, Flask, the CloudEvent parsing: about
  1 ms of CPU each) slowed the emulator's pace by half or more; a batch costs well under
  0.1 ms an event. One request per delivery (a `cloud_event_app`, e.g. `publish_snapshot` as
  functions-framework serves it, as Eventarc calls it) is still there, for the comparison and
  for tests that fail chosen deliveries.
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
# How long the dispatcher gathers deliveries into one batch: the emulator sends one about every
# 1.5 ms, and a change waits for a write slot (1 s) anyway.
BATCH_LINGER_S = 0.02
# `batch_app([(attributes, data), ...])`: for each event, None (done) or why it failed.
BatchApp = Callable[[list[tuple[dict[str, str], bytes]]], list[str | None]]


@dataclass(frozen=True)
class DeliverySettings:
    """How the event host runs deliveries (local stack only: never deployed).

    Environment: `EVENT_DELIVERY_CONCURRENCY` (deliveries under way at once; default 2,000: a
    burst of that size is held in one go; the deployed function takes `DEPLOY_PUBLISH_CONCURRENCY`
    x `DEPLOY_PUBLISH_MAX_INSTANCES` per collection, then Cloud Run answers 429 and Eventarc backs
    off), `EVENT_RETRY_MIN_S` (0.5; Eventarc: 10), `EVENT_RETRY_MAX_S` (8; Eventarc: 600),
    `EVENT_RETRY_ATTEMPTS` (attempts in all, first included; 6), `EVENT_RETRY_MAX_AGE_S` (no
    retry starts later than this after the first attempt; 60; Eventarc: 24 h),
    `EVENT_MAX_OUTSTANDING` (20,000), `EVENT_DELIVERY_BATCH` (the stack hands deliveries to the
    publisher in batches; `false`: one functions-framework request each, as Eventarc does).
    """

    concurrency: int = 2000
    retry_min_s: float = 0.5
    retry_max_s: float = 8.0
    max_attempts: int = 6
    max_age_s: float = 60.0
    max_outstanding: int = 20_000
    batch: bool = True

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
            batch=reader.flag("EVENT_DELIVERY_BATCH", default=cls.batch),
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

    def cloud_event(self) -> tuple[dict[str, str], bytes]:
        """The CloudEvent's attributes (its `ce-*` headers, binary mode, and the content type
        as `datacontenttype`, as functions-framework reads them) and its data."""
        attributes = {key[8:].lower(): value for key, value in self.environ.items()
                      if key.startswith("HTTP_CE_")}
        if self.environ.get("CONTENT_TYPE"):
            attributes["datacontenttype"] = self.environ["CONTENT_TYPE"]
        return attributes, self.data


@dataclass
class DeliveryStats:
    """What the host did, for tests and the benchmark."""

    received: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    refused: int = 0


class EventHost:
    """The WSGI app mounted at `/functions`: takes the emulator's deliveries and runs them in
    batches with `batch_app`, or each with `cloud_event_app` (a functions-framework CloudEvent
    app), retrying failures (see the module). `close()` drops what is queued or waiting for a
    retry and waits for what runs."""

    def __init__(self, cloud_event_app: Callable | None = None,
                 settings: DeliverySettings | None = None, *,
                 batch_app: BatchApp | None = None):
        if (cloud_event_app is None) == (batch_app is None):
            raise ValueError("an event host runs either a cloud_event_app or a batch_app")
        self.app = cloud_event_app
        self.batch_app = batch_app
        self.settings = settings or DeliverySettings()
        self.stats = DeliveryStats()
        self._under_way = 0  # deliveries handed to the workers (batches)
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
        self._settle(delivery, self._run(delivery))

    def _attempt_batch(self, deliveries: list[Delivery]) -> None:
        """One attempt at each delivery of a batch, in one call of `batch_app`."""
        for delivery in deliveries:
            delivery.attempts += 1
        try:
            failures = self.batch_app([delivery.cloud_event() for delivery in deliveries])
            if len(failures) != len(deliveries):
                raise RuntimeError(f"{len(failures)} answers for {len(deliveries)} events")
        except Exception as exc:  # the whole batch failed: each event is retried
            log.debug("a batch of %d events raised", len(deliveries), exc_info=True)
            failures = [f"{type(exc).__name__}: {exc}"] * len(deliveries)
        with self._lock:
            self._under_way -= len(deliveries)
            self._work.notify()
        for delivery, failure in zip(deliveries, failures, strict=True):
            self._settle(delivery, failure)

    def _settle(self, delivery: Delivery, failure: str | None) -> None:
        """After an attempt: done, retried after its backoff, or dropped past its budget."""
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
                    room = (self.settings.concurrency - self._under_way
                            if self.batch_app is not None else 1)
                    if room > 0 and (self._ready or (self._retries
                                                     and self._retries[0][0] <= now)):
                        break
                    self._work.wait(self._retries[0][0] - now
                                    if self._retries and room > 0 else None)
            if self.batch_app is not None:
                time.sleep(BATCH_LINGER_S)  # gather what the emulator sends meanwhile
            with self._lock:
                now = time.monotonic()
                due: list[Delivery] = []
                while self._retries and self._retries[0][0] <= now:
                    due.append(heapq.heappop(self._retries)[2])
                due.extend(self._ready)
                self._ready.clear()
                if self.batch_app is not None:
                    room = self.settings.concurrency - self._under_way
                    if len(due) > room:  # the rest waits for room, first in first out
                        self._ready.extendleft(reversed(due[room:]))
                        del due[room:]
                    self._under_way += len(due)
            try:
                if self.batch_app is not None:
                    if due:
                        self._pool.submit(self._attempt_batch, due)
                    continue
                for delivery in due:
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
