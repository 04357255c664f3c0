"""The dashboard opens instantly and offline (issue 22), in Debian's headless Chromium.

- a repeat visit shows the previous data (the data client's copy in IndexedDB) before any
  network answer (the API's answers held back with `page.route`), then the answer;
- with the network gone (`context.set_offline`), a reload opens the page from the service
  worker's shell cache and shows the last data, its age and an "offline" badge; the worker
  never cached an API answer;
- a write offline is refused with a sentence, nothing is sent, the form keeps what was typed,
  and it saves once the network is back; a migration offline is refused the same way;
- back online, the page catches up by itself with a change made while it was offline;
- another user on the same browser sees none of the first user's data (and the copy is gone);
- a new version of the app shell is fetched in the background and announced, not forced;
- the early start (web/page/early.js) paints the saved copy before Authentication answers, and
  only when the page's note of who was signed in, the Firebase SDK's own persisted session
  and the copy's owner are one user: a signed-out browser, or a copy and a note that are not
  the persisted session's user, never show a row.

The "other user" is the stack's sample viewer, signed in through the page's card after the first
user signs out (`sign_in_as_other_user`). Plus the files that make
the page installable (manifest, icons, the worker's headers and CSP), without a browser.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import threading
import uuid

import pytest
from playwright.sync_api import expect
from werkzeug.test import Client

from dev.app import WEB_DIR, create_static_app
from tests.browser.admin import choose_file, message, open_migration
from tests.browser.conftest import LocalStack, _serve_in_thread
from tests.browser.dashboard import (
    FAST_S,
    badge,
    delete_row,
    open_dashboard,
    row,
    rows,
    sign_in,
    unique_name,
    wait_for,
)
from tests.browser.dashboard import (
    saved_copies_script as SAVED_COPIES,
)

RECORD_EVENTS = """
window.__events = [];
for (const type of ['usersDataChanged', 'jobsDataChanged', 'dataError']) {
  window.addEventListener(type, (event) => window.__events.push({
    type, source: event.detail.source ?? null, count: event.detail.items?.length ?? null,
    code: event.detail.error?.code ?? null, t: performance.now() }));
}
"""
# Whether a users or jobs row was ever in the page (an early paint taken off again counts).
RECORD_PAINTS = """
window.__painted = 0;
new MutationObserver(() => {
  const painted = '#users-table tr[data-id], #jobs-table tr[data-id]';
  window.__painted += document.querySelectorAll(painted).length;
}).observe(document, { childList: true, subtree: true });
"""
# The page's own records (raw): the saved copies, its note of who signed in, the Firebase SDK's
# persisted session; `put` writes copies back, `forget_session` deletes only the SDK's session.
PAGE_RECORDS = """async (options) => {
  const { put = null, note = undefined, forgetSession = false } = options ?? {};
  const open = (name) => new Promise((resolve, reject) => {
    const request = indexedDB.open(name);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const done = (request) => new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const copies = await open('dashboard-data-client');
  if (put) {
    const store = copies.transaction('copies', 'readwrite').objectStore('copies');
    for (const [key, text] of Object.entries(put)) await done(store.put(text, key));
  }
  const store = copies.transaction('copies').objectStore('copies');
  const keys = await done(store.getAllKeys());
  const texts = await done(store.getAll());
  copies.close();
  if (note !== undefined) localStorage.setItem('dashboard-signed-in', JSON.stringify(note));
  const session = await open('firebaseLocalStorageDb');
  if (forgetSession) {
    await done(session.transaction('firebaseLocalStorage', 'readwrite')
      .objectStore('firebaseLocalStorage').clear());
  }
  const users = (await done(session.transaction('firebaseLocalStorage')
    .objectStore('firebaseLocalStorage').getAll()))
    .filter((entry) => entry.fbase_key.startsWith('firebase:authUser:'))
    .map((entry) => entry.value.uid);
  session.close();
  return { copies: Object.fromEntries(keys.map((key, i) => [key, texts[i]])), users,
    note: JSON.parse(localStorage.getItem('dashboard-signed-in')) };
}"""
SHELL_CACHES = """async () => {
  const names = (await caches.keys()).filter((name) => name.startsWith('dashboard-shell-'));
  const out = {};
  for (const name of names) out[name] = (await (await caches.open(name)).keys()).map((r) => r.url);
  return out;
}"""


@pytest.fixture(scope="module")
def shell_copy(tmp_path_factory):
    """A copy of web/ on a static host of its own: a test may change its files (a new version),
    have it answer 503 for the paths it puts in `failing` (a server failing midway), or hold
    those in `slow` until the event `released` is set."""
    folder = tmp_path_factory.mktemp("web-copy") / "web"
    shutil.copytree(WEB_DIR, folder, ignore=shutil.ignore_patterns("tests", "node_modules"))
    static, failing, asked = create_static_app(folder), set(), []
    slow, released = set(), threading.Event()

    def app(environ, start_response):
        asked.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] in slow:
            released.wait(timeout=30)
        if environ["PATH_INFO"] in failing:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"unavailable"]
        return static(environ, start_response)

    origin, server = _serve_in_thread(app)
    yield origin, folder, failing, asked, slow, released
    server.shutdown()


@pytest.fixture(scope="module")
def stack(static_site, shell_copy):
    """This module's stack: both static hosts may call it (CORS)."""
    shared = LocalStack("test_offline", [static_site, shell_copy[0]])
    yield shared
    shared.stop()


def visit(new_page, url: str):
    """A page that records the client's events, with the dashboard loaded once from the network
    (the worker installed, the copies saved)."""
    page = new_page()
    page.context.add_init_script(RECORD_EVENTS)
    open_dashboard(page, url)
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.wait_for_function(
        "() => ['users', 'jobs'].every((n) => window.dashboard.client.cachedCopy(n))")
    return page


def sign_in_as_other_user(page, stack, origin: str) -> None:
    """Another user in the same browser: the first signs out, the stack's sample viewer (another
    uid, no admin claim) signs in through the page's card, at the Auth emulator."""
    page.locator("#sign-out").click()
    expect(page.locator("#sign-in-email")).to_be_visible()
    sign_in(page, "viewer")


def events(page) -> list[dict]:
    return page.evaluate("window.__events")


def wait_for_held(page, held: list) -> None:
    """Until a read is held by the page's route (Playwright runs route handlers only while it
    is called: a plain sleep would never see one)."""
    for _ in range(100):
        if held:
            return
        page.wait_for_timeout(100)
    pytest.fail("the reads were never sent (waited 10 s)")


def api_pattern(stack) -> re.Pattern:
    return re.compile(rf"^{re.escape(stack.url)}/(users|jobs)(\?|/|$)")


def reload_with_answers_held(new_page, stack, static_site):
    """The dashboard visited once, then reloaded with its API calls asked and never answered
    until released: (the page, its users row count before, the held routes)."""
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    users = rows(page, "users").count()
    held = []
    page.route(api_pattern(stack), lambda route: held.append(route))
    page.reload()
    return page, users, held


def test_a_repeat_visit_shows_the_previous_data_before_any_network_answer(
        stack, static_site, new_page):
    page, users, held = reload_with_answers_held(new_page, stack, static_site)
    expect(badge(page, "users")).to_have_attribute("data-source", "cache")
    expect(badge(page, "jobs")).to_have_attribute("data-source", "cache")
    expect(rows(page, "users")).to_have_count(users)
    expect(badge(page, "users")).to_contain_text("cached copy")
    # The early start paints before the data client exists: the reads may not be out yet.
    wait_for_held(page, held)
    expect(badge(page, "users")).to_have_attribute("data-source", "cache")
    shown = [e for e in events(page) if e["type"] == "usersDataChanged"]
    assert [e["source"] for e in shown] == ["cache"], shown
    for route in list(held):
        route.continue_()
    page.unroute(api_pattern(stack))  # (and lets any later request through)
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    expect(badge(page, "users")).to_have_attribute("data-stale", "false")


def test_offline_reload_shows_the_last_data_with_its_age_and_an_offline_badge(
        stack, static_site, new_page):
    url = stack.page_url(origin=static_site, live=False)
    page = visit(new_page, url)
    users, jobs = rows(page, "users").count(), rows(page, "jobs").count()
    some_user = rows(page, "users").first.get_attribute("data-id")
    page.context.set_offline(True)
    page.reload()
    for collection, count in (("users", users), ("jobs", jobs)):
        expect(badge(page, collection)).to_have_attribute("data-source", "cache")
        expect(badge(page, collection)).to_have_attribute("data-offline", "true")
        expect(badge(page, collection)).to_contain_text(
            re.compile(r"offline · cached copy · stale · (just now|\d+ \w+ old)"))
        expect(rows(page, collection)).to_have_count(count)
    expect(row(page, "users", some_user)).to_have_count(1)
    expect(page.locator("#offline-chip")).to_be_visible()
    cached = page.evaluate(SHELL_CACHES)
    (files,) = cached.values()
    assert any(url.endswith("/index.html") for url in files)
    assert any("/vendor/firebase/firebase-firestore.js" in url for url in files)
    assert any(url.endswith("/client/cache.js") for url in files)
    assert not [u for u in files if re.search(r"/(users|jobs|migrate|__/firebase)\b", u)], files
    page.context.set_offline(False)
    # Back online: the next poll (or the live listeners' reconnection) answers; on a loaded
    # machine that took more than FAST_S once.
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore",
                                                   timeout=3 * FAST_S * 1000)
    expect(page.locator("#offline-chip")).to_be_hidden()


def test_a_write_offline_is_refused_and_nothing_is_lost(stack, static_site, new_page):
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    name = unique_name("Offline")
    email = f"{name.split()[1]}@example.com"
    page.context.set_offline(True)
    page.locator("#f-name").fill(name)
    page.locator("#f-email").fill(email)
    page.locator("#form-submit").click()
    refusal = page.locator("#form-error, #toast").filter(has_text="offline")
    expect(refusal.first).to_contain_text("nothing was saved")
    expect(page.locator("#f-name")).to_have_value(name)
    expect(page.locator("#f-email")).to_have_value(email)
    _, _, listed = stack.api("GET", "/users?limit=1000")
    assert name not in {item.get("name") for item in listed["items"]}, "nothing was sent"
    page.context.set_offline(False)
    page.locator("#form-submit").click()
    expect(page.locator("#users-table tbody tr", has_text=name)).to_have_count(1)


def test_a_migration_offline_is_refused_with_a_sentence(stack, static_site, new_page):
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    open_migration(page, stack.page_url(origin=static_site, live=False))
    _, _, runs_before = stack.api("GET", "/migrate/runs")
    page.context.set_offline(True)
    records = [{"name": "Ada", "email": "a@example.com"}]
    choose_file(page, "users.json", json.dumps(records).encode())
    page.locator("#migration-dry-run").click()
    expect(message(page)).to_contain_text("offline: nothing was sent and nothing was saved")
    page.context.set_offline(False)
    _, _, runs_after = stack.api("GET", "/migrate/runs")
    assert runs_after == runs_before, "no run was started"


def test_online_again_the_page_catches_up_with_a_change_made_while_offline(
        stack, static_site, new_page):
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    doc_id = rows(page, "users").first.get_attribute("data-id")
    page.context.set_offline(True)
    expect(badge(page, "users")).to_have_attribute("data-stale", "true", timeout=FAST_S * 1000)
    renamed = unique_name("Renamed offline")
    status, _, _ = stack.api("PATCH", f"/users/{doc_id}", {"name": renamed})
    assert status == 200
    page.context.set_offline(False)
    expect(row(page, "users", doc_id)).to_contain_text(renamed, timeout=FAST_S * 1000)
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    expect(badge(page, "users")).to_have_attribute("data-offline", "false")


def test_another_user_on_the_same_browser_sees_none_of_the_first_users_data(
        stack, static_site, new_page):
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    first = {copy["uid"] for copy in page.evaluate(SAVED_COPIES)}
    assert len(first) == 1
    held = []
    # No answer: only the store could show data.
    page.route(api_pattern(stack), lambda route: held.append(route))
    sign_in_as_other_user(page, stack, static_site)
    page.wait_for_function("() => window.dashboard && document.readyState === 'complete'")
    page.wait_for_function(f"async () => {{ const copies = await ({SAVED_COPIES})(); "
                           f"return !copies.some((c) => c.uid === {next(iter(first))!r}); }}")
    assert held, "the reads were sent"
    for route in list(held):
        route.continue_()
    page.unroute(api_pattern(stack))  # (and lets any later request through)
    expect(badge(page, "users")).to_have_attribute("data-source", "none")  # a viewer: refused
    assert not [e for e in events(page) if e["type"].endswith("DataChanged") and e["count"]]
    expect(rows(page, "users")).to_have_count(0)
    assert all(copy["uid"] not in first for copy in page.evaluate(SAVED_COPIES))


def test_the_early_start_shows_the_copy_of_the_user_signed_in_and_keeps_it_once_confirmed(
        stack, static_site, new_page):
    page, users, held = reload_with_answers_held(new_page, stack, static_site)
    page.wait_for_function("() => window.dashboard?.earlyStart !== undefined")
    assert page.evaluate("window.dashboard.earlyStart") == "shown"
    expect(badge(page, "users")).to_have_attribute("data-source", "cache")
    expect(rows(page, "users")).to_have_count(users)
    expect(page.locator("#auth-chip")).to_contain_text("admin@example.com")  # confirmed
    expect(rows(page, "users")).to_have_count(users)  # kept: the same user
    shown = [e for e in events(page) if e["type"] == "usersDataChanged"]
    assert [e["source"] for e in shown] == ["cache"], shown  # announced once, not twice
    for route in list(held):
        route.continue_()
    page.unroute(api_pattern(stack))
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    expect(page.locator("#f-name")).to_be_editable()  # the form was handed its handlers


def test_a_row_the_early_start_painted_can_be_deleted_once_the_page_is_mounted(
        stack, static_site, new_page):
    """The early start's rows stay on the page after app.js mounts (not rebuilt): their Delete
    buttons must reach the data client that exists only then."""
    name = unique_name("Early")
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    status, _, created = stack.api("POST", "/users", {"name": name, "email": email,
                                                      "role": "creator", "status": "active"})
    assert status == 201, created
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    expect(row(page, "users", created["id"])).to_be_visible()
    page.wait_for_function("() => window.dashboard.client.cachedCopy('users')?.count >= 1")
    page.reload()
    page.wait_for_function("() => window.dashboard?.earlyStart !== undefined")
    assert page.evaluate("window.dashboard.earlyStart") == "shown"
    expect(page.locator("#f-name")).to_be_editable()  # mounted: app.js handed out its handlers
    delete_row(page, "users", created["id"])
    expect(row(page, "users", created["id"])).to_have_count(0)
    expect(page.locator("#toast")).to_contain_text(f"Deleted {name}")
    assert stack.api("GET", f"/users/{created['id']}")[0] == 404


# In the frame after each table's first rows arrive: how many rows it holds, and whether they
# reach the bottom of what its scroll box shows on screen (the first fill is a screenful, the
# rest follows after that frame: page/tables.js).
RECORD_FIRST_FILL = """
window.__firstFill = {};
new MutationObserver(() => {
  for (const name of ['users', 'jobs']) {
    const body = document.querySelector(`#${name}-table tbody`);
    if (window.__firstFill[name] || !body?.querySelector('tr[data-id]')) continue;
    window.__firstFill[name] = 'pending';
    requestAnimationFrame(() => {
      const rows = body.querySelectorAll('tr[data-id]');
      const box = body.closest('.table-wrap').getBoundingClientRect();
      window.__firstFill[name] = { rows: rows.length,
        lastRowBottom: rows[rows.length - 1].getBoundingClientRect().bottom,
        shownBottom: Math.min(box.bottom, window.innerHeight) };
    });
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest.mark.parametrize("viewport", [(1360, 1600), (390, 844)], ids=["tall", "phone"])
def test_the_early_starts_first_fill_covers_what_each_table_shows_and_the_rest_follows(
        stack, static_site, new_page, viewport):
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    counts = {name: rows(page, name).count() for name in ("users", "jobs")}
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    page.context.add_init_script(RECORD_FIRST_FILL)
    page.reload()
    page.wait_for_function("() => window.dashboard?.earlyStart !== undefined")
    assert page.evaluate("window.dashboard.earlyStart") == "shown"
    page.wait_for_function(
        "() => ['users', 'jobs'].every((n) => typeof window.__firstFill[n] === 'object')")
    fills = page.evaluate("window.__firstFill")
    for name, fill in fills.items():
        assert fill["rows"] < counts[name], (name, fill)  # a first fill, not the whole list
        assert fill["lastRowBottom"] >= fill["shownBottom"], (name, fill)  # no gap on screen
        expect(rows(page, name)).to_have_count(counts[name])  # then the rest


def blank(page, origin: str) -> None:
    """A page of the dashboard's origin where its app does not run (its records, untouched by
    the Firebase SDK's tab sync)."""
    page.goto(f"{origin}/styles.css")


def test_the_early_start_never_shows_a_copy_when_nobody_is_signed_in(stack, static_site, new_page):
    url = stack.page_url(origin=static_site, live=False)
    page = visit(new_page, url)
    page.context.add_init_script(RECORD_PAINTS)
    blank(page, static_site)
    # Signed out behind the page's back: the note and the copies stay, the SDK's session goes.
    records = page.evaluate(PAGE_RECORDS, {"forgetSession": True})
    assert records["copies"] and records["note"] and not records["users"]
    page.goto(url)
    page.wait_for_function("() => window.dashboard?.earlyStart !== undefined")
    assert page.evaluate("window.dashboard.earlyStart") == "none"
    expect(page.locator("#sign-in-email")).to_be_visible()
    expect(rows(page, "users")).to_have_count(0)
    assert page.evaluate("window.__painted") == 0, "a row was painted"
    assert not [e for e in events(page) if e["type"].endswith("DataChanged") and e["count"]]
    assert page.evaluate("localStorage.getItem('dashboard-signed-in')") is None  # nobody: noted


def test_the_early_start_never_shows_another_users_copy(stack, static_site, new_page):
    url = stack.page_url(origin=static_site, live=False)
    page = visit(new_page, url)
    blank(page, static_site)
    admin = page.evaluate(PAGE_RECORDS)
    (admin_uid,) = {json.loads(text)["uid"] for text in admin["copies"].values()}
    assert admin["users"] == [admin_uid] and admin["note"]["uid"] == admin_uid
    page.goto(url)
    sign_in_as_other_user(page, stack, static_site)  # the viewer's session persisted now
    page.wait_for_function("() => localStorage.getItem('dashboard-signed-in') !== null")
    page.context.add_init_script(RECORD_PAINTS)
    blank(page, static_site)
    viewer = page.evaluate(PAGE_RECORDS)
    assert viewer["users"] and viewer["users"] != [admin_uid]
    assert not any(admin_uid in text for text in viewer["copies"].values()), "sign-out cleared"
    # The admin's copies back in the store, with a note naming the admin (as a tab that saved
    # them late might leave), then with the viewer's own note: the SDK's session is the viewer's.
    for note in (admin["note"], viewer["note"]):
        page.evaluate(PAGE_RECORDS, {"put": admin["copies"], "note": note})
        page.goto(url)
        page.wait_for_function("() => window.dashboard?.earlyStart !== undefined")
        assert page.evaluate("window.dashboard.earlyStart") == "none", note
        expect(page.locator("#auth-chip")).to_contain_text("viewer@example.com")
        expect(badge(page, "users")).to_have_attribute("data-source", "none")  # a viewer: refused
        assert page.evaluate("window.__painted") == 0, f"a row was painted ({note})"
        assert not [e for e in events(page) if e["type"].endswith("DataChanged") and e["count"]]
        blank(page, static_site)
        after = page.evaluate(PAGE_RECORDS)
        assert not any(admin_uid in text for text in after["copies"].values()), note


def test_a_new_version_of_the_app_is_fetched_in_the_background_and_announced(
        stack, shell_copy, new_page):
    origin, folder, *_ = shell_copy
    page = visit(new_page, stack.page_url(origin=origin, live=False))
    before = page.evaluate(SHELL_CACHES)
    assert len(before) == 1
    styles = folder / "styles.css"
    styles.write_text(styles.read_text() + "\n/* new version */\n")
    page.reload()
    expect(page.locator("#app-update")).to_contain_text("A new version of the dashboard is ready")
    expect(page.locator("#f-name")).to_be_visible()  # the page was not reloaded by force
    page.wait_for_function(f"async () => {{ const c = await ({SHELL_CACHES})(); "
                           "return Object.keys(c).length === 1; }")
    after = page.evaluate(SHELL_CACHES)
    assert after.keys() != before.keys()
    page.locator("#app-update button", has_text="Reload").click()
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    assert "new version" in page.evaluate("fetch('styles.css').then((r) => r.text())")
    expect(page.locator("#app-update")).to_have_count(0)


def test_shell_scripts_come_from_the_cache_without_the_worker_and_a_missing_one_from_the_network(
        stack, static_site, new_page):
    """sw.js's static routes: Chromium answers the shell's modules and styles from Cache Storage
    itself (no fetch event), and what the cache lacks from the network; the page works alike."""
    page = visit(new_page, stack.page_url(origin=static_site, live=False))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    routed: dict[str, dict] = {}
    cdp.on("Network.responseReceived", lambda event: routed.setdefault(
        event["response"]["url"].removeprefix(static_site),
        event["response"].get("serviceWorkerRouterInfo") or {}))

    page.reload()
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    for path in ("/page/early.js", "/ui/format.js", "/styles.css"):
        assert routed[path].get("matchedSourceType") == "cache", (path, routed.get(path))
        assert routed[path].get("actualSourceType") == "cache", (path, routed[path])

    page.evaluate("""async () => {
      for (const name of await caches.keys()) {
        await (await caches.open(name)).delete('/ui/format.js');
      }
    }""")
    routed.clear()
    page.reload()
    expect(badge(page, "users")).to_have_attribute("data-source", "firestore")
    assert routed["/ui/format.js"].get("matchedSourceType") == "cache", routed["/ui/format.js"]
    assert routed["/ui/format.js"].get("actualSourceType") == "network", routed["/ui/format.js"]
    assert routed["/page/early.js"].get("actualSourceType") == "cache", routed["/page/early.js"]


def test_a_check_asked_during_a_check_runs_after_it_and_sees_the_new_version(
        stack, shell_copy, new_page):
    """The page asks the worker to check after each load: a check asked while one is under way
    must not just share it (that one may have fetched a file before it changed)."""
    origin, folder, _, asked, slow, released = shell_copy
    page = visit(new_page, stack.page_url(origin=origin, live=False))
    deep = "/admin/migration/report.js"  # fetched after styles.css: four imports away
    check = "navigator.serviceWorker.controller.postMessage({ type: 'dashboard-shell-check' })"
    released.clear()
    slow.add(deep)
    try:
        asked.clear()
        page.evaluate(check)  # the first check: held at `deep`, styles.css already fetched
        wait_for(lambda: deep in asked, 20, f"the worker's check never asked for {deep}")
        styles = folder / "styles.css"
        styles.write_text(styles.read_text() + "\n/* changed during a check */\n")
        page.evaluate(check)  # the second, asked while the first is under way
    finally:
        slow.discard(deep)
        released.set()
    expect(page.locator("#app-update")).to_contain_text("A new version of the dashboard is ready",
                                                        timeout=30_000)


def test_a_shell_check_that_cannot_fetch_every_file_keeps_the_shell_whole(
        stack, shell_copy, new_page):
    """A file the worker cannot fetch during its check (offline midway, a timeout, a 5xx) must
    not make a new shell without it: the check gives up and the current one stays, whole."""
    origin, _, failing, asked, *_ = shell_copy
    page = visit(new_page, stack.page_url(origin=origin, live=False))
    before = page.evaluate(SHELL_CACHES)
    (files,) = before.values()
    deep = "/admin/migration/report.js"  # four imports away from index.html
    assert any(url.endswith(deep) for url in files)
    failing.add(deep)
    try:
        asked.clear()
        page.evaluate("navigator.serviceWorker.controller.postMessage("
                      "{ type: 'dashboard-shell-check' })")
        wait_for(lambda: deep in asked, 20, f"the worker's check never asked for {deep}")
        page.wait_for_timeout(1000)  # what the check does next (with the bug: a new shell)
        assert page.evaluate(SHELL_CACHES) == before
    finally:
        failing.discard(deep)
    page.context.set_offline(True)
    page.reload()
    expect(badge(page, "users")).to_have_attribute("data-source", "cache")
    expect(page.locator("#f-name")).to_be_editable()  # app.js and its modules, from the shell
    page.context.set_offline(False)


# --- the installable page's files, no browser -------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_page_is_installable_and_the_worker_is_served_fresh():
    client = Client(create_static_app(WEB_DIR))
    page = client.get("/")
    assert b'rel="manifest" href="manifest.webmanifest"' in page.data
    # The worker's registration: page/early.js, the page's script, imports sw-register.js.
    assert b'src="page/early.js"' in page.data
    assert client.get("/page/early.js").status_code == 200
    assert "import('../sw-register.js')" in (WEB_DIR / "page" / "early.js").read_text()
    csp = page.headers["Content-Security-Policy"]
    assert "worker-src 'self'" in csp and "manifest-src 'self'" in csp
    manifest = client.get("/manifest.webmanifest")
    assert manifest.headers["Content-Type"] == "application/manifest+json"
    body = manifest.get_json(force=True)
    assert body["display"] == "standalone" and body["start_url"] and body["name"]
    sizes = set()
    for icon in body["icons"]:
        response = client.get(f"/{icon['src']}")
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        width, height = png_size(response.data)
        assert f"{width}x{height}" == icon["sizes"]
        sizes.add(width)
    assert {192, 512} <= sizes
    worker = client.get("/sw.js")
    assert worker.headers["Content-Type"].startswith("text/javascript")
    assert worker.headers["Cache-Control"] == "no-cache"  # a new worker is seen on the next visit
