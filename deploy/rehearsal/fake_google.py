"""A recording, stateful FAKE of Google's server APIs, on 127.0.0.1, for the deploy rehearsal.

This is a fake only of Google's servers (Service Usage, Resource Manager, IAM, Firestore
admin, Cloud Storage JSON, Cloud Functions v2, Cloud Run IAM, Firebase Rules, Firebase
management, OAuth token, Cloud Scheduler in `fake_scheduler.py`): Google's APIs cannot run
here. The clients are real: gcloud and the firebase CLI send it what they would send Google
(`deploy/rehearsal/clients.py` points them here; `fake_http.py` is its HTTP side).

It keeps what they create (a second deploy sees the first's functions, bucket, accounts,
policies and rules releases), answers long-running operations as done, keeps every zip gcloud
PUTs to a `generateUploadUrl` URL, and records every request. It is also the clients' proxy
(`HTTPS_PROXY`/`HTTP_PROXY`): anything addressed to a host other than itself (a `CONNECT` or
an absolute URL elsewhere) is refused with 403 and listed in `refused`, which fails the
rehearsal, so nothing leaves the machine. What Google checks on its side (quotas, Eventarc
location rules, rules compilation, IAM propagation, builds) is not imitated: see
docs/deploy.md.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from deploy.rehearsal.fake_http import Recorded, error_body, get_path, make_handler, set_path
from deploy.rehearsal.fake_scheduler import scheduler_routes

OPERATION_TYPE = "type.googleapis.com/google.cloud.functions.v2.OperationMetadata"
FUNCTION_STATE_ACTIVE = "ACTIVE"


@dataclass
class State:
    """What the fake's clients created, by resource name."""

    resources: dict[str, dict] = field(default_factory=dict)
    policies: dict[str, dict] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)  # upload id -> zip
    enabled: set[tuple[str, str]] = field(default_factory=set)


