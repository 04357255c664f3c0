"""Who may call the functions: Firebase ID tokens (`Authorization: Bearer`) and App Check.

`authenticate` is the one helper every HTTP function uses. It verifies the caller's Firebase ID
token with firebase-admin (Google's certificates, project audience and issuer, expiry; the
revocation check when `CHECK_REVOKED` is on), verifies the App Check token as `APP_CHECK`
asks, and returns a typed `Principal`. Failures become `shared.errors` exceptions, so the HTTP
edge answers with a JSON error whose `code` says what was wrong:

| status | code | when |
| --- | --- | --- |
| 401 | `missing_token` | no `Authorization` header, or an empty one |
| 401 | `malformed_token` | not `Bearer <JWT>`, not three base64url parts, not JSON, too long |
| 401 | `unsupported_algorithm` | the token is not signed with RS256 (`alg: none` included) |
| 401 | `unknown_key` | no `kid`, or a `kid` that is not one of Google's current keys |
| 401 | `wrong_audience` / `wrong_issuer` | a token of another Firebase project (or no ID token) |
| 401 | `invalid_signature` | the signature does not match (a tampered token) |
| 401 | `expired_token` / `token_not_yet_valid` | outside its `iat` .. `exp` window |
| 401 | `invalid_token` | any other refusal (no `sub`, bad `auth_time`, ...) |
| 401 | `revoked_token` / `user_disabled` / `user_not_found` | with `CHECK_REVOKED` on |
| 401 | `missing_app_check` / `invalid_app_check` | `APP_CHECK` is `required` / `optional` |
| 403 | `not_admin` | a valid token without the `admin: true` custom claim, where one is needed |
| 503 | `unavailable` | Google's certificates or the Auth API could not be reached |

The codes are worked out only after firebase-admin has refused a token (from the token's
unverified header and claims, and from the library's message for the signature stage): they
never decide whether a token is accepted, they only say why it was not.

With `FIREBASE_AUTH_EMULATOR_HOST` set, firebase-admin skips the signature, `kid`, `alg` and
expiry checks; `shared.settings` refuses to start that way outside a `demo-` project, and
`authenticate` checks it again on every call since firebase-admin reads the live environment.
The expiry and issue time it checks itself then (`exp`, `iat`), so that the local stack refuses
an expired token with the same 401 `expired_token` as production.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConfigError, Forbidden, Unauthenticated, Unavailable
from shared.settings import Settings

ISSUER_PREFIX = "https://securetoken.google.com/"
APP_CHECK_HEADER = "X-Firebase-AppCheck"
MAX_TOKEN_LENGTH = 8192
# The certificate download sits on a request's path: a hung Google endpoint must not hold the
# request for firebase-admin's default of 120 s.
HTTP_TIMEOUT_S = 10
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

_lock = threading.Lock()
_apps: dict[tuple[str, bool], Any] = {}


@dataclass(frozen=True)
class Principal:
    """The verified caller: the Firebase user behind the ID token."""

    uid: str
    email: str | None
    admin: bool
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    app_id: str | None = None
    emulated: bool = False


# --- the firebase-admin app ----------------------------------------------------------------------

def _anonymous_credential() -> Any:
    """A firebase-admin credential that asks for nothing: verifying a token needs only Google's
    public certificates, so the functions do not need (or look up) any credentials for it."""
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class _Anonymous(credentials.Base):
        def get_credential(self) -> Any:
            return AnonymousCredentials()

    return _Anonymous()


def get_firebase_app(settings: Settings, *, with_credentials: bool = False) -> Any:
    """The firebase-admin app of this instance for the settings' project (created once).

    `with_credentials` asks for Application Default Credentials, which calls to the Auth API
    need (the revocation check, the admin CLI); plain verification works without them.
    """
    key = (settings.project, with_credentials)
    app = _apps.get(key)
    if app is None:
        with _lock:
            app = _apps.get(key)
            if app is None:
                import firebase_admin
                from firebase_admin import credentials

                credential = (credentials.ApplicationDefault() if with_credentials
                              else _anonymous_credential())
                suffix = "adc" if with_credentials else "verify"
                app = firebase_admin.initialize_app(
                    credential,
                    options={"projectId": settings.project, "httpTimeout": HTTP_TIMEOUT_S},
                    name=f"backend-{settings.project}-{suffix}",
                )
                _apps[key] = app
    return app


def reset_firebase_apps() -> None:
    """Forget this instance's firebase-admin apps and their certificate caches (tests)."""
    import firebase_admin

    with _lock:
        for app in _apps.values():
            firebase_admin.delete_app(app)
        _apps.clear()


