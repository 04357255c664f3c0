"""Signing in to the dashboard with Firebase Authentication, in Chromium, through Firebase's Auth
emulator (issue 21): email and password through the page's card, Google through a credential,
what an admin and a viewer see, `python -m ops admin grant` taking effect without a reload,
sign-out, and the tokens the functions refuse (another project's, expired, revoked, a disabled
account's) through the API and the page.

The Google popup is not driven: `signInWithPopup` loads `https://apis.google.com/js/api.js`
(Google's iframe channel between the popup and the page) even against the emulator, and that
host is unreachable here. Imitating that private protocol would test an imitation, so the
Google path is driven where the SDK hands over to Firebase: `signInWithCredential` with a
`GoogleAuthProvider.credential(...)`, which the Auth emulator accepts as Google's ID token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from playwright.sync_api import expect

from emulators.auth_accounts import create_account, sign_in, update_account
from tests.browser.conftest import PROJECT, ROOT, LocalStack, api_call
from tests.browser.dashboard import (
    FIRST_LIVE_S,
    badge,
    open_signed_in,
    rows,
    saved_copies_script,
    unique_name,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

REFUSED_S = 30  # a poll (1 s) refused, the SDK's refresh refused, the reload


@pytest.fixture(scope="module")
def public_stack(static_site):
    """A stack whose reads are public (READ_ACCESS=public): a viewer reads, an admin writes."""
    stack = LocalStack("sign-in", [static_site], {"READ_ACCESS": "public"})
    yield stack
    stack.stop()


def new_account(stack: LocalStack, *, admin: bool = False) -> tuple[str, str]:
    """A fresh email/password account in the stack's Auth emulator: (email, password)."""
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    password = f"pw-{uuid.uuid4().hex}"
    create_account(stack.auth.host, PROJECT, email, password, {"admin": True} if admin else None)
    return email, password


def sign_in_with_form(page, email: str, password: str) -> None:
    page.locator("#sign-in-email").fill(email)
    page.locator("#sign-in-password").fill(password)
    page.locator("#sign-in-submit").click()
    expect(page.locator("#auth-chip")).to_contain_text(email)


