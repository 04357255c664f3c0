"""Google API errors and retries, in one place (as python-storage's `retry.py` does).

Two questions are asked of a failed Google call, and each has one answer here:

- `retry_policy`: the one `Retry` every call that may be resent is given: google-api-core's
  `if_transient_error` (429, 500, 503 and dropped connections: safe to send again), with
  exponential backoff inside the call's budget. `deadline` gives a call its `retry` and
  `timeout` arguments: a `timeout` alone does not bound a call, the client's default retry
  keeps retrying transient errors for minutes.
- `is_transient`: the server or the network failed, not the request (`TRANSIENT` lists them:
  the above plus deadlines, aborted transactions, quota and a retry that gave up). Such a
  failure is worth another try later (the caller's own backoff, a 503 with `Retry-After`), and
  for a write its fate is unknown.
"""

from __future__ import annotations

from typing import Any

RETRY_INITIAL_S = 0.05
RETRY_MAXIMUM_S = 2.0
RETRY_MULTIPLIER = 2.0


def transient_errors() -> tuple[type[BaseException], ...]:
    """The errors of a Google call that the server or the network caused (see `is_transient`)."""
    import requests
    from google.api_core import exceptions as gexc

    return (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted,
            gexc.ResourceExhausted, gexc.InternalServerError, gexc.TooManyRequests,
            gexc.GatewayTimeout, gexc.BadGateway, gexc.RetryError, ConnectionError,
            TimeoutError, requests.ConnectionError, requests.Timeout)


def is_transient(exc: BaseException) -> bool:
    """The server or the network failed, not the request: worth another try later."""
    return isinstance(exc, transient_errors())


def retry_policy(timeout_s: float, *, initial_s: float = RETRY_INITIAL_S,
                 maximum_s: float = RETRY_MAXIMUM_S) -> Any:
    """The one `Retry`: `if_transient_error`, exponential backoff, given up after `timeout_s`."""
    from google.api_core.retry import Retry, if_transient_error

    return Retry(predicate=if_transient_error, initial=initial_s,
                 maximum=min(maximum_s, max(initial_s, timeout_s / 4)),
                 multiplier=RETRY_MULTIPLIER, timeout=timeout_s)


def deadline(budget_s: float, attempt_s: float | None = None) -> dict[str, Any]:
    """`retry` and `timeout` arguments that bound one call (its retries included) by `budget_s`;
    `attempt_s` bounds each attempt (default: the whole budget)."""
    return {"retry": retry_policy(budget_s), "timeout": attempt_s or budget_s}
