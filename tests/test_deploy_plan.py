"""The deploy plan (`DRY_RUN=1 deploy/deploy.py`), parsed and checked as an operator would run it.

A main.py fixture with all four entry points and two collections, then the real main.py: every
function deployed has its entry point with the right decorator, one Firestore trigger per
collection with the right path pattern, no secret anywhere, gen2-valid flags and resources,
least-privilege service accounts, a private bucket with its lifecycle rule, and an upload
that leaves everything but the runtime code behind (gcloud's own zip builder). Renames and
missing entry points fail. The real deploy, run: tests/test_deploy_rehearsal.py.
"""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy import application, deploy
from deploy.rehearsal import uploads

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "deploy.py"
PROJECT, REGION, LOCATION = "demo-deploy", "europe-west1", "eur3"

FOUR_ENTRY_POINTS = '''
"""Entry points (test fixture): the two reads, the migration and the snapshot publisher."""

import functions_framework

from functions.collection_api.serve import serve_collection
from functions.instance import LazyInstance
from functions.migrate.routes import serve_migrate
from functions.publish.serve import handle_event

INSTANCE = LazyInstance()


@functions_framework.http
def users(request):
    return serve_collection(request, "users", INSTANCE.collection_api)


@functions_framework.http
def jobs(request):
    return serve_collection(request, "jobs", INSTANCE.collection_api)


@functions_framework.http
def migrate(request):
    return serve_migrate(request, INSTANCE.migrate)


@functions_framework.cloud_event
def publish_snapshot(cloud_event):
    handle_event(cloud_event, INSTANCE.publisher)
'''

# Every flag of `gcloud functions deploy` the plan may use: a typo or a gen1-only flag
# (--trigger-resource, --trigger-event, --trigger-topic) fails the test.
GEN2_DEPLOY_FLAGS = {
    "--gen2", "--project", "--region", "--runtime", "--source", "--entry-point",
    "--trigger-http", "--allow-unauthenticated", "--no-allow-unauthenticated",
    "--ingress-settings", "--service-account", "--build-service-account", "--env-vars-file",
    "--memory", "--cpu", "--timeout", "--concurrency", "--min-instances", "--max-instances",
    "--trigger-event-filters", "--trigger-event-filters-path-pattern", "--trigger-location",
    "--trigger-service-account", "--retry", "--quiet", "--update-labels",
}
SECRET_PATTERNS = re.compile(
    r"-----BEGIN|AIza[0-9A-Za-z_-]{20,}|ya29\.|\"private_key\"|password|secret|token=", re.I)


