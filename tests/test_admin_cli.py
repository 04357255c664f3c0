"""The admin CLI (`python -m ops admin grant|revoke|show EMAIL_OR_UID`), offline.

The auth emulator cannot run on this machine and Google's Identity Toolkit API is out of
reach, so `requests-mock` serves the REST calls firebase-admin makes (`accounts:lookup`,
`accounts:update`) at the emulator's address and at Google's; the tests check the request
bodies firebase-admin sends, which is what either server would receive.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops.__main__ import main

EMULATOR = "127.0.0.1:9099"
DEMO = "demo-dashboard"
PROD = "dash-prod-test"
EMULATOR_BASE = f"http://{EMULATOR}/identitytoolkit.googleapis.com/v1/projects/{DEMO}"
GOOGLE_BASE = f"https://identitytoolkit.googleapis.com/v1/projects/{PROD}"


def account(claims: dict[str, Any] | None = None, uid: str = "uid-alice",
            email: str = "alice@example.com") -> dict[str, Any]:
    """An `accounts:lookup` answer holding one user with these custom claims."""
    user: dict[str, Any] = {"localId": uid, "email": email, "disabled": False}
    if claims is not None:
        user["customAttributes"] = json.dumps(claims)
    return {"users": [user]}


class AuthApi:
    """The Identity Toolkit endpoints of one base URL, served by requests-mock."""

    def __init__(self, requests_mock, base: str, user: dict[str, Any] | None):
        self.lookup = requests_mock.post(f"{base}/accounts:lookup",
                                         json=user if user is not None else {})
        self.update = requests_mock.post(f"{base}/accounts:update",
                                         json={"localId": "uid-alice"})

    def lookup_bodies(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.lookup.request_history]

    def update_bodies(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.update.request_history]


@pytest.fixture
def emulator(monkeypatch, requests_mock):
    """The auth emulator of a demo project; `emulator(user)` serves that lookup answer."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", EMULATOR)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", DEMO)
    return lambda user=None: AuthApi(requests_mock, EMULATOR_BASE, user)


@pytest.fixture
def google(monkeypatch, requests_mock):
    """A real project's Auth API; anonymous credentials stand in for Application Default
    Credentials (none exist here)."""
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROD)
    monkeypatch.setattr("google.auth.default",
                        lambda scopes=None, **kwargs: (AnonymousCredentials(), PROD))
    return lambda user=None: AuthApi(requests_mock, GOOGLE_BASE, user)


def claims_written(body: dict[str, Any]) -> dict[str, Any]:
    """The custom claims an `accounts:update` body sets."""
    return json.loads(body["customAttributes"])


def test_grant_by_email_adds_admin_and_keeps_other_claims(emulator, capsys):
    api = emulator(account({"team": "ops"}))
    assert main(["admin", "grant", "alice@example.com"]) == 0
    assert api.lookup_bodies() == [{"email": ["alice@example.com"]}]
    [body] = api.update_bodies()
    assert body["localId"] == "uid-alice"
    assert claims_written(body) == {"team": "ops", "admin": True}
    assert api.update.last_request.headers["Authorization"] == "Bearer owner"
    out = capsys.readouterr().out
    assert "granted admin" in out and "uid-alice" in out and "auth emulator" in out


def test_grant_by_uid_looks_up_the_uid(emulator):
    api = emulator(account())
    assert main(["admin", "grant", "uid-alice"]) == 0
    assert api.lookup_bodies() == [{"localId": ["uid-alice"]}]
    assert claims_written(api.update_bodies()[0]) == {"admin": True}


def test_uid_option_forces_a_uid_lookup(emulator):
    api = emulator(account(uid="odd@uid"))
    assert main(["admin", "grant", "--uid", "odd@uid"]) == 0
    assert api.lookup_bodies() == [{"localId": ["odd@uid"]}]


def test_grant_is_idempotent(emulator, capsys):
    api = emulator(account({"admin": True}))
    assert main(["admin", "grant", "alice@example.com"]) == 0
    assert api.update_bodies() == []
    assert "already an admin" in capsys.readouterr().out


def test_grant_replaces_a_non_boolean_admin_claim(emulator):
    api = emulator(account({"admin": "yes"}))
    assert main(["admin", "grant", "alice@example.com"]) == 0
    assert claims_written(api.update_bodies()[0]) == {"admin": True}


