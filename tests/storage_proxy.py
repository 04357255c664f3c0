"""An HTTP proxy in front of the Cloud Storage emulator that records uploads and can answer
them itself (429, 412): what no emulator does on cue. Used by the publisher's tests and its
benchmark (which counts object writes with it)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class StorageProxy:
    """Forwards HTTP to the storage emulator; `intercept(request) -> (status, body) | None`."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.lock = threading.Lock()
        self.log: list[tuple[float, str | None, dict, int]] = []  # uploads
        self.sizes: list[tuple[float, str | None, int]] = []  # (time, name, body bytes)
        self.intercept: Callable[[dict], tuple[int, dict] | None] = lambda request: None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = {"method": self.command, "path": parts.path,
                           "query": parse_qs(parts.query), "body": body,
                           "headers": dict(self.headers)}
                answer = proxy.intercept(request)
                if answer is not None:
                    status, payload = answer
                    data = json.dumps(payload).encode()
                    headers = {"Content-Type": "application/json; charset=UTF-8"}
                else:
                    status, headers, data = proxy._forward(self.command, self.path,
                                                           dict(self.headers), body)
                if request["path"].startswith("/upload/"):
                    with proxy.lock:
                        proxy.log.append((time.monotonic(), upload_name(request),
                                          request["query"], status))
                        proxy.sizes.append((time.monotonic(), upload_name(request), len(body)))
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("transfer-encoding", "content-length",
                                            "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _forward(self, method, path, headers, body):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=30)
        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, dict(response.getheaders()), data

    def uploads(self, name: str = "snapshots/users/index.json") -> list[tuple[float, dict, int]]:
        """(time, query, status) of the uploads of one object, in order."""
        with self.lock:
            return [(at, query, status) for at, name_, query, status in self.log
                    if name_ == name]

    def count(self, name: str, since: float = 0.0, status: int | None = 200) -> int:
        """How many uploads of `name` since `since` (monotonic) answered `status` (None: any)."""
        return sum(1 for at, _, code in self.uploads(name)
                   if at >= since and (status is None or code == status))

    def bytes_since(self, since: float = 0.0, prefix: str = "") -> tuple[int, int]:
        """(uploads, request body bytes) of the objects under `prefix` since `since`."""
        with self.lock:
            found = [size for at, name, size in self.sizes
                     if at >= since and (name or "").startswith(prefix)]
        return len(found), sum(found)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def upload_metadata(request: dict) -> dict:
    """The object metadata of a multipart upload (its first part)."""
    return json.loads(request["body"].split(b"\r\n\r\n", 1)[1].split(b"\r\n--")[0])


def upload_media_type(request: dict) -> str:
    """The Content-Type of a multipart upload's media part (Cloud Storage stores it)."""
    media = request["body"].split(b"\r\n--", 1)[1].split(b"\r\n\r\n", 1)[0]
    for line in media.split(b"\r\n"):
        if line.lower().startswith(b"content-type:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def upload_name(request: dict) -> str | None:
    if not request["path"].startswith("/upload/"):
        return None
    return request["query"].get("name", [None])[0] or upload_metadata(request).get("name")
