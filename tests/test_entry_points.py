"""main.py through functions-framework: the real wiring, lazily built from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from werkzeug.test import Client

from tests.helpers import seed_users

ROOT = Path(__file__).resolve().parent.parent


def test_entry_points_serve_each_collection_on_one_port(emulator_env, firestore_client,
                                                        fresh_instance, monkeypatch):
    from dev.app import create_stack_app

    monkeypatch.setenv("READ_ACCESS", "public")

    seed_users(firestore_client, 3)
    client = Client(create_stack_app({"users": "http", "jobs": "http"}))
    users = client.get("/users")
    assert users.status_code == 200, users.get_data(as_text=True)
    assert [item["id"] for item in users.json["items"]] == ["u_0000", "u_0001", "u_0002"]
    assert client.get("/users/u_0002").json["name"] == "User 002"
    assert client.get("/jobs").json["items"] == []
    assert client.get("/nothing").status_code == 404


def test_invalid_setting_is_a_json_error_naming_it(emulator_env, monkeypatch, fresh_instance):
    from dev.app import create_stack_app

    monkeypatch.setenv("FIRESTORE_TIMEOUT_S", "later")
    response = Client(create_stack_app({"users": "http"})).get("/users")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "invalid_setting"
    assert "FIRESTORE_TIMEOUT_S" in response.json["error"]["message"]


def test_importing_main_creates_no_client_and_loads_no_google_library():
    code = ("import sys, main; heavy = [m for m in ('google.cloud.firestore', "
            "'google.cloud.storage', 'firebase_admin', 'grpc') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "", f"imported at module load: {result.stdout}"


def test_reads_need_an_admin_token_by_default(emulator_env, fresh_instance):
    from dev.app import create_stack_app

    response = Client(create_stack_app({"users": "http"})).get("/users")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
