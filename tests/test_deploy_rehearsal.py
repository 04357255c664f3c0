"""Deploy rehearsal: the real `make deploy`, through the real gcloud and firebase CLIs, against a
recording fake of Google's APIs (deploy/rehearsal/fake_google.py), then the uploaded source run.

Three deploys against one fake: from zero; again, unchanged (nothing may be created or
changed); again with one function's setting changed (only that function may be patched).
What Google would hold afterwards is read from the fake's state and recorded requests:
functions, identities, invokers, the bucket, the rules and indexes released. Each zip gcloud
uploaded is installed as Cloud Build would (its requirements.txt alone, a fresh virtualenv)
and every deployed entry point is started from it with functions-framework on the emulators.
Nothing leaves the machine: the CLIs' proxy is the fake, which refuses any other host.
`make deploy-rehearsal` runs this module; docs/deploy.md says what it proves and what not.
gcloud's zip builder on a checkout full of decoys: tests/test_deploy_plan.py.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from deploy import application
from deploy.rehearsal import uploads
from deploy.rehearsal.clients import FIREBASE, GCLOUD, client_env, run_deploy
from deploy.rehearsal.fake_google import FakeGoogle, Recorded
from functions.publish.events import structured_to_binary

ROOT = Path(__file__).resolve().parent.parent
PROJECT, REGION, LOCATION = "demo-rehearsal", "europe-west1", "eur3"
BUCKET = f"{PROJECT}-snapshots"
SETTINGS = {"PROJECT": PROJECT, "REGION": REGION, "FIRESTORE_LOCATION": LOCATION}
# The operator's shell: two application settings, and what must never reach a function.
SHELL = {"ALLOWED_ORIGINS": "https://dash.example.org", "CACHE_TTL_S": "30",
         "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
         "DEPLOY_API_TOKEN": "abc123-do-not-leak"}
CHANGED = {"DEPLOY_MIGRATE_MAX_INSTANCES": "3"}
# The module's three deploys run in the first test's setup (about a minute; more when busy).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
FUNCTIONS = {"users", "jobs", "migrate", "publish-snapshot-users", "publish-snapshot-jobs",
             "catch-up-snapshots"}
SA = f"serviceAccount:dashboard-functions@{PROJECT}.iam.gserviceaccount.com"
EVENTS_SA = f"serviceAccount:dashboard-events@{PROJECT}.iam.gserviceaccount.com"
BUILD_SA = f"serviceAccount:dashboard-build@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"serviceAccount:dashboard-scheduler@{PROJECT}.iam.gserviceaccount.com"
CATCH_UP_URL = f"https://{REGION}-{PROJECT}.cloudfunctions.net/catch-up-snapshots"
# Never in an upload (the allow-list is application.UPLOADED; these are checked by name too).
NEVER_UPLOADED = ("tests/", "bench/", ".venv/", "node_modules/", "deploy/", "dev/", "docs/",
                  "emulators/", "ops/", "data/", "web/", ".deploy/", ".git/")

@dataclass
class Run:
    """One `make deploy`: its output, exit code, requests and the changes it made."""

    code: int
    output: str
    requests: list[Recorded]
    changes: list[tuple[str, str]]
    seconds: float

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]


@dataclass
class Rehearsal:
    fake: FakeGoogle
    runs: list[Run] = field(default_factory=list)
    installed: concurrent.futures.Future | None = None


def deploy_once(fake: FakeGoogle, env: dict[str, str], extra: dict[str, str]) -> Run:
    mark, changed, start = fake.mark(), len(fake.changes), time.monotonic()
    done = run_deploy(env, {**SETTINGS, **extra})
    return Run(done.returncode, done.stdout, fake.since(mark), list(fake.changes[changed:]),
               time.monotonic() - start)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Rehearsal:
    assert GCLOUD.exists(), f"{GCLOUD} is missing: the rehearsal needs Cloud SDK 528 there"
    assert FIREBASE.exists(), f"{FIREBASE} is missing: run `npm ci --ignore-scripts`"
    # `make deploy` depends on `make install`: bring it up to date first, outside the fake's
    # proxy (through it, pip and npm would be refused). A no-op after `make test`'s install.
    installed = subprocess.run(["make", "--no-print-directory", "install"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert installed.returncode == 0, installed.stdout[-3000:]
    fake = FakeGoogle().start()
    home = tmp_path_factory.mktemp("clients")
    env = {**client_env(fake, home), **SHELL}
    result = Rehearsal(fake)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            result.runs.append(deploy_once(fake, env, {}))
            assert result.runs[0].code == 0, result.runs[0].output[-6000:]
            # Cloud Build's part runs meanwhile: install the first upload.
            first = next(iter(fake.state.uploads.values()))
            result.installed = pool.submit(uploads.install, first,
                                           tmp_path_factory.mktemp("upload"))
            result.runs.append(deploy_once(fake, env, {}))
            result.runs.append(deploy_once(fake, env, CHANGED))
            concurrent.futures.wait([result.installed])  # its error: in the test using it
        finally:
            fake.stop()
    return result


def function_bodies(run: Run) -> dict[str, dict]:
    """The Function resources the run sent (create or patch), by function id."""
    sent = {}
    for request in run.calls("POST", r"/functions$"):
        sent[request.query["functionId"][0]] = request.body
    for request in run.calls("PATCH", r"/functions/[^/:]+$"):
        sent[request.path.rsplit("/", 1)[1]] = request.body
    return sent


def stored(rehearsal: Rehearsal, name: str) -> dict:
    return rehearsal.fake.state.resources[name]


def function(rehearsal: Rehearsal, name: str) -> dict:
    return stored(rehearsal, f"projects/{PROJECT}/locations/{REGION}/functions/{name}")


def bindings(policy: dict) -> dict[str, set[str]]:
    return {b["role"]: set(b["members"]) for b in policy.get("bindings", [])}


# --- the deploy, from zero, and nothing leaves the machine ---------------------------------------

def test_three_real_deploys_exit_zero_and_nothing_leaves_the_machine(rehearsal):
    assert [run.code for run in rehearsal.runs] == [0, 0, 0], rehearsal.runs[-1].output[-4000:]
    assert rehearsal.fake.refused == []
    assert rehearsal.fake.unknown == []
    first = rehearsal.runs[0]
    # Every gcloud and firebase command reached the fake (the CLIs' own parsers accepted them).
    assert len(first.calls("POST", r"/functions$")) == len(FUNCTIONS)
    assert first.calls("POST", r"/rulesets$") and first.calls("POST", r"/serviceAccounts$")
    print(f"deploy times: {', '.join(f'{run.seconds:.1f} s' for run in rehearsal.runs)}; "
          f"requests: {', '.join(str(len(run.requests)) for run in rehearsal.runs)}")


def test_every_function_as_deployed(rehearsal):
    sent = function_bodies(rehearsal.runs[0])
    assert set(sent) == FUNCTIONS
    limits = {"users": ("512Mi", 60, 80, 10), "jobs": ("512Mi", 60, 80, 10),
              "migrate": ("1Gi", 3600, 1, 2), "publish-snapshot-users": ("512Mi", 120, 80, 3),
              "publish-snapshot-jobs": ("512Mi", 120, 80, 3),
              "catch-up-snapshots": ("512Mi", 540, 1, 1)}
    for name, body in sent.items():
        build, service = body["buildConfig"], body["serviceConfig"]
        entry = {"users": "users", "jobs": "jobs", "migrate": "migrate",
                 "catch-up-snapshots": "catch_up_snapshots"}.get(name, "publish_snapshot")
        assert build["runtime"] == "python312" and build["entryPoint"] == entry, name
        assert build["serviceAccount"] == (f"projects/{PROJECT}/serviceAccounts/"
                                           f"{BUILD_SA.split(':', 1)[1]}")
        assert build["source"]["storageSource"]["object"].endswith(".zip")
        memory, timeout, concurrency, most = limits[name]
        assert service["availableMemory"] == memory, name
        assert float(service["availableCpu"]) == 1, name
        assert service["timeoutSeconds"] == timeout, name
        assert service["maxInstanceRequestConcurrency"] == concurrency, name
        assert service.get("minInstanceCount", 0) == 0 and service["maxInstanceCount"] == most
        assert service["serviceAccountEmail"] == SA.split(":", 1)[1], name
        assert service["environmentVariables"]["THREADS"] == str(concurrency), name
        trigger = body.get("eventTrigger")
        if name.startswith("publish-snapshot-"):
            collection = name.rsplit("-", 1)[1]
            assert service["ingressSettings"] == "ALLOW_INTERNAL_ONLY", name
            assert trigger["eventType"] == "google.cloud.firestore.document.v1.written"
            assert trigger["retryPolicy"] == "RETRY_POLICY_RETRY", name
            assert trigger["triggerRegion"] == LOCATION, name
            assert trigger["serviceAccountEmail"] == EVENTS_SA.split(":", 1)[1], name
            filters = {(f["attribute"], f["value"], f.get("operator", ""))
                       for f in trigger["eventFilters"]}
            assert filters == {("database", "(default)", ""),
                               ("document", f"{collection}/{{docId}}", "match-path-pattern")}
        else:
            assert service["ingressSettings"] == "ALLOW_ALL", name
            assert trigger is None, name


def test_functions_get_only_the_settings_they_read_never_emulator_hosts(rehearsal):
    readable = set(application.app_setting_names()) | {"THREADS"}
    for name, body in function_bodies(rehearsal.runs[0]).items():
        env = body["serviceConfig"]["environmentVariables"]
        assert set(env) <= readable, (name, set(env) - readable)
        assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT and env["SNAPSHOT_BUCKET"] == BUCKET
        assert env["ALLOWED_ORIGINS"] == SHELL["ALLOWED_ORIGINS"]
        assert env["CACHE_TTL_S"] == "30" and env["COLLECTIONS"] == "users,jobs"
        assert not [n for n in env if n.endswith("_EMULATOR_HOST")], name
    everything = json.dumps([r.body for r in rehearsal.runs[0].requests
                             if not isinstance(r.body, bytes)])
    assert SHELL["DEPLOY_API_TOKEN"] not in everything and "127.0.0.1:9" not in everything


def test_who_may_invoke_what(rehearsal):
    """The browser-facing functions are public (Cloud Run's IAM cannot check Firebase ID tokens:
    they check them themselves); a publisher only for the events' identity."""
    policies = rehearsal.fake.state.policies
    for name in ("users", "jobs", "migrate"):
        assert bindings(policies[f"projects/{PROJECT}/locations/{REGION}/services/{name}"]) == \
            {"roles/run.invoker": {"allUsers"}}, name
    for name in ("publish-snapshot-users", "publish-snapshot-jobs"):
        assert bindings(policies[f"projects/{PROJECT}/locations/{REGION}/services/{name}"]) == \
            {"roles/run.invoker": {EVENTS_SA}}, name
    # The catch-up: only Cloud Scheduler's identity (and the function checks its token too).
    assert bindings(policies[f"projects/{PROJECT}/locations/{REGION}/services/"
                             "catch-up-snapshots"]) == {"roles/run.invoker": {SCHEDULER_SA}}


