"""The HTTP edge: JSON bodies, the one error-to-status table, CORS, caching headers, gzip.

Every HTTP function answers through `handle_request` (the one wrapper: request log context, errors
mapped once, CORS and security headers, one request log line). Handlers raise `shared.errors`
exceptions; they leave as JSON error bodies with the status from `ERROR_STATUS`. Anything
unexpected becomes a 500 whose body says only "internal error": the traceback goes to the
log, never to the client.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Request, Response

from shared import errors
from shared.logs import request_context, request_log
from shared.settings import Settings

log = logging.getLogger("dashboard.http")

ERROR_STATUS: dict[type[errors.AppError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unavailable: 503,
    errors.ConfigError: 500,
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
JSON_TYPE = "application/json; charset=utf-8"
GZIP_MIN_BYTES = 1024
CORS_MAX_AGE_S = 3600
EXPOSED_HEADERS = ("ETag", "X-Data-Source", "Retry-After")
ALLOWED_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "If-Match",
                           "X-Firebase-AppCheck")


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON, the one serialisation of every body."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def status_of(exc: errors.AppError) -> int:
    """The HTTP status of an error class (the nearest listed base class wins)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def error_response(exc: errors.AppError) -> Response:
    """A JSON error body `{"error": {"code", "message"}}` with the mapped status."""
    status = status_of(exc)
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc.details, (dict, list)) and status < 500:
        body["details"] = exc.details
    response = Response(dumps({"error": body}), status=status, content_type=JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    if isinstance(exc, errors.MethodNotAllowed):
        response.headers["Allow"] = ", ".join(exc.allowed)
    if isinstance(exc, errors.Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="firebase"'
    if isinstance(exc, errors.Unavailable):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def handle_request(request: Request, part: Callable[[], Any], answer: Callable[[Any], Response], *,
          function: str, collection: str | None = None) -> Response:
    """The one HTTP wrapper of every function: `answer(part())` inside the request's log
    context, its errors (and a `part` that cannot start, e.g. bad settings) mapped to JSON
    once, CORS and security headers added, and one structured line logged with status, data
    source (`X-Data-Source`), latency and document count (`response.document_count`)."""
    started = time.perf_counter()
    try:
        state = part()
    except errors.AppError as exc:
        with request_context(request, function=function, collection=collection):
            log.error("cannot start: %s", exc.message)
        return error_response(exc)
    settings = state.settings
    with request_context(request, function=function, collection=collection,
                         project=settings.project):
        try:
            response = answer(state)
        except errors.AppError as exc:
            if status_of(exc) >= 500:
                log.error("request failed: %s (%s)", exc.message, exc.code)
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error")
            response = error_response(errors.AppError("internal error"))
        finish(request, response, settings)
        request_log(response.status_code, response.headers.get("X-Data-Source"),
                    (time.perf_counter() - started) * 1000,
                    getattr(response, "document_count", None))
    return response


def add_cors(request: Request, response: Response, settings: Settings) -> Response:
    """Allow-listed origins get `Access-Control-Allow-Origin` (never `*`); all get `Vary`."""
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin and origin in settings.allowed_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    return response


def preflight_response(request: Request, settings: Settings, methods: Iterable[str]) -> Response:
    """The 204 answer to a CORS preflight; a foreign origin gets no allow headers."""
    response = Response(status=204)
    origin = request.headers.get("Origin")
    if origin and origin in settings.allowed_origins:
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_REQUEST_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return finish(request, response, settings)


def finish(request: Request, response: Response, settings: Settings) -> Response:
    """Add CORS and security headers to any response leaving a function."""
    add_cors(request, response, settings)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def weak_etag(data: bytes) -> str:
    """A weak ETag over the bytes that define a response's data."""
    return 'W/"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def etag_matches(request: Request, etag: str) -> bool:
    """Weak comparison of `If-None-Match` against our (weak) ETag, `*` included."""
    return etag_listed(request.headers.get("If-None-Match"), etag)


def etag_listed(header: str | None, etag: str) -> bool:
    """Does an `If-None-Match` / `If-Match` header list `etag` (weak comparison, or `*`)?"""
    if not header:
        return False
    opaque = etag.removeprefix("W/")
    return any(candidate.strip() == "*" or candidate.strip().removeprefix("W/") == opaque
               for candidate in header.split(","))


def accepts_gzip(request: Request) -> bool:
    """True when the client lists gzip with a non-zero quality."""
    return request.accept_encodings["gzip"] > 0


def gzip_bytes(body: bytes) -> bytes:
    """Fast gzip (level 5: most of the gain on JSON at a fraction of level 9's time)."""
    return gzip.compress(body, compresslevel=5, mtime=0)


MAX_JSON_DEPTH = 32


def read_json_body(request: Request, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body: 415 unless JSON, 413 over `max_bytes`, 400 with the position of
    a syntax error or when nested deeper than `max_depth`."""
    if request.mimetype != "application/json":
        raise errors.UnsupportedMediaType("the body must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise errors.PayloadTooLarge(f"the body is over {max_bytes} bytes")
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise errors.PayloadTooLarge(f"the body is over {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(f"the body is not UTF-8 (byte {exc.start})",
                                code="invalid_json") from None
    if _nesting_depth(text) > max_depth:
        raise errors.BadRequest(f"the JSON is nested deeper than {max_depth} levels",
                                code="invalid_json")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise errors.BadRequest(f"invalid JSON: {exc.msg} at line {exc.lineno} column "
                                f"{exc.colno} (character {exc.pos})", code="invalid_json",
                                details={"line": exc.lineno, "column": exc.colno,
                                         "position": exc.pos}) from None
    except ValueError as exc:
        raise errors.BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings (checked before parsing, so a hostile body
    cannot exhaust the parser's recursion)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def framework_error(error: Exception) -> Response:
    """A JSON error for what the framework answers before a function runs (e.g. a path its
    router cannot match): registered in main.py with `functions_framework.errorhandler`."""
    code = getattr(error, "code", None) or 500
    if code == 404:
        return error_response(errors.NotFound("no such path"))
    if code == 405:
        return error_response(errors.MethodNotAllowed("method not allowed", allowed=()))
    if isinstance(code, int) and 400 <= code < 500:
        return error_response(errors.BadRequest(getattr(error, "description", "bad request")))
    log.error("framework error: %s", error)
    return error_response(errors.AppError("internal error"))
