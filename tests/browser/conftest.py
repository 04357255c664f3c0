"""Browser test fixtures: Debian's headless Chromium (Playwright), local stacks, a static site.

``browser``      (session) Chromium from ``/usr/bin/chromium`` through Playwright's
                 ``executable_path`` (browser downloads are not reachable here; ``.ci/run``
                 installs Debian's ``chromium``). Missing: the tests fail and say how to install it.
``static_site``  (session) a plain static host of ``web/`` on its own port: the page as GitHub
                 Pages would serve it, so it keeps loading while a stack's functions are stopped.
                 Its origin is in every stack's ``ALLOWED_ORIGINS`` (the page calls the API
                 cross-origin, with CORS, as it does in production).
``stack``        (module) a local stack that the tests of a module share.
``make_stack``   (function) ``make_stack(**env)`` starts a private stack (``env``: settings of
                 its functions) that a test may break (``stop_firestore()``,
                 ``restart_firestore()``, ``stop_functions()``); stopped at the test's end.
``page``         (function) a fresh browser context (own ``sessionStorage``) and page; a failing
                 test leaves ``test-artifacts/browser-<test>.png`` (the run's logs are kept only
                 when a test failed; ``DASHBOARD_PICTURES=docs`` writes the pictures of what the
                 tests show there).

Each stack is ``python -m dev.stack`` in a subprocess (the page, the functions, the sample
data, the sample accounts and whatever else ``make dev`` runs), on its own Firestore (Google's,
delivering its change events to the stack's port), Cloud Storage and Firebase Auth emulators,
which this file starts with ``emulators.harness`` so that a test can stop them; the session's
shared emulators (tests/conftest.py) are never touched. People sign in for real: the page
through its sign-in card (``tests/browser/dashboard.py``), the tests' own API calls with the
sample admin's ID token from the Auth emulator (``LocalStack.id_token``). The stack runs
``READ_ACCESS=admin``, so reads carry the token too.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest

from emulators import harness
from tests.conftest import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
# The pictures of what the tests show (the docs' pictures): written to this folder when it is
# set (`DASHBOARD_PICTURES=docs`), never on an ordinary run: a green run leaves nothing behind.
PICTURES = os.environ.get("DASHBOARD_PICTURES", "")
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PROJECT = "demo-dashboard"  # the page's default project (web/index.html)
BUCKET = "demo-dashboard-snapshots"
STACK_START_TIMEOUT_S = 120
SEED_SETTLE_S = 3  # after the stack's sample data is written, before a page reads it
# The page's Firestore SDK log level ("" for the SDK's default): its log is kept in the page
# (SDK_LOG_RING) and written out beside a failed test's pictures.
FIRESTORE_LOG = os.environ.get("FIRESTORE_LOG", "debug")
VIEWPORT = {"width": 1360, "height": 1000}


def api_call(method: str, url: str, body: object = None, headers: dict | None = None,
             timeout: float = 15, *, token: str | None = None) -> tuple[int, dict, object]:
    """One request to the API, as the holder of `token` (an ID token; None: no Authorization
    header): (status, headers, JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent.setdefault("Authorization", f"Bearer {token}")
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        raw, status, got = err.read(), err.code, dict(err.headers)
    return status, got, (json.loads(raw) if raw else None)


def _serve_in_thread(app) -> tuple[str, object]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server


class LocalStack:
    """`python -m dev.stack` on emulators of its own; every part can be stopped by a test.
    `env`: settings that replace the tests' ones (the live benchmark runs the defaults)."""

    def __init__(self, name: str, extra_origins: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.env = dict(env or {})  # settings of this stack's functions (shared/settings.py)
        # Logs named per test run too: two runs on one machine must not write the same file.
        prefix = f"browser-{name}-{os.getpid()}"
        self.prefix = prefix
        self.log_path = ARTIFACTS / f"{prefix}-stack.log"
        self.process: subprocess.Popen | None = None
        # The stack's port is held while the emulators start: Google's emulator opens extra
        # ports at random, and one once took the stack's.
        self._tokens: dict[str, str] = {}
        # The Auth emulator (Node, ~10 s) starts while the others do; all three stay up when a
        # test stops the stack's functions.
        self.auth = harness.start_auth(PROJECT, log_path=ARTIFACTS / f"{prefix}-auth.log",
                                       wait=False)
        try:
            with harness.reserved_port() as self.port:
                self.url = f"http://127.0.0.1:{self.port}"
                self.firestore = harness.start_firestore(
                    log_path=ARTIFACTS / f"{prefix}-firestore.log",
                    functions_emulator=f"127.0.0.1:{self.port}")
                try:
                    self.storage = harness.start_storage(
                        log_path=ARTIFACTS / f"{prefix}-storage.log")
                except BaseException:
                    self.firestore.stop()
                    raise
            harness.wait_until_ready(self.auth)
        except BaseException:
            self.auth.stop()
            raise
        try:
            self._start(extra_origins)
        except BaseException:
            self.stop()
            raise

    def _start(self, extra_origins: list[str]) -> None:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("FIRESTORE_EMULATOR", "STORAGE_EMULATOR",
                                      "FIREBASE_AUTH_EMULATOR"))}
        env.update({
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "STORAGE_EMULATOR_HOST": self.storage.host,
            # The stack creates its sample accounts there; the functions verify its tokens.
            "FIREBASE_AUTH_EMULATOR_HOST": self.auth.host,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SNAPSHOT_BUCKET": BUCKET,
            "READ_ACCESS": "admin",
            "ALLOWED_ORIGINS": ",".join([self.url, *extra_origins]),
            "FIRESTORE_TIMEOUT_S": "1",
            "BREAKER_COOLDOWN_S": "2",
            "CACHE_TTL_S": "1",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        })
        env.pop("PORT", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dev.stack", "--port", str(self.port)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        _running.add(self)
        deadline = time.monotonic() + STACK_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the local stack (python -m dev.stack) exited with "
                            f"{self.process.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(OSError, harness.EmulatorError):  # accounts not made yet
                # Signed in afresh each time: a sign-in between the account's creation and its
                # claim would otherwise hold a token without the claim.
                status, _, body = api_call("GET", f"{self.url}/users?limit=1", timeout=5,
                                           token=self.id_token("admin", fresh=True))
                if status == 200 and body and body.get("items"):
                    # The page's listeners start LIVE_SLACK_MS (2 s, web/client/live.js) before
                    # its first read: documents seeded within that window are in their first
                    # answer, and when the emulator later resends a target (a reconnect, a
                    # restart empty) each becomes a limbo document that the SDK resolves with a
                    # target of its own: hundreds of them kept live mode off for minutes.
                    time.sleep(SEED_SETTLE_S)
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"the local stack did not serve seeded users within "
                            f"{STACK_START_TIMEOUT_S} s:\n{self.log_tail()}")
            time.sleep(0.3)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def page_url(self, origin: str | None = None, poll_ms: int = 1000, *,
                 live: bool = True) -> str:
        """The dashboard on this stack; served by `origin` (another host) when given.
        `live=False`: polling only. Live pages log the Firestore SDK's traffic at
        `FIRESTORE_LOG` (default `debug`): the console log a failed test leaves shows what the
        listeners waited for. Who is signed in is the page's sign-in (dashboard.sign_in)."""
        extra = "" if live else "&live=0"
        if live and FIRESTORE_LOG:
            extra += f"&firestoreLog={FIRESTORE_LOG}"
        if origin is None:
            return f"{self.url}/?poll={poll_ms}{extra}"
        return f"{origin}/?api={self.url}&poll={poll_ms}{extra}"

    def api(self, method: str, path: str, body: object = None, *, who: str = "admin",
            **headers: str):
        """One call to this stack's API as the sample account `who` ("admin", "viewer"; None:
        no token), signed in at the Auth emulator."""
        token = self.id_token(who) if who else None
        return api_call(method, f"{self.url}{path}", body, headers, token=token)

    def id_token(self, who: str = "admin", *, fresh: bool = False) -> str:
        """The ID token of the sample account `who` (signed in once, then reused: it lasts an
        hour; `fresh`: sign in again, e.g. after a claim changed)."""
        from dev.stack import SAMPLE_ACCOUNTS
        from emulators.auth_accounts import sign_in

        if fresh or who not in self._tokens:
            account = next(one for one in SAMPLE_ACCOUNTS if one["email"].startswith(f"{who}@"))
            self._tokens[who] = sign_in(self.auth.host, account["email"],
                                        account["password"])["idToken"]
        return self._tokens[who]

    def firestore_client(self):
        from tests.helpers import firestore_client_at

        return firestore_client_at(self.firestore.host, PROJECT)

    def snapshot_ids(self, collection: str) -> set[str]:
        """The ids in the collection's snapshot (its index and parts, read through the loader
        from the storage emulator)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from shared.snapshot_reader import load_snapshot

        with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": self.storage.host}):
            client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
        try:
            snapshot = load_snapshot(client, BUCKET, collection, timeout_s=10)
        finally:
            client.close()
        return {item["id"] for item in snapshot.items}

    def stop_firestore(self) -> None:
        self.firestore.stop()

    def restart_firestore(self) -> None:
        """Google's emulator again on the same port, empty (as after a crash), with what the
        stack gave the first one: the rules and the triggers of the change events."""
        from dev.stack import prepare_emulator

        port = int(self.firestore.host.rsplit(":", 1)[1])
        self.firestore = harness.start_firestore(
            port=port, log_path=ARTIFACTS / f"{self.prefix}-firestore-again.log",
            functions_emulator=f"127.0.0.1:{self.port}")
        for attempt in range(3):  # its admin API can lag its "running" line on a busy machine
            try:
                prepare_emulator(self.firestore, PROJECT, ("users", "jobs"))
                break
            except harness.EmulatorError:
                if attempt == 2:
                    raise
                time.sleep(2)

    def stop_functions(self) -> None:
        """Stop the stack process (the page's static host, if it is another one, stays up)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        _running.discard(self)

    def stop(self) -> None:
        """Stop every part (its logs stay in the run's ARTIFACTS: kept only if a test failed)."""
        self.stop_functions()
        for emulator in (getattr(self, "storage", None), self.firestore, self.auth):
            if emulator is not None:
                emulator.stop()


_running: set[LocalStack] = set()


def picture(page, name: str, *, full_page: bool = False) -> None:
    """`page` as `<DASHBOARD_PICTURES>/<name>` when DASHBOARD_PICTURES is set, else nothing."""
    if PICTURES:
        folder = ROOT / PICTURES
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=full_page)


