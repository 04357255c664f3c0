"""Firestore reads as raw protobuf messages, over the official client's own gRPC channel.

`Query.stream()` turns every `RunQueryResponse` into proto-plus wrappers, then a
`DocumentSnapshot` of Python values (datetimes, `DocumentReference`s, ...), which the read API
then encoded to JSON again: about three quarters of an uncached read. Here the same RPCs
(`RunQuery`, `BatchGetDocuments`) go out through the same client:

- its channel (`_firestore_api._transport.grpc_channel`: its credentials, its emulator
  handling; no second connection, no auth of our own);
- its metadata (`google-cloud-resource-prefix` from `_rpc_metadata`, the routing header
  `x-goog-request-params`, the `x-goog-api-client` of its transport);
- its retry, timeout and error mapping (`google.api_core`'s `wrap_method`, as the transport
  wraps its own stubs), and its way of resuming a query after a retryable error mid-stream
  (`start_after` the last document received);
- its query builder (`Query._to_protobuf()`), so the request is the one `stream()` sends;

but the answers are parsed straight into the raw protobuf classes
(`google.cloud.firestore_v1.types.RunQueryResponse.pb()`) and handed over as `Document`
messages, for `shared.encoding.document_json_pb`; and the stream is read on the calling
thread (see `unary_stream`). Using private members of the client and of grpc is deliberate:
requirements.txt pins the client exactly, and tests/test_firestore_wire.py and
tests/test_wire_encoding.py fail first if they change.
"""

from __future__ import annotations

import operator
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from shared.times import timestamp_ns

RUN_QUERY = "/google.firestore.v1.Firestore/RunQuery"
BATCH_GET_DOCUMENTS = "/google.firestore.v1.Firestore/BatchGetDocuments"

# `retry`/`timeout` left out: the client's defaults for the method (as `stream()` does).
_DEFAULT = object()


class WireDocument:
    """One document as Firestore sent it, in the raw `RunQueryResponse` that carried it."""

    __slots__ = ("document", "response")

    def __init__(self, response: Any):
        self.response = response  # google.cloud.firestore_v1.types.RunQueryResponse.pb()
        self.document = response.document  # its `Document`: name, fields, update_time, ...

    @property
    def id(self) -> str:
        """The document id (the last segment of its name)."""
        return document_id(self.document)

    @property
    def read_time_ns(self) -> int:
        """The time the document was read, in nanoseconds since the epoch."""
        return timestamp_ns(self.response.read_time)

    @property
    def update_time_ns(self) -> int:
        """The document's `update_time` in nanoseconds since the epoch."""
        return timestamp_ns(self.document.update_time)


def document_id(document: Any) -> str:
    """The id of a protobuf `Document` (the last segment of its name)."""
    return document.name.rpartition("/")[2]


class _Stubs:
    """The raw-protobuf stubs of one client, on its channel, wrapped as its transport wraps
    its own (created once per client, on first use)."""

    def __init__(self, db: Any):
        from google.api_core import gapic_v1
        from google.cloud.firestore_v1.services.firestore.transports.base import (
            DEFAULT_CLIENT_INFO,
        )
        from google.cloud.firestore_v1.types import firestore as types
        from google.cloud.firestore_v1.types import query as query_types

        transport = db._firestore_api._transport
        channel = transport.grpc_channel

        def wrap(name: str, method: str, response: Any) -> Any:
            stub = unary_stream(channel, method, response.pb().FromString)
            # The client's defaults for this method (used when a caller gives none).
            own = transport._wrapped_methods.get(getattr(transport, name))
            return gapic_v1.method.wrap_method(
                stub, default_retry=getattr(own, "_retry", None),
                default_timeout=getattr(own, "_timeout", None), client_info=DEFAULT_CLIENT_INFO)

        self.run_query = wrap("run_query", RUN_QUERY, types.RunQueryResponse)
        self.batch_get = wrap("batch_get_documents", BATCH_GET_DOCUMENTS,
                              types.BatchGetDocumentsResponse)
        self.run_query_request = types.RunQueryRequest.pb()
        self.batch_get_request = types.BatchGetDocumentsRequest.pb()
        self.structured_query = query_types.StructuredQuery.pb
        self.default_retry = getattr(self.run_query, "_retry", None)
        # Not the client itself: these stubs are the value of a weak-keyed cache of clients.
        self._rpc_metadata = tuple(db._rpc_metadata)
        self._metadata: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}

    def metadata(self, key: str, value: str) -> tuple[tuple[str, str], ...]:
        """The client's metadata plus the routing header of one request."""
        found = self._metadata.get((key, value))
        if found is None:
            from google.api_core import gapic_v1

            found = (*self._rpc_metadata,
                     gapic_v1.routing_header.to_grpc_metadata(((key, value),)))
            if len(self._metadata) < 256:
                self._metadata[(key, value)] = found
        return found


