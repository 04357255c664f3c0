"""A circuit breaker for the primary store.

After a failure, requests skip Firestore for a cool-down and go straight to the snapshot,
instead of each one waiting out the deadline. When the cool-down ends one request (and only
one at a time) tries Firestore again: success closes the circuit, failure reopens it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Thread-safe closed / open / half-open breaker with a fixed cool-down."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._trial_running = False
        self.failures = 0

    @property
    def is_open(self) -> bool:
        """True while requests should not try the primary."""
        with self._lock:
            return self._open_until > self._clock() or self._trial_running

    def allow(self) -> bool:
        """May this request try the primary? Claims the single trial after a cool-down."""
        with self._lock:
            if self._open_until == 0.0:
                return True
            if self._open_until > self._clock() or self._trial_running:
                return False
            self._trial_running = True
            return True

    def record_success(self) -> None:
        """The primary answered: close the circuit."""
        with self._lock:
            self._open_until = 0.0
            self._trial_running = False
            self.failures = 0

    def record_failure(self) -> None:
        """The primary failed or timed out: open the circuit for a cool-down."""
        with self._lock:
            self.failures += 1
            self._trial_running = False
            self._open_until = self._clock() + self.cooldown_s
