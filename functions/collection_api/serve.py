"""The collection API's HTTP edge: one handler serves every configured collection
(`/<collection>[/<id>]`).

Routing, authorization and the answer's headers are here; reads are computed in `read.py`
(Firestore first, the snapshot as fallback, cached per instance), writes in `write.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Request, Response

from functions.collection_api.cache import CachedResponse, get_key, list_key
from functions.collection_api.context import ApiContext
from functions.collection_api.query import check_document_id, parse_fields, parse_list_query
from functions.collection_api.read import compute_get, compute_list
from functions.collection_api.write import WRITE_METHODS, handle_write
from shared import http
from shared.auth import authenticate, check_app_check
from shared.errors import BadRequest, MethodNotAllowed, NotFound
from shared.schema import load_schema
from shared.settings import Settings

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def serve_collection(request: Request, collection: str,
                     context: Callable[[], ApiContext]) -> Response:
    """Entry point body of a collection's HTTP function (`context`: this instance's, built on
    first use)."""
    return http.handle_request(request, context,
                               lambda ctx: _dispatch(request, collection, ctx),
                               function=collection, collection=collection)


def handle(request: Request, collection: str, context: ApiContext) -> Response:
    """Answer one request of `collection` with this context (tests mount it directly)."""
    return serve_collection(request, collection, lambda: context)


def _dispatch(request: Request, collection: str, context: ApiContext) -> Response:
    settings = context.settings
    if collection not in settings.collections:
        raise NotFound(f"collection {collection!r} is not configured")
    if request.method == "OPTIONS":
        return http.preflight_response(request, settings, ALL_METHODS)
    if request.method not in ALL_METHODS:
        raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=ALL_METHODS)
    doc_id = _document_id(request.environ.get("PATH_INFO", ""))
    if request.method in WRITE_METHODS:
        return handle_write(request, collection, doc_id, context)
    if settings.read_access == "admin":
        authenticate(request.headers, settings, require_admin=True)
    else:
        check_app_check(request.headers, settings)
    schema = load_schema(collection)
    if doc_id is None:
        query = parse_list_query(request.args.items(multi=True), schema,
                                 default_limit=settings.default_limit,
                                 max_limit=settings.max_limit)
        cached = context.fence.cached(context.cache, collection, list_key(query),
                                      lambda: compute_list(context, query))
    else:
        fields = parse_fields(request.args.get("fields"), schema)
        unknown = set(request.args) - {"fields"}
        if unknown:
            raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r} for a single document",
                             code="invalid_parameter")
        cached = context.fence.cached(
            context.cache, collection, get_key(collection, doc_id, fields),
            lambda: compute_get(context, collection, doc_id, fields))
    return _respond(request, cached, settings)


def _document_id(path_info: str) -> str | None:
    """`/` is the list; `/<id>` one document; anything else (deeper, empty segments) is a 404.

    Reads the WSGI `PATH_INFO` (percent-decoded bytes as latin-1, PEP 3333): `request.path`
    would fold `//` into `/` and so turn `/users/%2F` into the list.
    """
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadRequest("the document id is not valid UTF-8", code="invalid_id") from None
    if path in ("", "/"):
        return None
    parts = path[1:].split("/")
    if len(parts) != 1 or not parts[0]:
        raise NotFound("no such path")
    return check_document_id(parts[0])  # the WSGI server has percent-decoded the path


def _respond(request: Request, cached: CachedResponse, settings: Settings) -> Response:
    if cached.status != 200:
        response = Response(cached.body, status=cached.status, content_type=http.JSON_TYPE)
        response.headers["Cache-Control"] = "no-store"
    elif http.etag_matches(request, cached.etag):
        response = Response(status=304)
    elif http.accepts_gzip(request) and len(cached.body) >= http.GZIP_MIN_BYTES:
        response = Response(cached.gzip_body(), status=200, content_type=http.JSON_TYPE)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(cached.body, status=200, content_type=http.JSON_TYPE)
    response.vary.add("Accept-Encoding")
    response.headers["X-Data-Source"] = cached.source
    response.document_count = cached.count
    if cached.status == 200:
        response.headers["ETag"] = cached.etag
        response.headers["Cache-Control"] = settings.cache_control
    return response


