"""Live mode in headless Chromium: the demo page's Firestore listeners (the Firebase Web SDK from
the pinned npm package) on Google's emulator, under the generated rules.

- two tabs: a create, an update and a delete made through the API in one, and a write and a
  delete made directly in Firestore, each reach the other tab through its listeners, with no
  call to the functions (its polling interval is a minute, so only a listener can be that fast);
- Firestore stops: the page drops to polling (the functions answer from the snapshot) and goes
  back to live when Firestore returns, without a reload;
- a user without the admin claim gets no data, from the functions nor from the listeners.
Propagation times are measured by `make bench-live`, not here.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.dashboard import (
    FIRST_LIVE_S,
    badge,
    open_signed_in,
    row,
    rows,
    unique_name,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SEEN_S = 10  # a change through a listener (milliseconds when the machine is quiet)
QUIET_POLL_MS = 60_000  # so slow that only a listener can deliver within SEEN_S
OUTAGE_S = 30  # the probe (5 s), the poll, the function's deadline and retry, with margin


def open_live(page, url: str) -> None:
    open_signed_in(page, url)
    for collection in ("users", "jobs"):
        try:
            expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                              timeout=FIRST_LIVE_S * 1000)
        except AssertionError as exc:
            usage = page.evaluate(f"JSON.stringify(window.dashboard.client.usage('{collection}'))")
            raise AssertionError(f"{collection} never went live; usage(): {usage}") from exc
    expect(badge(page, "users")).to_have_text("live · firestore")


def function_calls(page, stack) -> list[str]:
    """The requests the page makes to the stack's collection functions, as they happen."""
    seen: list[str] = []
    page.on("request", lambda request: request.url.startswith(
        (f"{stack.url}/users", f"{stack.url}/jobs")) and seen.append(request.url))
    return seen


def test_changes_made_anywhere_reach_the_other_tab_through_its_listeners(stack, static_site,
                                                                         new_page):
    from google.cloud import firestore

    url = stack.page_url(origin=static_site, poll_ms=QUIET_POLL_MS)
    writer, watcher = new_page(), new_page()
    open_live(writer, url)
    open_live(watcher, url)
    calls = function_calls(watcher, stack)
    watcher.evaluate("window.__notReloaded = true")

    # Through the API, from the other tab's client (its write API calls).
    name = unique_name("Live")
    doc_id = writer.evaluate("""async (name) => (await window.dashboard.client.create('users', {
        name, email: `${name.split(' ')[1]}@example.com`, role: 'creator', status: 'active',
    })).id""", name)
    expect(row(watcher, "users", doc_id)).to_contain_text(name, timeout=SEEN_S * 1000)
    writer.evaluate("([id]) => window.dashboard.client.update('users', id, { location: 'Porto' })",
                    [doc_id])
    expect(row(watcher, "users", doc_id)).to_contain_text("Porto", timeout=SEEN_S * 1000)
    seeded = watcher.evaluate("""(created) => window.dashboard.client.items('users')
        .map((item) => item.id).find((id) => id !== created)""", doc_id)  # unchanged since the load
    for gone in (doc_id, seeded):
        writer.evaluate("([id]) => window.dashboard.client.remove('users', id)", [gone])
        expect(row(watcher, "users", gone)).to_have_count(0, timeout=SEEN_S * 1000)

    # Straight into Firestore (no function involved): a job written, then one deleted (that
    # deletion reaches the tab through the tombstone the snapshot publisher records).
    db = stack.firestore_client()
    db.collection("jobs").document("live-direct").set({
        "title": "Written straight to Firestore", "status": "open",
        "createdAt": firestore.SERVER_TIMESTAMP, "updatedAt": firestore.SERVER_TIMESTAMP})
    expect(row(watcher, "jobs", "live-direct")).to_contain_text("Written straight",
                                                                timeout=SEEN_S * 1000)
    old_job = rows(watcher, "jobs").first.get_attribute("data-id")
    db.collection("jobs").document(old_job).delete()
    expect(row(watcher, "jobs", old_job)).to_have_count(0, timeout=SEEN_S * 1000)

    assert calls == [], f"the watching tab called the functions: {calls}"
    assert watcher.evaluate("window.__notReloaded") is True
    usage = watcher.evaluate("window.dashboard.client.usage('users')")
    assert usage["mode"] == "live" and usage["liveError"] is None
    assert new_page.problems.errors == []


def test_losing_firestore_drops_to_polling_and_live_comes_back(make_stack, static_site, new_page):
    from google.cloud import firestore

    stack = make_stack()
    page = new_page()
    open_live(page, stack.page_url(origin=static_site, poll_ms=QUIET_POLL_MS))
    calls = function_calls(page, stack)

    stack.stop_firestore()
    for collection in ("users", "jobs"):
        # The functions answer the page's polls from the Cloud Storage snapshot.
        expect(badge(page, collection)).to_have_attribute("data-mode", "snapshot",
                                                          timeout=OUTAGE_S * 1000)
    expect(badge(page, "users")).to_contain_text("snapshot")
    assert calls, "the page polled the functions"

    stack.restart_firestore()
    for collection in ("users", "jobs"):
        # The SDK's reconnection backs off up to a minute while Firestore is gone.
        expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                          timeout=FIRST_LIVE_S * 1000)
    stack.firestore_client().collection("users").document("after-outage").set({
        "name": "Back again", "email": "back@example.com", "role": "creator",
        "status": "active", "createdAt": firestore.SERVER_TIMESTAMP,
        "updatedAt": firestore.SERVER_TIMESTAMP})
    polled = len(calls)
    expect(row(page, "users", "after-outage")).to_contain_text("Back again",
                                                               timeout=SEEN_S * 1000)
    assert len(calls) == polled, "live again: the change came through the listener"


def test_a_user_without_the_admin_claim_gets_no_data(stack, static_site, page):
    open_signed_in(page, stack.page_url(origin=static_site), "viewer")
    expect(page.locator("#auth-chip")).to_contain_text("viewer")
    expect(page.locator("#users-table tbody")).to_contain_text("Cannot load users",
                                                               timeout=FIRST_LIVE_S * 1000)
    expect(badge(page, "users")).to_have_attribute("data-source", "none")
    # The rules refuse the same user's listeners, on the collection and on its tombstones.
    codes = page.evaluate("""async () => {
        const { sdk, db } = await window.dashboard.live;
        const since = sdk.Timestamp.fromMillis(0);
        const attempt = (ref, field) => new Promise((resolve) => {
          const stop = sdk.onSnapshot(sdk.query(ref, sdk.where(field, '>', since)),
            (snapshot) => { stop(); resolve(`allowed (${snapshot.size})`); },
            (error) => resolve(error.code));
        });
        return Promise.all([
          attempt(sdk.collection(db, 'users'), 'updatedAt'),
          attempt(sdk.collection(db, '_tombstones', 'users', 'ids'), 'recordedAt'),
          attempt(sdk.collection(db, 'jobs'), 'updatedAt'),
        ]);
    }""")
    assert codes == ["permission-denied"] * 3
    assert page.evaluate("window.dashboard.client.items('users')") == []
