"""Admin CLI: grant, revoke or show the `admin` custom claim of a Firebase Auth user.

    python -m ops admin grant alice@example.com
    python -m ops admin revoke alice@example.com   # also ends the user's sessions
    python -m ops admin show 3HkQ2...uid

The user is found by email when the argument contains `@`, else by uid (`--email` / `--uid`
force one). Other custom claims of the user are kept. The project is `--project` or
`GOOGLE_CLOUD_PROJECT`; the call goes to the Firebase Auth API with Application Default
Credentials (`gcloud auth application-default login`, or a service account with the Firebase
Authentication Admin role), or to the auth emulator when `FIREBASE_AUTH_EMULATOR_HOST` is set,
which only a `demo-` project may use. Exit status: 0 done (or nothing to change), 1 no such
user, 2 any other error.

A new claim reaches the user's ID token at its next refresh (within the hour, or at once with
`getIdToken(true)`: the dashboard's "Check my access again", or a new sign-in). `revoke`
therefore also revokes the user's refresh tokens (unless `--keep-sessions`): no new ID token
with the old claim can be minted, and the functions refuse the current ones when
`CHECK_REVOKED` is on. Firestore rules cannot see revocations, so there a token already issued
keeps its claim until it expires (at most one hour).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from shared.errors import BadRequest, ConfigError, Unavailable

ADMIN_CLAIM = "admin"
_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `grant|revoke|show EMAIL_OR_UID` and the options."""
    parser.add_argument("action", choices=("grant", "revoke", "show"),
                        help="grant or revoke the admin claim, or show the user's claims")
    parser.add_argument("user", metavar="EMAIL_OR_UID",
                        help="the user's email address (contains @) or uid")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--email", dest="by", action="store_const", const="email",
                      help="look the user up by email")
    kind.add_argument("--uid", dest="by", action="store_const", const="uid",
                      help="look the user up by uid")
    parser.add_argument("--project", help="Firebase project id (default: GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--keep-sessions", action="store_true",
                        help="revoke: do not revoke the user's refresh tokens")


def run(args: argparse.Namespace) -> int:
    """Carry out one `admin` command; the exit status."""
    project = _project(args.project)
    emulator = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "").strip()
    if emulator and not project.startswith("demo-"):
        raise ConfigError(f"FIREBASE_AUTH_EMULATOR_HOST is set ({emulator}) but the project "
                          f"{project!r} is not a demo- project: unset it to change the real "
                          "project, or use a demo- project with the emulator",
                          code="unsafe_setting")
    target = f"project {project}" + (f" (auth emulator at {emulator})" if emulator else "")
    by = args.by or ("email" if "@" in args.user else "uid")
    with _firebase_app(project) as app:
        user = _find_user(app, args.user, by, target)
        if user is None:
            print(f"error: no user with {by} {args.user!r} in {target}", file=sys.stderr)
            return 1
        claims = dict(user.custom_claims or {})
        who = f"uid={user.uid}" + (f" email={user.email}" if user.email else "")
        if args.action == "show":
            print(f"{who} in {target}: disabled={str(user.disabled).lower()} "
                  f"admin={str(claims.get(ADMIN_CLAIM) is True).lower()} "
                  f"claims={json.dumps(claims, sort_keys=True)}")
            return 0
        if args.action == "grant":
            return _grant(app, user.uid, claims, who, target)
        return _revoke(app, user.uid, claims, who, target, keep_sessions=args.keep_sessions)


def _grant(app: Any, uid: str, claims: dict[str, Any], who: str, target: str) -> int:
    if claims.get(ADMIN_CLAIM) is True:
        print(f"{who} is already an admin in {target}; nothing changed")
        return 0
    _call(lambda auth: auth.set_custom_user_claims(uid, {**claims, ADMIN_CLAIM: True}, app=app))
    print(f"granted admin to {who} in {target}; it reaches the user's ID token at its next "
          "refresh (at most one hour; at once with \"Check my access again\" on the dashboard, "
          "or after signing in again)")
    return 0


def _revoke(app: Any, uid: str, claims: dict[str, Any], who: str, target: str, *,
            keep_sessions: bool) -> int:
    if ADMIN_CLAIM not in claims:
        print(f"{who} is not an admin in {target}; nothing changed")
        return 0
    remaining = {name: value for name, value in claims.items() if name != ADMIN_CLAIM}
    _call(lambda auth: auth.set_custom_user_claims(uid, remaining, app=app))
    if keep_sessions:
        print(f"revoked admin of {who} in {target}; ID tokens already issued keep the claim "
              "until they expire (at most one hour)")
        return 0
    _call(lambda auth: auth.revoke_refresh_tokens(uid, app=app))
    print(f"revoked admin of {who} in {target} and ended the user's sessions: the functions "
          "refuse the current ID tokens where CHECK_REVOKED is on; Firestore rules honour them "
          "until they expire (at most one hour)")
    return 0


def _project(option: str | None) -> str:
    project = (option or os.environ.get("GOOGLE_CLOUD_PROJECT", "")).strip()
    if not project:
        raise ConfigError("no project: pass --project or set GOOGLE_CLOUD_PROJECT",
                          code="invalid_setting")
    if not _PROJECT_ID.match(project):
        raise ConfigError(f"invalid project id {project!r}", code="invalid_setting")
    return project


@contextlib.contextmanager
def _firebase_app(project: str) -> Iterator[Any]:
    """A firebase-admin app of its own for one command, deleted afterwards."""
    import firebase_admin
    from firebase_admin import credentials

    app = firebase_admin.initialize_app(credentials.ApplicationDefault(),
                                        options={"projectId": project},
                                        name=f"admin-cli-{uuid.uuid4().hex}")
    try:
        yield app
    finally:
        firebase_admin.delete_app(app)


def _find_user(app: Any, value: str, by: str, target: str) -> Any:
    from firebase_admin import auth

    try:
        if by == "email":
            return _call(lambda auth_: auth_.get_user_by_email(value, app=app))
        return _call(lambda auth_: auth_.get_user(value, app=app))
    except auth.UserNotFoundError:
        return None


def _call(operation: Any) -> Any:
    """Run one firebase-admin call; its failures become errors with a plain message."""
    from firebase_admin import auth, exceptions
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return operation(auth)
    except auth.UserNotFoundError:
        raise
    except DefaultCredentialsError:
        raise ConfigError("no Google credentials: run `gcloud auth application-default login` "
                          "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key "
                          "(or set FIREBASE_AUTH_EMULATOR_HOST for the emulator)",
                          code="missing_credentials") from None
    except exceptions.FirebaseError as exc:
        raise Unavailable(f"the Firebase Auth API refused the call: {exc.code}: {exc}") from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