def unary_stream(channel: Any, method: str, response_deserializer: Any = None) -> Any:
    """A unary-stream callable on `channel` (protobuf requests) whose answers are read on the
    calling thread.

    grpc's default stream iterator hands every message from the channel's polling thread to
    the caller's (a lock and a wake-up per message: half the cost of receiving 10,000
    documents, measured). Its `SingleThreadedUnaryStream` variant reads the call's own
    completion queue in the caller instead; grpc offers it only as an option when a channel
    is created, and the channel is the client's, so the callable is built the way grpc builds
    it under that option. A grpc without that class (or with another constructor) gets the
    default callable: slower, never wrong (tests/test_firestore_wire.py notices).
    """
    import grpc

    serialize = operator.methodcaller("SerializeToString")
    single = getattr(getattr(grpc, "_channel", None), "_SingleThreadedUnaryStreamMultiCallable",
                     None)
    core, target = getattr(channel, "_channel", None), getattr(channel, "_target", None)
    if single is not None and core is not None and isinstance(target, str):
        try:
            return single(core, method.encode(), target.encode(), serialize,
                          response_deserializer, None)
        except TypeError:
            pass
    return channel.unary_stream(method, request_serializer=serialize,
                                response_deserializer=response_deserializer)


_lock = threading.Lock()
_stubs: weakref.WeakKeyDictionary[Any, _Stubs] = weakref.WeakKeyDictionary()


def _stubs_of(db: Any) -> _Stubs:
    stubs = _stubs.get(db)
    if stubs is None:
        with _lock:
            stubs = _stubs.get(db)
            if stubs is None:
                stubs = _stubs[db] = _Stubs(db)
    return stubs


def _call_kwargs(retry: Any, timeout: Any) -> dict[str, Any]:
    return {name: value for name, value in (("retry", retry), ("timeout", timeout))
            if value is not _DEFAULT}


def _as_query(query_or_collection: Any) -> Any:
    if hasattr(query_or_collection, "_to_protobuf"):
        return query_or_collection
    from google.cloud.firestore_v1.query import Query

    return Query(query_or_collection)


def _run_query_request(stubs: _Stubs, query: Any) -> Any:
    parent, _ = query._parent._parent_info()
    request = stubs.run_query_request(parent=parent)
    request.structured_query.CopyFrom(stubs.structured_query(query._to_protobuf()))
    return request


def run_query_request(db: Any, query: Any) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """The `RunQueryRequest` protobuf that `stream()` sends for a client `Query` (or a whole
    `CollectionReference`), and the metadata it sends with it."""
    stubs = _stubs_of(db)
    request = _run_query_request(stubs, _as_query(query))
    return request, stubs.metadata("parent", request.parent)


def run_query(db: Any, query: Any, *, retry: Any = _DEFAULT,
              timeout: Any = _DEFAULT) -> Iterator[WireDocument]:
    """The documents of a client `Query` (or of a whole `CollectionReference`), in order.

    `retry` and `timeout` mean what they mean to `Query.stream()`; a retryable error in the
    middle of the stream resumes after the last document received, as `stream()` does, with
    the limit reduced by what was already received and no resumption once the retry's own
    timeout has passed since the first call (`stream()` forgets both).
    """
    from google.api_core import exceptions

    stubs = _stubs_of(db)
    query = _as_query(query)
    request, metadata = run_query_request(db, query)
    kwargs = _call_kwargs(retry, timeout)
    policy = stubs.default_retry if retry is _DEFAULT else retry
    started = time.monotonic()
    responses = stubs.run_query(request, metadata=metadata, **kwargs)
    last = None
    received = 0
    while True:
        try:
            for response in responses:
                if response.HasField("document"):
                    last = doc = WireDocument(response)
                    received += 1
                    yield doc
            return
        except exceptions.GoogleAPICallError as exc:
            budget = getattr(policy, "timeout", None)
            if (policy is None or not policy._predicate(exc)
                    or (budget is not None and time.monotonic() - started > budget)):
                raise
            resumed = _resumed_request(stubs, query, request, last and last.document, received)
            if resumed is None:
                return
            responses = stubs.run_query(resumed, metadata=metadata, **kwargs)


def _resumed_request(stubs: _Stubs, query: Any, request: Any, last: Any,
                     received: int) -> Any | None:
    """The request for what is left after `last` (None when the limit is already reached)."""
    if last is None:
        return request
    limit = request.structured_query.limit.value \
        if request.structured_query.HasField("limit") else None
    if limit is not None and received >= limit:
        return None
    from google.cloud.firestore_v1 import _helpers
    from google.cloud.firestore_v1.document import DocumentSnapshot

    snapshot = DocumentSnapshot(query._parent.document(last.name.rpartition("/")[2]),
                                _helpers.decode_dict(last.fields, query._client), exists=True,
                                read_time=None, create_time=None, update_time=None)
    resumed = _run_query_request(stubs, query.start_after(snapshot))
    if limit is not None:
        resumed.structured_query.limit.value = limit - received
    return resumed


def get_document(db: Any, reference: Any, field_paths: Any = None, *, retry: Any = _DEFAULT,
                 timeout: Any = _DEFAULT) -> tuple[Any | None, int]:
    """One document (`None` when it does not exist) and the read time, as `get()` reads it
    (`BatchGetDocuments`, `field_paths` as its mask)."""
    stubs = _stubs_of(db)
    database = db._database_string
    request = stubs.batch_get_request(database=database, documents=[reference._document_path])
    if field_paths is not None:
        request.mask.field_paths.extend(sorted(field_paths))
    responses = stubs.batch_get(request, metadata=stubs.metadata("database", database),
                                **_call_kwargs(retry, timeout))
    for response in responses:
        kind = response.WhichOneof("result")
        if kind == "found":
            return response.found, timestamp_ns(response.read_time)
        if kind == "missing":
            return None, timestamp_ns(response.read_time)
    raise ValueError("BatchGetDocuments returned no result for the document")
