"""The collection API: one handler serves every configured collection (`/<collection>[/<id>]`).

Reads (`GET`, `HEAD`) are answered here; writes (`POST`, `PUT`, `PATCH`, `DELETE`) go to
`functions.write_api`.

Firestore answers first, within `FIRESTORE_TIMEOUT_S`; on any failure or deadline the same
request is answered from the collection's snapshot in Cloud Storage (`X-Data-Source:
snapshot`), and when both fail the client gets a 503 with `Retry-After`. A circuit breaker
sends requests straight to the snapshot for a cool-down after a failure, and a per-instance
cache keeps encoded responses for `CACHE_TTL_S`, so repeated reads and 304 revalidations cost
no Firestore reads.

Firestore's answers are read as raw protobuf through the client's own channel
(`shared.firestore_wire`) and encoded straight to the API's JSON (`shared.encoding`), without
the client's DocumentSnapshots. A snapshot is parsed once per object generation: when its
`CACHE_TTL_S` has passed, a request only asks Cloud Storage whether it changed (a 304 keeps
the parsed one, with the indexes and sort orders its queries built).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Request, Response

from functions import write_api
from shared import http
from shared.auth import authenticate, check_app_check
from shared.breaker import CircuitBreaker
from shared.cache import TTLCache, WriteFence
from shared.clients import firestore_deadline, get_db, get_storage
from shared.encoding import document_json_pb, encode_document_pb, utc_now
from shared.errors import (
    AppError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Unavailable,
)
from shared.events import format_ns, to_ns
from shared.firestore_wire import WireDocument, document_id, get_document, run_query
from shared.logs import request_context, request_log
from shared.query import (
    ReadQuery,
    check_document_id,
    is_descending_key_scan,
    make_page_token,
    parse_fields,
    parse_list_query,
    project,
    run_on_items,
    to_ascending_key_scan,
    to_firestore_query,
)
from shared.schema import load_schema
from shared.settings import Settings, get_settings
from shared.snapshots import Snapshot, load_snapshot
from shared.tombstones import deleted_since, latest_tombstone

log = logging.getLogger("dashboard.read")

READ_METHODS = ("GET", "HEAD", "OPTIONS")
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class CachedResponse:
    """An encoded answer, kept per instance: body, weak ETag, where it came from."""

    status: int
    body: bytes
    etag: str
    source: str
    count: int | None = None
    gzipped: list[bytes] = field(default_factory=list, compare=False)

    def gzip_body(self) -> bytes:
        """The gzip of the body, computed once per entry."""
        if not self.gzipped:
            self.gzipped.append(http.gzip_bytes(self.body))
        return self.gzipped[0]


@dataclass
class ReadContext:
    """The per-instance dependencies of the read API; tests build one with emulator clients."""

    settings: Settings
    db: Callable[[], Any]
    storage: Callable[[], Any]
    cache: TTLCache[CachedResponse]
    snapshots: TTLCache[Snapshot]
    tombstones: TTLCache[tuple[Any, Any]]
    breaker: CircuitBreaker
    executor: concurrent.futures.ThreadPoolExecutor
    # This instance's writes in flight, per collection (functions.write_api): see WriteFence.
    fence: WriteFence = field(default_factory=WriteFence)
    # The last parsed snapshot of each collection: reused while its object keeps its generation.
    parsed: dict[str, Snapshot] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, *, db: Callable[[], Any] | None = None,
               storage: Callable[[], Any] | None = None) -> ReadContext:
        """A context whose clients come from the accessors unless given."""
        return cls(
            settings=settings,
            db=db or (lambda: get_db(settings)),
            storage=storage or (lambda: get_storage(settings)),
            cache=TTLCache(settings.cache_ttl_s),
            snapshots=TTLCache(settings.cache_ttl_s, max_entries=32),
            tombstones=TTLCache(settings.cache_ttl_s, max_entries=32),
            breaker=CircuitBreaker(settings.breaker_cooldown_s),
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=32,
                                                           thread_name_prefix="firestore"),
        )


_context_lock = threading.Lock()
_context: ReadContext | None = None


def get_read_context() -> ReadContext:
    """The read context of this instance, built on first use from the environment."""
    global _context
    if _context is None:
        with _context_lock:
            if _context is None:
                _context = ReadContext.create(get_settings())
    return _context


def reset_read_context() -> None:
    """Forget the instance's context (tests: a fresh instance)."""
    global _context
    with _context_lock:
        _context = None


def serve(request: Request, collection: str) -> Response:
    """Entry point body for a collection's HTTP function."""
    try:
        context = get_read_context()
    except AppError as exc:
        with request_context(request, function=collection, collection=collection):
            log.error("cannot start: %s", exc.message)
        return http.error_response(exc)
    return handle(request, collection, context)


def handle(request: Request, collection: str, context: ReadContext) -> Response:
    """Answer one request of `collection` (CORS and security headers included), logging one
    structured line with status, source, latency and document count."""
    started = time.perf_counter()
    with request_context(request, function=collection, collection=collection,
                         project=context.settings.project):
        response = _dispatch(request, collection, context)
        http.finish(request, response, context.settings)
        request_log(response.status_code, response.headers.get("X-Data-Source"),
                    (time.perf_counter() - started) * 1000,
                    getattr(response, "document_count", None))
    return response


