"""Cloud Functions entry points. Each is a line into `functions/`; nothing runs at import."""

import functions_framework
from werkzeug.exceptions import HTTPException

from functions import migrate as migration
from functions import publish_snapshot as publisher
from functions import read_api
from shared import http
from shared.logs import setup_logging

setup_logging()  # no I/O: installs the JSON log handler on Cloud Functions
functions_framework.errorhandler(HTTPException)(http.framework_error)  # JSON even from routing


@functions_framework.http
def users(request):
    """Read API of the `users` collection."""
    return read_api.serve(request, "users")


@functions_framework.http
def jobs(request):
    """Read API of the `jobs` collection."""
    return read_api.serve(request, "jobs")


@functions_framework.http
def migrate(request):
    """Legacy JSON into Firestore (`POST`), its progress and report (`GET /<runId>[/report]`)."""
    return migration.serve(request)


@functions_framework.cloud_event
def publish_snapshot(cloud_event):
    """Firestore `document.v1.written` events of every configured collection -> snapshots."""
    publisher.handle_event(cloud_event)
