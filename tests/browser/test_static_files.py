"""dev/app.py serves the demo page next to the functions (no browser, no emulator needed)."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from dev.app import WEB_DIR, create_stack_app, create_static_app


def test_stack_app_serves_the_page_at_the_root():
    client = Client(create_stack_app({"users": "http"}))
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    assert b'src="page/early.js"' in page.data  # which loads app.js (web/page/early.js)
    assert client.get("/index.html").data == page.data
    for path, kind in (("/app.js", "text/javascript"), ("/data-client.js", "text/javascript"),
                       ("/styles.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith(kind)
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_files_are_revalidated_with_an_etag():
    client = Client(create_stack_app({}))
    first = client.get("/data-client.js")
    again = client.get("/data-client.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_only_the_page_is_served_and_other_paths_keep_the_json_404():
    client = Client(create_stack_app({"users": "http"}))
    for path in ("/nothing", "/tests/data-client.test.js", "/tests/fakes.js", "/package.json",
                 "/package-lock.json", "/../main.py", "/%2e%2e/main.py", "/..%2fmain.py",
                 "/.hidden.js"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found", path
    assert client.post("/").status_code == 404


@pytest.fixture
def no_settings(monkeypatch):
    """A fresh instance with no project configured: the function answers a JSON 500 (each app
    over main.py is a fresh instance, its own `LazyInstance`)."""
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)


def test_functions_stay_mounted_next_to_the_page(no_settings):
    client = Client(create_stack_app({"users": "http"}))
    response = client.get("/users")
    assert response.status_code == 500
    assert response.json["error"]["code"] in ("missing_setting", "invalid_setting",
                                              "config_error")


def test_static_dir_none_keeps_the_former_behaviour():
    client = Client(create_stack_app({}, static_dir=None))
    assert client.get("/").status_code == 404
    assert client.get("/app.js").status_code == 404


def test_static_app_alone_is_a_static_host():
    client = Client(create_static_app(WEB_DIR))
    assert client.get("/").status_code == 200
    assert client.head("/styles.css").status_code == 200
    assert client.get("/users").status_code == 404


def test_the_sdk_files_of_the_import_map_are_served_and_nothing_else_of_node_modules():
    import re

    client = Client(create_static_app(WEB_DIR))
    page = client.get("/").data.decode()
    mapped = re.findall(r'"(\./vendor/firebase/[^"]+)"', page)
    assert sorted(mapped) == ["./vendor/firebase/firebase-app.js",
                              "./vendor/firebase/firebase-auth.js",
                              "./vendor/firebase/firebase-firestore.js"]
    for path in mapped:
        response = client.get(path[1:])
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert b"Firebase" in response.data or b"firebase" in response.data
    for path in ("/vendor/firebase/firebase-auth-compat.js", "/vendor/firebase/package.json",
                 "/vendor/firebase/../firebase/firebase-app.js", "/vendor/firebase/",
                 "/vendor/firebase/firebase-firestore.js.map",
                 "/node_modules/firebase/firebase-app.js",
                 "/vendor/@firebase/rules-unit-testing/package.json"):
        assert client.get(path).status_code == 404, path


def test_the_csp_allows_the_page_s_two_inline_scripts_by_their_hashes_and_nothing_else_inline():
    import base64
    import hashlib
    import re

    client = Client(create_static_app(WEB_DIR))
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    (early_reads,) = re.findall(rb"<script>(.*?)</script>", response.data, re.S)
    (import_map,) = re.findall(rb'<script type="importmap">(.*?)</script>', response.data, re.S)
    assert b"dashboardEarlyReads" in early_reads
    digests = [base64.b64encode(hashlib.sha256(script).digest()).decode()
               for script in (early_reads, import_map)]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'", *(f"'sha256-{d}'" for d in digests)]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "connect-src 'self' http://127.0.0.1:* http://localhost:*" in csp


def test_the_inline_early_reads_name_the_data_client_s_database_and_store():
    """index.html's inline script reads the data client's database before any module loads: it
    names it itself, so a rename in client/idb-store.js must reach it (or no early start)."""
    import re

    idb_store = (WEB_DIR / "client" / "idb-store.js").read_text()
    (db_name,) = re.findall(r"export const DB_NAME = '([^']+)'", idb_store)
    (store,) = re.findall(r"^const STORE = '([^']+)'", idb_store, re.M)
    (inline,) = re.findall(r"<script>(.*?)</script>", (WEB_DIR / "index.html").read_text(), re.S)
    assert f"read('{db_name}', '{store}')" in inline


def test_the_stack_tells_the_page_its_firebase_config_with_cors(monkeypatch):
    from dev.stack import web_config

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-dashboard")
    monkeypatch.setenv("SNAPSHOT_BUCKET", "demo-bucket")
    monkeypatch.setenv("ALLOWED_ORIGINS", "http://127.0.0.1:9000")
    config = web_config("demo-dashboard", "127.0.0.1:8085", "127.0.0.1:9099")
    assert config == {"apiKey": "demo-dashboard-local-key",
                      "authDomain": "demo-dashboard.firebaseapp.com", "projectId": "demo-dashboard",
                      "emulators": {"firestore": {"host": "127.0.0.1", "port": 8085},
                                    "auth": {"url": "http://127.0.0.1:9099"}}}
    client = Client(create_stack_app({}, firebase_config=config))
    allowed = client.get("/__/firebase/init.json", headers={"Origin": "http://127.0.0.1:9000"})
    assert allowed.status_code == 200 and allowed.json == config
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9000"
    assert allowed.headers["Cache-Control"] == "no-store"
    foreign = client.get("/__/firebase/init.json", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert client.post("/__/firebase/init.json").status_code == 404
    assert client.get("/__/firebase/init.json/x").status_code == 404
    assert Client(create_stack_app({})).get("/__/firebase/init.json").status_code == 404
