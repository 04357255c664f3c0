"""Cloud Functions entry points. Each is a line into `functions/`; nothing runs at import.

The instance's state (settings, clients, caches, the publisher) is `INSTANCE`'s, built on the
first request (`functions.instance`).
"""

import functions_framework
from werkzeug.exceptions import HTTPException

from functions.collection_api.serve import serve_collection
from functions.instance import LazyInstance
from functions.migrate.routes import serve_migrate
from functions.publish.catchup_http import serve_catch_up
from functions.publish.serve import handle_event
from shared import http
from shared.logs import setup_logging

setup_logging()  # no I/O: installs the JSON log handler on Cloud Functions
functions_framework.errorhandler(HTTPException)(http.framework_error)  # JSON even from routing
INSTANCE = LazyInstance()


@functions_framework.http
def users(request):
    """Collection API of `users`."""
    return serve_collection(request, "users", INSTANCE.collection_api)


@functions_framework.http
def jobs(request):
    """Collection API of `jobs`."""
    return serve_collection(request, "jobs", INSTANCE.collection_api)


@functions_framework.http
def migrate(request):
    """Legacy JSON into Firestore (`POST`), its progress and report (`GET /<runId>[/report]`)."""
    return serve_migrate(request, INSTANCE.migrate)


@functions_framework.cloud_event
def publish_snapshot(cloud_event):
    """Firestore `document.v1.written` events of every configured collection -> snapshots."""
    handle_event(cloud_event, INSTANCE.publisher)


@functions_framework.http
def catch_up_snapshots(request):
    """Cloud Scheduler's periodic call: every snapshot brought to Firestore, damaged parts
    repaired (only the scheduler's service account may call it)."""
    return serve_catch_up(request, INSTANCE.catch_up)