def test_project_roles_are_exactly_those_the_docs_list(rehearsal):
    granted = bindings(rehearsal.fake.state.policies[f"projects/{PROJECT}"])
    assert granted == {"roles/datastore.user": {SA}, "roles/eventarc.eventReceiver": {EVENTS_SA},
                       "roles/cloudbuild.builds.builder": {BUILD_SA}}
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for role in granted:
        assert f"`{role}`" in docs, role
    accounts = {k for k in rehearsal.fake.state.resources if k.startswith("serviceAccounts/")}
    assert accounts == {f"serviceAccounts/{m.split(':', 1)[1]}"
                        for m in (SA, EVENTS_SA, BUILD_SA, SCHEDULER_SA)}


def test_the_catch_up_is_scheduled_with_the_schedulers_identity(rehearsal):
    job = stored(rehearsal, f"projects/{PROJECT}/locations/{REGION}/jobs/snapshot-catch-up")
    assert job["schedule"] == "*/5 * * * *" and job["state"] == "ENABLED"
    assert job["httpTarget"]["uri"] == CATCH_UP_URL
    assert job["httpTarget"]["httpMethod"] == "POST"
    assert job["httpTarget"]["oidcToken"] == {"serviceAccountEmail": SCHEDULER_SA.split(":")[1],
                                              "audience": CATCH_UP_URL}
    env = function(rehearsal, "catch-up-snapshots")["serviceConfig"]["environmentVariables"]
    assert env["CATCHUP_INVOKER"] == SCHEDULER_SA.split(":")[1]
    assert env["CATCHUP_AUDIENCE"] == CATCH_UP_URL
    assert rehearsal.runs[0].calls("POST", r"/jobs$") and not rehearsal.runs[1].calls(
        "POST", r"/jobs$"), "created once, then kept in line"