@dataclass
class Script:
    """The dry-run output as data: commands, their existence checks, files, expectations."""

    commands: list[list[str]] = field(default_factory=list)
    unless: dict[int, list[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    expectations: list[tuple[list[str], str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def find(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.commands if c[:len(prefix)] == list(prefix)]

    def deploys(self) -> dict[str, list[str]]:
        return {c[3]: c for c in self.find("gcloud", "functions", "deploy")}


def parse(output: str) -> Script:
    script = Script()
    lines = iter(output.splitlines())
    for line in lines:
        if line.startswith("# note: "):
            script.notes.append(line[len("# note: "):])
        if not line.strip() or line.startswith("#") or line.startswith("set -"):
            continue
        heredoc = re.match(r"^mkdir -p \S+ && cat > (\S+) <<'EOF'$", line)
        if heredoc:
            body = []
            for inner in lines:
                if inner == "EOF":
                    break
                body.append(inner)
            script.files[heredoc.group(1)] = "\n".join(body) + "\n"
            continue
        expect = re.match(r'^test "\$\((.+)\)" = (\S+)$', line)
        if expect:
            script.expectations.append((shlex.split(expect.group(1)),
                                        shlex.split(expect.group(2))[0]))
            continue
        tokens = shlex.split(line)
        if "||" in tokens:
            cut = tokens.index("||")
            check = [t for t in tokens[:cut] if t not in (">/dev/null", "2>&1")]
            if check[:1] == ["test"] and check[1].startswith("$("):  # test "$(check)" = out
                check = [t for t in shlex.split(check[1][2:-1]) if t != "2>/dev/null"]
            script.unless[len(script.commands)] = check
            tokens = tokens[cut + 1:]
        script.commands.append(tokens)
    return script


def flags(command: list[str]) -> dict[str, list[str]]:
    """`--name=value` and bare `--name` flags of a command (repeatable ones keep every value)."""
    found: dict[str, list[str]] = {}
    for token in command:
        if token.startswith("--"):
            name, _, value = token.partition("=")
            found.setdefault(name, []).append(value)
    return found


def one(command: list[str], name: str) -> str:
    values = flags(command)[name]
    assert len(values) == 1, (name, values)
    return values[0]


def dry_run(main_py: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", ""), "DRY_RUN": "1", "PROJECT": PROJECT,
            "REGION": REGION, "FIRESTORE_LOCATION": LOCATION, "COLLECTIONS": "users,jobs",
            "ALLOWED_ORIGINS": "https://dash.example.org"}
    base.update(env)
    argv = [sys.executable, str(SCRIPT)] + (["--main", str(main_py)] if main_py else [])
    return subprocess.run(argv, cwd=ROOT, env={k: v for k, v in base.items() if v is not None},
                          capture_output=True, text=True, timeout=60)


def declared(main_py: Path) -> dict[str, str]:
    """{entry point: "http" | "cloud_event"} read from main.py independently of the deploy."""
    kinds = {}
    for node in ast.parse(main_py.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Attribute) and isinstance(decorator.value, ast.Name) \
                        and decorator.value.id == "functions_framework":
                    kinds[node.name] = decorator.attr
    return kinds


@pytest.fixture
def main_py(tmp_path) -> Path:
    path = tmp_path / "main.py"
    path.write_text(FOUR_ENTRY_POINTS)
    return path


@pytest.fixture
def script(main_py) -> Script:
    done = dry_run(main_py)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return parse(done.stdout)


# --- functions and entry points ----------------------------------------------------------------

def test_every_function_names_an_entry_point_of_main_py_with_its_kind(script, main_py):
    kinds = declared(main_py)
    deploys = script.deploys()
    assert set(deploys) == {"users", "jobs", "migrate", "publish-snapshot-users",
                            "publish-snapshot-jobs"}
    for name, command in deploys.items():
        entry = one(command, "--entry-point")
        assert entry in kinds, f"{name} deploys entry point {entry}, absent from main.py"
        if kinds[entry] == "http":
            assert "--trigger-http" in flags(command), name
            assert "--trigger-event-filters" not in flags(command), name
        else:
            assert kinds[entry] == "cloud_event"
            assert "--trigger-http" not in flags(command), name
            assert "--trigger-event-filters" in flags(command), name
    # Every entry point of main.py is deployed at least once.
    assert {one(c, "--entry-point") for c in deploys.values()} == set(kinds)


def test_one_firestore_trigger_per_collection_with_its_path_pattern(script):
    triggers = {name: c for name, c in script.deploys().items() if "--trigger-event-filters"
                in flags(c)}
    assert set(triggers) == {"publish-snapshot-users", "publish-snapshot-jobs"}
    for collection in ("users", "jobs"):
        command = triggers[f"publish-snapshot-{collection}"]
        assert one(command, "--entry-point") == "publish_snapshot"
        assert sorted(flags(command)["--trigger-event-filters"]) == [
            "database=(default)", "type=google.cloud.firestore.document.v1.written"]
        assert one(command, "--trigger-event-filters-path-pattern") == \
            f"document={collection}/{{docId}}"
        assert one(command, "--trigger-location") == LOCATION
        assert "--retry" in flags(command)
        assert one(command, "--trigger-service-account") == \
            f"dashboard-events@{PROJECT}.iam.gserviceaccount.com"


def test_printed_trigger_flags_read_like_the_gcloud_docs():
    config = deploy.Config.from_env({"PROJECT": PROJECT, "REGION": REGION})
    plan = deploy.build_plan(config, ROOT / "main.py")
    assert plan.steps
    assert deploy.quote("--trigger-event-filters=database=(default)") == \
        "--trigger-event-filters=database='(default)'"
    assert deploy.quote("--trigger-event-filters-path-pattern=document=users/{docId}") == \
        "--trigger-event-filters-path-pattern=document='users/{docId}'"
    for tricky in ("--format=value(locationId)", "it's", "a b", "--x=y=$(z)", "{docId}"):
        assert shlex.split(deploy.quote(tricky)) == [tricky]


def test_only_browser_facing_http_functions_are_public(script):
    deploys = script.deploys()
    for name in ("users", "jobs", "migrate"):
        assert "--allow-unauthenticated" in flags(deploys[name]), name
        assert one(deploys[name], "--ingress-settings") == "all"
    for name in ("publish-snapshot-users", "publish-snapshot-jobs"):
        command = deploys[name]
        assert "--allow-unauthenticated" not in flags(command)
        assert one(command, "--ingress-settings") == "internal-only"
    # Only the trigger identity may invoke the publishers.
    bindings = script.find("gcloud", "functions", "add-invoker-policy-binding")
    assert sorted(b[3] for b in bindings) == ["publish-snapshot-jobs", "publish-snapshot-users"]
    for binding in bindings:
        assert one(binding, "--member") == \
            f"serviceAccount:dashboard-events@{PROJECT}.iam.gserviceaccount.com"


def test_runtime_flags_and_resources_are_valid_for_gen2(script):
    for name, command in script.deploys().items():
        given = flags(command)
        assert set(given) <= GEN2_DEPLOY_FLAGS, f"{name}: unknown {set(given) - GEN2_DEPLOY_FLAGS}"
        assert "--gen2" in given
        assert re.fullmatch(r"python3(1[0-3])", one(command, "--runtime")), name
        assert one(command, "--runtime") == "python312"
        assert one(command, "--region") == REGION
        assert one(command, "--project") == PROJECT
        assert one(command, "--source") == "."
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name), name
        memory = re.fullmatch(r"(\d+)(Mi|Gi)", one(command, "--memory"))
        assert memory, name
        mib = int(memory.group(1)) * (1024 if memory.group(2) == "Gi" else 1)
        cpu = float(one(command, "--cpu"))
        concurrency = int(one(command, "--concurrency"))
        timeout = re.fullmatch(r"(\d+)s", one(command, "--timeout"))
        assert timeout, name
        low, high = int(one(command, "--min-instances")), int(one(command, "--max-instances"))
        assert 128 <= mib <= 4096 * max(1, cpu), name
        assert concurrency == 1 or cpu >= 1, f"{name}: concurrency > 1 needs a whole CPU"
        event = "--trigger-event-filters" in given
        assert 1 <= int(timeout.group(1)) <= (540 if event else 3600), name
        assert 0 <= low <= high, name


def test_resources_come_from_settings_and_invalid_ones_stop_the_deploy(main_py):
    done = dry_run(main_py, DEPLOY_READ_MEMORY="1Gi", DEPLOY_READ_MAX_INSTANCES="3",
                   DEPLOY_MIGRATE_TIMEOUT_S="1800")
    assert done.returncode == 0, done.stderr
    deploys = parse(done.stdout).deploys()
    assert one(deploys["users"], "--memory") == "1Gi"
    assert one(deploys["users"], "--max-instances") == "3"
    assert one(deploys["migrate"], "--timeout") == "1800s"
    for env, words in (({"DEPLOY_READ_CPU": "0.5"}, "needs at least 1 CPU"),
                       ({"DEPLOY_PUBLISH_TIMEOUT_S": "900"}, "gen2 limit of 540s"),
                       ({"DEPLOY_READ_MEMORY": "lots"}, "memory"),
                       ({"DEPLOY_READ_MIN_INSTANCES": "5", "DEPLOY_READ_MAX_INSTANCES": "2"},
                        "exceed max"),
                       ({"RUNTIME": "python27"}, "RUNTIME")):
        done = dry_run(main_py, **env)
        assert done.returncode == 2, env
        assert words in done.stderr, (env, done.stderr)
        assert done.stdout == ""


# --- settings, secrets, identities, bucket -----------------------------------------------------

def app_setting_names() -> set[str]:
    source = (ROOT / "shared" / "settings.py").read_text()
    return set(re.findall(r'reader\.\w+\(\s*"([A-Z0-9_]+)"', source))


def test_env_file_carries_the_settings_and_nothing_else(main_py):
    done = dry_run(main_py, FIRESTORE_EMULATOR_HOST="127.0.0.1:8085",
                   DEPLOY_API_TOKEN="abc123-do-not-leak", CACHE_TTL_S="30")
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    env_file = script.files[".deploy/env-read.yaml"]
    values = dict(line.split(": ", 1) for line in env_file.splitlines()
                  if line and not line.startswith("#"))
    values = {name: json.loads(value) for name, value in values.items()}
    # functions-framework serves THREADS requests at once: it must match --concurrency.
    assert values.pop("THREADS") == "80"
    assert values["GOOGLE_CLOUD_PROJECT"] == PROJECT
    assert values["SNAPSHOT_BUCKET"] == f"{PROJECT}-snapshots"
    assert values["COLLECTIONS"] == "users,jobs"
    assert values["ALLOWED_ORIGINS"] == "https://dash.example.org"
    assert values["CACHE_TTL_S"] == "30"
    assert set(values) <= app_setting_names()
    assert "abc123-do-not-leak" not in done.stdout
    assert "FIRESTORE_EMULATOR_HOST" not in done.stdout
    for command in script.deploys().values():
        env_path = one(command, "--env-vars-file")
        assert env_path.startswith(".deploy/env-") and env_path in script.files
        threads = json.loads(script.files[env_path].split("THREADS: ", 1)[1].splitlines()[0])
        assert threads == one(command, "--concurrency")


def test_every_application_setting_can_reach_the_env_file_but_emulator_hosts():
    names = app_setting_names()
    assert "FIREBASE_AUTH_EMULATOR_HOST" in names
    assert set(deploy.app_setting_names()) == {n for n in names
                                              if not n.endswith("_EMULATOR_HOST")}


def test_no_secret_on_any_command_line(script):
    for command in script.commands:
        given = flags(command)
        for forbidden in ("--set-env-vars", "--update-env-vars", "--set-secrets",
                          "--update-secrets", "--set-build-env-vars"):
            assert forbidden not in given, command
        for token in command:
            assert not SECRET_PATTERNS.search(token), token
    for content in script.files.values():
        for line in content.splitlines():
            assert line.startswith("#") or not SECRET_PATTERNS.search(line), line


def test_invalid_application_settings_stop_the_deploy(main_py):
    done = dry_run(main_py, READ_ACCESS="everyone")
    assert done.returncode == 2
    assert "READ_ACCESS" in done.stderr
    done = dry_run(main_py, PROJECT="")
    assert done.returncode == 2 and "PROJECT is required" in done.stderr
    done = dry_run(main_py, REGION="")
    assert done.returncode == 2 and "REGION is required" in done.stderr


def test_dedicated_service_accounts_with_least_privilege(script):
    created = {c[4] for c in script.find("gcloud", "iam", "service-accounts", "create")}
    assert created == {"dashboard-functions", "dashboard-events", "dashboard-build"}
    for index, command in enumerate(script.commands):
        if command[:4] == ["gcloud", "iam", "service-accounts", "create"]:
            assert script.unless[index][:4] == ["gcloud", "iam", "service-accounts", "describe"]
    grants = {(one(c, "--member"), one(c, "--role"))
              for c in script.find("gcloud", "projects", "add-iam-policy-binding")}
    email = "serviceAccount:{}@" + PROJECT + ".iam.gserviceaccount.com"
    assert grants == {
        (email.format("dashboard-functions"), "roles/datastore.user"),
        (email.format("dashboard-events"), "roles/eventarc.eventReceiver"),
        (email.format("dashboard-build"), "roles/cloudbuild.builds.builder"),
    }
    roles = " ".join(" ".join(c) for c in script.commands)
    for broad in ("roles/owner", "roles/editor", "roles/storage.admin", "roles/datastore.owner"):
        assert broad not in roles
    bucket_grants = script.find("gcloud", "storage", "buckets", "add-iam-policy-binding")
    assert [(b[4], one(b, "--role")) for b in bucket_grants] == [
        (f"gs://{PROJECT}-snapshots", "roles/storage.objectUser")]
    for name, command in script.deploys().items():
        assert one(command, "--service-account") == \
            f"dashboard-functions@{PROJECT}.iam.gserviceaccount.com", name
        assert one(command, "--build-service-account") == (
            f"projects/{PROJECT}/serviceAccounts/dashboard-build@{PROJECT}.iam.gserviceaccount.com")


def test_revocation_checks_add_the_one_role_they_need(main_py):
    done = dry_run(main_py, CHECK_REVOKED="true")
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    grants = {(one(c, "--member"), one(c, "--role"))
              for c in script.find("gcloud", "projects", "add-iam-policy-binding")}
    assert (f"serviceAccount:dashboard-functions@{PROJECT}.iam.gserviceaccount.com",
            "roles/firebaseauth.viewer") in grants
    assert "CHECK_REVOKED" in script.files[".deploy/env-read.yaml"]


def test_snapshot_bucket_is_private_with_a_lifecycle_for_old_reports(script):
    bucket = f"gs://{PROJECT}-snapshots"
    create = script.find("gcloud", "storage", "buckets", "create")
    update = script.find("gcloud", "storage", "buckets", "update")
    assert [c[4] for c in create] == [bucket] and [c[4] for c in update] == [bucket]
    for command in create + update:
        given = flags(command)
        assert "--uniform-bucket-level-access" in given
        assert "--public-access-prevention" in given
        assert one(command, "--lifecycle-file") == ".deploy/lifecycle.json"
    assert one(create[0], "--location") == REGION
    rules = json.loads(script.files[".deploy/lifecycle.json"])["lifecycle"]["rule"]
    assert rules == [{"action": {"type": "Delete"},
                      "condition": {"age": 30, "matchesPrefix": ["reports/"]}}]
    # Created only when missing; hardened on every deploy.
    index = script.commands.index(create[0])
    assert script.unless[index] == ["gcloud", "storage", "buckets", "describe", bucket,
                                    f"--project={PROJECT}"]


def test_report_retention_is_a_setting(main_py):
    done = dry_run(main_py, REPORT_RETENTION_DAYS="7", SNAPSHOT_BUCKET="demo-other-bucket")
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    rule = json.loads(script.files[".deploy/lifecycle.json"])["lifecycle"]["rule"][0]
    assert rule["condition"]["age"] == 7
    assert script.find("gcloud", "storage", "buckets", "create")[0][4] == "gs://demo-other-bucket"


def test_apis_database_and_firebase_rules(script):
    enabled = set(script.find("gcloud", "services", "enable")[0][3:])
    for api in ("cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc", "pubsub",
                "firestore", "storage", "iam", "firebaserules"):
        assert f"{api}.googleapis.com" in enabled, api
    assert script.find("firebase") == [["firebase", "deploy", "--only",
                                         "firestore:rules,firestore:indexes,storage",
                                         "--config", ".firebase.deploy.json", "--project",
                                         PROJECT, "--non-interactive"]]
    generated = json.loads(script.files[".firebase.deploy.json"])
    assert generated["storage"] == [{"bucket": f"{PROJECT}-snapshots",
                                     "rules": "storage.rules"}]
    database = script.find("gcloud", "firestore", "databases", "create")[0]
    assert one(database, "--location") == LOCATION
    # The trigger location is checked against the database's real location before deploying.
    (check, expected), = script.expectations
    assert check[:4] == ["gcloud", "firestore", "databases", "describe"] and expected == LOCATION
    order = [c[:3] for c in script.commands]
    assert order.index(["firebase", "deploy", "--only"]) < \
        order.index(["gcloud", "functions", "deploy"])


# --- derived from main.py and COLLECTIONS ------------------------------------------------------

def test_the_real_main_py_deploys_every_entry_point_it_has():
    done = dry_run(None)
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    kinds = declared(ROOT / "main.py")
    deployed = {one(c, "--entry-point") for c in script.deploys().values()}
    assert deployed == set(kinds)
    triggers = [n for n, c in script.deploys().items() if "--trigger-event-filters" in flags(c)]
    if "publish_snapshot" in kinds:
        assert sorted(triggers) == ["publish-snapshot-jobs", "publish-snapshot-users"]
    else:
        assert triggers == []
        assert any("publish_snapshot" in note for note in script.notes)


def test_the_catch_up_is_private_and_scheduled_with_its_own_identity():
    done = dry_run(None, CATCHUP_SCHEDULE="*/10 * * * *")
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    scheduler = f"dashboard-scheduler@{PROJECT}.iam.gserviceaccount.com"
    url = f"https://{REGION}-{PROJECT}.cloudfunctions.net/catch-up-snapshots"
    command = script.deploys()["catch-up-snapshots"]
    assert one(command, "--entry-point") == "catch_up_snapshots"
    assert "--no-allow-unauthenticated" in flags(command) and "--trigger-http" in flags(command)
    assert "--allow-unauthenticated" not in flags(command)
    invokers = [one(b, "--member") for b in script.find("gcloud", "functions",
                                                        "add-invoker-policy-binding")
                if b[3] == "catch-up-snapshots"]
    assert invokers == [f"serviceAccount:{scheduler}"]
    assert "dashboard-scheduler" in {c[4] for c in script.find("gcloud", "iam",
                                                               "service-accounts", "create")}
    (create,) = script.find("gcloud", "scheduler", "jobs", "create")
    (update,) = script.find("gcloud", "scheduler", "jobs", "update")
    for job in (create, update):
        assert job[4:6] == ["http", "snapshot-catch-up"]
        assert one(job, "--schedule") == "*/10 * * * *"
        assert one(job, "--uri") == url and one(job, "--http-method") == "POST"
        assert one(job, "--oidc-service-account-email") == scheduler
        assert one(job, "--oidc-token-audience") == url
        assert one(job, "--location") == REGION
    assert script.unless[script.commands.index(create)][:5] == [
        "gcloud", "scheduler", "jobs", "describe", "snapshot-catch-up"]
    assert "cloudscheduler.googleapis.com" in script.find("gcloud", "services", "enable")[0]
    env_file = script.files[".deploy/env-catchup.yaml"]
    assert f'CATCHUP_INVOKER: "{scheduler}"' in env_file
    assert f'CATCHUP_AUDIENCE: "{url}"' in env_file
    assert dry_run(None, CATCHUP_SCHEDULE="every 5 minutes").returncode == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed here")
def test_gcloud_itself_accepts_the_scheduler_commands(tmp_path):
    """gcloud's own parser on the job's commands (an unknown flag or bad value exits 2)."""
    script = parse(dry_run(None).stdout)
    jobs = script.find("gcloud", "scheduler") + [
        check for index, check in script.unless.items()
        if script.commands[index][:2] == ["gcloud", "scheduler"]]
    assert len(jobs) == 3
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false"}
    for command in jobs:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 2 and "unrecognized arguments" not in done.stderr, command
        assert "You do not currently have an active account selected" in done.stderr, command


def test_a_collection_joins_the_deploy_with_its_entry_point(tmp_path, main_py):
    only_users = tmp_path / "users_only.py"
    jobs = ('@functions_framework.http\ndef jobs(request):\n'
            '    return serve_collection(request, "jobs", INSTANCE.collection_api)\n')
    assert jobs in FOUR_ENTRY_POINTS
    only_users.write_text(FOUR_ENTRY_POINTS.replace(jobs, ""))
    done = dry_run(only_users, COLLECTIONS="users")
    assert done.returncode == 0, done.stderr
    assert set(parse(done.stdout).deploys()) == {"users", "migrate", "publish-snapshot-users"}
    # Configured without an entry point: stopped, with the line to add.
    done = dry_run(only_users, COLLECTIONS="users,jobs")
    assert done.returncode == 2
    assert "collection jobs is configured but main.py has no entry point" in done.stderr
    # An entry point of a collection that is not configured is left out, and said so.
    done = dry_run(main_py, COLLECTIONS="users")
    assert done.returncode == 0, done.stderr
    script = parse(done.stdout)
    assert "jobs" not in script.deploys()
    assert any("jobs serves jobs, which is not in COLLECTIONS" in n for n in script.notes)


@pytest.mark.parametrize(("old", "new", "words"), [
    ("def publish_snapshot(", "def publish(", "defines publish (cloud_event), which the deploy "
                                              "does not know"),
    ("def users(", "def creators(", "creators serves users: a read entry point is named after"),
    ('def users(request):\n    return serve_collection(request, "users", INSTANCE.collection_api)',
     'def creators(request):\n'
     '    return serve_collection(request, "creators", INSTANCE.collection_api)',
     "collection users is configured but main.py has no entry point"),
    ("@functions_framework.cloud_event\ndef publish_snapshot",
     "@functions_framework.http\ndef publish_snapshot", "must be @functions_framework.cloud_event"),
])
def test_a_renamed_or_mistyped_entry_point_stops_the_deploy(tmp_path, old, new, words):
    main_py = tmp_path / "main.py"
    main_py.write_text(FOUR_ENTRY_POINTS.replace(old, new))
    done = dry_run(main_py)
    assert done.returncode == 2
    assert words in done.stderr, done.stderr
    assert done.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed here")
def test_gcloud_itself_accepts_every_command(script, tmp_path):
    """Where gcloud is installed: each command parses (an unknown flag or a bad value exits 2)
    and stops at the missing login. The configuration directory is empty and the environment
    minimal, so no account, credential or project can be reached."""
    work = tmp_path / "work"
    for path, content in script.files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
           "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
           "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true"}
    every = [c for c in script.commands if c[0] == "gcloud"] + list(script.unless.values())
    every += [check for check, _ in script.expectations]
    # One command of each shape (a gcloud start costs a second of CPU): the values are
    # checked by the tests above.
    shapes = {(tuple(c[:3]), frozenset(flags(c))): c for c in reversed(every)}
    commands = list(shapes.values())

    def attempt(command: list[str]) -> tuple[list[str], int, str]:
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                              timeout=120)
        return command, done.returncode, done.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for command, code, stderr in pool.map(attempt, commands):
            assert code != 2 and "unrecognized arguments" not in stderr, (command, stderr)
            assert "You do not currently have an active account selected" in stderr, \
                (command, stderr)


# --- the upload and the real run ---------------------------------------------------------------

def test_gcloudignore_uploads_the_runtime_code_only(tmp_path):
    """gcloud's own zip builder (what `gcloud functions deploy --source=.` uploads) on a copy of
    the runtime code among decoys: exactly the allow-list comes out."""
    for path in application.uploaded_files():
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.copyfile(ROOT / ".gcloudignore", tmp_path / ".gcloudignore")
    left = ("tests/test_units.py", "bench/read_bench.py", ".venv/bin/python",
            "node_modules/x/index.js", "emulators/harness.py", "dev/stack.py",
            "docs/operations.md", "deploy/deploy.py", ".deploy/env.yaml", "README.md",
            "data/legacy/users.json", ".git/config", "service-account.json", ".env",
            "shared/__pycache__/settings.cpython-312.pyc", "Makefile", "package.json",
            "ops/__init__.py", "functions/x/__pycache__/a.pyc", ".firebase.deploy.json")
    for decoy in left:
        (tmp_path / decoy).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / decoy).write_text("decoy")
    names = {n for n in uploads.gcloud_zip_names(tmp_path) if not n.endswith("/")}
    for kept in ("main.py", "requirements.txt", "functions/collection_api/serve.py",
                 "functions/__init__.py", "shared/settings.py", "schemas/users.schema.json"):
        assert kept in names, kept
    assert names == {p.relative_to(ROOT).as_posix() for p in application.uploaded_files()}