@http.json_errors
def _dispatch(request: Request, collection: str, context: ReadContext) -> Response:
    settings = context.settings
    if collection not in settings.collections:
        raise NotFound(f"collection {collection!r} is not configured")
    if request.method == "OPTIONS":
        return http.preflight_response(request, settings, ALL_METHODS)
    if request.method not in ALL_METHODS:
        raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=ALL_METHODS)
    doc_id = _document_id(request.environ.get("PATH_INFO", ""))
    if request.method in write_api.WRITE_METHODS:
        return write_api.handle_write(request, collection, doc_id, context)
    if settings.read_access == "admin":
        authenticate(request.headers, settings, require_admin=True)
    else:
        check_app_check(request.headers, settings)
    schema = load_schema(collection)
    if doc_id is None:
        query = parse_list_query(request.args.items(multi=True), schema,
                                 default_limit=settings.default_limit,
                                 max_limit=settings.max_limit)
        cached = context.fence.cached(context.cache, collection, ("list", query),
                                      lambda: _compute_list(context, query))
    else:
        fields = parse_fields(request.args.get("fields"), schema)
        unknown = set(request.args) - {"fields"}
        if unknown:
            raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r} for a single document",
                             code="invalid_parameter")
        cached = context.fence.cached(
            context.cache, collection, ("get", collection, doc_id, fields),
            lambda: _compute_get(context, collection, doc_id, fields))
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


# --- answering from Firestore, else from the snapshot ------------------------------------------

def _compute_list(context: ReadContext, query: ReadQuery) -> tuple[CachedResponse, float | None]:
    # A poll (`updatedSince`) also lists the ids deleted since then, on its first page only,
    # from the tombstones the snapshot publisher records (shared.tombstones).
    polls_deletions = query.updated_since is not None and query.cursor is None

    def from_firestore() -> tuple[ListedPage, str, list[str]]:
        db = context.db()
        page, as_of = _firestore_page(
            _run_firestore_query(db, query, firestore_deadline(context.settings)), query)
        as_of = as_of or started
        deleted: list[str] = []
        if polls_deletions:
            deleted, checked_until = _deleted_since(context, db, query)
            as_of = min(as_of, checked_until)
        return page, format_ns(as_of), deleted

    def from_snapshot(snapshot: Snapshot) -> tuple[ListedPage, str, list[str]]:
        deleted = snapshot.deleted_since(query.updated_since) if polls_deletions else []
        page = run_on_items(snapshot.items, query, load_schema(query.collection), snapshot.memo)
        return (ListedPage(http.dumps(page.items), len(page.items), page.next_page_token),
                snapshot.generated_at, deleted)

    started = to_ns(utc_now())
    (page, as_of, deleted), source = _firestore_or_snapshot(context, query.collection,
                                                             from_firestore, from_snapshot)
    head = _listing_json(query, page, deleted)
    tail = http.dumps({"source": source, "asOf": as_of})
    body = head[:-1] + b"," + tail[1:]
    return CachedResponse(200, body, http.weak_etag(head), source, page.count), None


@dataclass(frozen=True)
class ListedPage:
    """One page of a list answer: its items as a JSON array (bytes), how many, the next token."""

    items_json: bytes
    count: int
    next_page_token: str | None


def _listing_json(query: ReadQuery, page: ListedPage, deleted: list[str]) -> bytes:
    """The list answer up to `source`/`asOf` (what its ETag covers): the bytes `http.dumps`
    writes for `{"collection", "items", "count", "nextPageToken"[, "deleted"]}`."""
    head = (b'{"collection":' + http.dumps(query.collection) + b',"items":' + page.items_json
            + b',"count":' + str(page.count).encode() + b',"nextPageToken":'
            + http.dumps(page.next_page_token))
    if query.updated_since is not None:
        head += b',"deleted":' + http.dumps(deleted)
    return head + b"}"


def _firestore_page(docs: Iterator[WireDocument],
                    query: ReadQuery) -> tuple[ListedPage, int | None]:
    """A page from the `limit + 1` documents of a Firestore query, and their read time (ns).

    Each document is written as JSON text as it arrives (while the next ones are on their
    way), projected to `fields`; only the page's last document is also decoded whole, for the
    next page's token (which needs its sort field, projected away or not).
    """
    fields, limit = query.fields, query.limit
    texts: list[str] = []
    append = texts.append
    last, has_more, read_ns = None, False, None
    for doc in docs:
        if read_ns is None:
            read_ns = doc.read_time_ns
        if len(texts) < limit:
            last = doc.document
            append(document_json_pb(document_id(last), last.fields, fields))
        else:
            has_more = True
    token = None
    if has_more and last is not None:
        token = make_page_token(query, encode_document_pb(document_id(last), last.fields))
    items_json = ("[" + ",".join(texts) + "]").encode("utf-8")
    return ListedPage(items_json, len(texts), token), read_ns


