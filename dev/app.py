"""One WSGI app that serves every function of `main.py` at `/<function>` on one port.

Each function gets the app functions-framework itself builds for it (`create_app`), mounted
under its name, so locally `http://127.0.0.1:8080/users/u_1` reaches the `users` function with
path `/u_1`, exactly as Cloud Functions routes `https://REGION-PROJECT.cloudfunctions.net/users/u_1`.
"""

from __future__ import annotations

from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"


def _not_found(environ, start_response):
    body = b'{"error":{"code":"not_found","message":"no function at this path"}}'
    return Response(body, status=404, content_type="application/json")(environ, start_response)


def create_stack_app(targets: dict[str, str]) -> DispatcherMiddleware:
    """Mount each `{name: signature_type}` function of main.py at `/<name>`."""
    from functions_framework import create_app

    mounts = {f"/{name}": _root_path(create_app(target=name, source=str(MAIN),
                                                 signature_type=kind))
              for name, kind in targets.items()}
    return DispatcherMiddleware(_not_found, mounts)


def _root_path(app):
    """Cloud Functions hands `/users` to the function as path `/` (Flask would redirect)."""

    def mounted(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return mounted
