"""One WSGI app that serves every function of `main.py` at `/<function>` on one port.

Each function gets the app functions-framework itself builds for it (`create_app`), mounted
under its name, so locally `http://127.0.0.1:8080/users/u_1` reaches the `users` function with
path `/u_1`, exactly as Cloud Functions routes `https://REGION-PROJECT.cloudfunctions.net/users/u_1`.

Google's Firestore emulator delivers its change events (`--functions_emulator HOST:PORT`) to
`/functions/projects/<project>/triggers/<triggerId>`; those requests go to the publisher of
`publish_snapshot` through the event host of `dev/deliveries.py` (concurrency and retries as
Eventarc's; in batches, or one functions-framework request each with `EVENT_DELIVERY_BATCH=0`).

Everything else is the demo dashboard: the static files of `web/` at `/` (`index.html`,
`app.js`, `data-client.js`, `styles.css`), as a static host would serve them, and the three
files of the Firebase Web SDK its sign-in and live mode load (`/vendor/firebase/`, from the
pinned npm package: the page's import map points the SDK's gstatic URLs there). Paths that are
neither a function nor a file of the page answer the JSON 404 of the functions.

`/__/firebase/init.json` (the path Firebase Hosting serves a project's web config at) tells the
page the project and where the Firestore and Auth emulators listen, so that it signs in and
listens there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from dev.deliveries import DeliverySettings, EventHost

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
WEB_DIR = ROOT / "web"

# What the page is made of; anything else in web/ (its tests, package.json) is not served.
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
STATIC_HIDDEN_DIRS = {"tests", "test", "node_modules", "vendor"}
# The Firebase Web SDK's ES modules the page loads (its import map names them), and nothing
# else of node_modules: `/vendor/firebase/<file>`.
VENDOR_DIR = ROOT / "node_modules" / "firebase"
VENDOR_PREFIX = "/vendor/firebase/"
VENDOR_FILES = frozenset({"firebase-app.js", "firebase-auth.js", "firebase-firestore.js"})
# The page talks to its own origin, to local stacks on other ports (`?api=`) and to the
# Firestore emulator (live mode), nothing else. Its inline scripts (the early start's reads, the
# import map) are allowed by their hashes.
PAGE_CSP = ("default-src 'self'; connect-src 'self' http://127.0.0.1:* http://localhost:*; "
            "img-src 'self' data:; style-src 'self'; script-src 'self'{script_hashes}; "
            "worker-src 'self'; manifest-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
INLINE_SCRIPT = re.compile(rb"<script(?:\s+type=\"importmap\")?\s*>(.*?)</script>", re.S)
FIREBASE_INIT_PATH = "/__/firebase/init.json"


def _error(environ, start_response, status: int, code: str, message: str):
    body = f'{{"error":{{"code":"{code}","message":"{message}"}}}}'.encode()
    return Response(body, status=status, content_type="application/json")(environ, start_response)


def _not_found(environ, start_response):
    return _error(environ, start_response, 404, "not_found", "no function at this path")


def create_stack_app(targets: dict[str, str], *, static_dir: Path | None = WEB_DIR,
                     firebase_config: dict | None = None,
                     deliveries: DeliverySettings | None = None) -> DispatcherMiddleware:
    """Mount each `{name: signature_type}` function of main.py at `/<name>`, the emulator's
    trigger deliveries at `/functions` (to `publish_snapshot`'s publisher in batches, or to
    `publish_snapshot` one request each, as `deliveries` says: `DeliverySettings.from_env`
    when None), the page's web config
    (`firebase_config`, when given) at `/__/firebase/init.json`, and the demo page's files
    (`static_dir`, `web/` by default; None: no page) at `/`. Its `event_host` is the
    `EventHost` of the deliveries (None without `publish_snapshot`); its `close()` ends them
    (call it before the emulators stop: a queued delivery would meet them gone)."""
    from functions_framework import create_app

    mounts = {f"/{name}": _root_path(create_app(target=name, source=str(MAIN),
                                                 signature_type=kind))
              for name, kind in targets.items()}
    closers = []
    if "/publish_snapshot" in mounts:
        deliveries = deliveries or DeliverySettings.from_env()
        if deliveries.batch:
            batches = PublishBatches()
            mounts["/functions"] = EventHost(settings=deliveries, batch_app=batches)
            closers.append(batches.close)
        else:
            mounts["/functions"] = EventHost(mounts["/publish_snapshot"], deliveries)
        closers.insert(0, mounts["/functions"].close)
    if firebase_config is not None:
        mounts[FIREBASE_INIT_PATH] = firebase_init_app(firebase_config)
    fallback = create_static_app(static_dir) if static_dir is not None else _not_found
    app = DispatcherMiddleware(fallback, mounts)
    app.event_host = mounts.get("/functions")  # its `stats`, for tests and the benchmark

    def close() -> None:
        for closer in closers:
            closer()

    app.close = close
    return app


class PublishBatches:
    """The event host's `batch_app`: `handle_events` with a publisher of its own, built from
    the environment on the first batch (as `publish_snapshot`'s instance is on its first
    request). It is one more instance beside the `/publish_snapshot` mount's: instances share
    the write slot and merge by version (`functions/publish/publisher.py`)."""

    def __init__(self) -> None:
        from functions.instance import LazyInstance

        self.instance = LazyInstance()

    def __call__(self, events: list[tuple[dict[str, str], bytes]]) -> list[str | None]:
        from functions.publish.serve import handle_events

        return handle_events(events, self.instance.publisher)

    def close(self) -> None:
        """Close the instance's clients (after the event host closed)."""
        self.instance.close()