def test_the_bucket_is_private_uniform_with_a_lifecycle_for_reports(rehearsal):
    bucket = stored(rehearsal, f"b/{BUCKET}")
    assert bucket["location"] == REGION.upper()
    assert bucket["iamConfiguration"]["publicAccessPrevention"] == "enforced"
    assert bucket["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"] is True
    assert bucket["lifecycle"] == {"rule": [{"action": {"type": "Delete"},
                                             "condition": {"age": 30,
                                                           "matchesPrefix": ["reports/"]}}]}
    assert bindings(rehearsal.fake.state.policies[f"b/{BUCKET}"]) == {
        "roles/storage.objectUser": {SA}}


def test_the_released_rules_and_indexes_are_the_repository_files(rehearsal):
    releases = {"cloud.firestore": ROOT / "firestore.rules",
                f"firebase.storage/{BUCKET}": ROOT / "storage.rules"}
    for release, path in releases.items():
        ruleset = stored(rehearsal, stored(rehearsal, f"projects/{PROJECT}/releases/{release}")
                         ["rulesetName"])
        assert [(f["name"], f["content"]) for f in ruleset["source"]["files"]] == \
            [(path.name, path.read_text())], release
    wanted = json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
    prefix = f"projects/{PROJECT}/databases/(default)/collectionGroups/"
    made = [(name[len(prefix):].split("/")[0], index["queryScope"], index["fields"])
            for name, index in rehearsal.fake.state.resources.items()
            if name.startswith(prefix) and "/indexes/" in name]
    expected = []
    for index in wanted:
        fields = list(index["fields"])
        if fields[-1]["fieldPath"] != "__name__":  # Firestore adds it; the fake does the same
            fields.append({"fieldPath": "__name__", "order": fields[-1]["order"]})
        expected.append((index["collectionGroup"], index["queryScope"], fields))
    assert sorted(map(json.dumps, made)) == sorted(map(json.dumps, expected))
    database = stored(rehearsal, f"projects/{PROJECT}/databases/(default)")
    assert database["locationId"] == LOCATION and database["type"] == "FIRESTORE_NATIVE"