@atexit.register
def _stop_stacks() -> None:
    for stack in list(_running):
        with contextlib.suppress(Exception):
            stack.stop_functions()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
                    "(`apt-get install -y chromium`, as .ci/run does), or CHROMIUM_PATH set")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make install` (requirements-dev.txt)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def static_site():
    """`web/` on a plain static host (no functions): the page's own origin."""
    from dev.app import create_static_app

    origin, server = _serve_in_thread(create_static_app())
    yield origin
    server.shutdown()


@pytest.fixture(scope="module")
def stack(request, static_site):
    name = re.sub(r"\W+", "-", request.module.__name__.rsplit(".", 1)[-1])
    shared = LocalStack(name, [static_site])
    yield shared
    shared.stop()


@pytest.fixture
def make_stack(request, static_site):
    started: list[LocalStack] = []

    def make(**env: str) -> LocalStack:
        """A private stack; `env` sets its functions' settings (e.g. MIGRATION_START_OPS_S)."""
        name = re.sub(r"\W+", "-", request.node.name)[:60] + f"-{len(started)}"
        started.append(LocalStack(name, [static_site], env))
        return started[-1]

    yield make
    for one in started:
        one.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class PageProblems:
    """JavaScript errors of a page: uncaught exceptions and console errors (Chromium's own
    "Failed to load resource" lines for 4xx/5xx answers and refused connections are expected
    in these tests and left out)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.console: list[str] = []  # every line, timed: written beside a failed test's pictures

    def watch(self, page) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, msg) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        self.console.append(f"{stamp} {msg.type}: {msg.text}")
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {msg.text}")


# The Firebase SDK's log lines stay in the page (the last SDK_LOG_LINES, a document's content
# left out): at debug it writes a line per document, and as console events they would flood the
# test's connection to the browser. A failed test writes them out with its pictures.
SDK_LOG_LINES = 4000
SDK_LOG_RING = """(() => {
  const ring = [];
  window.__sdkLog = ring;
  for (const method of ['log', 'info', 'debug']) {
    const original = console[method].bind(console);
    console[method] = (...args) => {
      const text = args.map(String).join(' ');
      if (!text.includes('@firebase/')) return original(...args);
      if (text.includes('"documentChange"') || text.includes('Detected inactive target')) return;
      ring.push(text.slice(0, 600)); // the SDK stamps its lines itself
      if (ring.length > 2 * LIMIT) ring.splice(0, ring.length - LIMIT); // trimmed in batches
    };
  }
})();""".replace("LIMIT", str(SDK_LOG_LINES))


@pytest.fixture
def new_page(browser, request):
    """`new_page()`: a page in a fresh context (its own sessionStorage), watched for JS errors."""
    contexts = []
    problems = PageProblems()

    def make():
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(15_000)
        context.add_init_script(SDK_LOG_RING)
        contexts.append(context)
        page = context.new_page()
        problems.watch(page)
        return page

    make.problems = problems
    yield make
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for index, context in enumerate(contexts):
            for number, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(ARTIFACTS / f"browser-{request.node.name}-"
                                             f"{index}-{number}.png"), full_page=True)
        lines = list(problems.console)
        for context in contexts:
            for page in context.pages:
                with contextlib.suppress(Exception):
                    sdk_log = page.evaluate(f"(window.__sdkLog || []).slice(-{SDK_LOG_LINES})")
                    lines += [f"{page.url} SDK:", *sdk_log]
        ARTIFACTS.mkdir(exist_ok=True)
        console = ARTIFACTS / f"browser-{request.node.name}-console.log"
        console.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()