def _run_firestore_query(db: Any, query: ReadQuery, deadline: dict[str, Any]) -> Iterator[Any]:
    """The documents of one page (`limit + 1`) as they arrive, with the fallback plan for
    `orderBy=-id` where the engine refuses a descending key scan (see shared.query)."""
    from google.api_core.exceptions import FailedPrecondition

    collection_ref = db.collection(query.collection)
    if not is_descending_key_scan(query):
        yield from run_query(db, to_firestore_query(collection_ref, query), **deadline)
        return
    try:
        # A refusal comes before the first document: buffer this one kind of page.
        docs = list(run_query(db, to_firestore_query(collection_ref, query), **deadline))
    except FailedPrecondition as exc:
        log.warning("Firestore refused a descending id scan of %s (%s): scanning ascending "
                    "instead; deploy firestore.indexes.json (__name__ DESCENDING)",
                    query.collection, str(exc)[:120])
        scan = run_query(db, to_ascending_key_scan(collection_ref, query), **deadline)
        docs = list(reversed(collections.deque(scan, maxlen=query.limit + 1)))
    yield from docs


def _deleted_since(context: ReadContext, db: Any, query: ReadQuery) -> tuple[list[str], int]:
    """Ids deleted since the poll's `updatedSince`, and the time (ns) up to which that is known.

    The newest tombstone's time is cached per instance: while it is not after `updatedSince`,
    no tombstone query runs, so a quiet poll costs one read. The answer is then only known up
    to when that time was read, and the poll's `asOf` must not pass it, or a deletion
    recorded in between would be skipped by the next poll.
    """
    def read_watermark() -> tuple[tuple[int | None, int], None]:
        checked = to_ns(utc_now())
        return (latest_tombstone(db, query.collection,
                                 **firestore_deadline(context.settings)), checked), None

    newest, checked = context.tombstones.get_or_compute(query.collection, read_watermark)
    if newest is None or newest <= to_ns(query.updated_since):
        return [], checked
    checked = to_ns(utc_now())
    return deleted_since(db, query.collection, query.updated_since,
                         **firestore_deadline(context.settings)), checked


def _compute_get(context: ReadContext, collection: str, doc_id: str,
                 fields: tuple[str, ...] | None) -> tuple[CachedResponse, float | None]:
    def from_firestore() -> bytes | None:
        db = context.db()
        found, _ = get_document(db, db.collection(collection).document(doc_id), fields,
                                **firestore_deadline(context.settings))
        return document_json_pb(doc_id, found.fields).encode() if found is not None else None

    def from_snapshot(snapshot: Snapshot) -> bytes | None:
        found = snapshot.item(doc_id)
        # Fields by name, as Firestore's answer to a masked get is written: the same bytes and
        # ETag from both sources.
        return (http.dumps(project(found, tuple(sorted(fields)) if fields else None))
                if found is not None else None)

    body, source = _firestore_or_snapshot(context, collection, from_firestore, from_snapshot)
    if body is None:
        body = http.dumps({"error": {"code": "not_found",
                                     "message": f"no document {doc_id!r} in {collection}"}})
        return CachedResponse(404, body, "", source, 0), None
    return CachedResponse(200, body, http.weak_etag(body), source, 1), None


def _firestore_or_snapshot(context: ReadContext, collection: str,
                           from_firestore: Callable[[], Any],
                           from_snapshot: Callable[[Snapshot], Any]) -> tuple[Any, str]:
    settings = context.settings
    if context.breaker.allow():
        future = context.executor.submit(from_firestore)
        try:
            result = future.result(timeout=settings.firestore_timeout_s)
        except AppError:
            context.breaker.record_success()
            raise
        except Exception as exc:  # noqa: BLE001 - any Firestore failure means: use the snapshot
            if _is_query_problem(exc):
                log.warning("Firestore refused the query of %s (%s): answering from the "
                            "snapshot", collection, _describe(exc))
            else:
                context.breaker.record_failure()
                log.warning("Firestore failed for %s (%s): answering from the snapshot; "
                            "skipping Firestore for %.0f s", collection, _describe(exc),
                            settings.breaker_cooldown_s)
        else:
            context.breaker.record_success()
            return result, "firestore"

    def load() -> tuple[Snapshot, None]:
        snapshot = load_snapshot(context.storage(), settings.snapshot_bucket, collection,
                                 timeout_s=settings.storage_timeout_s,
                                 known=context.parsed.get(collection))
        context.parsed[collection] = snapshot
        return snapshot, None

    try:
        snapshot = context.snapshots.get_or_compute(collection, load)
    except Unavailable as exc:
        log.error("both Firestore and the snapshot failed for %s: %s", collection, exc.message)
        raise Unavailable("the data is temporarily unavailable; retry shortly",
                          retry_after_s=max(1, round(settings.breaker_cooldown_s))) from None
    return from_snapshot(snapshot), "snapshot"


def _is_query_problem(exc: BaseException) -> bool:
    """Firestore is up but refuses this query (a missing index): no reason to open the circuit."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, (gexc.FailedPrecondition, gexc.InvalidArgument))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, concurrent.futures.TimeoutError):
        return "deadline exceeded"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
