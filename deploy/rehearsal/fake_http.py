"""The HTTP side of the rehearsal's fake of Google's APIs: recording, JSON, and the proxy.

`make_handler(fake)` answers every request through `fake.handle(...)` and records it. It is
also the clients' proxy: a `CONNECT` or an absolute URL for the fake itself is served here (a
tunnel to itself: it never opens a connection anywhere), anything else is refused with 403 and
listed in `fake.refused`, which fails the rehearsal.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request as the fake received it (body decoded as JSON when it is JSON)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0



class Fake(Protocol):
    """What the handler needs of the fake."""

    lock: Any
    requests: list[Recorded]
    refused: list[str]

    def is_own_host(self, host: str) -> bool: ...

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any]: ...


def error_body(code: int, message: str) -> dict:
    """Google's JSON error shape."""
    status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              409: "ALREADY_EXISTS"}.get(code, "UNKNOWN")
    return {"error": {"code": code, "message": message, "status": status}}


def make_handler(fake: Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: the requests are recorded
            pass

        def do_CONNECT(self) -> None:
            if fake.is_own_host(self.path):
                # A tunnel to this server itself: the requests follow on this connection.
                self.send_response_only(200, "Connection Established")
                self.end_headers()
                self.close_connection = False  # whatever the CONNECT's headers said
                return
            with fake.lock:
                fake.refused.append(f"CONNECT {self.path}")
            self._send(403, error_body(403, f"the rehearsal refuses {self.path}: nothing may "
                                        "leave the machine"), close=True)

        def _any(self) -> None:
            parts = urlsplit(self.path)
            host = parts.netloc or self.headers.get("Host", "")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = self._chunked()
            if not fake.is_own_host(host):
                with fake.lock:
                    fake.refused.append(f"{self.command} {host}{parts.path}")
                self._send(403, error_body(403, f"the rehearsal refuses host {host}"), close=True)
                return
            query = parse_qs(parts.query)
            body: Any = raw
            if raw and "json" in self.headers.get("Content-Type", "json"):
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
            record = Recorded(self.command, parts.path, query, body)
            with fake.lock:
                fake.requests.append(record)
                status, answer = fake.handle(self.command, parts.path, query, body)
                record.status = status
            self._send(status, answer)

        def _chunked(self) -> bytes:
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()

        def _send(self, status: int, answer: Any, *, close: bool = False) -> None:
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

    return Handler


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted field path of a request body (a copy), or None."""
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return copy.deepcopy(data)


def set_path(data: dict, path: str, value: Any) -> None:
    """Set (or, with None, remove) the value at a dotted field path (an `updateMask` entry)."""
    keys = path.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    if value is None:
        data.pop(keys[-1], None)
    else:
        data[keys[-1]] = value
