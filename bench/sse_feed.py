"""The alternative to live mode that `bench/live_bench.py` measures: a server-sent-events stream
from a function (benchmark only; the product does not ship it).

`GET /sse/<collection>?since=<RFC 3339>` holds the request open and pushes, as `data: <JSON>`
lines, every document changed after `since` (`{"id", ...fields}`, the read API's encoding) and
every deletion (`{"id", "deleted": true}`), from two Firestore listeners of the Python client
(`updatedAt > since` on the collection, `recordedAt > since` on its tombstones), as a function
holding one stream per dashboard tab would. It counts the document reads those listeners cost,
billed as Firestore bills listeners (one per document added or changed, one for an empty first
answer).
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from werkzeug.wrappers import Request, Response

KEEPALIVE_S = 15.0


class SseFeed:
    """The WSGI app of the stream, on `db` (a google-cloud-firestore client); `origin` may
    read it cross-origin (the dashboard page)."""

    def __init__(self, db: Any, origin: str):
        self.db = db
        self.origin = origin
        self.reads = 0
        self.open_streams = 0
        self._lock = threading.Lock()

    def _bill(self, reads: int) -> None:
        with self._lock:
            self.reads += reads

    def __call__(self, environ, start_response):
        from shared.times import parse_timestamp

        request = Request(environ)
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "sse" or "since" not in request.args:
            return Response("not found", status=404)(environ, start_response)
        try:
            since = parse_timestamp(request.args["since"])
        except ValueError:
            return Response("bad since", status=400)(environ, start_response)
        response = Response(self._stream(parts[1], since), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Access-Control-Allow-Origin"] = self.origin
        return response(environ, start_response)

    def _stream(self, collection: str, since: Any):
        from google.cloud.firestore_v1.base_query import FieldFilter

        from shared.encoding import encode_document
        from shared.tombstones import tombstone_collection

        events: queue.Queue[dict] = queue.Queue()

        def listener(deleted: bool):
            first = [True]

            def on_snapshot(docs, changes, _read_time):
                billed = sum(1 for change in changes if change.type.name != "REMOVED")
                if first[0] and not docs:
                    billed += 1
                first[0] = False
                self._bill(billed)
                for change in changes:
                    doc = change.document
                    if deleted and change.type.name != "REMOVED":
                        events.put({"id": doc.id, "deleted": True})
                    elif not deleted and change.type.name == "REMOVED":
                        events.put({"id": doc.id, "deleted": True})
                    elif not deleted:
                        events.put(encode_document(doc.id, doc.to_dict() or {}))

            return on_snapshot

        watches = [
            self.db.collection(collection).where(filter=FieldFilter("updatedAt", ">", since))
            .on_snapshot(listener(False)),
            tombstone_collection(self.db, collection)
            .where(filter=FieldFilter("recordedAt", ">", since)).on_snapshot(listener(True)),
        ]
        with self._lock:
            self.open_streams += 1
        try:
            yield b": open\n\n"
            while True:
                try:
                    event = events.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    yield b": keepalive\n\n"
                    continue
                yield f"data: {json.dumps(event)}\n\n".encode()
        finally:
            for watch in watches:
                watch.unsubscribe()
            with self._lock:
                self.open_streams -= 1