def test_a_second_deploy_creates_nothing_and_changes_nothing(rehearsal):
    again = rehearsal.runs[1]
    assert again.changes == []
    assert again.calls("POST", r"/functions$") == []
    assert again.calls("PATCH", r"/functions/") == []
    assert again.calls("PUT", r"^/upload/") == []
    assert again.calls("POST", r"/rulesets$") == []
    assert again.output.count("= up to date, skipped: gcloud functions deploy") == len(FUNCTIONS)


def test_a_changed_setting_patches_only_that_function(rehearsal):
    changed = rehearsal.runs[2]
    assert changed.changes == [("update", f"projects/{PROJECT}/locations/{REGION}/functions/"
                                          "migrate")]
    patched = changed.calls("PATCH", r"/functions/")
    assert [r.path.rsplit("/", 1)[1] for r in patched] == ["migrate"]
    assert function(rehearsal, "migrate")["serviceConfig"]["maxInstanceCount"] == 3


def test_the_fake_refuses_every_other_host_through_its_proxy():
    """The guard itself: what the CLIs would send elsewhere is refused and listed."""
    fake = FakeGoogle().start()
    try:
        proxies = {"http": fake.url, "https": fake.url}
        with pytest.raises(requests.exceptions.ProxyError):
            requests.get("https://oauth2.googleapis.com/token", proxies=proxies, timeout=10)
        plain = requests.get("http://metadata.google.internal/computeMetadata/v1/",
                             proxies=proxies, timeout=10)
        assert plain.status_code == 403
        assert fake.refused == ["CONNECT oauth2.googleapis.com:443",
                                "GET metadata.google.internal/computeMetadata/v1/"]
        assert fake.requests == []
    finally:
        fake.stop()