def test_revoke_removes_admin_keeps_others_and_ends_sessions(emulator, capsys):
    api = emulator(account({"admin": True, "team": "ops"}))
    assert main(["admin", "revoke", "alice@example.com"]) == 0
    claims_body, sessions_body = api.update_bodies()
    assert claims_body["localId"] == "uid-alice"
    assert claims_written(claims_body) == {"team": "ops"}
    assert sessions_body["localId"] == "uid-alice" and isinstance(sessions_body["validSince"],
                                                                   int)
    assert "customAttributes" not in sessions_body
    assert "ended the user's sessions" in capsys.readouterr().out


def test_revoke_keep_sessions_only_changes_the_claims(emulator):
    api = emulator(account({"admin": True}))
    assert main(["admin", "revoke", "--keep-sessions", "alice@example.com"]) == 0
    [body] = api.update_bodies()
    assert claims_written(body) == {} and "validSince" not in body


def test_revoke_of_a_non_admin_changes_nothing(emulator, capsys):
    api = emulator(account({"team": "ops"}))
    assert main(["admin", "revoke", "alice@example.com"]) == 0
    assert api.update_bodies() == []
    assert "not an admin" in capsys.readouterr().out


def test_show_prints_the_claims(emulator, capsys):
    api = emulator(account({"admin": True, "team": "ops"}))
    assert main(["admin", "show", "alice@example.com"]) == 0
    out = capsys.readouterr().out
    assert "admin=true" in out and '"team": "ops"' in out
    assert api.update_bodies() == []


@pytest.mark.parametrize("action", ["grant", "revoke", "show"])
def test_unknown_user_is_a_clear_error_with_exit_1(emulator, capsys, action):
    api = emulator(None)
    assert main(["admin", action, "nobody@example.com"]) == 1
    err = capsys.readouterr().err
    assert "no user with email 'nobody@example.com'" in err and DEMO in err
    assert api.update_bodies() == []


def test_real_project_calls_googles_auth_api(google, capsys):
    api = google(account({"team": "ops"}))
    assert main(["admin", "grant", "alice@example.com"]) == 0
    assert api.lookup_bodies() == [{"email": ["alice@example.com"]}]
    assert claims_written(api.update_bodies()[0]) == {"team": "ops", "admin": True}
    assert f"project {PROD}" in capsys.readouterr().out


def test_project_option_wins_over_the_environment(google, requests_mock):
    default = google(account())
    other = AuthApi(requests_mock,
                    "https://identitytoolkit.googleapis.com/v1/projects/dash-other-1", account())
    assert main(["admin", "grant", "--project", "dash-other-1", "alice@example.com"]) == 0
    assert other.update.called and not default.lookup.called


def test_auth_api_refusal_is_exit_2_with_its_reason(google, requests_mock, capsys):
    requests_mock.post(f"{GOOGLE_BASE}/accounts:lookup", status_code=403,
                       json={"error": {"code": 403, "message": "PERMISSION_DENIED",
                                       "status": "PERMISSION_DENIED"}})
    assert main(["admin", "grant", "alice@example.com"]) == 2
    assert "PERMISSION_DENIED" in capsys.readouterr().err


def test_missing_credentials_is_exit_2_with_a_hint(monkeypatch, requests_mock, capsys):
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(scopes=None, **kwargs):
        raise DefaultCredentialsError("none")

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROD)
    monkeypatch.setattr("google.auth.default", no_adc)
    assert main(["admin", "grant", "alice@example.com"]) == 2
    assert "gcloud auth application-default login" in capsys.readouterr().err
    assert not requests_mock.called


def test_emulator_with_a_real_project_is_refused(monkeypatch, requests_mock, capsys):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", EMULATOR)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROD)
    assert main(["admin", "grant", "alice@example.com"]) == 2
    err = capsys.readouterr().err
    assert "FIREBASE_AUTH_EMULATOR_HOST" in err and "demo-" in err
    assert not requests_mock.called


@pytest.mark.parametrize("env", [{}, {"GOOGLE_CLOUD_PROJECT": "Not A Project"}])
def test_missing_or_invalid_project_is_exit_2(monkeypatch, requests_mock, capsys, env):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["admin", "grant", "alice@example.com"]) == 2
    assert "project" in capsys.readouterr().err
    assert not requests_mock.called


def test_invalid_email_is_exit_2(emulator, capsys):
    emulator(account())
    assert main(["admin", "grant", "--email", "not an email"]) == 2
    assert "error:" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as caught:
        main(["admin", "promote", "alice@example.com"])
    assert caught.value.code == 2
