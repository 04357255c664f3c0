"""What the browser tests do on the demo dashboard (web/index.html), in one place."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import Locator, Page, expect

FAST_S = 10  # "within a few seconds": the page polls every second in these tests
# The listeners' first answers from a just-started emulator: the SDK loads, then its WebChannel
# handshake with a cold JVM: a few seconds on a quiet machine, more while two emulators and
# Chromium start on two cores (CI once took over 20 s). What once kept live mode off for minutes
# was the sample data in the listeners' window (conftest.SEED_SETTLE_S), not the connection.
FIRST_LIVE_S = 60


def rows(page: Page, collection: str) -> Locator:
    return page.locator(f"#{collection}-table tbody tr[data-id]")


def row(page: Page, collection: str, doc_id: str) -> Locator:
    return page.locator(f'#{collection}-table tbody tr[data-id="{doc_id}"]')


def badge(page: Page, collection: str) -> Locator:
    return page.locator(f"#{collection}-badge")


def sign_in(page: Page, who: str = "admin") -> None:
    """Sign in through the page's sign-in card as the stack's sample account `who` (email and
    password, dev/stack.py's SAMPLE_ACCOUNTS), as a person would."""
    from dev.stack import SAMPLE_ACCOUNTS

    account = next(one for one in SAMPLE_ACCOUNTS if one["email"].startswith(f"{who}@"))
    page.locator("#sign-in-email").fill(account["email"])
    page.locator("#sign-in-password").fill(account["password"])
    page.locator("#sign-in-submit").click()
    expect(page.locator("#auth-chip")).to_contain_text(account["email"])


def open_signed_in(page: Page, url: str, who: str = "admin") -> None:
    """Open the page and, unless this context's session is still signed in (the SDK keeps it
    across reloads) or the page has no Firebase config (the stack's functions are down in a
    new tab), sign in as `who`."""
    page.goto(url)
    ready = page.locator("#auth-chip:visible, #sign-in-email:visible, body[data-access=open]")
    expect(ready.first).to_be_attached(timeout=FIRST_LIVE_S * 1000)
    if page.locator("#sign-in-email").is_visible():
        sign_in(page, who)


def open_dashboard(page: Page, url: str, source: str = "firestore", who: str = "admin") -> None:
    open_signed_in(page, url, who)
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-source", source)


def unique_name(prefix: str = "Browser") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def fill_user_form(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        field = page.locator(f"#f-{name}")
        if field.evaluate("node => node.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


def add_user(page: Page, name: str, email: str, **extra: str) -> str:
    """Add a user through the form; returns its id once its row is listed."""
    fill_user_form(page, name=name, email=email, **extra)
    page.locator("#form-submit").click()
    added = page.locator("#users-table tbody tr", has_text=name)
    expect(added).to_have_count(1)
    doc_id = added.get_attribute("data-id")
    assert doc_id
    return doc_id


def delete_row(page: Page, collection: str, doc_id: str) -> None:
    button = row(page, collection, doc_id).locator('button[data-action="delete"]')
    button.click()  # arms it
    expect(button).to_have_text("Confirm")
    button.click()


def require_write_api(stack) -> None:
    """Fail (not skip) with a clear message when the stack has no write API (issue 7, item 1)."""
    status, _, body = stack.api("POST", "/users", {"name": ""})
    if status in (404, 405):
        pytest.fail(f"the write API is missing: POST /users answered {status} {body}; these "
                    "tests need item 1 of issue 7 (POST/PATCH/PUT/DELETE on the collection "
                    "functions)")
    assert status == 400 and body["error"]["code"] == "validation_failed", (status, body)


def wait_for(check, timeout_s: float, message: str, interval_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # retried until the deadline
            last_error = exc
        time.sleep(interval_s)
    pytest.fail(f"{message} (waited {timeout_s:.0f} s; last error: {last_error})")


# Every saved copy in the page's IndexedDB store (web/client/idb-store.js), parsed.
saved_copies_script = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open('dashboard-data-client', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('copies');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const request = open.result.transaction('copies').objectStore('copies').getAll();
    request.onsuccess = () => {
      open.result.close();
      resolve(request.result.map((text) => JSON.parse(text)));
    };
    request.onerror = () => reject(request.error);
  };
})"""
