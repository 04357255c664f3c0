"""shared.firestore_wire speaks as the client does: same requests, same metadata, same channel,
same resumption after an error in the middle of a stream."""

from __future__ import annotations

import datetime as dt
from concurrent import futures

import grpc
import pytest

from shared.firestore_wire import get_document, run_query
from tests.helpers import firestore_client_at, seed_users

SERVICE = "google.firestore.v1.Firestore"
PROJECT = "demo-wire-metadata"


class RecordingFirestore:
    """A gRPC server that records each call (method, request bytes, metadata) and answers
    RunQuery with no document and BatchGetDocuments with `missing`."""

    def __init__(self) -> None:
        from google.cloud.firestore_v1.types import firestore as types

        self.calls: list[tuple[str, bytes, frozenset[tuple[str, str]]]] = []
        missing = types.BatchGetDocumentsResponse.pb()(
            missing=f"projects/{PROJECT}/databases/(default)/documents/users/u_1")
        missing.read_time.FromDatetime(dt.datetime(2024, 1, 1))

        def record(method: str, answer: list[bytes]):
            def handler(request: bytes, context: grpc.ServicerContext):
                metadata = frozenset((key, value) for key, value in context.invocation_metadata()
                                     if isinstance(value, str))
                self.calls.append((method, request, metadata))
                yield from answer
            return grpc.unary_stream_rpc_method_handler(handler)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "RunQuery": record("RunQuery", []),
            "BatchGetDocuments": record("BatchGetDocuments", [missing.SerializeToString()]),
        })])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture
def recording():
    server = RecordingFirestore()
    yield server
    server.stop()


def test_requests_and_metadata_are_the_clients_own(recording):
    from google.cloud.firestore_v1 import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    db = firestore_client_at(f"127.0.0.1:{recording.port}", PROJECT)
    query = (db.collection("users").where(filter=FieldFilter("hourlyRate", ">=", 10))
             .order_by("hourlyRate", direction=Query.DESCENDING)
             .start_after({"hourlyRate": 80, "__name__": db.document("users/u_1")})
             .select(["name", "hourlyRate"]).limit(7))
    list(query.stream(timeout=5))
    assert list(run_query(db, query, timeout=5)) == []
    reference = db.document("users/u_1")
    reference.get(field_paths=["name", "email"], timeout=5)
    assert get_document(db, reference, ["name", "email"], timeout=5)[0] is None

    (client_query, wire_query, client_get, wire_get) = recording.calls
    assert client_query[0] == wire_query[0] == "RunQuery"
    assert wire_query[1] == client_query[1], "not the request stream() sends"
    assert wire_query[2] == client_query[2], "not the metadata stream() sends"
    assert wire_get[1:] == client_get[1:], "not the request and metadata get() sends"
    headers = dict(wire_query[2])
    assert headers["google-cloud-resource-prefix"] == f"projects/{PROJECT}/databases/(default)"
    assert headers["x-goog-request-params"].startswith(f"parent=projects/{PROJECT}/databases/")
    assert "gapic/" in headers["x-goog-api-client"]


def test_no_second_channel_is_opened(firestore_client, monkeypatch):
    from shared.firestore_wire import _stubs_of

    seed_users(firestore_client, 2)
    list(firestore_client.collection("users").stream())  # the client's own channel exists now
    opened = []
    for name in ("insecure_channel", "secure_channel"):
        real = getattr(grpc, name)
        monkeypatch.setattr(grpc, name,
                            lambda *a, _real=real, **k: opened.append(a) or _real(*a, **k))
    assert len(list(run_query(firestore_client, firestore_client.collection("users"),
                              timeout=5))) == 2
    assert get_document(firestore_client, firestore_client.document("users/u_0001"),
                        timeout=5)[0] is not None
    assert opened == []
    assert _stubs_of(firestore_client) is _stubs_of(firestore_client), "created once per client"


def test_a_client_that_goes_away_takes_its_stubs_along(emulators, project_id):
    import gc
    import weakref

    from shared.firestore_wire import _stubs

    client = firestore_client_at(emulators.firestore.host, project_id)
    list(run_query(client, client.collection("users"), timeout=5))
    assert client in _stubs
    gone = weakref.ref(client)
    client.close()
    del client
    gc.collect()
    assert gone() is None, "the stubs keep their client alive"


def test_streams_are_read_on_the_calling_thread(firestore_client):
    from shared.firestore_wire import RUN_QUERY, unary_stream

    # If a grpc upgrade drops the single-threaded callable, reads stay correct but lose half
    # their speed on large answers: say so here rather than in a benchmark.
    stub = unary_stream(firestore_client._firestore_api._transport.grpc_channel, RUN_QUERY)
    assert type(stub).__name__ == "_SingleThreadedUnaryStreamMultiCallable"


def test_a_stream_broken_midway_resumes_after_the_last_document(firestore_client, monkeypatch):
    from google.api_core import exceptions
    from google.api_core.retry import Retry, if_transient_error
    from google.cloud.firestore_v1 import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.firestore_wire import _stubs_of

    seed_users(firestore_client, 12)
    query = (firestore_client.collection("users")
             .where(filter=FieldFilter("hourlyRate", ">", 40))
             .order_by("hourlyRate", direction=Query.DESCENDING).limit(8))
    expected = [snapshot.id for snapshot in query.stream()]
    stubs = _stubs_of(firestore_client)
    calls = []
    real = stubs.run_query

    def breaking(request, **kwargs):
        calls.append(request)
        responses = real(request, **kwargs)
        if len(calls) > 1:
            return responses

        def three_then_unavailable():
            sent = 0
            for response in responses:
                yield response
                sent += response.HasField("document")
                if sent == 3:
                    raise exceptions.ServiceUnavailable("connection reset")
        return three_then_unavailable()

    monkeypatch.setattr(stubs, "run_query", breaking)
    retry = Retry(predicate=if_transient_error, timeout=5)
    assert [doc.id for doc in run_query(firestore_client, query, retry=retry, timeout=5)] \
        == expected
    assert len(calls) == 2
    assert calls[1].structured_query.limit.value == 5, "the limit counts what was received"
    assert calls[1].structured_query.start_at.values, "resumed after the last document"

    for spent in (None, Retry(predicate=if_transient_error, timeout=0)):
        calls.clear()
        with pytest.raises(exceptions.ServiceUnavailable):
            list(run_query(firestore_client, query, retry=spent, timeout=5))
        assert len(calls) == 1, "no retry asked, or its time spent: no resumption"
