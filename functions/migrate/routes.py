"""The `migrate` function's HTTP routes: legacy JSON into Firestore, and the runs' views.

`POST` calls `functions.migrate.run.run_migration`, the code path `python -m ops migrate`
calls too; this module only reads the request and answers.

HTTP (every call but the CORS preflight needs a Firebase ID token with `admin: true`):

    POST /migrate?collection=users[&mode=upsert|create|replace][&dryRun=true]
                 [&deleteMissing=true][&runId=ID][&root=KEY][&force=true]
                 [&source=gs://bucket/path.json]
        The legacy JSON is the request body (at most MAX_BODY_BYTES, else 413), unless
        `source` names a Cloud Storage object. 200 `{"run", "report"}` once completed (the
        report inline for a body, else at `run.reportUri`, next to the source); 202 `{"run"}`
        when the time budget (MIGRATION_TIME_BUDGET_S) ran out first: POST the same again with
        `runId` to continue. Bad JSON is a 400 whose details give line, column and offset.
    GET /migrate/<runId>           the run document: state, counts, rate, ETA, first errors,
                                   a sample of converted documents
    GET /migrate/<runId>/report    the full report (every failed and skipped record)
    GET /migrate/runs[?limit=N]    the newest runs (functions/migrate/status.py)
    GET /migrate/status            the doctor's checks for the dashboard's status page

    The POST answers when the run ends (or pauses). To show progress meanwhile, a client picks
    the runId itself, POSTs, and polls `GET /migrate/<runId>` in parallel (404 until the
    source is scanned and the run document exists): the dashboard's migration panel does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request, Response

from shared import http
from shared.clients import Clients
from shared.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from shared.settings import Settings

METHODS = ("GET", "HEAD", "POST", "OPTIONS")
PARAMETERS = ("collection", "mode", "dryRun", "deleteMissing", "runId", "root", "force",
              "source")


@dataclass
class MigrateContext:
    """What the function needs: settings and client providers (tests pass emulator clients)."""

    settings: Settings
    db: Callable[[], Any]
    storage: Callable[[], Any]

    @classmethod
    def create(cls, settings: Settings, clients: Clients) -> MigrateContext:
        """The context of an instance, on its clients."""
        return cls(settings, clients.db, clients.storage)


def serve_migrate(request: Request, context: Callable[[], MigrateContext]) -> Response:
    """Entry point body of the `migrate` HTTP function (`context`: this instance's, built on
    first use)."""
    return http.handle_request(request, context, lambda ctx: _dispatch(request, ctx),
                               function="migrate", collection=request.args.get("collection"))


def handle(request: Request, context: MigrateContext) -> Response:
    """Answer one request with this context (tests call it directly)."""
    return serve_migrate(request, lambda: context)


def _dispatch(request: Request, context: MigrateContext) -> Response:
    from shared.auth import authenticate

    settings = context.settings
    if request.method == "OPTIONS":
        return http.preflight_response(request, settings, METHODS)
    if request.method not in METHODS:
        raise MethodNotAllowed(f"{request.method} is not allowed here", allowed=METHODS)
    parts = [part for part in request.path.strip("/").split("/") if part]  # already decoded
    principal = authenticate(request.headers, settings, require_admin=True)
    if request.method == "POST":
        if parts:
            raise NotFound("POST goes to /migrate itself")
        return _start(request, context, principal.uid)
    if not parts:
        raise MethodNotAllowed("GET needs a run id: /migrate/<runId>", allowed=("POST",))
    return _read(request, context, parts, principal)


def _read(request: Request, context: MigrateContext, parts: list[str],
          principal: Any) -> Response:
    from functions.migrate import status
    from functions.migrate.runs import load_run, stream_report

    if parts == ["status"]:
        return _json(200, status.status_view(context.settings, context.db, context.storage,
                                             principal))
    if parts == ["runs"]:
        return _json(200, status.runs_view(context.settings, context.db(), principal,
                                           request.args.get("limit")))
    timeout_s = context.settings.migration_timeout_s
    if len(parts) == 1:
        return _json(200, load_run(context.db(), parts[0], timeout_s=timeout_s))
    if len(parts) == 2 and parts[1] == "report":
        chunks = stream_report(context.db(), parts[0], timeout_s=timeout_s)
        response = Response(chunks, status=200, content_type=http.JSON_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response
    raise NotFound("no such path")


def _start(request: Request, context: MigrateContext, uid: str) -> Response:
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import ReportSink, check_run_id, default_report_name, new_run_id
    from functions.migrate.source import bytes_source, gcs_source, parse_gs_uri
    from shared.errors import RunAborted

    settings = context.settings
    args = request.args
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}", code="invalid_parameter")
    for name in args:
        if len(args.getlist(name)) > 1:
            raise BadRequest(f"parameter {name!r} is given twice", code="invalid_parameter")
    collection = args.get("collection")
    if not collection:
        raise BadRequest("collection is required", code="invalid_parameter")
    run_id = check_run_id(args["runId"]) if args.get("runId") else new_run_id()
    options = MigrationOptions(
        collection=collection, mode=args.get("mode", "upsert"),
        dry_run=_flag(args, "dryRun"), delete_missing=_flag(args, "deleteMissing"),
        run_id=run_id, root=args.get("root") or None, force=_flag(args, "force"),
        started_by=uid)
    uri = args.get("source")
    if uri:
        if request.content_length:
            raise BadRequest("send either a body or a source, not both", code="invalid_source")
        bucket, name = parse_gs_uri(uri)
        source = gcs_source(uri, context.storage(), timeout_s=settings.storage_timeout_s)
        report = ReportSink("gcs", (bucket, default_report_name(name, run_id)))
    else:
        source = bytes_source(_body(request, settings.max_body_bytes))
        report = ReportSink("response")
    try:
        outcome = run_migration(context.db(), context.storage, settings, options, source,
                                report=report, time_budget_s=settings.migration_time_budget_s)
    except RunAborted as exc:
        raise type(exc)(exc.code, f"{exc.message} (run {run_id}: POST again with runId={run_id} "
                                  "to resume)") from None
    status = 202 if outcome.state == "paused" else 200
    body: dict[str, Any] = {"run": outcome.run}
    if outcome.report is not None:
        body["report"] = outcome.report
    return _json(status, body)


def _flag(args: Mapping[str, str], name: str) -> bool:
    value = args.get(name)
    if value is None or value == "":
        return False
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false", code="invalid_parameter")


def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (without reading it all)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body has {length} bytes; the limit is {limit} "
                              "(put larger files in Cloud Storage and pass source=gs://...)")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    if not data:
        raise BadRequest("no records: send the legacy JSON as the body, or pass source",
                         code="invalid_source")
    return data


def _json(status: int, payload: Any) -> Response:
    response = Response(http.dumps(payload), status=status, content_type=http.JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
