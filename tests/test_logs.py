"""Structured logs (`shared.logs`): Cloud Logging's JSON line format, trace ids from both trace
headers, fields bound per request or event, the one line per request, and the setup that
switches JSON on where Cloud Functions runs, also through functions-framework itself."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared import logs

TRACE = "105445aa7843bc8bf206b12000100000"
W3C_TRACE = "0af7651916cd43dd8448eb211c80319c"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# The keys google-cloud-logging's StructuredLogHandler writes (GCP_FORMAT) that we match.
STRUCTURED_KEYS = {"message", "severity", "logging.googleapis.com/labels",
                   "logging.googleapis.com/trace", "logging.googleapis.com/spanId",
                   "logging.googleapis.com/trace_sampled", "logging.googleapis.com/sourceLocation"}


@pytest.fixture
def capture():
    """A logger whose records go through JsonFormatter into a buffer; returns (logger, lines)."""
    stream = io.StringIO()
    handler = logs.StdoutHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield logger, lines
    logger.removeHandler(handler)


def request(headers: dict[str, str], method: str = "GET", path: str = "/users?limit=2"):
    return SimpleNamespace(headers=headers, method=method, full_path=path)


def test_a_line_is_one_json_object_in_cloud_loggings_format(capture):
    logger, lines = capture
    logger.warning("firestore slow for %s", "users")
    (line,) = lines()
    assert line["message"] == "firestore slow for users"
    assert line["severity"] == "WARNING"
    assert RFC3339.match(line["time"])
    assert line["logging.googleapis.com/labels"] == {"python_logger": logger.name}
    assert line["logging.googleapis.com/sourceLocation"]["file"] == __file__
    assert line["logging.googleapis.com/sourceLocation"]["function"] == \
        "test_a_line_is_one_json_object_in_cloud_loggings_format"


def test_trace_from_x_cloud_trace_context_grouped_by_project(capture):
    logger, lines = capture
    headers = {"X-Cloud-Trace-Context": f"{TRACE}/1;o=1", "Function-Execution-Id": "exec-1"}
    with logs.request_context(request(headers), function="users", collection="users",
                              project="demo-logs"):
        logger.info("inside")
    logger.info("outside")
    inside, outside = lines()
    assert inside["logging.googleapis.com/trace"] == f"projects/demo-logs/traces/{TRACE}"
    assert inside["logging.googleapis.com/spanId"] == "0000000000000001"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert (inside["function"], inside["collection"], inside["requestId"]) == \
        ("users", "users", "exec-1")
    assert inside["httpRequest"] == {"requestMethod": "GET", "requestUrl": "/users?limit=2"}
    assert STRUCTURED_KEYS <= set(inside)
    for key in ("function", "requestId", "logging.googleapis.com/trace", "httpRequest"):
        assert key not in outside


def test_traceparent_wins_and_bad_headers_give_no_trace(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-env")
    both = {"traceparent": f"00-{W3C_TRACE}-b7ad6b7169203331-01",
            "X-Cloud-Trace-Context": f"{TRACE}/5"}
    assert logs.trace_fields(both) == {
        "logging.googleapis.com/trace": f"projects/demo-env/traces/{W3C_TRACE}",
        "logging.googleapis.com/spanId": "b7ad6b7169203331",
        "logging.googleapis.com/trace_sampled": True}
    assert logs.parse_trace({"X-Cloud-Trace-Context": TRACE}) == (TRACE, None, False)
    assert logs.parse_trace({"X-Cloud-Trace-Context": f"{TRACE}/12;o=0"}) == \
        (TRACE, "000000000000000c", False)
    for bad in ({}, {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
                {"traceparent": "garbage"}, {"X-Cloud-Trace-Context": "not/a;trace"}):
        assert logs.trace_fields(bad) == {}, bad


def test_request_id_falls_back_to_a_new_one(capture):
    logger, lines = capture
    with logs.request_context(request({}), function="jobs"):
        logger.info("a")
    with logs.request_context(request({"X-Request-Id": "from-proxy"}), function="jobs"):
        logger.info("b")
    first, second = lines()
    assert re.fullmatch(r"[0-9a-f]{12}", first["requestId"])
    assert second["requestId"] == "from-proxy"


def test_log_context_nests_and_stays_in_its_thread(capture):
    logger, lines = capture
    seen = []
    with logs.log_context(function="users", collection=None):
        with logs.log_context(collection="users", attempt=2):
            logger.info("nested")
            worker = threading.Thread(target=lambda: seen.append(dict(logs.current_context())))
            worker.start()
            worker.join()
        logger.info("outer")
    nested, outer = lines()
    assert (nested["function"], nested["collection"], nested["attempt"]) == ("users", "users", 2)
    assert outer["function"] == "users" and "collection" not in outer
    assert seen == [{}]
    assert logs.current_context() == {}


def test_bound_fields_cannot_replace_the_fixed_keys(capture):
    logger, lines = capture
    with logs.log_context(message="spoof", severity="DEBUG"):
        logger.error("real", extra={"json_fields": {"severity": "INFO", "extra": 1}})
    (line,) = lines()
    assert (line["message"], line["severity"], line["extra"]) == ("real", "ERROR", 1)


def test_event_context_binds_the_event_id_and_its_trace(capture):
    from cloudevents.http import CloudEvent

    logger, lines = capture
    event = CloudEvent({"id": "evt-42", "source": "//firestore.googleapis.com/projects/demo",
                        "type": "google.cloud.firestore.document.v1.written",
                        "subject": "documents/users/u_1",
                        "traceparent": f"00-{W3C_TRACE}-b7ad6b7169203331-00"}, None)
    with logs.event_context(event, function="publish_snapshot", collection="users",
                            project="demo-logs"):
        logger.info("publishing")
    (line,) = lines()
    assert (line["eventId"], line["collection"], line["subject"]) == \
        ("evt-42", "users", "documents/users/u_1")
    assert line["logging.googleapis.com/trace"] == f"projects/demo-logs/traces/{W3C_TRACE}"
    assert line["logging.googleapis.com/trace_sampled"] is False
    assert "requestId" not in line


def test_request_log_is_the_one_summary_line(capture):
    logger, lines = capture
    headers = {"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}
    with logs.request_context(request(headers), function="users", collection="users",
                              project="demo-logs"):
        logs.request_log(200, "snapshot", 12.345, 40, logger=logger)
        logs.request_log(503, None, 2001.0, None, logger=logger)
    ok, unavailable = lines()
    assert (ok["status"], ok["source"], ok["latencyMs"], ok["count"]) == (200, "snapshot",
                                                                          12.3, 40)
    assert ok["severity"] == "INFO"
    assert ok["message"] == "GET /users?limit=2 -> 200 from snapshot in 12.3 ms, 40 documents"
    assert ok["httpRequest"] == {"requestMethod": "GET", "requestUrl": "/users?limit=2",
                                 "status": 200, "latency": "0.012345s"}
    assert ok["logging.googleapis.com/trace"] == f"projects/demo-logs/traces/{TRACE}"
    # The caller's line, not request_log's, is the source location.
    assert ok["logging.googleapis.com/sourceLocation"]["file"] == __file__
    assert unavailable["severity"] == "ERROR"
    assert unavailable["count"] is None and unavailable["source"] is None


def test_exceptions_keep_their_traceback_in_the_message(capture):
    logger, lines = capture
    try:
        {}["missing"]
    except KeyError:
        logger.exception("both stores failed")
    (line,) = lines()
    assert line["severity"] == "ERROR"
    assert line["message"].startswith("both stores failed\nTraceback (most recent call last):")
    assert "KeyError: 'missing'" in line["message"]


@pytest.fixture
def clean_root():
    """Restore the logging setup after a test that changes it: the root logger's handlers and
    level, and the loggers `dictConfig` disables (functions-framework calls it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    enabled = [logger for logger in logging.Logger.manager.loggerDict.values()
               if isinstance(logger, logging.Logger) and not logger.disabled]
    for handler in list(root.handlers):
        if getattr(handler, "_dashboard_logs", False):
            root.removeHandler(handler)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger in enabled:
        logger.disabled = False


def test_json_on_cloud_functions_or_on_request_text_otherwise():
    assert logs.json_enabled({"K_SERVICE": "users"})
    assert logs.json_enabled({"LOG_FORMAT": "json"})
    assert not logs.json_enabled({})
    assert not logs.json_enabled({"K_SERVICE": "users", "LOG_FORMAT": "text"})


def test_setup_is_idempotent_and_replaces_plain_handlers(clean_root, monkeypatch):
    monkeypatch.setenv("K_SERVICE", "users")
    plain = logging.StreamHandler(io.StringIO())
    clean_root.addHandler(plain)
    stream = io.StringIO()
    handler = logs.setup_logging(stream=stream)
    assert logs.setup_logging() is handler
    assert plain not in clean_root.handlers
    assert sum(getattr(h, "_dashboard_logs", False) for h in clean_root.handlers) == 1
    logging.getLogger("dashboard.read").info("json please")
    # Every line is one JSON entry; a background thread of an earlier test may log here too.
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["message"] for entry in entries
            if entry[logs.LABELS_KEY]["python_logger"] == "dashboard.read"] == ["json please"]


