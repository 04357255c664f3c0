"""The demo dashboard in headless Chromium against a local stack: the user's old complaints.

- "added users vanished after a refresh": a user added through the form is listed after reload;
- "changes showed only after a rebuild" / "open dashboards drifted apart": a change by another
  client (a second browser, a direct Firestore write) shows in an open page without a reload;
- a write with invalid fields shows the API's field errors next to the fields;
- editing uses If-Match: a change made meanwhile is reported, not overwritten.
The outage cases (Firestore down, functions down) are in test_fallback.py.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import picture
from tests.browser.dashboard import (
    FAST_S,
    FIRST_LIVE_S,
    add_user,
    badge,
    delete_row,
    fill_user_form,
    open_dashboard,
    require_write_api,
    row,
    rows,
    unique_name,
)

pytestmark = pytest.mark.browser


def test_dashboard_lists_both_collections_from_firestore(stack, new_page):
    page = new_page()
    open_dashboard(page, stack.page_url())
    for collection in ("users", "jobs"):
        status, _, body = stack.api("GET", f"/{collection}?limit=1000")
        assert status == 200
        expect(rows(page, collection)).to_have_count(body["count"])
        expect(badge(page, collection)).to_have_text(
            re.compile(r"^(live · firestore|polling · firestore · (just now|\d+ s old))$"))
        expect(page.locator(f"#{collection}-count")).to_have_text(str(body["count"]))
    first = stack.api("GET", "/users?limit=1")[2]["items"][0]
    expect(row(page, "users", first["id"])).to_contain_text(first["name"])
    for collection in ("users", "jobs"):  # the picture (docs/dashboard.png) shows live mode
        expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                          timeout=FIRST_LIVE_S * 1000)
    page.wait_for_timeout(300)  # let the fonts settle for the picture
    picture(page, "dashboard.png", full_page=True)
    assert new_page.problems.errors == []


def test_stack_serves_the_page_and_the_module(stack, page):
    page.goto(stack.url + "/")
    assert page.title().startswith("Creators")
    response = page.request.get(stack.url + "/data-client.js")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "export function createDataClient" in response.text()


POLL_LINE = re.compile(r'"(?:\x1b\[[\d;]*m)*(GET|OPTIONS) /users\?updatedSince=\S+ HTTP/1\.1'
                       r'(?:\x1b\[[\d;]*m)*" (\d{3})')


def test_quiet_polling_is_one_conditional_request_per_poll(stack, static_site, page):
    """Cross-origin, as from static hosting, with live mode off (where it cannot run): an
    unchanged collection costs a 304 per poll (the browser sends If-None-Match) and no CORS
    preflight once the first one is cached."""
    open_dashboard(page, stack.page_url(origin=static_site, poll_ms=500, live=False))
    page.wait_for_timeout(1500)  # the first polls (and their one preflight) are done
    start = stack.log_path.stat().st_size
    page.wait_for_timeout(4000)
    with open(stack.log_path, "rb") as log:
        log.seek(start)
        polls = POLL_LINE.findall(log.read().decode(errors="replace"))
    gets = [status for method, status in polls if method == "GET"]
    preflights = [status for method, status in polls if method == "OPTIONS"]
    assert len(gets) >= 4, polls
    assert gets.count("304") >= len(gets) - 1, f"quiet polls should be 304s: {gets}"
    assert len(preflights) <= 1, f"the CORS preflight was not cached: {polls}"


def test_user_added_through_the_form_is_still_listed_after_a_reload(stack, new_page):
    require_write_api(stack)
    page = new_page()
    open_dashboard(page, stack.page_url())
    name = unique_name("Reload")
    doc_id = add_user(page, name, f"{name.split()[1]}@example.com", role="editor",
                      location="Lisbon", hourlyRate="72.5", skills="color, sound")
    expect(page.locator("#toast")).to_contain_text(f"Added {name}")
    page.reload()
    open_dashboard(page, stack.page_url())
    added = row(page, "users", doc_id)
    expect(added).to_contain_text(name)
    expect(added).to_contain_text("editor")
    expect(added).to_contain_text("Lisbon")
    expect(added).to_contain_text("$73/h")
    # ... and it is in Firestore, not only in this tab.
    status, _, stored = stack.api("GET", f"/users/{doc_id}")
    assert status == 200 and stored["name"] == name and stored["skills"] == ["color", "sound"]
    assert stored["createdAt"] and stored["updatedAt"]
    # A brand-new tab (no sessionStorage) lists it too.
    fresh = new_page()
    open_dashboard(fresh, stack.page_url())
    expect(row(fresh, "users", doc_id)).to_contain_text(name)
    assert new_page.problems.errors == []


def test_change_by_another_browser_appears_without_a_reload(stack, new_page):
    require_write_api(stack)
    watcher, editor = new_page(), new_page()
    open_dashboard(watcher, stack.page_url())
    open_dashboard(editor, stack.page_url())
    watcher.evaluate("window.__notReloaded = true")
    name = unique_name("Other")
    doc_id = add_user(editor, name, f"{name.split()[1]}@example.com")
    expect(row(watcher, "users", doc_id)).to_contain_text(name, timeout=FAST_S * 1000)
    delete_row(editor, "users", doc_id)
    expect(row(editor, "users", doc_id)).to_have_count(0)
    expect(row(watcher, "users", doc_id)).to_have_count(0, timeout=FAST_S * 1000)
    assert watcher.evaluate("window.__notReloaded") is True
    assert new_page.problems.errors == []


def test_direct_firestore_write_appears_without_a_reload(stack, page):
    from google.cloud import firestore

    open_dashboard(page, stack.page_url())
    page.evaluate("window.__notReloaded = true")
    target = rows(page, "users").nth(3).get_attribute("data-id")
    renamed = unique_name("Renamed")
    db = stack.firestore_client()
    db.collection("users").document(target).update(
        {"name": renamed, "updatedAt": firestore.SERVER_TIMESTAMP})
    db.collection("users").document("direct-write").set({
        "name": "Written straight to Firestore", "email": "direct@example.com",
        "role": "creator", "status": "pending", "updatedAt": firestore.SERVER_TIMESTAMP})
    expect(row(page, "users", target)).to_contain_text(renamed, timeout=FAST_S * 1000)
    expect(row(page, "users", "direct-write")).to_contain_text("Written straight",
                                                                timeout=FAST_S * 1000)
    assert page.evaluate("window.__notReloaded") is True


def test_invalid_fields_show_the_field_errors_returned_by_the_api(stack, new_page):
    require_write_api(stack)
    page = new_page()
    open_dashboard(page, stack.page_url())
    before = rows(page, "users").count()
    # What the form sends for these inputs, asked of the API directly: the page must show
    # exactly the field errors the API returns, next to their fields.
    body = {"name": "", "email": "not-an-email", "role": "creator", "status": "active",
            "hourlyRate": -5, "skills": []}
    status, _, answer = stack.api("POST", "/users", body)
    assert status == 400 and answer["error"]["code"] == "validation_failed"
    expected = {entry["field"]: entry["message"] for entry in answer["error"]["details"]["fields"]}
    assert {"name", "email", "hourlyRate"} <= set(expected), expected

    fill_user_form(page, name="", email="not-an-email", hourlyRate="-5")
    page.locator("#form-submit").click()
    for field, message in expected.items():
        expect(page.locator(f"#err-{field}")).to_contain_text(message)
        expect(page.locator(f"#f-{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-role")).to_be_empty()
    expect(rows(page, "users")).to_have_count(before)
    picture(page, "dashboard-field-errors.png")
    # Fixing the fields clears the errors and saves.
    name = unique_name("Fixed")
    fill_user_form(page, name=name, email=f"{name.split()[1]}@example.com", hourlyRate="50")
    page.locator("#form-submit").click()
    expect(page.locator("#users-table tbody tr", has_text=name)).to_have_count(1)
    expect(page.locator(".field-error:not(:empty)")).to_have_count(0)
    assert new_page.problems.errors == []


def test_edit_saves_with_if_match_and_reports_a_change_made_meanwhile(stack, page):
    from google.cloud import firestore

    require_write_api(stack)
    open_dashboard(page, stack.page_url())
    target = rows(page, "users").nth(5).get_attribute("data-id")
    row(page, "users", target).locator('button[data-action="edit"]').click()
    expect(page.locator("#form-title")).to_contain_text("Edit")
    fill_user_form(page, location="Porto")
    page.locator("#form-submit").click()
    expect(row(page, "users", target)).to_contain_text("Porto")
    assert stack.api("GET", f"/users/{target}")[2]["location"] == "Porto"

    # Open the form again; someone else changes the user before we save.
    row(page, "users", target).locator('button[data-action="edit"]').click()
    expect(page.locator("#f-location")).to_have_value("Porto")
    theirs = unique_name("Theirs")
    stack.firestore_client().collection("users").document(target).update(
        {"name": theirs, "updatedAt": firestore.SERVER_TIMESTAMP})
    fill_user_form(page, location="Braga")
    page.locator("#form-submit").click()
    expect(page.locator("#form-error")).to_contain_text("changed this user meanwhile")
    expect(page.locator("#f-name")).to_have_value(theirs)  # the form shows their version
    stored = stack.api("GET", f"/users/{target}")[2]
    assert stored["location"] == "Porto" and stored["name"] == theirs, "no lost update"


def test_delete_button_removes_the_user_for_good(stack, page):
    require_write_api(stack)
    name = unique_name("Doomed")
    status, _, created = stack.api("POST", "/users", {
        "name": name, "email": f"{name.split()[1]}@example.com", "role": "creator",
        "status": "active"})
    assert status == 201, created
    open_dashboard(page, stack.page_url())
    expect(row(page, "users", created["id"])).to_contain_text(name)
    delete_row(page, "users", created["id"])
    expect(row(page, "users", created["id"])).to_have_count(0)
    expect(page.locator("#toast")).to_contain_text(f"Deleted {name}")
    assert stack.api("GET", f"/users/{created['id']}")[0] == 404
    page.reload()
    open_dashboard(page, stack.page_url())
    expect(row(page, "users", created["id"])).to_have_count(0)

