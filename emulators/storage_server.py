"""Patched Cloud Storage emulator: the PyPI ``gcp-storage-emulator``, in memory, with fixes.

Run it with::

    python -m emulators.storage_server --host 127.0.0.1 --port 9023

It prints one line ``READY <host>:<port>`` once it listens and exits cleanly on SIGTERM /
SIGINT (and, with ``--exit-on-stdin-close``, when its stdin closes, so a crashed parent never
leaves it behind). Clients reach it with ``STORAGE_EMULATOR_HOST=http://<host>:<port>``.

What real Cloud Storage does and the package does not, fixed here by wrapping the package's
functions (its files are never edited):

- preconditions ``ifGenerationMatch`` (``0``: the object must not exist),
  ``ifGenerationNotMatch``, ``ifMetagenerationMatch`` and ``ifMetagenerationNotMatch`` on
  uploads (multipart, media, resumable: checked when the session starts and when it ends),
  copies, rewrites and composes (of the destination), and on metadata reads, downloads,
  patches and deletes; a failed one answers HTTP 412 (a read with a failed ``...NotMatch``
  answers 304), which the Python client raises as ``PreconditionFailed`` / ``NotModified``;
- ``generation`` grows on every overwrite (microseconds since the epoch, like GCS, and always
  above the previous one), and a new object starts at ``metageneration`` 1;
- downloads return the object's ``Cache-Control``, ``Content-Disposition``,
  ``Content-Language`` and ``x-goog-generation`` / ``x-goog-metageneration`` headers next to its
  ``Content-Type`` (the stored ``contentType`` and ``cacheControl`` also come back in metadata);
- a download of ``?generation=N`` other than the live one is 404 (no object versioning here).

Requests are served one at a time (the package's store is not thread-safe) by a threading
server, so a slow client cannot block the listening socket.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import logging
import os
import signal
import sys
import threading
import time
from functools import partial, wraps
from http import HTTPStatus
from http.server import ThreadingHTTPServer

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage

_PRECONDITIONS = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
)

# The request being handled (the storage layer needs its preconditions).
_current_request: contextvars.ContextVar = contextvars.ContextVar("current_request", default=None)
# Preconditions of resumable sessions, checked again when the upload completes.
_session_preconditions: dict[str, dict[str, int]] = {}
# One request at a time: the package's storage is plain dicts without locking.
_lock = threading.Lock()


class PreconditionFailed(Exception):
    """A write or read precondition did not hold (HTTP 412)."""


class NotModified(Exception):
    """A read's ``...NotMatch`` precondition did not hold (HTTP 304)."""


def _preconditions(request) -> dict[str, int]:
    """The precondition query parameters of a request, as integers."""
    if request is None:
        return {}
    found = {}
    for name in _PRECONDITIONS:
        values = request.query.get(name)
        if values:
            found[name] = int(values[0])
    return found


def check_write_preconditions(current: dict | None, conditions: dict[str, int]) -> None:
    """GCS semantics for a write over ``current`` (None when the object does not exist)."""
    generation = int(current["generation"]) if current else 0
    metageneration = int(current["metageneration"]) if current else None
    if "ifGenerationMatch" in conditions and conditions["ifGenerationMatch"] != generation:
        raise PreconditionFailed("ifGenerationMatch")
    if "ifGenerationNotMatch" in conditions and conditions["ifGenerationNotMatch"] == generation:
        raise PreconditionFailed("ifGenerationNotMatch")
    if "ifMetagenerationMatch" in conditions and (
        metageneration is None or conditions["ifMetagenerationMatch"] != metageneration
    ):
        raise PreconditionFailed("ifMetagenerationMatch")
    if (
        "ifMetagenerationNotMatch" in conditions
        and metageneration is not None
        and conditions["ifMetagenerationNotMatch"] == metageneration
    ):
        raise PreconditionFailed("ifMetagenerationNotMatch")


def check_read_preconditions(current: dict, conditions: dict[str, int]) -> None:
    """GCS semantics for a read: a failed ``...Match`` is 412, a failed ``...NotMatch`` is 304."""
    generation = int(current["generation"])
    metageneration = int(current["metageneration"])
    if conditions.get("ifGenerationMatch", generation) != generation:
        raise PreconditionFailed("ifGenerationMatch")
    if conditions.get("ifMetagenerationMatch", metageneration) != metageneration:
        raise PreconditionFailed("ifMetagenerationMatch")
    if conditions.get("ifGenerationNotMatch") == generation:
        raise NotModified("ifGenerationNotMatch")
    if conditions.get("ifMetagenerationNotMatch") == metageneration:
        raise NotModified("ifMetagenerationNotMatch")


def _next_generation(current: dict | None) -> int:
    """GCS generations are microseconds since the epoch and grow with every overwrite."""
    now = time.time_ns() // 1000
    return max(now, int(current["generation"]) + 1) if current else now


# --- storage layer ------------------------------------------------------------------------

_original_create_file = Storage.create_file
_original_create_resumable_upload = Storage.create_resumable_upload