def ops_admin(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    """`python -m ops admin ...` against the stack's Auth emulator, as an operator runs it."""
    env = {**os.environ, "FIREBASE_AUTH_EMULATOR_HOST": stack.auth.host,
           "GOOGLE_CLOUD_PROJECT": PROJECT}
    return subprocess.run([sys.executable, "-m", "ops", "admin", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def reencoded(token: str, **claims) -> str:
    """The Auth emulator's (unsigned) token with some claims changed: what the emulator of
    another project, or the same one an hour ago, would have issued (it issues tokens for its
    own project only, as of now, and signs none)."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{header}.{encoded}.{signature}"


def requests_to(page, *prefixes: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: request.url.startswith(prefixes)
            and seen.append(request.url))
    return seen


def test_the_admin_signs_in_with_email_reads_writes_and_goes_live(public_stack, static_site,
                                                                  page):
    page.goto(public_stack.page_url(origin=static_site))
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in")).to_contain_text("Auth emulator")
    expect(page.locator("#dashboard")).to_be_hidden()
    sign_in_with_form(page, "admin@example.com", "admin-password")
    expect(page.locator("#auth-chip")).to_contain_text("admin@example.com · admin")
    expect(page.locator("#access-note")).to_be_hidden()
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                          timeout=FIRST_LIVE_S * 1000)
    # Writes: the form and the row buttons are there, and a save goes through.
    name = unique_name("Signed")
    page.locator("#f-name").fill(name)
    page.locator("#f-email").fill(f"{name.split()[1]}@example.com")
    page.locator("#form-submit").click()
    expect(page.locator("#users-table tbody tr", has_text=name)).to_have_count(1)
    expect(rows(page, "users").first.locator('button[data-action="edit"]')).to_be_visible()
    # The status page: who is signed in and their claims, from the real token.
    page.goto(public_stack.page_url(origin=static_site) + "#status")
    user_row = page.locator('#status-table tr[data-check="user"]')
    expect(user_row).to_contain_text("admin@example.com", timeout=30_000)
    expect(user_row).to_contain_text("signed in with password")
    expect(user_row).to_contain_text("custom claims: admin: true")
    expect(user_row).to_have_attribute("data-state", "ok")
    # Migration: the panel, with its dry run, once the backend said this caller may migrate.
    page.goto(public_stack.page_url(origin=static_site) + "#migrate")
    expect(page.locator("#migration-recent h2")).to_have_text("Recent runs")
    expect(page.locator("#migration-dry-run")).to_be_visible()


def test_google_sign_in_through_a_credential(public_stack, static_site, page):
    page.goto(public_stack.page_url(origin=static_site))
    expect(page.locator("#sign-in-google")).to_be_visible()  # offered (dashboard-config.js)
    email = f"google-{uuid.uuid4().hex[:6]}@example.com"
    page.evaluate("""async (email) => {
        const { auth, authSdk } = window.dashboard.firebase;
        const idToken = JSON.stringify({ sub: email, email, email_verified: true });
        await authSdk.signInWithCredential(auth, authSdk.GoogleAuthProvider.credential(idToken));
    }""", email)
    expect(page.locator("#auth-chip")).to_contain_text(f"{email} · viewer")
    expect(page.locator("#auth-chip")).to_have_attribute("title", "Signed in with google.com")
    page.goto(public_stack.page_url(origin=static_site) + "#status")
    expect(page.locator('#status-table tr[data-check="user"]')).to_contain_text(
        "signed in with google.com", timeout=30_000)


def test_a_viewer_sees_what_they_may_and_a_grant_makes_them_admin_without_a_reload(
        public_stack, static_site, page):
    email, password = new_account(public_stack)
    grant = f"python -m ops admin grant {email}"
    admin_calls = requests_to(page, f"{public_stack.url}/migrate")
    page.goto(public_stack.page_url(origin=static_site))
    sign_in_with_form(page, email, password)
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#auth-chip")).to_contain_text("viewer (no admin claim)")
    note = page.locator("#access-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text(grant)
    # The data they may read, and no Edit, Delete or Add.
    expect(rows(page, "users").first).to_be_visible(timeout=FIRST_LIVE_S * 1000)
    expect(page.locator("#user-form")).to_be_hidden()
    expect(page.locator('#users-table button[data-action="edit"]:visible')).to_have_count(0)
    expect(page.locator('#jobs-table button[data-action="delete"]:visible')).to_have_count(0)
    # Live mode is for admins (the rules): the badge says so in a sentence, not the rules error.
    expect(badge(page, "users")).to_have_attribute("title", re.compile("only admins may listen"),
                                                   timeout=FIRST_LIVE_S * 1000)
    assert "Property admin" not in (badge(page, "users").get_attribute("title") or "")
    # A write is refused by the backend anyway (the page offers none).
    refused = page.evaluate("""async () => {
        const user = { name: 'x', email: 'x@example.com' };
        try { await window.dashboard.client.create('users', user); }
        catch (error) { return [error.status, error.code]; }
        return 'written';
    }""")
    assert refused == [403, "not_admin"]
    # Migration and Status: no admin calls, a sentence instead.
    page.locator('#tabs [data-tab="migrate"]').click()
    expect(page.locator("#migration-refused")).to_contain_text(grant)
    expect(page.locator("#migration-dry-run")).to_have_count(0)
    page.locator('#tabs [data-tab="status"]').click()
    user_row = page.locator('#status-table tr[data-check="user"]')
    expect(user_row).to_contain_text("custom claims: none", timeout=30_000)
    expect(user_row).to_contain_text(grant)
    assert admin_calls == [], admin_calls

    granted = ops_admin(public_stack, "grant", email)
    assert granted.returncode == 0, granted.stderr
    page.locator('#tabs [data-tab="data"]').click()
    page.locator("#access-recheck").click()  # a new ID token: the claim the admin just granted
    expect(page.locator("#auth-chip")).to_contain_text(f"{email} · admin")
    expect(note).to_be_hidden()
    expect(page.locator("#user-form")).to_be_visible()
    expect(rows(page, "users").first.locator('button[data-action="edit"]')).to_be_visible()
    for collection in ("users", "jobs"):  # the listeners now run with the admin's token
        expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                          timeout=FIRST_LIVE_S * 1000)
    page.locator('#tabs [data-tab="migrate"]').click()
    expect(page.locator("#migration-dry-run")).to_be_visible()
    assert page.evaluate("window.__notReloaded === true")


def test_sign_out_stops_the_listeners_and_clears_the_tabs_data(public_stack, static_site, page):
    open_signed_in(page, public_stack.page_url(origin=static_site))
    for collection in ("users", "jobs"):
        expect(badge(page, collection)).to_have_attribute("data-mode", "live",
                                                          timeout=FIRST_LIVE_S * 1000)
    # The data client's saved copies (web/client/cache.js: this origin's IndexedDB).
    page.wait_for_function(f"async () => (await ({saved_copies_script})()).length > 0")
    page.locator("#sign-out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    expect(page.locator("#auth-chip")).to_be_hidden()
    assert page.evaluate(saved_copies_script) == []  # no copy of the data is left
    assert page.evaluate("window.dashboard.client === undefined")
    # Nothing of the last session keeps running: no poll, no listener, no token.
    firestore = f"http://{public_stack.firestore.host}"
    after = requests_to(page, f"{public_stack.url}/users", f"{public_stack.url}/jobs", firestore)
    public_stack.firestore_client().collection("users").document("after-sign-out").set({
        "name": "Nobody sees me", "email": "nobody@example.com", "role": "creator",
        "status": "active", "createdAt": 1, "updatedAt": 1})
    page.wait_for_timeout(3000)  # three polls' worth
    assert after == []
    # A reload is still signed out (the SDK's own session is gone too).
    page.reload()
    expect(page.locator("#sign-in")).to_be_visible()


def test_refused_tokens_through_the_api_and_the_page(make_stack, static_site, page):
    stack = make_stack(CHECK_REVOKED="true")
    email, password = new_account(stack, admin=True)
    token = sign_in(stack.auth.host, email, password)["idToken"]
    url = f"{stack.url}/users?limit=1"
    assert api_call("GET", url, token=token)[0] == 200

    # Another project's token, an expired one: 401 with the code that says which.
    other = reencoded(token, aud="demo-other",
                      iss="https://securetoken.google.com/demo-other")
    expired = reencoded(token, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    for bad, code in ((other, "wrong_audience"), (expired, "expired_token")):
        status, _, body = api_call("GET", url, token=bad)
        assert (status, body["error"]["code"]) == (401, code)
    # Through the page: its calls carry such a token (also on the forced refresh's retry), and
    # the table says the sign-in expired, with the backend's reason.
    open_signed_in(page, stack.page_url(origin=static_site, live=False))
    page.route(f"{stack.url}/users**", lambda route: route.continue_(
        headers={**route.request.headers, "authorization": f"Bearer {expired}"}))
    page.reload()
    expect(page.locator("#users-table tbody")).to_contain_text("Cannot load users",
                                                               timeout=REFUSED_S * 1000)
    expect(page.locator("#users-table tbody")).to_contain_text("the ID token has expired")
    page.unroute(f"{stack.url}/users**")

    # Revoked (python -m ops admin revoke drops the claim and ends the sessions), CHECK_REVOKED
    # on: the API refuses the token. The page's next call is refused the same way; its forced
    # refresh then gets a new token (the Auth emulator, unlike Firebase, still refreshes a
    # revoked session: firebase-tools checks `validSince` on ID tokens only), which no longer
    # carries the claim: the page turns the person into a viewer, without a reload.
    page.reload()
    page.locator("#sign-out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    sign_in_with_form(page, email, password)
    expect(page.locator("#auth-chip")).to_contain_text(f"{email} · admin")
    expect(rows(page, "users").first).to_be_visible(timeout=FIRST_LIVE_S * 1000)
    refusals: list[int] = []  # the page's calls refused with the revoked token (API: above)
    # Either collection's call may be the first refused (its refresh then serves the other).
    page.on("response", lambda response: response.url.startswith(
        (f"{stack.url}/users", f"{stack.url}/jobs"))
        and response.status == 401 and refusals.append(response.status))
    time.sleep(1.1)  # revocation counts in whole seconds: after the tokens' issue time
    revoked = ops_admin(stack, "revoke", email)
    assert revoked.returncode == 0, revoked.stderr
    status, _, body = api_call("GET", url, token=token)
    assert (status, body["error"]["code"]) == (401, "revoked_token")
    expect(page.locator("#auth-chip")).to_contain_text(f"{email} · viewer",
                                                       timeout=REFUSED_S * 1000)
    assert refusals, "the page's call with the revoked token was refused, then refreshed"

    # A disabled account: its token is refused; the page's forced refresh is refused too, so
    # the SDK signs the person out and the page says why; signing in again is refused.
    session = sign_in(stack.auth.host, email, password)
    update_account(stack.auth.host, PROJECT, session["localId"], disableUser=True)
    status, _, body = api_call("GET", url, token=session["idToken"])
    assert (status, body["error"]["code"]) == (401, "user_disabled")
    expect(page.locator("#sign-in-error")).to_contain_text("Your session ended",
                                                           timeout=REFUSED_S * 1000)
    expect(page.locator("#dashboard")).to_be_hidden()
    page.locator("#sign-in-email").fill(email)
    page.locator("#sign-in-password").fill(password)
    page.locator("#sign-in-submit").click()
    expect(page.locator("#sign-in-error")).to_contain_text("This account is disabled")


def test_bad_input_in_the_admin_tools_is_said_in_a_sentence(public_stack, static_site, page):
    """Item 6 of issue 21: an invalid email, a refused migration file, counts of one."""
    from tests.browser.admin import choose_file, message

    open_signed_in(page, public_stack.page_url(origin=static_site))
    page.locator("#f-name").fill("Bad Email")
    page.locator("#f-email").fill("not-an-email")
    page.locator("#form-submit").click()
    expect(page.locator("#err-email")).to_contain_text("must be an email address")
    expect(page.locator("#err-email")).not_to_contain_text("pattern")

    page.goto(public_stack.page_url(origin=static_site) + "#migrate")
    expect(page.locator("#migration-recent h2")).to_have_text("Recent runs")
    choose_file(page, "broken.json", b'[{"id": "u1", "name": "A"},')
    page.locator("#migration-dry-run").click()
    expect(message(page)).to_contain_text("not valid JSON")
    # The run never existed: no card waiting for it, no run id in the URL, none after a reload.
    expect(page.locator("#migration-run")).to_be_hidden()
    assert page.evaluate("location.hash") == "#migrate"
    page.reload()
    expect(page.locator("#migration-recent h2")).to_have_text("Recent runs")
    expect(page.locator("#migration-run")).to_be_hidden()

    # One record is "1 record".
    choose_file(page, "one.json", json.dumps([{"id": "one-record", "name": "Solo",
                                               "email": "solo@example.com", "role": "creator",
                                               "status": "active"}]).encode())
    page.locator("#migration-dry-run").click()
    expect(message(page)).to_contain_text("Dry run done: 1 record would be written", timeout=90_000)
    expect(page.locator("#migration-panel")).not_to_contain_text("1 records")