def test_setup_writes_text_locally(clean_root, monkeypatch, caplog):
    monkeypatch.delenv("K_SERVICE", raising=False)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    stream = io.StringIO()
    logs.setup_logging(stream=stream)
    with logs.log_context(function="users", requestId="r1"):
        logging.getLogger("dashboard.read").warning("plain please")
    line = stream.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING dashboard.read: plain please "
                        r"\[function=users requestId=r1\]", line), line
    # pytest's own capture handler is not a plain stream handler: it stays.
    assert "plain please" in caplog.text


def test_through_functions_framework_with_execution_ids(tmp_path, monkeypatch, capsys,
                                                        clean_root):
    """Cloud Functions sets LOG_EXECUTION_ID: functions-framework then rewrites stdout lines;
    ours stay one JSON object each and gain the execution id."""
    from functions_framework import create_app

    source = tmp_path / "main.py"
    source.write_text(
        "import functions_framework\n"
        "from shared import logs\n\n\n"
        "@functions_framework.http\n"
        "def users(request):\n"
        "    logs.setup_logging()\n"
        "    with logs.request_context(request, function='users', collection='users',\n"
        "                              project='demo-logs'):\n"
        "        logs.request_log(200, 'firestore', 3.0, 2)\n"
        "    return 'ok'\n")
    monkeypatch.setenv("LOG_EXECUTION_ID", "true")
    monkeypatch.setenv("K_SERVICE", "users")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    client = create_app(target="users", source=str(source), signature_type="http").test_client()
    response = client.get("/?limit=2", headers={
        "X-Cloud-Trace-Context": f"{TRACE}/7;o=1", "Function-Execution-Id": "exec-77"})
    assert response.status_code == 200
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    (line,) = [entry for entry in out if entry.get("status") == 200]
    assert line["logging.googleapis.com/labels"]["execution_id"] == "exec-77"
    assert line["requestId"] == "exec-77"
    assert line["logging.googleapis.com/trace"] == f"projects/demo-logs/traces/{TRACE}"
    assert (line["source"], line["count"], line["severity"]) == ("firestore", 2, "INFO")