# --- the upload --------------------------------------------------------------------------------

def test_every_upload_holds_the_runtime_code_and_nothing_else(rehearsal):
    zips = rehearsal.fake.state.uploads
    assert len(zips) == len(FUNCTIONS) + 1  # five from zero, migrate again
    repo_code = {p.relative_to(ROOT).as_posix() for top in ("functions", "shared")
                 for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    allowed = {p.relative_to(ROOT).as_posix() for p in application.uploaded_files()}
    for upload in zips.values():
        names = set(uploads.file_names(upload))
        assert repo_code <= names, sorted(repo_code - names)
        assert {"main.py", "requirements.txt"} <= names
        assert names == allowed, (sorted(names - allowed), sorted(allowed - names))
        for name in names:
            assert name.split("/")[0] in application.UPLOADED, name
            assert not name.startswith(NEVER_UPLOADED) and not name.endswith(".pyc"), name
            assert not re.search(r"(^|/)\.env|credential|service-account|\.pem$", name), name


def post_event(url: str) -> requests.Response:
    sample = json.loads((ROOT / "tests" / "events" / "firestore-created.json").read_text())
    sample["time"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    headers, data = structured_to_binary(sample)
    return requests.post(url, headers=headers, data=data, timeout=30)


def admin_token(project: str) -> str:
    """An unsigned ID token with the admin claim, as the Auth emulator issues them."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project}", "aud": project,
              "sub": "rehearsal-admin", "user_id": "rehearsal-admin", "iat": now,
              "exp": now + 3600, "auth_time": now, "admin": True,
              "firebase": {"sign_in_provider": "password"}}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_the_uploaded_source_runs_every_deployed_entry_point(rehearsal, emulators, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    source = rehearsal.installed.result()
    project = f"demo-rehearsal-{uuid.uuid4().hex[:8]}"  # a fresh emulator project
    bucket = f"rehearsal-{uuid.uuid4().hex[:12]}"
    with contextlib.closing(storage.Client(project=project, credentials=AnonymousCredentials(),
                                           client_options={"api_endpoint":
                                                           emulators.storage.host})) as client:
        client.create_bucket(bucket)
        deployed = function_bodies(rehearsal.runs[0])
        emulated = {"FIRESTORE_EMULATOR_HOST": emulators.firestore_host,
                    "STORAGE_EMULATOR_HOST": emulators.storage.host,
                    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9",
                    "GOOGLE_CLOUD_PROJECT": project, "SNAPSHOT_BUCKET": bucket}
        servers = {}
        try:
            for name in ("users", "jobs", "migrate", "publish-snapshot-users",
                         "catch-up-snapshots"):
                body = deployed[name]
                kind = "cloudevent" if body.get("eventTrigger") else "http"
                env = {**body["serviceConfig"]["environmentVariables"], **emulated}
                servers[name] = uploads.FunctionServer(
                    source, body["buildConfig"]["entryPoint"], kind, env,
                    tmp_path / f"{name}.log")
            for server in servers.values():
                server.wait_ready()
            admin = {"Authorization": f"Bearer {admin_token(project)}"}
            for name in ("users", "jobs"):
                answer = requests.get(f"{servers[name].url}/?limit=5", headers=admin,
                                      timeout=30)
                assert answer.status_code == 200, (name, answer.text)
                assert answer.json()["items"] == [], name
            dry = requests.post(f"{servers['migrate'].url}/?collection=users&dryRun=true",
                                headers=admin, data=json.dumps([{"id": "u_1", "name": "Ada",
                                                                 "email": "ada@example.org",
                                                                 "role": "creator",
                                                                 "status": "active"}]),
                                timeout=60)
            assert dry.status_code == 200, dry.text
            assert dry.json()["run"]["dryRun"] is True
            event = post_event(servers["publish-snapshot-users"].url)
            assert event.status_code == 200, event.text
            assert client.bucket(bucket).get_blob("snapshots/users/index.json") is not None
            # Without Cloud Scheduler's OIDC token, the catch-up refuses the call itself.
            refused = requests.post(servers["catch-up-snapshots"].url, timeout=30)
            assert refused.status_code == 401, refused.text
        finally:
            for server in servers.values():
                server.stop()
