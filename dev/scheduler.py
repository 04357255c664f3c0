"""The local stack's Cloud Scheduler: calls `catch_up_snapshots` every `CATCHUP_PERIOD_S`
(default 10 s) with an OIDC token, as the deployed job does every few minutes.

Tokens come from a local issuer (`emulators.oidc_issuer`, a fake of Google's signing): the
stack points `CATCHUP_CERTS_URL` at it (allowed in demo- projects only) and names the
invoker, so the function checks the call with its real code path.
"""

from __future__ import annotations

import logging
import os
import threading

import requests

from emulators.oidc_issuer import LocalIssuer

log = logging.getLogger("dev.scheduler")

INVOKER = "dashboard-scheduler@demo-dashboard.iam.gserviceaccount.com"
DEFAULT_PERIOD_S = 10.0
CALL_TIMEOUT_S = 120.0


def configure() -> LocalIssuer:
    """Start the local issuer and set the function's settings for it (before they are read)."""
    issuer = LocalIssuer()
    os.environ.setdefault("CATCHUP_INVOKER", INVOKER)
    os.environ["CATCHUP_CERTS_URL"] = issuer.certs_url
    return issuer


def run_every(issuer: LocalIssuer, url: str, stop: threading.Event) -> threading.Thread:
    """Call the catch-up at `url` every `CATCHUP_PERIOD_S` until `stop` is set."""
    period = float(os.environ.get("CATCHUP_PERIOD_S") or DEFAULT_PERIOD_S)

    def loop() -> None:
        while not stop.wait(period):
            token = issuer.token(os.environ["CATCHUP_INVOKER"], url)
            try:
                answer = requests.post(url, headers={"Authorization": f"Bearer {token}"},
                                       timeout=CALL_TIMEOUT_S)
            except requests.RequestException as exc:
                log.warning("catch-up call failed: %s", exc)
                continue
            if answer.status_code != 200:
                log.warning("catch-up answered %s: %s", answer.status_code, answer.text[:200])

    thread = threading.Thread(target=loop, name="catch-up scheduler", daemon=True)
    thread.start()
    return thread
