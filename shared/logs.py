"""Structured logs: one JSON object per line in Cloud Logging's format, plain text locally.

On Cloud Functions (`K_SERVICE` is set) or with `LOG_FORMAT=json`, every record becomes one
JSON line with the fields Google's `StructuredLogHandler` (google-cloud-logging) writes:
`message`, `severity`, `logging.googleapis.com/trace` (`projects/<project>/traces/<id>`),
`.../spanId`, `.../trace_sampled`, `.../labels`, `.../sourceLocation`, plus `time` and the
fields bound with `log_context` (`function`, `collection`, `requestId` or `eventId`, ...).
Cloud Logging turns those special keys into the entry's severity and trace, so the lines of
one request group under it in the Logs Explorer. `LOG_FORMAT=text` forces plain lines.

    with request_context(request, function="users", collection="users", project=project):
        ...
        request_log(200, "firestore", 12.5, 100)   # the one line per request

Extra JSON fields go through `extra={"json_fields": {...}}`, as with google-cloud-logging.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import types
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
LABELS_KEY = "logging.googleapis.com/labels"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
REQUEST_LOGGER = "dashboard.requests"

_SEVERITIES = {"DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
_TRACEPARENT = re.compile(
    r"^\s?(?!ff)[\da-f]{2}-((?![0]{32})[\da-f]{32})-((?![0]{16})[\da-f]{16})-([\da-f]{2})(-.*)?\s?$"
)
_XCLOUD = re.compile(r"^([0-9a-fA-F]{1,32})(?:/(\d+))?(?:;o=([01]))?")

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_context", default=_EMPTY)


# --- binding fields to the records of a request or an event ------------------------------------

@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Bind fields to every record logged in this block (this thread or task); None is dropped."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(types.MappingProxyType(merged))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, Any]:
    """The fields bound by the enclosing `log_context` blocks."""
    return _context.get()


def parse_trace(headers: Mapping[str, str]) -> tuple[str | None, str | None, bool]:
    """(trace id, span id, sampled) from `traceparent` (W3C) or else `X-Cloud-Trace-Context`.

    The same order and rules as google-cloud-logging: the legacy header's decimal span id is
    rewritten as 16 hex digits.
    """
    match = _TRACEPARENT.match(headers.get("traceparent") or "")
    if match:
        return match.group(1), match.group(2), bool(int(match.group(3), 16) & 1)
    match = _XCLOUD.match(headers.get("X-Cloud-Trace-Context") or "")
    if not match:
        return None, None, False
    span = int(match.group(2)) if match.group(2) else 0
    span_id = f"{span:016x}" if 0 < span < 2**64 else None
    return match.group(1), span_id, match.group(3) == "1"


def trace_fields(headers: Mapping[str, str], project: str | None = None) -> dict[str, Any]:
    """The Cloud Logging trace keys of a request, empty when it carries no trace header."""
    trace_id, span_id, sampled = parse_trace(headers)
    if trace_id is None:
        return {}
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    fields: dict[str, Any] = {
        TRACE_KEY: f"projects/{project}/traces/{trace_id}" if project else trace_id,
        SAMPLED_KEY: sampled,
    }
    if span_id:
        fields[SPAN_KEY] = span_id
    return fields


def request_context(request: Any, *, function: str, collection: str | None = None,
                    project: str | None = None) -> contextlib.AbstractContextManager:
    """Bind function, collection, request id, trace and the request line for one HTTP request.

    The request id is the `Function-Execution-Id` header that Cloud Functions (and
    functions-framework locally) sets, else `X-Request-Id`, else a new random id.
    """
    headers = request.headers
    request_id = (headers.get("Function-Execution-Id") or headers.get("X-Request-Id")
                  or uuid.uuid4().hex[:12])
    http_request = {"requestMethod": request.method,
                    "requestUrl": request.full_path.rstrip("?"),
                    "userAgent": headers.get("User-Agent")}
    return log_context(function=function, collection=collection, requestId=request_id,
                       httpRequest={k: v for k, v in http_request.items() if v},
                       **trace_fields(headers, project))


def event_context(event: Any, *, function: str, collection: str | None = None,
                  project: str | None = None) -> contextlib.AbstractContextManager:
    """Bind function, collection, event id and trace (its `traceparent`) for one CloudEvent."""
    attributes = event.get_attributes() if hasattr(event, "get_attributes") else event
    headers = {"traceparent": attributes.get("traceparent") or ""}
    return log_context(function=function, collection=collection, eventId=attributes.get("id"),
                       eventType=attributes.get("type"), subject=attributes.get("subject"),
                       **trace_fields(headers, project))


def request_log(status: int, source: str | None, latency_ms: float, count: int | None, *,
                logger: logging.Logger | None = None) -> None:
    """Emit the one summary line of a request: status, data source, latency, document count."""
    bound = current_context().get("httpRequest") or {}
    http_request = {**bound, "status": status, "latency": f"{latency_ms / 1000:.6f}s"}
    where = f"{bound.get('requestMethod', '')} {bound.get('requestUrl', '')}".strip()
    summary = f"{where + ' ' if where else ''}-> {status} from {source or '-'} in " \
              f"{latency_ms:.1f} ms" + (f", {count} documents" if count is not None else "")
    level = logging.ERROR if status >= 500 else logging.INFO
    (logger or logging.getLogger(REQUEST_LOGGER)).log(
        level, summary, extra={"json_fields": {
            "status": status, "source": source, "latencyMs": round(latency_ms, 1),
            "count": count, "httpRequest": http_request}}, stacklevel=2)


# --- formatting --------------------------------------------------------------------------------

def _timestamp(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, in the shape of google-cloud-logging's StructuredLogHandler."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of a record (bound context, then `json_fields`, then the fixed keys)."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        fixed = {
            "message": message,
            "severity": record.levelname if record.levelname in _SEVERITIES else "DEFAULT",
            "time": _timestamp(record.created),
        }
        json_fields = getattr(record, "json_fields", None)
        # The fixed keys go first for readability and last so nothing bound can replace them.
        entry: dict[str, Any] = {**fixed, **current_context(),
                                 **(json_fields if isinstance(json_fields, Mapping) else {}),
                                 **fixed}
        entry[LABELS_KEY] = {**entry.get(LABELS_KEY, {}), "python_logger": record.name}
        entry[SOURCE_KEY] = {"file": record.pathname, "line": record.lineno,
                             "function": record.funcName}
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A readable line for a terminal, with the bound ids at the end."""

    _SHOWN = ("function", "collection", "requestId", "eventId")

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The base line plus `[key=value ...]` of the bound fields."""
        line = super().format(record)
        bound = current_context()
        shown = " ".join(f"{key}={bound[key]}" for key in self._SHOWN if key in bound)
        return f"{line} [{shown}]" if shown else line


class StdoutHandler(logging.Handler):
    """Writes each record to `sys.stdout` as it is at emit time.

    functions-framework redirects stdout per request when `LOG_EXECUTION_ID` is on (it adds
    the execution id to JSON lines), so the stream must not be captured once at setup.
    """

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        """Format and write one line."""
        try:
            stream = self.stream or sys.stdout
            # Two writes: functions-framework's stdout wrapper parses each write as one line.
            stream.write(self.format(record))
            stream.write("\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the request
            self.handleError(record)


def json_enabled(env: Mapping[str, str] | None = None) -> bool:
    """JSON lines on Cloud Functions / Cloud Run or with `LOG_FORMAT=json`; `text` forces text."""
    env = os.environ if env is None else env
    choice = env.get("LOG_FORMAT", "").strip().lower()
    if choice in ("json", "text"):
        return choice == "json"
    return bool(env.get("K_SERVICE"))


def setup_logging(*, json_format: bool | None = None, level: int = logging.INFO,
                  stream: TextIO | None = None) -> logging.Handler:
    """Install the one handler of this process on the root logger (idempotent); returns it.

    The plain stream handlers others installed on the root logger (functions-framework's,
    `basicConfig`'s) are removed so no line is written twice; handlers of other types
    (pytest's capture, a file handler) stay.
    """
    root = logging.getLogger()
    # functions-framework's dictConfig (LOG_EXECUTION_ID) disables every logger that exists
    # when it runs; ours must keep logging whatever the import order was.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("dashboard") and isinstance(logger, logging.Logger):
            logger.disabled = False
    for handler in root.handlers:
        if getattr(handler, "_dashboard_logs", False):
            return handler
    use_json = json_enabled() if json_format is None else json_format
    handler = StdoutHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler._dashboard_logs = True  # type: ignore[attr-defined]
    for other in list(root.handlers):
        if type(other) is logging.StreamHandler:
            root.removeHandler(other)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
