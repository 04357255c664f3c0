"""The status page (`#status`) in headless Chromium, on a private local stack that the test
breaks: every link answers; Firestore goes red when its emulator stops and green when it
returns; with the functions stopped, the page says they cannot be reached (and the migration
panel refuses to start, writing nothing). The page comes from a plain static host, as on
GitHub Pages, so it stays loadable while the stack's functions are down."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.admin import choose_file, message, status_row
from tests.browser.conftest import picture
from tests.browser.dashboard import open_signed_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

CHECK_S = 40  # one run of the checks against a stopped Firestore, with margin


def run_checks_until(page, check: str, state: str, timeout_s: float) -> None:
    """Press "Run all checks" until the row `check` is in `state` (a gRPC channel reconnects
    with a backoff, so the first runs after a restart may still fail)."""
    deadline = time.monotonic() + timeout_s
    row = status_row(page, check)
    while True:
        page.locator("#status-run").click()
        expect(page.locator("#status-run")).to_be_enabled(timeout=CHECK_S * 1000)
        if row.get_attribute("data-state") == state:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{check} stayed {row.get_attribute('data-state')}: "
                                 f"{row.inner_text()}")
        page.wait_for_timeout(1000)


def test_status_page_checks_every_link_and_follows_a_firestore_outage(make_stack, static_site,
                                                                     new_page):
    stack = make_stack()
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=static_site)
    open_signed_in(page, stack.page_url(origin=static_site) + "#status")
    expect(status_row(page, "firestore")).to_have_attribute("data-state", "ok",
                                                            timeout=CHECK_S * 1000)
    # The listeners answer a moment after load (once, under heavy load, more than 40 s).
    run_checks_until(page, "live", "ok", 2 * CHECK_S)
    expected = {"user": "ok", "read-users": "ok", "read-jobs": "ok", "live": "ok",
                "status-function": "ok", "settings": "ok", "bucket": "ok",
                "snapshot-users": "ok", "fresh-users": "ok", "snapshot-jobs": "ok",
                "publisher": "ok", "migrations": "ok", "rules": "skip"}
    for check, state in expected.items():
        expect(status_row(page, check)).to_have_attribute("data-state", state)
    expect(status_row(page, "user")).to_contain_text("admin")
    expect(status_row(page, "read-users")).to_contain_text("answered from Firestore")
    expect(status_row(page, "live")).to_contain_text(
        "listening to Firestore directly for users, jobs")
    expect(status_row(page, "snapshot-users")).to_contain_text("240 documents")
    expect(status_row(page, "fresh-users")).to_contain_text("same document count")
    expect(status_row(page, "migrations")).to_contain_text("completed")
    assert status_row(page, "firestore").locator("td").nth(3).inner_text().endswith(" ms")
    page.wait_for_timeout(300)
    picture(page, "status-page.png", full_page=True)
    # The cached copy exists once the tables have loaded in this tab.
    run_checks_until(page, "cache-users", "ok", 20)
    page.locator("#status-copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Dashboard status ")
    assert "ok   backend / firestore: answered in" in copied
    assert "ok   Firestore direct / live mode: listening to Firestore directly" in copied

    # Firestore stops: its row goes red, reads come from the snapshot, the rest says why.
    stack.stop_firestore()
    run_checks_until(page, "firestore", "fail", CHECK_S)
    expect(status_row(page, "firestore")).to_contain_text("does not answer")
    # A read answered from the function's cache (CACHE_TTL_S=1) may still say Firestore.
    run_checks_until(page, "read-users", "warn", CHECK_S)
    expect(status_row(page, "read-users")).to_contain_text("snapshot")
    expect(status_row(page, "fresh-users")).to_have_attribute("data-state", "skip")
    expect(status_row(page, "snapshot-users")).to_have_attribute("data-state", "ok")
    expect(page.locator("#status-summary")).to_contain_text("failing")
    # The page's own listeners lose Firestore too: it polls the functions, and says why.
    run_checks_until(page, "live", "warn", CHECK_S)
    expect(status_row(page, "live")).to_contain_text("not live for")

    # Firestore returns (empty: a new emulator): green again.
    stack.restart_firestore()
    run_checks_until(page, "firestore", "ok", 90)
    # The read function's breaker and channel recover on their own schedule.
    run_checks_until(page, "read-users", "ok", 60)

    # The functions stop: the page says they cannot be reached, and what to do.
    stack.stop_functions()
    run_checks_until(page, "status-function", "fail", CHECK_S)
    expect(status_row(page, "status-function")).to_contain_text("cannot be reached")
    expect(status_row(page, "status-function")).to_contain_text("ALLOWED_ORIGINS")
    expect(status_row(page, "read-users")).to_have_attribute("data-state", "fail")
    expect(status_row(page, "cache-users")).to_have_attribute("data-state", "ok")

    # ... and the migration panel cannot start a run: it says so, and nothing is written.
    page.locator('#tabs [data-tab="migrate"]').click()
    expect(page.locator("#migration-recent")).to_contain_text("cannot be reached")
    choose_file(page, "users.json", b'[{"id": "u_new", "name": "New", "email": "n@example.com",'
                                    b' "role": "creator", "status": "active"}]')
    page.locator("#migration-dry-run").click()
    expect(message(page)).to_contain_text("cannot be reached", timeout=CHECK_S * 1000)
    expect(message(page)).to_contain_text("Nothing was written")
    db = stack.firestore_client()
    assert list(db.collection("_migrations").stream()) == []
    assert not db.collection("users").document("u_new").get().exists
