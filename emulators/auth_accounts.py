"""Accounts of Firebase's Auth emulator, over its REST API (the Identity Toolkit API it serves).

Used by the local stack (its sample accounts) and the tests (sign in, disable, revoke):

    uid = create_account(host, "demo-x", "admin@example.com", "admin-password", {"admin": True})
    session = sign_in(host, "admin@example.com", "admin-password")   # {"idToken", ...}
    update_account(host, "demo-x", uid, disableUser=True)

`host` is what `FIREBASE_AUTH_EMULATOR_HOST` holds ("127.0.0.1:9099"). Administrative calls
carry `Authorization: Bearer owner`, which the emulator takes as the project's owner (the
Admin SDK sends the same); the sign-in call is the one the Web SDK makes (any API key works).
"""

from __future__ import annotations

import json
from typing import Any

from emulators.harness import EmulatorError, call_emulator

API = "/identitytoolkit.googleapis.com/v1"


def _post(host: str, path: str, body: dict[str, Any], *, owner: bool) -> dict[str, Any]:
    status, answer = call_emulator(host, "POST", f"{API}/{path}", json.dumps(body).encode(),
                           headers={"Authorization": "Bearer owner"} if owner else None)
    try:
        data = json.loads(answer or b"{}")
    except ValueError:
        data = {}
    if status != 200:
        message = data.get("error", {}).get("message", answer[:200])
        raise EmulatorError(f"Auth emulator {path}: HTTP {status} {message}")
    return data


def create_account(host: str, project: str, email: str, password: str,
                   claims: dict[str, Any] | None = None, display_name: str = "") -> str:
    """A new email/password account (with custom `claims`, when given); its uid."""
    body = {"email": email, "password": password, "emailVerified": True}
    if display_name:
        body["displayName"] = display_name
    uid = _post(host, f"projects/{project}/accounts", body, owner=True)["localId"]
    if claims:  # the create call ignores customAttributes: they take an update
        update_account(host, project, uid, customAttributes=json.dumps(claims))
    return uid


def update_account(host: str, project: str, uid: str, **fields: Any) -> dict[str, Any]:
    """`accounts:update` as the owner: `disableUser=True`, `customAttributes='{...}'`,
    `validSince=<epoch s>` (revokes the sessions before it), ..."""
    return _post(host, f"projects/{project}/accounts:update", {"localId": uid, **fields},
                 owner=True)


def sign_in(host: str, email: str, password: str) -> dict[str, Any]:
    """Sign in as the Web SDK does: `{"idToken", "refreshToken", "localId", ...}`."""
    return _post(host, "accounts:signInWithPassword?key=emulator",
                 {"email": email, "password": password, "returnSecureToken": True}, owner=False)


def clear_accounts(host: str, project: str) -> None:
    """Delete every account of the project (the emulator's own reset route)."""
    status, answer = call_emulator(host, "DELETE", f"/emulator/v1/projects/{project}/accounts")
    if status != 200:
        raise EmulatorError(f"Auth emulator reset: HTTP {status} {answer[:200]!r}")
