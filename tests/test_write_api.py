"""The write API (POST, PUT, PATCH, DELETE) against the emulators, as an admin.

Tokens are the Auth emulator's unsigned ones (FIREBASE_AUTH_EMULATOR_HOST set, `demo-`
project); the real signature path is tested offline in tests/test_auth.py.
"""

from __future__ import annotations

import pytest

from shared.times import parse_timestamp
from tests.helpers import emulator_id_token, seed_users

NEW_USER = {"name": "Ada Lovelace", "email": "ADA@Example.com", "role": "editor",
            "status": "active", "hourlyRate": 120, "skills": ["editing"]}


@pytest.fixture
def admin(emulator_env, project_id, monkeypatch):
    """Headers of an admin of this test's project (the auth emulator path)."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    return {"Authorization": f"Bearer {emulator_id_token(project_id, admin=True)}"}


def test_create_then_read_back(api, admin, firestore_client):
    created = api.post("/users", json={**NEW_USER, "id": "ada"}, headers=admin)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["id"] == "ada" and body["email"] == "ada@example.com"
    assert body["createdAt"] == body["updatedAt"]
    parse_timestamp(body["createdAt"])
    assert created.headers["Location"].endswith("/users/ada")
    stored = firestore_client.collection("users").document("ada").get()
    assert stored.get("email") == "ada@example.com"
    read = api.get("/users/ada")
    assert read.json == body
    assert read.headers["ETag"] == created.headers["ETag"]


def test_create_generates_an_id_and_refuses_duplicates(api, admin):
    first = api.post("/users", json=NEW_USER, headers=admin)
    assert first.status_code == 201 and len(first.json["id"]) == 20
    again = api.post("/users", json={**NEW_USER, "id": first.json["id"]}, headers=admin)
    assert again.status_code == 409 and again.json["error"]["code"] == "already_exists"


def test_every_field_error_is_listed(api, admin, firestore_client):
    response = api.post("/users", json={"name": "", "email": "nope", "role": "boss",
                                        "hourlyRate": "eighty", "createdAt": "whenever",
                                        "extra": 1}, headers=admin)
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "validation_failed"
    fields = {problem["field"] for problem in error["details"]["fields"]}
    assert {"name", "email", "role", "hourlyRate", "status", "extra"} <= fields
    assert list(firestore_client.collection("users").stream()) == []


def test_patch_put_delete_with_if_match(api, admin, firestore_client):
    seed_users(firestore_client, 2)
    etag = api.get("/users/u_0001").headers["ETag"]
    patched = api.patch("/users/u_0001", json={"hourlyRate": 99}, headers={**admin,
                                                                         "If-Match": etag})
    assert patched.status_code == 200 and patched.json["hourlyRate"] == 99
    assert patched.json["name"] == "User 001", "a PATCH keeps the other fields"
    stale = api.patch("/users/u_0001", json={"hourlyRate": 1},
                      headers={**admin, "If-Match": etag})
    assert stale.status_code == 412 and stale.json["error"]["code"] == "precondition_failed"
    assert stale.json["error"]["details"] == {"etag": patched.headers["ETag"],
                                              "document": patched.json}
    assert firestore_client.collection("users").document("u_0001").get().get("hourlyRate") == 99

    created_at = patched.json["createdAt"]
    replaced = api.put("/users/u_0001", json={"name": "Replaced", "email": "r@example.com",
                                               "role": "admin", "status": "pending"},
                       headers={**admin, "If-Match": patched.headers["ETag"]})
    assert replaced.status_code == 200
    assert "hourlyRate" not in replaced.json, "a PUT replaces the whole document"
    assert replaced.json["createdAt"] == created_at
    assert api.get("/users/u_0001").json == replaced.json

    put_new = api.put("/users/fresh", json={**NEW_USER}, headers=admin)
    assert put_new.status_code == 201

    assert api.delete("/users/u_0001", headers={**admin, "If-Match": etag}).status_code == 412
    deleted = api.delete("/users/u_0001", headers={**admin,
                                                   "If-Match": replaced.headers["ETag"]})
    assert deleted.status_code == 204
    assert not firestore_client.collection("users").document("u_0001").get().exists
    assert api.delete("/users/u_0001", headers=admin).status_code == 404
    assert api.patch("/users/ghost", json={"name": "x"}, headers=admin).status_code == 404


def test_writes_invalidate_the_cached_reads(make_api, admin, firestore_client):
    seed_users(firestore_client, 2)
    api = make_api(CACHE_TTL_S="600")
    before = api.get("/users")
    assert before.json["count"] == 2
    assert api.post("/users", json={**NEW_USER, "id": "new"}, headers=admin).status_code == 201
    after = api.get("/users")
    assert after.json["count"] == 3 and after.headers["ETag"] != before.headers["ETag"]


def test_reads_during_a_write_see_the_commit_not_the_cache(make_api, admin, firestore_client,
                                                          monkeypatch):
    from functions.collection_api import write as write_api

    seed_users(firestore_client, 2)
    api = make_api(CACHE_TTL_S="600")
    etag = api.get("/users/u_0001").headers["ETag"]  # cached for ten minutes
    listed = api.get("/users")
    seen = []
    answer = write_api._server_time

    def read_between_commit_and_answer(result):
        # Committed: a listener in another tab already shows it; this instance's answer isn't
        # ready yet. A read now must not come from the entries cached before the write.
        seen.append(api.get("/users/u_0001").json["hourlyRate"])
        seen.append(api.get("/users").json["items"][1]["hourlyRate"])
        return answer(result)

    monkeypatch.setattr(write_api, "_server_time", read_between_commit_and_answer)
    patched = api.patch("/users/u_0001", json={"hourlyRate": 99},
                        headers={**admin, "If-Match": etag})
    assert patched.status_code == 200
    assert seen == [99, 99]
    assert api.get("/users/u_0001").json == patched.json
    assert api.get("/users").headers["ETag"] != listed.headers["ETag"]


def test_a_write_firestore_does_not_confirm_is_a_503_to_retry(make_api, admin, project_id,
                                                              firestore_client):
    from tests.helpers import closed_port, firestore_client_at

    dead = firestore_client_at(closed_port(), project_id)
    api = make_api(db=lambda: dead, FIRESTORE_TIMEOUT_S="1")
    response = api.post("/users", json={**NEW_USER, "id": "ada"}, headers=admin)
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "1"
    error = response.json["error"]
    assert error["code"] == "unavailable" and "read the document" in error["message"]
    assert firestore_client.collection("users").document("ada").get().exists is False


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer not-a-token"}, 401),
    ({"Authorization": "Basic abc"}, 401),
])
def test_writes_need_a_valid_token(api, admin, headers, status):
    response = api.post("/users", json=NEW_USER, headers=headers)
    assert response.status_code == status
    assert response.json["error"]["code"].endswith("_token")


def test_writes_need_the_admin_claim(api, admin, project_id):
    token = emulator_id_token(project_id, uid="viewer", admin=False)
    response = api.post("/users", json=NEW_USER, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and response.json["error"]["code"] == "not_admin"


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b'{"name": ', "application/json", 400, "invalid_json"),
    (b"[1, 2]", "application/json", 400, "invalid_body"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "application/json", 400, "invalid_json"),
    (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"name": NaN}', "application/json", 400, "invalid_json"),
])
def test_bad_bodies(api, admin, body, content_type, status, code):
    response = api.post("/users", data=body, content_type=content_type, headers=admin)
    assert response.status_code == status
    assert response.json["error"]["code"] == code


def test_invalid_json_reports_its_position(api, admin):
    response = api.post("/users", data=b'{\n  "name": "x",\n  oops\n}',
                        content_type="application/json", headers=admin)
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"line": 3, "column": 3, "position": 19}


def test_oversized_body_is_413(make_api, admin):
    api = make_api(MAX_BODY_BYTES="2048")
    response = api.post("/users", json={**NEW_USER, "bio": "x" * 5000}, headers=admin)
    assert response.status_code == 413


def test_preflight_allows_the_write_methods(api):
    response = api.options("/users/u_1", headers={"Origin": "https://dash.example.org",
                                                  "Access-Control-Request-Method": "PATCH"})
    assert response.status_code == 204
    methods = response.headers["Access-Control-Allow-Methods"]
    assert all(m in methods for m in ("POST", "PUT", "PATCH", "DELETE"))
    assert "if-match" in response.headers["Access-Control-Allow-Headers"].lower()
