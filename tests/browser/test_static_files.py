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
    assert b'src="app.js"' in page.data
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
    """A fresh instance with no project configured: the function answers a JSON 500."""
    from functions.read_api import reset_read_context
    from shared.clients import reset_clients
    from shared.settings import get_settings

    def reset():
        reset_read_context()
        reset_clients()
        get_settings.cache_clear()

    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    reset()
    yield
    reset()


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