def firebase_init_app(config: dict):
    """`GET /__/firebase/init.json`: the project's web config for the page (what Firebase
    Hosting serves at that path), plus `emulators.firestore` `{host, port}` on the local stack.
    Readable cross-origin by the origins in ALLOWED_ORIGINS (the page may be served elsewhere).
    """
    from shared import http
    from shared.settings import Settings

    body = json.dumps(config).encode()
    settings: list[Settings] = []  # read from the environment on the first request

    def app(environ, start_response):
        request = Request(environ)
        if request.method not in ("GET", "HEAD") or environ.get("PATH_INFO", "") not in ("", "/"):
            return _not_found(environ, start_response)
        response = Response(body, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        if not settings:
            settings.append(Settings.from_env())
        http.add_cors(request, response, settings[0])
        return response(environ, start_response)

    return app


def create_static_app(directory: Path = WEB_DIR, fallback=_not_found):
    """A WSGI app serving the page's files from `directory` (`/` is `index.html`) and the
    Firebase SDK files of `VENDOR_FILES` at `/vendor/firebase/`; GET and HEAD only, no
    listing, revalidated on every load (`no-cache` with an ETag)."""
    root = Path(directory).resolve()

    def app(environ, start_response):
        request = Request(environ)
        path = _vendor_file(request.path) or _static_file(root, request.path)
        if path is None or request.method not in ("GET", "HEAD"):
            return fallback(environ, start_response)
        content = path.read_bytes()
        response = Response(content, content_type=STATIC_TYPES[path.suffix])
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if path.suffix == ".html":
            response.headers["Content-Security-Policy"] = page_csp(content)
        response.add_etag()
        response.make_conditional(request)
        return response(environ, start_response)

    return app


def page_csp(html: bytes) -> str:
    """The page's Content-Security-Policy: `PAGE_CSP`, with the hash of each of its inline
    scripts and import map (no 'unsafe-inline': an inline script added by anyone else, or
    changed, stays blocked)."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(html))
    return PAGE_CSP.format(script_hashes=hashes)


def _vendor_file(url_path: str) -> Path | None:
    """The SDK file a `/vendor/firebase/<file>` path names, or None."""
    name = url_path.removeprefix(VENDOR_PREFIX)
    if name == url_path or name not in VENDOR_FILES:
        return None
    path = VENDOR_DIR / name
    return path if path.is_file() else None


def _static_file(root: Path, url_path: str) -> Path | None:
    """The file of `root` a URL path names, or None (outside root, hidden, not a page type)."""
    relative = url_path.lstrip("/") or "index.html"
    if relative.endswith("/"):
        relative += "index.html"
    joined = safe_join(str(root), relative)
    if joined is None:
        return None
    path = Path(joined)
    parts = path.relative_to(root).parts
    if (path.suffix not in STATIC_TYPES or not path.is_file()
            or any(part in STATIC_HIDDEN_DIRS or part.startswith(".") for part in parts)):
        return None
    return path


def _root_path(app):
    """Cloud Functions hands `/users` to the function as path `/` (Flask would redirect)."""

    def mounted(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return mounted
