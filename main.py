"""Cloud Functions entry points. Each is a line into `functions/`; nothing runs at import."""

import functions_framework

from functions import read_api


@functions_framework.http
def users(request):
    """Read API of the `users` collection."""
    return read_api.serve(request, "users")


@functions_framework.http
def jobs(request):
    """Read API of the `jobs` collection."""
    return read_api.serve(request, "jobs")