def auth_emulator_host(settings: Settings) -> str:
    """The auth emulator address when one is configured (settings or the live environment)."""
    return (settings.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
            or os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")).strip()


def check_auth_emulator_guard(settings: Settings) -> None:
    """Refuse to run with the auth emulator outside a `demo-` project (it skips signatures)."""
    if auth_emulator_host(settings) and not settings.project.startswith("demo-"):
        raise ConfigError("FIREBASE_AUTH_EMULATOR_HOST is set for the non-demo project "
                          f"{settings.project!r}: refusing to accept unsigned ID tokens",
                          code="unsafe_setting")


# --- the ID token ------------------------------------------------------------------------------

def bearer_token(headers: Any) -> str:
    """The token of an `Authorization: Bearer` header; `Unauthenticated` when absent or odd."""
    header = headers.get("Authorization")
    if header is None or not header.strip():
        raise Unauthenticated("an Authorization: Bearer <Firebase ID token> header is required",
                              code="missing_token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <Firebase ID token>'",
                              code="malformed_token")
    if len(token) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.fullmatch(token):
        raise Unauthenticated("the ID token is not a well-formed JWT", code="malformed_token")
    return token


def unverified_parts(token: str, *, what: str = "ID token",
                     code: str = "malformed_token") -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT, NOT verified: to reject junk before the libraries see it
    (a deeply nested segment makes their JSON parsers raise RecursionError) and to explain a
    refusal."""
    try:
        header_b64, payload_b64, _ = token.split(".")
        header = json.loads(_b64decode(header_b64))
        payload = json.loads(_b64decode(payload_b64))
    except (ValueError, binascii.Error, RecursionError):
        raise Unauthenticated(f"the {what} is not a well-formed JWT", code=code) from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise Unauthenticated(f"the {what} is not a well-formed JWT", code=code)
    return header, payload


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def authenticate(headers: Any, settings: Settings, *, require_admin: bool,
                 check_revoked: bool | None = None) -> Principal:
    """Verify the request's Firebase ID token (and App Check per `APP_CHECK`).

    Returns the caller as a `Principal`; raises `Unauthenticated` (401), `Forbidden` (403,
    a valid token without `admin: true` when `require_admin`), `Unavailable` (503, Google's
    certificates unreachable) or `ConfigError`. `check_revoked` defaults to `CHECK_REVOKED`.
    """
    from firebase_admin import auth, exceptions
    from google.auth.exceptions import DefaultCredentialsError

    check_auth_emulator_guard(settings)
    if check_revoked is None:
        check_revoked = settings.check_revoked
    token = bearer_token(headers)
    header, payload = unverified_parts(token)
    emulated = bool(auth_emulator_host(settings))
    try:
        app = get_firebase_app(settings, with_credentials=check_revoked and not emulated)
        claims = auth.verify_id_token(token, app=app, check_revoked=check_revoked)
    except auth.ExpiredIdTokenError:
        raise Unauthenticated("the ID token has expired", code="expired_token") from None
    except auth.RevokedIdTokenError:
        if emulated:  # an expired token is expired before it is revoked, as in production
            _check_token_times(payload)
        raise Unauthenticated("the ID token has been revoked; sign in again",
                              code="revoked_token") from None
    except auth.UserDisabledError:
        if emulated:
            _check_token_times(payload)
        raise Unauthenticated("the account is disabled", code="user_disabled") from None
    except auth.UserNotFoundError:
        raise Unauthenticated("the account no longer exists", code="user_not_found") from None
    except auth.InvalidIdTokenError as exc:
        code, message = _why_refused(header, payload, settings.project, str(exc),
                                     emulated=emulated)
        raise Unauthenticated(message, code=code) from None
    except auth.CertificateFetchError:
        raise Unavailable("cannot fetch Google's token certificates; retry shortly",
                          retry_after_s=5) from None
    except exceptions.FirebaseError as exc:
        raise Unavailable(f"the Firebase Auth service failed ({exc.code}); retry shortly",
                          retry_after_s=5) from None
    except ValueError:
        raise Unauthenticated("the ID token is not a well-formed JWT",
                              code="malformed_token") from None
    except (TypeError, KeyError, AttributeError):
        raise Unauthenticated("the ID token is invalid", code="invalid_token") from None
    except DefaultCredentialsError:
        raise ConfigError("CHECK_REVOKED needs Google credentials (Application Default "
                          "Credentials) to ask the Auth API about revocations",
                          code="missing_credentials") from None
    if emulated:
        _check_token_times(claims)
    else:
        _check_auth_time(claims)
    principal = Principal(
        uid=str(claims.get("uid") or claims.get("sub")),
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        admin=claims.get("admin") is True,
        claims=dict(claims),
        emulated=emulated,
    )
    app_id = check_app_check(headers, settings)
    if app_id is not None:
        principal = dataclasses.replace(principal, app_id=app_id)
    if require_admin and not principal.admin:
        raise Forbidden("this needs an account with the admin claim", code="not_admin")
    return principal


def _why_refused(header: Mapping[str, Any], payload: Mapping[str, Any], project: str,
                 library_message: str, *, emulated: bool) -> tuple[str, str]:
    """The error code and message of a token firebase-admin refused (same order as its checks)."""
    if not emulated and header.get("alg") != "RS256":
        return "unsupported_algorithm", "the ID token must be signed with RS256"
    if not emulated and (not header.get("kid") or "Certificate for key id" in library_message):
        return "unknown_key", "the ID token is not signed by a current Google key"
    if payload.get("aud") != project:
        return "wrong_audience", "the ID token was issued for another project"
    if payload.get("iss") != ISSUER_PREFIX + project:
        return "wrong_issuer", "the ID token has the wrong issuer"
    if "signature" in library_message.lower():
        return "invalid_signature", "the ID token's signature is invalid"
    if "too early" in library_message.lower():
        return "token_not_yet_valid", "the ID token is not valid yet (issued in the future)"
    return "invalid_token", "the ID token is invalid"


def _check_token_times(claims: Mapping[str, Any]) -> None:
    """The auth emulator path: firebase-admin checks no times there, so `exp` and `iat` are
    checked here, as google-auth checks them for a signed token (no clock skew allowed)."""
    now = time.time()
    expires, issued = claims.get("exp"), claims.get("iat")
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool)
               for value in (expires, issued)):
        raise Unauthenticated("the ID token has no valid exp or iat", code="invalid_token")
    if expires < now:
        raise Unauthenticated("the ID token has expired", code="expired_token")
    if issued > now:
        raise Unauthenticated("the ID token is not valid yet (issued in the future)",
                              code="token_not_yet_valid")


def _check_auth_time(claims: Mapping[str, Any]) -> None:
    """Firebase documents `auth_time` as a required past time; firebase-admin does not check it."""
    auth_time = claims.get("auth_time")
    if (not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool)
            or auth_time > time.time()):
        raise Unauthenticated("the ID token has no valid auth_time", code="invalid_token")


# --- App Check ---------------------------------------------------------------------------------

def check_app_check(headers: Any, settings: Settings) -> str | None:
    """Verify the `X-Firebase-AppCheck` token as `APP_CHECK` asks; the app id, or None.

    `off`: the header is ignored. `optional`: a present header must verify. `required`: it must
    be present and verify. HTTP functions that need no ID token call this directly.
    """
    if settings.app_check == "off":
        return None
    token = (headers.get(APP_CHECK_HEADER) or "").strip()
    if not token:
        if settings.app_check == "required":
            raise Unauthenticated(f"an {APP_CHECK_HEADER} header is required",
                                  code="missing_app_check")
        return None
    if len(token) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.fullmatch(token):
        raise Unauthenticated("the App Check token is not a well-formed JWT",
                              code="invalid_app_check")
    unverified_parts(token, what="App Check token", code="invalid_app_check")
    return _verify_app_check(token, settings)


def _verify_app_check(token: str, settings: Settings) -> str:
    import jwt
    from firebase_admin import app_check, exceptions

    try:
        claims = app_check.verify_token(token, app=get_firebase_app(settings))
    except jwt.PyJWKClientConnectionError:
        raise Unavailable("cannot fetch the App Check keys; retry shortly",
                          retry_after_s=5) from None
    except exceptions.FirebaseError:
        raise Unavailable("the App Check service failed; retry shortly",
                          retry_after_s=5) from None
    except (ValueError, jwt.PyJWTError, TypeError, KeyError, AttributeError):
        raise Unauthenticated("the App Check token is invalid", code="invalid_app_check") from None
    return str(claims.get("app_id") or claims.get("sub"))
