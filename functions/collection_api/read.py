"""The collection API's reads: a list page or one document, from Firestore else the snapshot.

`serve.py` routes `GET`/`HEAD` here (writes go to `write.py`).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.collection_api.cache import CachedResponse
from functions.collection_api.query import (
    Page,
    ReadQuery,
    is_descending_key_scan,
    make_page_token,
    project,
    run_on_items,
    to_ascending_key_scan,
    to_firestore_query,
)
from shared import http
from shared.clients import firestore_deadline
from shared.encoding import document_json_pb, encode_document_pb
from shared.errors import AppError, Unavailable
from shared.firestore_wire import WireDocument, document_id, get_document, run_query
from shared.schema import load_schema
from shared.snapshot_reader import SnapshotView, load_view, read_current
from shared.times import format_ns, to_ns, utc_now
from shared.tombstones import deleted_since, latest_tombstone

if TYPE_CHECKING:
    from functions.collection_api.context import ApiContext

log = logging.getLogger("dashboard.read")



# --- answering from Firestore, else from the snapshot ------------------------------------------

def compute_list(context: ApiContext, query: ReadQuery) -> tuple[CachedResponse, float | None]:
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

    def from_snapshot(view: SnapshotView) -> tuple[ListedPage, str, list[str]]:
        schema = load_schema(query.collection)
        if _reads_in_id_order(query):
            page, deleted = _id_ordered_page(view, query, schema), []
        else:
            snapshot = view.whole()
            deleted = snapshot.deleted_since(query.updated_since) if polls_deletions else []
            page = run_on_items(snapshot.items, query, schema, snapshot.memo)
        return (ListedPage(http.dumps(page.items), len(page.items), page.next_page_token),
                view.generated_at, deleted)

    started = to_ns(utc_now())
    (page, as_of, deleted), source = _firestore_or_snapshot(context, query.collection,
                                                             from_firestore, from_snapshot)
    head = _listing_json(query, page, deleted)
    tail = http.dumps({"source": source, "asOf": as_of})
    body = head[:-1] + b"," + tail[1:]
    return CachedResponse(200, body, http.weak_etag(head), source, page.count), None


def _reads_in_id_order(query: ReadQuery) -> bool:
    """A page in ascending id order without filters needs only the parts from its cursor on."""
    return (query.order_field is None and not query.descending and not query.all_filters())


def _id_ordered_page(view: SnapshotView, query: ReadQuery, schema: Any) -> Page:
    """The page from the parts that hold it: from the cursor's part until `limit + 1` items."""
    first = view.index.locate(query.cursor.doc_id) if query.cursor is not None else 0
    items: list[dict[str, Any]] = []
    page = run_on_items(items, query, schema)
    for position in range(max(0, first), len(view.index.parts)):
        items.extend(view.part(position).items)
        page = run_on_items(items, query, schema)
        if page.next_page_token is not None:
            break
    return page


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
    `orderBy=-id` where the engine refuses a descending key scan (see query.py)."""
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


def _deleted_since(context: ApiContext, db: Any, query: ReadQuery) -> tuple[list[str], int]:
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


def compute_get(context: ApiContext, collection: str, doc_id: str,
                 fields: tuple[str, ...] | None) -> tuple[CachedResponse, float | None]:
    def from_firestore() -> bytes | None:
        db = context.db()
        found, _ = get_document(db, db.collection(collection).document(doc_id), fields,
                                **firestore_deadline(context.settings))
        return document_json_pb(doc_id, found.fields).encode() if found is not None else None

    def from_snapshot(view: SnapshotView) -> bytes | None:
        found = view.item(doc_id)
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


def _firestore_or_snapshot(context: ApiContext, collection: str,
                           from_firestore: Callable[[], Any],
                           from_snapshot: Callable[[SnapshotView], Any]) -> tuple[Any, str]:
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

    def load() -> tuple[SnapshotView, None]:
        view = load_view(context.storage(), settings.snapshot_bucket, collection,
                         timeout_s=settings.storage_timeout_s,
                         known=context.parsed.get(collection))
        context.parsed[collection] = view
        return view, None

    try:
        answer = read_current(
            lambda: context.snapshots.get_or_compute(collection, load), from_snapshot,
            forget=lambda: context.snapshots.invalidate(lambda key: key == collection))
        return answer, "snapshot"
    except Unavailable as exc:
        log.error("both Firestore and the snapshot failed for %s: %s", collection, exc.message)
        raise Unavailable("the data is temporarily unavailable; retry shortly",
                          retry_after_s=max(1, round(settings.breaker_cooldown_s))) from None


def _is_query_problem(exc: BaseException) -> bool:
    """Firestore is up but refuses this query (a missing index): no reason to open the circuit."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, (gexc.FailedPrecondition, gexc.InvalidArgument))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, concurrent.futures.TimeoutError):
        return "deadline exceeded"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
