"""The dashboard through outages, in headless Chromium, on private stacks that the tests break.

The page comes from a plain static host (``static_site``), as it does on GitHub Pages, and
calls the stack's functions cross-origin; so stopping the functions leaves the page loadable.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import picture
from tests.browser.dashboard import (
    add_user,
    badge,
    open_dashboard,
    require_write_api,
    row,
    rows,
    unique_name,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE_S = 20  # a poll (1 s) + the function's Firestore deadline (1 s) + its retry, with margin


def test_firestore_down_shows_the_snapshot_then_functions_down_show_the_cached_copy(
        make_stack, static_site, new_page):
    stack = make_stack()
    page = new_page()
    url = stack.page_url(origin=static_site)
    open_dashboard(page, url)
    users, jobs = rows(page, "users").count(), rows(page, "jobs").count()
    assert users > 0 and jobs > 0
    some_user = rows(page, "users").first.get_attribute("data-id")

    # Firestore stops: the read function answers from the Cloud Storage snapshot.
    stack.stop_firestore()
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-source", "snapshot",
                                                          timeout=OUTAGE_S * 1000)
    expect(badge(page, "users")).to_have_attribute("data-stale", "false")
    expect(rows(page, "users")).to_have_count(users)
    page.reload()
    open_dashboard(page, url, source="snapshot")
    expect(rows(page, "users")).to_have_count(users)
    expect(rows(page, "jobs")).to_have_count(jobs)
    expect(badge(page, "users")).to_contain_text("snapshot")

    # The functions stop too: the open page keeps its data, badged stale ...
    stack.stop_functions()
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-source", "cache",
                                                          timeout=OUTAGE_S * 1000)
        expect(badge(page, collection)).to_have_attribute("data-stale", "true")
    expect(rows(page, "users")).to_have_count(users)
    # ... and a reload shows this tab's last good copy (sessionStorage), badged stale.
    page.reload()
    open_dashboard(page, url, source="cache")
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-stale", "true")
        expect(badge(page, collection)).to_contain_text("cached copy · stale")
    expect(rows(page, "users")).to_have_count(users)
    expect(rows(page, "jobs")).to_have_count(jobs)
    expect(row(page, "users", some_user)).to_have_count(1)
    picture(page, "dashboard-cached-copy.png")
    # A new tab has no copy to show: it says the data cannot be loaded.
    fresh = new_page()
    fresh.goto(url)
    expect(badge(fresh, "users")).to_have_attribute("data-source", "none", timeout=OUTAGE_S * 1000)
    expect(fresh.locator("#users-table tbody")).to_contain_text("Cannot load users")


def test_user_added_just_before_an_outage_is_still_listed(make_stack, static_site, new_page):
    """The old complaint, under an outage: the snapshot has the user the form just added."""
    stack = make_stack()
    require_write_api(stack)
    page = new_page()
    url = stack.page_url(origin=static_site)
    open_dashboard(page, url)
    name = unique_name("Outage")
    doc_id = add_user(page, name, f"{name.split()[1]}@example.com")
    wait_for(lambda: doc_id in stack.snapshot_ids("users"), 20,
             f"the users snapshot never got {doc_id}: the emulator did not deliver the change "
             "to publish_snapshot (dev/stack.py registers the triggers), or the publisher did "
             "not republish")
    stack.stop_firestore()
    page.reload()
    open_dashboard(page, url, source="snapshot")
    expect(row(page, "users", doc_id)).to_contain_text(name)
