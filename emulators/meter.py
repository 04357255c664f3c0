"""Count Firestore document reads as Firestore bills them: a gRPC proxy in front of an emulator.

Google's emulator keeps no billing counter, so the tests and benchmarks that promise "0 reads
when cached", "1 read per quiet poll" or "1 read per event" count, here, the documents the
clients receive. ``ReadMeter`` is a transparent gRPC proxy (every method of
``google.firestore.v1.Firestore``, bytes forwarded unchanged, metadata and deadlines passed
through) that parses the answers of the read methods and bills them per project::

    meter = ReadMeter(emulator.host).start()  # .host "127.0.0.1:P": the FIRESTORE_EMULATOR_HOST
    meter.reset("demo-p"); ...; meter.reads("demo-p")
    meter.stop()

Billing, as Firestore's pricing page states it: a query (RunQuery) costs one read per document
returned and at least one; a BatchGetDocuments or GetDocument one read per document asked for,
found or missing; ListDocuments one per document returned and at least one; an aggregation one
per batch of up to 1,000 index entries counted and at least one; a listener (Listen) one per
document added to or changed in its result, and one for a target whose first answer holds no
document. (Google's emulator answers every change with a RESET and the whole result again;
production sends only what changed, so a document sent again unchanged is not billed.)
Writes, commits with preconditions and deletes bill no read. The project comes from the
request's resource names. It runs in the process that starts it (a thread pool).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "/google.firestore.v1.Firestore/"
UNARY_STREAM = frozenset({"BatchGetDocuments", "RunQuery", "RunAggregationQuery",
                          "ExecutePipeline"})
STREAM_STREAM = frozenset({"Write", "Listen"})
_PROJECT = re.compile(rb"projects/([a-z0-9-]+)/databases/")
# Metadata the proxy must not copy onto its own upstream call (gRPC sets them itself).
_HOP_HEADERS = frozenset({"grpc-timeout", "content-type", "te", "user-agent", "grpc-encoding",
                          "grpc-accept-encoding"})
MAX_STREAMS = 256


class ReadMeter:
    """A counting gRPC proxy in front of the Firestore emulator at ``upstream`` ("HOST:PORT")."""

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        self.upstream, self.bind_host = upstream, host
        self.host = ""
        self._lock = threading.Lock()
        self._reads: Counter[str] = Counter()
        self._channel: grpc.Channel | None = None
        self._server: grpc.Server | None = None

    # --- counts ---------------------------------------------------------------------------------
    def reads(self, project: str | None = None) -> int:
        """Document reads billed so far to ``project`` (all projects when None)."""
        with self._lock:
            return self._reads[project] if project else sum(self._reads.values())

    def reset(self, project: str | None = None) -> None:
        """Zero the count of ``project`` (all projects when None)."""
        with self._lock:
            if project:
                self._reads.pop(project, None)
            else:
                self._reads.clear()

    def _bill(self, project: str, reads: int) -> None:
        if project and reads:
            with self._lock:
                self._reads[project] += reads

    # --- the proxy --------------------------------------------------------------------------------
    def start(self) -> ReadMeter:
        """Listen on a free port of ``host``; ``self.host`` is then "HOST:PORT"."""
        self._channel = grpc.insecure_channel(self.upstream, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_STREAMS),
                             handlers=[_Handler(self)],
                             options=[("grpc.max_receive_message_length", -1),
                                      ("grpc.max_send_message_length", -1)],
                             maximum_concurrent_rpcs=MAX_STREAMS)
        port = server.add_insecure_port(f"{self.bind_host}:0")
        server.start()
        self._server, self.host = server, f"{self.bind_host}:{port}"
        return self

    def stop(self) -> None:
        """Stop the proxy (open streams are cancelled)."""
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class _Handler(grpc.GenericRpcHandler):
    """Forwards every Firestore method upstream as bytes, billing the read methods."""

    def __init__(self, meter: ReadMeter):
        self.meter = meter

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        if not method.startswith(SERVICE):
            return None
        name = method[len(SERVICE):]
        channel = self.meter._channel
        if name in STREAM_STREAM:
            upstream = channel.stream_stream(method)
            return grpc.stream_stream_rpc_method_handler(self._streams(name, upstream))
        if name in UNARY_STREAM:
            upstream = channel.unary_stream(method)
            return grpc.unary_stream_rpc_method_handler(self._unary_stream(name, upstream))
        upstream = channel.unary_unary(method)
        return grpc.unary_unary_rpc_method_handler(self._unary(name, upstream))

    def _unary(self, name: str, upstream):
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                response = upstream(request, **_call_options(context))
            except grpc.RpcError as err:
                _abort(context, err)
            if name == "GetDocument":
                self.meter._bill(_project(request), 1)
            elif name == "ListDocuments":
                self.meter._bill(_project(request), max(1, _count_documents(response)))
            return response

        return handle

    def _unary_stream(self, name: str, upstream):
        def handle(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            project = _project(request)
            bill = _RESPONSE_BILLS.get(name)
            call = upstream(request, **_call_options(context))
            context.add_callback(call.cancel)
            documents = 0
            try:
                for response in call:
                    if bill is not None:
                        documents += bill(response)
                    yield response
            except grpc.RpcError as err:
                _abort(context, err)
            finally:
                if name == "BatchGetDocuments":
                    self.meter._bill(project, _requested_documents(request))
                elif name == "RunQuery":
                    self.meter._bill(project, max(1, documents))
                elif name == "RunAggregationQuery":
                    self.meter._bill(project, max(1, -(-documents // 1000)))

        return handle

    def _streams(self, name: str, upstream):
        def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            listen = _ListenBill(self.meter) if name == "Listen" else None
            incoming = _until_ended(requests)
            source = listen.watch(incoming) if listen is not None else incoming
            call = upstream(source, **_call_options(context))
            context.add_callback(call.cancel)
            try:
                for response in call:
                    if listen is not None:
                        listen.response(response)
                    yield response
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED or context.is_active():
                    _abort(context, err)

        return handle


class _ListenBill:
    """Bills one Listen stream: one read per document added or changed, one for an empty first
    answer of a target."""

    def __init__(self, meter: ReadMeter):
        self.meter, self.project = meter, ""
        self.unanswered: set[int] = set()  # targets whose first CURRENT has not come yet
        self.delivered: Counter[int] = Counter()
        self.versions: dict[str, tuple[int, int]] = {}  # document -> update_time last billed

    def watch(self, requests: Iterator[bytes]) -> Iterator[bytes]:
        from google.cloud.firestore_v1.types import firestore as types

        for raw in requests:
            request = types.ListenRequest.pb().FromString(raw)
            self.project = self.project or _project(request.database.encode())
            if request.HasField("add_target"):
                self.unanswered.add(request.add_target.target_id)
            yield raw

    def response(self, raw: bytes) -> None:
        from google.cloud.firestore_v1.types import firestore as types

        response = types.ListenResponse.pb().FromString(raw)
        kind = response.WhichOneof("response_type")
        if kind == "document_change":
            document = response.document_change.document
            version = (document.update_time.seconds, document.update_time.nanos)
            if self.versions.get(document.name) != version:
                self.versions[document.name] = version
                self.meter._bill(self.project, 1)
            for target in response.document_change.target_ids:
                self.delivered[target] += 1
        elif kind == "target_change":
            change = response.target_change
            if change.target_change_type == change.TargetChangeType.CURRENT:
                # No target ids: the change is about every target of the stream.
                for target in list(change.target_ids or self.unanswered):
                    if target in self.unanswered:
                        self.unanswered.discard(target)
                        if not self.delivered[target]:
                            self.meter._bill(self.project, 1)


def _until_ended(requests: Iterator[bytes]) -> Iterator[bytes]:
    """The client's requests of a stream, ending quietly when its call ends (cancelled, past its
    deadline): the server's request iterator then raises, and the upstream call that consumes
    it would log that as "Exception iterating requests!" with a traceback, although nothing is
    wrong (the upstream call is cancelled along with it)."""
    try:
        yield from requests
    except grpc.RpcError:
        return


def _call_options(context: grpc.ServicerContext) -> dict:
    metadata = tuple((key, value) for key, value in context.invocation_metadata()
                     if key not in _HOP_HEADERS and not key.startswith(":"))
    remaining = context.time_remaining()
    timeout = remaining if remaining is not None and remaining < 10**6 else None
    return {"metadata": metadata, "timeout": timeout}


def _abort(context: grpc.ServicerContext, err: grpc.RpcError) -> None:
    with contextlib.suppress(Exception):
        context.set_trailing_metadata(err.trailing_metadata() or ())
    context.abort(err.code(), err.details() or "")


def _project(request: bytes) -> str:
    """The project of a request: the first resource name it carries."""
    match = _PROJECT.search(request)
    return match.group(1).decode() if match else ""


def _requested_documents(request: bytes) -> int:
    from google.cloud.firestore_v1.types import firestore as types

    return len(types.BatchGetDocumentsRequest.pb().FromString(request).documents)


def _count_documents(response: bytes) -> int:
    from google.cloud.firestore_v1.types import firestore as types

    return len(types.ListDocumentsResponse.pb().FromString(response).documents)


def _query_documents(response: bytes) -> int:
    from google.cloud.firestore_v1.types import firestore as types

    return 1 if types.RunQueryResponse.pb().FromString(response).HasField("document") else 0


def _aggregated_entries(response: bytes) -> int:
    """The largest count an aggregation answer holds (what it had to scan, for billing)."""
    from google.cloud.firestore_v1.types import firestore as types

    result = types.RunAggregationQueryResponse.pb().FromString(response).result
    return max((value.integer_value for value in result.aggregate_fields.values()), default=0)


_RESPONSE_BILLS = {"RunQuery": _query_documents, "RunAggregationQuery": _aggregated_entries}
