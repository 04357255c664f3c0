"""Firebase ID-token checks for the functions (`Authorization: Bearer <token>`).

`authenticate` verifies the token with firebase-admin and returns a typed principal; failures
map to 401 (no, malformed, expired, revoked or otherwise invalid token) and 403 (valid, but
without the `admin: true` claim when it is required).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError, Forbidden, Unauthenticated
from shared.settings import Settings

_lock = threading.Lock()
_apps: dict[str, Any] = {}
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    uid: str
    email: str | None
    admin: bool
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def get_firebase_app(settings: Settings) -> Any:
    """The firebase-admin app of this instance for the settings' project (created once)."""
    app = _apps.get(settings.project)
    if app is None:
        with _lock:
            app = _apps.get(settings.project)
            if app is None:
                import firebase_admin

                app = firebase_admin.initialize_app(
                    options={"projectId": settings.project}, name=f"backend-{settings.project}"
                )
                _apps[settings.project] = app
    return app


def check_auth_emulator_guard(settings: Settings) -> None:
    """Refuse to run with the auth emulator outside a `demo-` project (it skips signatures)."""
    if settings.environ.get("FIREBASE_AUTH_EMULATOR_HOST") and not settings.project.startswith(
        "demo-"
    ):
        raise ConfigError("FIREBASE_AUTH_EMULATOR_HOST is set for a non-demo project: refusing "
                          "to accept unsigned tokens", code="unsafe_setting")


def bearer_token(headers: Any) -> str:
    """The token of an `Authorization: Bearer` header; `Unauthenticated` when absent."""
    header = headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("an Authorization: Bearer <Firebase ID token> header is required",
                              code="missing_token")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("the ID token is malformed", code="invalid_token")
    return token


def authenticate(headers: Any, settings: Settings, *, require_admin: bool,
                 check_revoked: bool = False) -> Principal:
    """Verify the request's Firebase ID token; require the `admin` claim when asked."""
    from firebase_admin import auth

    check_auth_emulator_guard(settings)
    token = bearer_token(headers)
    try:
        claims = auth.verify_id_token(token, app=get_firebase_app(settings),
                                      check_revoked=check_revoked)
    except auth.ExpiredIdTokenError:
        raise Unauthenticated("the ID token has expired", code="expired_token") from None
    except auth.RevokedIdTokenError:
        raise Unauthenticated("the ID token has been revoked", code="revoked_token") from None
    except (auth.InvalidIdTokenError, ValueError):
        raise Unauthenticated("the ID token is invalid", code="invalid_token") from None
    principal = Principal(uid=str(claims.get("uid") or claims.get("sub")),
                          email=claims.get("email"), admin=claims.get("admin") is True,
                          claims=dict(claims))
    if require_admin and not principal.admin:
        raise Forbidden("this needs an account with the admin claim", code="not_admin")
    return principal