class FakeGoogle:
    """The server: `start()`, then `url`, `requests`, `refused`, `state`; `stop()` at the end."""

    def __init__(self) -> None:
        self.state = State()
        self.requests: list[Recorded] = []
        self.refused: list[str] = []
        self.unknown: list[str] = []
        self.changes: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeGoogle:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def mark(self) -> int:
        """The number of requests so far: `since(mark)` returns those of one run."""
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[Recorded]:
        """The requests recorded after `mark`."""
        with self.lock:
            return list(self.requests[mark:])

    def is_own_host(self, host: str) -> bool:
        """Whether `host:port` is this server: 127.0.0.1 (a regional `<region>-` prefix
        included: gcloud derives Cloud Run's regional endpoint from its override), or a
        `*.googleapis.com` name with this server's port (the firebase CLI's overrides keep
        Google's host names, which it derives API names from, and reach them through the
        proxy: this server, which never connects anywhere)."""
        name, _, port = host.rpartition(":")
        return port == str(self.port) and (name == "127.0.0.1" or name.endswith("-127.0.0.1")
                                           or name.endswith(".googleapis.com"))

    # --- routing -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any]:
        """Answer one API request: (status, JSON body)."""
        for pattern, verb, action in self.routes():
            if verb != method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                return action(path=path, query=query, body=body, **match.groupdict())
        self.unknown.append(f"{method} {path}")
        return 404, error_body(404, f"the rehearsal's fake does not know {method} {path}")

    def routes(self) -> list[tuple[str, str, Any]]:
        """(path regex, method, action) in order; the first match answers."""
        project = r"/v1/projects/(?P<project>[^/:]+)"
        region = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
        return [
            (r"/oauth2/v\d/token|/token", "POST", self.token),
            # Service Usage
            (project + r"/services/(?P<service>[^/:]+):enable", "POST", self.enable),
            (project + r"/services:batchEnable", "POST", self.batch_enable),
            (project + r"/services/(?P<service>[^/:]+)", "GET", self.service),
            (r"/v1/operations/(?P<op>[^/]+)", "GET", self.operation),
            # Resource Manager
            (r"/v[13]/projects/(?P<project>[^/:]+)", "GET", self.project),
            (r"/v[13]/projects/(?P<project>[^/:]+):getIamPolicy", "POST", self.get_policy),
            (r"/v[13]/projects/(?P<project>[^/:]+):setIamPolicy", "POST", self.set_policy),
            (r"/v[13]/projects/(?P<project>[^/:]+):testIamPermissions", "POST",
             self.test_permissions),
            # Firestore admin (databases, indexes, fields) and its operations
            (project + r"/databases", "POST", self.create_database),
            (project + r"/databases/(?P<database>[^/]+)", "GET", self.get_resource),
            (project + r"/databases/(?P<database>[^/]+)/collectionGroups/-/indexes", "GET",
             self.list_indexes),
            (project + r"/databases/(?P<database>[^/]+)/collectionGroups/(?P<group>[^/]+)"
                       r"/indexes", "POST", self.create_index),
            (project + r"/databases/(?P<database>[^/]+)/collectionGroups/-/fields", "GET",
             self.list_fields),
            (project + r"/databases/(?P<database>[^/]+)/collectionGroups/[^/]+/fields/[^/]+",
             "PATCH", self.patch_field),
            (project + r"/databases/[^/]+/operations/[^/]+", "GET", self.operation),
            # IAM service accounts
            (r"/v1/projects/[^/]+/serviceAccounts/(?P<email>[^/:]+)", "GET", self.get_account),
            (project + r"/serviceAccounts", "POST", self.create_account),
            # Cloud Storage JSON API
            (r"/storage/v1/b/(?P<bucket>[^/]+)", "GET", self.get_bucket),
            (r"/storage/v1/b", "POST", self.create_bucket),
            (r"/storage/v1/b/(?P<bucket>[^/]+)", "PATCH", self.patch_bucket),
            (r"/storage/v1/b/(?P<bucket>[^/]+)/iam", "GET", self.get_bucket_policy),
            (r"/storage/v1/b/(?P<bucket>[^/]+)/iam", "PUT", self.set_bucket_policy),
            # Cloud Functions v2 (and the upload URL it hands out)
            (region + r"/runtimes", "GET", self.runtimes),
            (region + r"/functions:generateUploadUrl", "POST", self.upload_url),
            (r"/upload/(?P<upload>[^/]+)", "PUT", self.upload),
            (region + r"/functions", "POST", self.create_function),
            (region + r"/functions/(?P<function>[^/:]+)", "GET", self.get_resource),
            (region + r"/functions/(?P<function>[^/:]+)", "PATCH", self.patch_function),
            (region + r"/operations/[^/]+", "GET", self.operation),
            # IAM policies of functions / their Cloud Run services
            (r"/v\d/projects/[^/]+/locations/[^/]+/(?:functions|services)/[^/:]+:getIamPolicy",
             "POST", self.get_policy),
            (r"/v\d/projects/[^/]+/locations/[^/]+/(?:functions|services)/[^/:]+:getIamPolicy",
             "GET", self.get_policy),
            (r"/v\d/projects/[^/]+/locations/[^/]+/(?:functions|services)/[^/:]+:setIamPolicy",
             "POST", self.set_policy),
            # Firebase Rules
            (project + r":test", "POST", self.test_rules),
            (project + r"/rulesets", "POST", self.create_ruleset),
            (project + r"/rulesets/[^/]+", "GET", self.get_resource),
            (project + r"/releases", "GET", self.list_releases),
            (project + r"/releases", "POST", self.create_release),
            (project + r"/releases/(?P<release>.+)", "GET", self.get_resource),
            (project + r"/releases/(?P<release>.+)", "PATCH", self.update_release),
            # Firebase management
            (r"/v1beta1/projects/(?P<project>[^/]+)", "GET", self.firebase_project),
            # Cloud Scheduler (fake_scheduler.py)
            *scheduler_routes(self),
        ]

    # --- state helpers -------------------------------------------------------------------------

    def _put(self, name: str, resource: dict) -> dict:
        """Store a resource, recording a change when it is new or different."""
        before = self.state.resources.get(name)
        if _comparable(before) != _comparable(resource):
            self.changes.append(("create" if before is None else "update", name))
        self.state.resources[name] = resource
        return resource

    def _done(self, name: str, response: dict | None = None, *, functions: bool = False) -> dict:
        operation = {"name": name, "done": True, "response": response or {}}
        if functions:
            operation["metadata"] = {"@type": OPERATION_TYPE, "target": response.get("name"),
                                     "verb": "update"}
        self.state.resources[name] = operation
        return operation

    def get_resource(self, path: str = "", **_: Any) -> tuple[int, Any]:
        """A stored resource by its path (404 when absent)."""
        found = self.state.resources.get(path.split("/", 2)[2] if path.startswith("/v") else path)
        return (200, _clone(found)) if found else (404, error_body(404, f"{path} not found"))

    def operation(self, path: str = "", **_: Any) -> tuple[int, Any]:
        """Every operation is done at once."""
        return self.get_resource(path=path)

    # --- handlers ------------------------------------------------------------------------------

    def token(self, **_: Any) -> tuple[int, Any]:
        """The firebase CLI trades FIREBASE_TOKEN for an access token."""
        return 200, {"access_token": "rehearsal-access-token", "expires_in": 3600,
                     "token_type": "Bearer",
                     "scope": "https://www.googleapis.com/auth/cloud-platform"}

    def enable(self, project: str, service: str, **_: Any) -> tuple[int, Any]:
        """Enable one API."""
        return self.batch_enable(project, body={"serviceIds": [service]})

    def batch_enable(self, project: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Enable APIs (a change only for those not yet enabled)."""
        for service in body.get("serviceIds", []):
            if (project, service) not in self.state.enabled:
                self.state.enabled.add((project, service))
                self.changes.append(("enable", f"{project}/{service}"))
        return 200, self._done(f"operations/{_new_id()}", {})

    def service(self, project: str, service: str, **_: Any) -> tuple[int, Any]:
        """An API's state."""
        state = "ENABLED" if (project, service) in self.state.enabled else "DISABLED"
        return 200, {"name": f"projects/{project}/services/{service}", "state": state,
                     "config": {"name": service}}

    def project(self, project: str, **_: Any) -> tuple[int, Any]:
        """The project (it exists: the rehearsal does not create projects)."""
        return 200, {"projectId": project, "projectNumber": PROJECT_NUMBER, "name": project,
                     "lifecycleState": "ACTIVE", "state": "ACTIVE",
                     "parent": {"type": "organization", "id": "1"}}

    def test_permissions(self, body: Any = None, **_: Any) -> tuple[int, Any]:
        """The caller has every permission it asks about (IAM is not imitated)."""
        return 200, {"permissions": list(body.get("permissions", []))}

    def firebase_project(self, project: str, **_: Any) -> tuple[int, Any]:
        """The project as Firebase sees it."""
        return 200, {"projectId": project, "projectNumber": PROJECT_NUMBER,
                     "displayName": project, "name": f"projects/{project}", "state": "ACTIVE",
                     "resources": {"storageBucket": f"{project}.firebasestorage.app"}}

    def get_policy(self, path: str = "", **_: Any) -> tuple[int, Any]:
        """The IAM policy of a project, function or service (empty at first)."""
        name = _policy_name(path)
        return 200, _clone(self.state.policies.get(name, {"version": 1, "etag": "BwAAAA=="}))

    def set_policy(self, path: str = "", body: Any = None, **_: Any) -> tuple[int, Any]:
        """Replace an IAM policy (a change only when its bindings differ)."""
        name = _policy_name(path)
        policy = _clone(body.get("policy", {}))
        before = self.state.policies.get(name, {})
        if _bindings(before) != _bindings(policy):
            self.changes.append(("setIamPolicy", name))
        policy["etag"] = base64.b64encode(uuid.uuid4().bytes[:8]).decode()
        self.state.policies[name] = policy
        return 200, _clone(policy)

    def create_database(self, project: str, query: dict, body: Any = None,
                        **_: Any) -> tuple[int, Any]:
        """Create a Firestore database."""
        database = query.get("databaseId", ["(default)"])[0]
        name = f"projects/{project}/databases/{database}"
        if name in self.state.resources:
            return 409, error_body(409, f"{name} exists")
        resource = self._put(name, {**body, "name": name, "uid": _new_id()})
        return 200, self._done(f"{name}/operations/{_new_id()}", resource)

    def list_indexes(self, project: str, database: str, **_: Any) -> tuple[int, Any]:
        """The composite indexes created so far."""
        prefix = f"projects/{project}/databases/{database}/collectionGroups/"
        return 200, {"indexes": [_clone(r) for n, r in self.state.resources.items()
                                 if n.startswith(prefix) and "/indexes/" in n]}

    def create_index(self, project: str, database: str, group: str, body: Any = None,
                     **_: Any) -> tuple[int, Any]:
        """Create a composite index (READY at once)."""
        prefix = f"projects/{project}/databases/{database}/collectionGroups/{group}/indexes/"
        for name, index in self.state.resources.items():
            if name.startswith(prefix) and _index_key(index) == _index_key(body):
                return 409, error_body(409, "index already exists")
        name = prefix + _new_id()
        fields = list(body.get("fields", []))
        if fields and fields[-1].get("fieldPath") != "__name__":
            # Firestore stores an index with its implicit last field, as it lists it.
            fields.append({"fieldPath": "__name__", "order": fields[-1].get("order", "ASCENDING")})
        resource = self._put(name, {**body, "fields": fields, "name": name, "state": "READY"})
        return 200, self._done(f"projects/{project}/databases/{database}/operations/"
                               f"{_new_id()}", resource)

    def list_fields(self, project: str, database: str, **_: Any) -> tuple[int, Any]:
        """Field overrides set so far."""
        prefix = f"projects/{project}/databases/{database}/collectionGroups/"
        return 200, {"fields": [_clone(r) for n, r in self.state.resources.items()
                                if n.startswith(prefix) and "/fields/" in n]}

    def patch_field(self, path: str, project: str, database: str, body: Any = None,
                    **_: Any) -> tuple[int, Any]:
        """Set a field override."""
        name = path.split("/", 2)[2]
        resource = self._put(name, {**body, "name": name})
        return 200, self._done(f"projects/{project}/databases/{database}/operations/"
                               f"{_new_id()}", resource)

    def get_account(self, email: str, **_: Any) -> tuple[int, Any]:
        """A service account by e-mail."""
        found = self.state.resources.get(f"serviceAccounts/{email}")
        return (200, _clone(found)) if found else (404, error_body(404, f"{email} not found"))

    def create_account(self, project: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Create a service account."""
        email = f"{body['accountId']}@{project}.iam.gserviceaccount.com"
        if f"serviceAccounts/{email}" in self.state.resources:
            return 409, error_body(409, f"{email} exists")
        account = {**body.get("serviceAccount", {}), "email": email, "projectId": project,
                   "name": f"projects/{project}/serviceAccounts/{email}",
                   "uniqueId": str(uuid.uuid4().int)[:21]}
        return 200, _clone(self._put(f"serviceAccounts/{email}", account))

    def get_bucket(self, bucket: str, **_: Any) -> tuple[int, Any]:
        """A bucket's metadata."""
        found = self.state.resources.get(f"b/{bucket}")
        return (200, _clone(found)) if found else (404, error_body(404, f"{bucket} not found"))

    def create_bucket(self, query: dict, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Create a bucket."""
        name = body["name"]
        if f"b/{name}" in self.state.resources:
            return 409, error_body(409, f"{name} exists")
        bucket = {**body, "kind": "storage#bucket", "id": name,
                  "projectNumber": PROJECT_NUMBER, "location": body.get("location", "US").upper(),
                  "metageneration": "1", "etag": "CAE="}
        return 200, _clone(self._put(f"b/{name}", bucket))

    def patch_bucket(self, bucket: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Update a bucket's metadata (fields given replace the stored ones)."""
        found = self.state.resources.get(f"b/{bucket}")
        if found is None:
            return 404, error_body(404, f"{bucket} not found")
        return 200, _clone(self._put(f"b/{bucket}", _merge(found, body)))

    def get_bucket_policy(self, bucket: str, **_: Any) -> tuple[int, Any]:
        """A bucket's IAM policy."""
        return self.get_policy(path=f"/b/{bucket}")

    def set_bucket_policy(self, bucket: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Replace a bucket's IAM policy (the body is the policy)."""
        return self.set_policy(path=f"/b/{bucket}", body={"policy": body})

    def runtimes(self, **_: Any) -> tuple[int, Any]:
        """The runtimes gcloud may deploy."""
        return 200, {"runtimes": [{"name": f"python3{minor}", "displayName": f"Python 3.{minor}",
                                   "stage": "GA", "environment": "GEN_2"}
                                  for minor in (10, 11, 12, 13)]}

    def upload_url(self, project: str, region: str, **_: Any) -> tuple[int, Any]:
        """A signed URL for the source zip: this server, under /upload/<id>."""
        upload = _new_id()
        return 200, {"uploadUrl": f"{self.url}/upload/{upload}",
                     "storageSource": {"bucket": f"gcf-v2-uploads-{PROJECT_NUMBER}-{region}",
                                       "object": f"{upload}.zip"}}

    def upload(self, upload: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Keep the zip gcloud PUTs."""
        self.state.uploads[upload] = body if isinstance(body, bytes) else json.dumps(body).encode()
        return 200, None

    def create_function(self, project: str, region: str, query: dict, body: Any = None,
                        **_: Any) -> tuple[int, Any]:
        """Create a function (ACTIVE at once; its Cloud Run service named after it)."""
        function_id = query.get("functionId", [""])[0]
        name = f"projects/{project}/locations/{region}/functions/{function_id}"
        if name in self.state.resources:
            return 409, error_body(409, f"{name} exists")
        resource = self._put(name, _function(body, name, project, region))
        return 200, self._done(f"projects/{project}/locations/{region}/operations/{_new_id()}",
                               _clone(resource), functions=True)

    def patch_function(self, project: str, region: str, function: str, query: dict,
                       body: Any = None, **_: Any) -> tuple[int, Any]:
        """Update the fields named by `updateMask`."""
        name = f"projects/{project}/locations/{region}/functions/{function}"
        found = self.state.resources.get(name)
        if found is None:
            return 404, error_body(404, f"{name} not found")
        updated = _clone(found)
        mask = query.get("updateMask", [""])[0]
        for path in filter(None, mask.split(",")):
            path = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)  # JSON names
            set_path(updated, path, get_path(body, path))
        resource = self._put(name, _function(updated, name, project, region))
        return 200, self._done(f"projects/{project}/locations/{region}/operations/{_new_id()}",
                               _clone(resource), functions=True)

    def test_rules(self, **_: Any) -> tuple[int, Any]:
        """Rules compile (Google's compiler is not here: checked by the rules tests)."""
        return 200, {}

    def create_ruleset(self, project: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Store a ruleset (its files as sent)."""
        name = f"projects/{project}/rulesets/{_new_id()}"
        ruleset = {"name": name, "source": body.get("source", {}),
                   "createTime": _now()}
        return 200, _clone(self._put(name, ruleset))

    def list_releases(self, project: str, query: dict, **_: Any) -> tuple[int, Any]:
        """Releases, optionally filtered by `name=` (the firebase CLI's filter)."""
        prefix = f"projects/{project}/releases/"
        wanted = re.findall(r'name="?([^"\s]+)', query.get("filter", [""])[0])
        releases = [_clone(r) for n, r in self.state.resources.items() if n.startswith(prefix)
                    and (not wanted or n in wanted or n[len(prefix):] in wanted)]
        return 200, {"releases": releases}

    def create_release(self, project: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        """Point a release at a ruleset."""
        if body["name"] in self.state.resources:
            return 409, error_body(409, f"{body['name']} exists")
        return 200, _clone(self._put(body["name"], {**body, "createTime": _now(),
                                                     "updateTime": _now()}))

    def update_release(self, project: str, release: str, body: Any = None,
                       **_: Any) -> tuple[int, Any]:
        """Point an existing release at another ruleset."""
        release_body = body.get("release", body)
        name = release_body.get("name") or f"projects/{project}/releases/{release}"
        if name not in self.state.resources:
            return 404, error_body(404, f"{name} not found")
        stored = self.state.resources[name]
        return 200, _clone(self._put(name, {**stored, **release_body, "updateTime": _now()}))


PROJECT_NUMBER = "123456789012"
VOLATILE = ("etag", "updateTime", "createTime", "metageneration", "updateMask")


def _comparable(resource: dict | None) -> Any:
    if resource is None:
        return None
    return {k: v for k, v in resource.items() if k not in VOLATILE}


def _bindings(policy: dict) -> list:
    return sorted((b.get("role"), tuple(sorted(b.get("members", []))),
                   json.dumps(b.get("condition"), sort_keys=True))
                  for b in policy.get("bindings", []))


def _policy_name(path: str) -> str:
    return re.sub(r"^/(?:v\d\w*/)?|:(?:get|set)IamPolicy$|/iam$", "", path)


def _index_key(index: dict) -> str:
    return json.dumps({"queryScope": index.get("queryScope"), "fields": index.get("fields")},
                      sort_keys=True)


def _merge(base: dict, patch: dict) -> dict:
    merged = _clone(base)
    for key, value in (patch or {}).items():
        merged[key] = _clone(value)
    return merged


def _function(body: dict, name: str, project: str, region: str) -> dict:
    function_id = name.rsplit("/", 1)[1]
    resource = {**_clone(body), "name": name, "state": FUNCTION_STATE_ACTIVE,
                "environment": "GEN_2",
                "url": f"https://{region}-{project}.cloudfunctions.net/{function_id}"}
    service = resource.setdefault("serviceConfig", {})
    service["service"] = f"projects/{project}/locations/{region}/services/{function_id}"
    service["uri"] = f"https://{function_id}-rehearsal-{region}.a.run.app"
    return resource


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _clone(value: Any) -> Any:
    return copy.deepcopy(value)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