def test_everything_main_py_imports_is_uploaded():
    code = ("import json, sys, main; root = sys.argv[1]; print(json.dumps(sorted("
            "m.__file__ for m in list(sys.modules.values()) "
            "if getattr(m, '__file__', None) and m.__file__.startswith(root + '/'))))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    files = [str(Path(f).relative_to(ROOT)) for f in json.loads(done.stdout)
             if "site-packages" not in f]
    uploaded = set(uploads.gcloud_zip_names(ROOT))
    assert "main.py" in files
    assert [f for f in files if f not in uploaded] == []


def test_a_real_run_executes_the_plan_in_order(tmp_path, monkeypatch):
    """With stand-ins for gcloud and firebase: checks skip what exists, the rest runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("gcloud", "firebase"):
        (bin_dir / tool).write_text(textwrap.dedent(f"""\
            #!/bin/sh
            echo "{tool} $*" >> {log}
            case "$*" in
              *"service-accounts describe"*) exit 1 ;;
              *"--format=value(locationId)"*) echo {LOCATION} ;;
            esac
            exit 0
            """))
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = deploy.Config.from_env({"PROJECT": PROJECT, "REGION": REGION,
                                     "FIRESTORE_LOCATION": LOCATION})
    main_py = tmp_path / "main.py"
    main_py.write_text(FOUR_ENTRY_POINTS)
    deploy.execute(deploy.build_plan(config, main_py), cwd=tmp_path)
    calls = log.read_text().splitlines()
    # The database and the bucket exist (describe succeeded): not created again ...
    assert not any("firestore databases create" in c for c in calls)
    assert not any("storage buckets create" in c for c in calls)
    # ... the service accounts do not: created.
    assert sum("service-accounts create" in c for c in calls) == 3
    assert sum(c.startswith("gcloud functions deploy") for c in calls) == 5
    assert (tmp_path / ".deploy" / "env-read.yaml").read_text().count("GOOGLE_CLOUD_PROJECT") == 1
    assert calls.index(next(c for c in calls if c.startswith("firebase deploy"))) < \
        calls.index(next(c for c in calls if c.startswith("gcloud functions deploy")))


def test_a_real_run_stops_when_the_database_lives_elsewhere(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "firebase"):
        (bin_dir / tool).write_text("#!/bin/sh\ncase \"$*\" in *locationId*) echo nam5 ;; esac\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = deploy.Config.from_env({"PROJECT": PROJECT, "REGION": REGION,
                                     "FIRESTORE_LOCATION": LOCATION})
    with pytest.raises(deploy.DeployError, match=r"expected 'eur3'.*got 'nam5'"):
        deploy.execute(deploy.build_plan(config, ROOT / "main.py"), cwd=tmp_path)
