"""The write API of a collection's function (admin only): POST, PUT, PATCH and DELETE.

Bodies are validated by the collection's schema (`shared.records.convert_record`, the same
conversion as the migration) and every field error is returned at once. `createdAt` and
`updatedAt` are server timestamps; server-owned fields in a body (`id` on PUT/PATCH,
`createdAt`, `updatedAt`) are ignored. Optimistic concurrency: `If-Match` carries the ETag a
GET returned, and every update or delete is written with a `last_update_time` precondition on
the version that was checked, so a concurrent change between check and write gives a 412
instead of a lost update. A DELETE commits the document's tombstone (`shared.tombstones`) in
the same batch. A write invalidates this instance's cached reads of the collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Request, Response

from functions.collection_api.cache import key_collection
from shared import http
from shared.auth import authenticate
from shared.clients import firestore_deadline
from shared.encoding import encode_document
from shared.errors import (
    BadRequest,
    Conflict,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from shared.records import RecordError, convert_record
from shared.retry import is_transient
from shared.schema import CollectionSchema, load_schema
from shared.tombstones import stage_tombstone

if TYPE_CHECKING:
    from functions.collection_api.context import ApiContext

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
SERVER_FIELDS = ("createdAt", "updatedAt")
COLLECTION_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
DOCUMENT_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")


def handle_write(request: Request, collection: str, doc_id: str | None,
                 context: ApiContext) -> Response:
    """Authorize, validate and apply one write; returns the response (errors are raised)."""
    settings = context.settings
    if doc_id is None and request.method != "POST":
        raise MethodNotAllowed(f"{request.method} needs a document id",
                               allowed=COLLECTION_METHODS)
    if doc_id is not None and request.method == "POST":
        raise MethodNotAllowed("POST creates in the collection; use PUT or PATCH on a document",
                               allowed=DOCUMENT_METHODS)
    authenticate(request.headers, settings, require_admin=True)
    schema = load_schema(collection)
    body = None
    if request.method != "DELETE":
        body = http.read_json_body(request, max_bytes=settings.max_body_bytes)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object", code="invalid_body")
    writer = _Writer(context.db(), schema, request.headers.get("If-Match"),
                     firestore_deadline(context.settings),
                     tombstone_retention_s=settings.tombstone_retention_s)
    context.fence.begin(collection)
    try:
        response = _apply(request, writer, doc_id, body)
    except Exception as exc:
        if is_transient(exc):  # the write's fate is unknown: a 503 to retry after reading back
            raise Unavailable(
                f"Firestore did not confirm the write ({type(exc).__name__}); it may have been "
                "applied: read the document before trying again", retry_after_s=1) from exc
        raise
    finally:
        # Even a failed write may have committed: this instance's reads must not outlive it.
        context.cache.invalidate(lambda key: key_collection(key) == collection)
        if request.method == "DELETE":
            # The newest-tombstone time this instance cached is older than the one written.
            context.tombstones.invalidate(lambda key: key == collection)
        context.fence.end(collection)
    response.headers["Cache-Control"] = "no-store"
    return response


def _apply(request: Request, writer: _Writer, doc_id: str | None,
           body: dict[str, Any] | None) -> Response:
    if request.method == "DELETE":
        writer.delete(doc_id)
        return Response(status=204)
    if request.method == "POST":
        item, status = writer.create(body), 201
    elif request.method == "PUT":
        item, status = writer.replace(doc_id, body)
    else:
        item, status = writer.patch(doc_id, body), 200
    payload = http.dumps(item)
    response = Response(payload, status=status, content_type=http.JSON_TYPE)
    response.headers["ETag"] = http.weak_etag(payload)
    if status == 201:
        response.headers["Location"] = f"{request.url_root}{quote(item['id'], safe='')}"
    return response


def _server_time(result: Any) -> Any:
    """The time the server stored for this write's `SERVER_TIMESTAMP` fields.

    Firestore stores server timestamps to the millisecond (one value for every field of a
    commit), while `update_time` has microseconds and is taken later: the answer must carry the
    stored value, as a later read gives it, and the commit response has it, so no read-back.
    """
    for value in result.transform_results:
        return value.timestamp_value
    return result.update_time


class _Writer:
    """One write request against one collection, with its precondition and deadline."""

    def __init__(self, db: Any, schema: CollectionSchema, if_match: str | None,
                 deadline: dict[str, Any], *, tombstone_retention_s: float):
        self.db = db
        self.tombstone_retention_s = tombstone_retention_s
        self.schema = schema
        self.if_match = if_match
        self.deadline = deadline
        self.collection = db.collection(schema.name)

    def _convert(self, body: dict[str, Any], doc_id: str | None, *, partial: bool) -> Any:
        record = {key: value for key, value in body.items() if key not in SERVER_FIELDS}
        if doc_id is not None:
            record.pop(self.schema.id_field, None)
        elif record.get(self.schema.id_field) in (None, ""):
            record[self.schema.id_field] = self.collection.document().id
        try:
            return convert_record(record, self.schema, doc_id=doc_id, partial=partial)
        except RecordError as exc:
            fields = [{"field": p.field, "message": p.message} for p in exc.problems]
            if not fields:
                fields = [{"field": self.schema.id_field if "id" in exc.reason else None,
                           "message": exc.message}]
            raise BadRequest(f"the document is invalid: {exc.message}", code="validation_failed",
                             details={"fields": fields}) from None

    def _current(self, doc_id: str) -> Any:
        """The current version, checked against If-Match (412 when it differs)."""
        snapshot = self.collection.document(doc_id).get(**self.deadline)
        if self.if_match is not None:
            item = encode_document(doc_id, snapshot.to_dict()) if snapshot.exists else None
            current = http.weak_etag(http.dumps(item)) if item is not None else None
            if current is None or not http.etag_listed(self.if_match, current):
                # The current version comes along, so a client can merge without a re-read
                # (which another instance's read cache might answer with the old version).
                raise PreconditionFailed("the document changed since it was read",
                                         code="precondition_failed",
                                         details={"etag": current, "document": item})
        return snapshot

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import firestore

        converted = self._convert(body, None, partial=False)
        ref = self.collection.document(converted.doc_id)
        try:
            result = ref.create({**converted.data, "createdAt": firestore.SERVER_TIMESTAMP,
                                 "updatedAt": firestore.SERVER_TIMESTAMP}, **self.deadline)
        except AlreadyExists:
            raise Conflict(f"{self.schema.name}/{converted.doc_id} exists already",
                           code="already_exists") from None
        stamp = _server_time(result)
        return encode_document(converted.doc_id, {**converted.data, "createdAt": stamp,
                                                  "updatedAt": stamp})

    def replace(self, doc_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        from google.api_core.exceptions import AlreadyExists, FailedPrecondition
        from google.cloud import firestore

        converted = self._convert(body, doc_id, partial=False)
        snapshot = self._current(doc_id)
        ref = self.collection.document(doc_id)
        data = {**converted.data, "updatedAt": firestore.SERVER_TIMESTAMP}
        try:
            if not snapshot.exists:
                result = ref.create({**data, "createdAt": firestore.SERVER_TIMESTAMP},
                                    **self.deadline)
                stamp = _server_time(result)
                return encode_document(doc_id, {**converted.data, "createdAt": stamp,
                                                "updatedAt": stamp}), 201
            current = snapshot.to_dict() or {}
            created = current.get("createdAt", snapshot.create_time)
            # A replace is an update of every field plus deletes of the fields that went away:
            # `set()` cannot carry the last-update-time precondition, `update()` can.
            removed = {name: firestore.DELETE_FIELD for name in current
                       if name not in converted.data and name not in SERVER_FIELDS}
            result = ref.update(
                {**data, **removed, "createdAt": created},
                option=self.db.write_option(last_update_time=snapshot.update_time),
                **self.deadline)
        except (AlreadyExists, FailedPrecondition):
            raise PreconditionFailed("the document changed while it was being replaced",
                                     code="precondition_failed") from None
        return encode_document(doc_id, {**converted.data, "createdAt": created,
                                        "updatedAt": _server_time(result)}), 200

    def patch(self, doc_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from google.api_core.exceptions import FailedPrecondition
        from google.api_core.exceptions import NotFound as GoogleNotFound
        from google.cloud import firestore

        converted = self._convert(body, doc_id, partial=True)
        snapshot = self._current(doc_id)
        if not snapshot.exists:
            raise NotFound(f"no document {doc_id!r} in {self.schema.name}")
        try:
            result = self.collection.document(doc_id).update(
                {**converted.data, "updatedAt": firestore.SERVER_TIMESTAMP},
                option=self.db.write_option(last_update_time=snapshot.update_time),
                **self.deadline)
        except (FailedPrecondition, GoogleNotFound):
            raise PreconditionFailed("the document changed while it was being updated",
                                     code="precondition_failed") from None
        merged = {**(snapshot.to_dict() or {}), **converted.data,
                  "updatedAt": _server_time(result)}
        return encode_document(doc_id, merged)

    def delete(self, doc_id: str) -> None:
        """Delete with its tombstone in one atomic commit: a dashboard listening to the
        tombstones learns the deletion at once, not after the snapshot publisher ran."""
        from google.api_core.exceptions import FailedPrecondition

        snapshot = self._current(doc_id)
        if not snapshot.exists:
            raise NotFound(f"no document {doc_id!r} in {self.schema.name}")
        batch = self.db.batch()
        batch.delete(self.collection.document(doc_id),
                     option=self.db.write_option(last_update_time=snapshot.update_time))
        stage_tombstone(batch, self.db, self.schema.name, doc_id,
                        deleted_version=snapshot.update_time,
                        retention_s=self.tombstone_retention_s)
        try:
            batch.commit(**self.deadline)
        except FailedPrecondition:
            raise PreconditionFailed("the document changed while it was being deleted",
                                     code="precondition_failed") from None