def _create_file(self, bucket_name, file_name, content, file_obj, file_id=None):
    """Every object write (upload, copy, rewrite, compose) passes here."""
    if file_id is not None:
        conditions = _session_preconditions.pop(file_id, {})
    else:
        conditions = _preconditions(_current_request.get())
    current = self.objects.get(bucket_name, {}).get(file_name)
    if bucket_name in self.buckets:
        check_write_preconditions(current, conditions)
    generation = str(_next_generation(current))
    old_generation = file_obj.get("generation")
    file_obj["generation"] = generation
    file_obj["metageneration"] = "1"
    file_obj["id"] = f"{bucket_name}/{file_name}/{generation}"
    if old_generation and file_obj.get("mediaLink"):
        file_obj["mediaLink"] = file_obj["mediaLink"].replace(
            f"generation={old_generation}", f"generation={generation}"
        )
    return _original_create_file(self, bucket_name, file_name, content, file_obj, file_id)


def _create_resumable_upload(self, bucket_name, file_name, file_obj):
    """GCS checks a resumable upload's preconditions when it starts and when it completes."""
    conditions = _preconditions(_current_request.get())
    if bucket_name in self.buckets:
        check_write_preconditions(self.objects.get(bucket_name, {}).get(file_name), conditions)
    upload_id = _original_create_resumable_upload(self, bucket_name, file_name, file_obj)
    _session_preconditions[upload_id] = conditions
    return upload_id


# --- request handlers ---------------------------------------------------------------------

_original_download = objects.download


def _download(request, response, storage, *args, **kwargs):
    """Downloads carry the object's metadata headers, as GCS serves them."""
    params = request.params
    wanted = request.query.get("generation")
    try:
        obj = storage.get_file_obj(params["bucket_name"], params["object_id"])
    except Exception:  # noqa: BLE001 - the package's NotFound: let the original answer 404
        obj = None
    if obj is not None and wanted and wanted[0] != str(obj["generation"]):
        response.status = HTTPStatus.NOT_FOUND
        return None
    result = _original_download(request, response, storage, *args, **kwargs)
    if obj is not None and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        headers = {
            "Cache-Control": obj.get("cacheControl"),
            "Content-Language": obj.get("contentLanguage"),
            "x-goog-generation": obj.get("generation"),
            "x-goog-metageneration": obj.get("metageneration"),
            "x-goog-stored-content-length": obj.get("size"),
            "ETag": obj.get("etag"),
        }
        if "response-content-disposition" not in request.query:
            headers["Content-Disposition"] = obj.get("contentDisposition")
        for name, value in headers.items():
            if value is not None:
                response[name] = str(value)
    return result


# Handlers that read or change an existing object named by the URL.
_READS = {objects.get, _original_download, _download}
_CHANGES = {objects.patch, objects.delete}


def _error(response, status: HTTPStatus, message: str, reason: str) -> None:
    response.status = status
    response.json(
        {
            "error": {
                "code": status.value,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        }
    )


def _with_preconditions(handler):
    """Runs a handler with the request in context and precondition failures as 412 / 304."""

    @wraps(handler)
    def wrapped(request, response, storage, *args, **kwargs):
        token = _current_request.set(request)
        try:
            with _lock:
                if handler in _READS or handler in _CHANGES:
                    params = request.params or {}
                    bucket_objects = storage.objects.get(params.get("bucket_name"), {})
                    current = bucket_objects.get(params.get("object_id"))
                    conditions = _preconditions(request)
                    if current is not None and conditions:
                        if handler in _READS:
                            check_read_preconditions(current, conditions)
                        else:
                            check_write_preconditions(current, conditions)
                return handler(request, response, storage, *args, **kwargs)
        except PreconditionFailed as err:
            _error(
                response,
                HTTPStatus.PRECONDITION_FAILED,
                f"At least one of the pre-conditions you specified did not hold ({err}).",
                "conditionNotMet",
            )
            return None
        except NotModified:
            response.status = HTTPStatus.NOT_MODIFIED
            return None
        finally:
            _current_request.reset(token)

    return wrapped


def install_patches() -> None:
    """Applies the fixes to the imported package (idempotent)."""
    if getattr(emulator_server, "_dashboard_patched", False):
        return
    Storage.create_file = _create_file
    Storage.create_resumable_upload = _create_resumable_upload
    objects.download = _download

    def patch_route(handler):
        return _with_preconditions(_download if handler is _original_download else handler)

    emulator_server.HANDLERS = tuple(
        (regex, {method: patch_route(handler) for method, handler in handlers.items()})
        for regex, handlers in emulator_server.HANDLERS
    )
    emulator_server._dashboard_patched = True


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """An in-memory, patched emulator bound to host:port (port 0: any free port)."""
    install_patches()
    storage = Storage(use_memory_fs=True)
    httpd = ThreadingHTTPServer((host, port), partial(emulator_server.RequestHandler, storage))
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9023)
    parser.add_argument(
        "--exit-on-stdin-close",
        action="store_true",
        help="exit when stdin reaches end of file (the parent process went away)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The package warns on every batch response ("Content handled as string").
    logging.getLogger("gcp_storage_emulator.server").setLevel(logging.ERROR)

    httpd = make_server(args.host, args.port)
    stopped = threading.Event()

    def stop(*_):
        if not stopped.is_set():
            stopped.set()
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_on_stdin_close:

        def watch_stdin():
            # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts the
            # interpreter at exit.
            with contextlib.suppress(OSError):
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            stop()

        threading.Thread(target=watch_stdin, daemon=True).start()

    host, port = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"READY {shown}:{port}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
