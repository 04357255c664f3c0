"""The Cloud Scheduler API of the rehearsal's FAKE of Google (Google's cannot run here): jobs
created, read and patched as gcloud's `scheduler jobs create|describe|update http` send them,
kept in the fake's state so a second deploy sees the first's job. Nothing is ever scheduled
or called: the job's schedule, target and OIDC identity are what the rehearsal asserts."""

from __future__ import annotations

import copy
import re
from typing import Any

from deploy.rehearsal.fake_http import error_body, get_path, set_path

JOBS = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/jobs"


def scheduler_routes(fake: Any) -> list[tuple[str, str, Any]]:
    """(path regex, method, action) of the Cloud Scheduler API, for `FakeGoogle.routes`."""

    def name_of(project: str, location: str, job: str) -> str:
        return f"projects/{project}/locations/{location}/jobs/{job}"

    def get_job(project: str, location: str, job: str, **_: Any) -> tuple[int, Any]:
        found = fake.state.resources.get(name_of(project, location, job))
        return (200, copy.deepcopy(found)) if found else (404, error_body(404, "no such job"))

    def create_job(project: str, location: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        name = body.get("name") or ""
        if not re.fullmatch(name_of(project, location, r"[A-Za-z0-9_-]{1,500}"), name):
            return 400, error_body(400, f"bad job name {name!r}")
        if name in fake.state.resources:
            return 409, error_body(409, f"{name} exists")
        return 200, copy.deepcopy(fake._put(name, {**copy.deepcopy(body), "state": "ENABLED"}))

    def patch_job(project: str, location: str, job: str, query: dict, body: Any = None,
                  **_: Any) -> tuple[int, Any]:
        name = name_of(project, location, job)
        found = fake.state.resources.get(name)
        if found is None:
            return 404, error_body(404, f"{name} not found")
        updated = copy.deepcopy(found)
        for path in filter(None, query.get("updateMask", [""])[0].split(",")):
            path = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)  # JSON names
            set_path(updated, path, get_path(body, path))
        return 200, copy.deepcopy(fake._put(name, updated))

    return [
        (JOBS + r"/(?P<job>[^/:]+)", "GET", get_job),
        (JOBS, "POST", create_job),
        (JOBS + r"/(?P<job>[^/:]+)", "PATCH", patch_job),
    ]
