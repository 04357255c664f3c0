"""The `catch_up_snapshots` entry point's body: `POST` from Cloud Scheduler runs one catch-up
(`catchup.py`) and answers its report as JSON.

Only Cloud Scheduler's service account may call it. The function is deployed private (Cloud
Run checks the invoker), and it checks again itself: the `Authorization: Bearer` OIDC token
must be signed by Google's keys (`CATCHUP_CERTS_URL`, fetched with a deadline and cached),
unexpired, for `CATCHUP_AUDIENCE` when set, with the verified e-mail `CATCHUP_INVOKER`. No
token or a bad one: 401; anyone else, or `CATCHUP_INVOKER` unset: 403.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response

from functions.publish.catchup import run_catch_up
from functions.publish.publisher import Publisher
from shared import http
from shared.errors import Forbidden, MethodNotAllowed, Unauthenticated
from shared.settings import Settings

FUNCTION = "catch_up_snapshots"
CERTS_TTL_S = 3600.0
CERTS_TIMEOUT_S = 5.0
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW_S = 30


@dataclass
class InvokerCheck:
    """Verifies the caller's OIDC token against the settings (the signing keys cached)."""

    settings: Settings
    _certs: dict[str, str] = field(default_factory=dict)
    _fetched_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def certs(self) -> dict[str, str]:
        """The issuer's public certificates by key id (fetched at most once an hour)."""
        import requests

        with self._lock:
            if self._certs and time.monotonic() - self._fetched_at < CERTS_TTL_S:
                return self._certs
        response = requests.get(self.settings.catchup_certs_url, timeout=CERTS_TIMEOUT_S)
        response.raise_for_status()
        with self._lock:
            self._certs, self._fetched_at = dict(response.json()), time.monotonic()
            return self._certs

    def caller(self, headers: Any) -> str:
        """The verified e-mail of the caller, if it is `CATCHUP_INVOKER`; else 401 or 403."""
        from google.auth import jwt

        invoker = self.settings.catchup_invoker
        header = (headers.get("Authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("an Authorization: Bearer <OIDC token> header is required",
                                  code="missing_token")
        try:
            claims = jwt.decode(token.strip(), certs=self.certs(),
                                audience=self.settings.catchup_audience or None,
                                clock_skew_in_seconds=CLOCK_SKEW_S)
        except ValueError as exc:
            raise Unauthenticated(f"the OIDC token is not valid: {str(exc)[:120]}",
                                  code="invalid_token") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthenticated("the OIDC token is not Google's", code="invalid_token")
        email = str(claims.get("email") or "")
        if not invoker:
            raise Forbidden("CATCHUP_INVOKER is not set: nobody may run the catch-up",
                            code="no_invoker")
        if email != invoker or claims.get("email_verified") is not True:
            raise Forbidden(f"{email or 'this caller'} may not run the catch-up",
                            code="not_invoker")
        return email


@dataclass
class CatchUpContext:
    """What the catch-up function keeps in an instance."""

    settings: Settings
    db: Callable[[], Any]
    storage: Callable[[], Any]
    publisher: Callable[[], Publisher]
    check: InvokerCheck


def serve_catch_up(request: Request, context: Callable[[], CatchUpContext]) -> Response:
    """Entry point body of `catch_up_snapshots` (`context`: this instance's)."""
    return http.handle_request(request, context, lambda ctx: _answer(request, ctx),
                               function=FUNCTION)


def _answer(request: Request, context: CatchUpContext) -> Response:
    if request.method != "POST":
        raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=("POST",))
    context.check.caller(request.headers)
    reports = run_catch_up(context.settings, context.db(), context.storage(),
                           context.publisher())
    return Response(http.dumps({"collections": [report.to_json() for report in reports]}),
                    status=200, content_type="application/json")
