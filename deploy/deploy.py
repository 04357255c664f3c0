"""Deploy everything to Google Cloud with one command: `make deploy PROJECT=... REGION=...`.

With `gcloud` and `firebase` installed and logged in, this enables the APIs, creates the
Firestore database if missing, dedicated service accounts with only the roles they need, the
snapshot bucket (uniform access, public access prevention enforced, old `reports/` deleted by
a lifecycle rule), writes the env-vars file from the settings (no secrets), releases the
Firestore rules and indexes, and deploys every function. `DRY_RUN=1` prints every command,
as a shell script, and runs nothing.

The functions are derived, not listed: every entry point of `main.py` (parsed with `ast`:
`@functions_framework.http` or `@functions_framework.cloud_event`) joins the deploy as it
lands, the read API once per configured collection, `publish_snapshot` as one Firestore
trigger per collection. An entry point the deploy does not know, or a configured collection
without one, stops the deploy before anything runs, so a rename cannot silently break it.

Settings (environment): `PROJECT`, `REGION` (required), `FIRESTORE_LOCATION` (default the
region; `nam5`/`eur3` for multi-region databases), `SNAPSHOT_BUCKET` (default
`<project>-snapshots`), `RUNTIME` (`python312`), `REPORT_RETENTION_DAYS` (30), the service
account ids `SERVICE_ACCOUNT`, `TRIGGER_SERVICE_ACCOUNT`, `BUILD_SERVICE_ACCOUNT`, and per
kind of function (`READ`, `MIGRATE`, `PUBLISH`) `DEPLOY_<KIND>_MEMORY`, `_CPU`,
`_TIMEOUT_S`, `_CONCURRENCY`, `_MIN_INSTANCES`, `_MAX_INSTANCES`. The application settings
(`COLLECTIONS`, `ALLOWED_ORIGINS`, `READ_ACCESS`, ...) are validated by `shared.settings`
and written to the env-vars file. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
OUT_DIR = ".deploy"
ENV_FILE = f"{OUT_DIR}/env-{{kind}}.yaml"  # one per kind of function: THREADS differs
LIFECYCLE_FILE = f"{OUT_DIR}/lifecycle.json"
EVENT_TYPE = "google.cloud.firestore.document.v1.written"
REPORTS_PREFIX = "reports/"

APIS = (
    "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "eventarc.googleapis.com", "pubsub.googleapis.com",
    "firestore.googleapis.com", "storage.googleapis.com", "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com", "logging.googleapis.com",
    "firebase.googleapis.com", "firebaserules.googleapis.com",
    "identitytoolkit.googleapis.com",
)
SETTINGS_PY = ROOT / "shared" / "settings.py"
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_?KEY", re.I)
FUNCTION_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
ACCOUNT_ID = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")
REGION = re.compile(r"^[a-z]+(?:-[a-z]+)+\d+$")
LOCATION = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
RUNTIME = re.compile(r"^python3(?:1[0-3])$")
MEMORY = re.compile(r"^(\d+)(Mi|Gi|M|G)$")
CPU_WHOLE = (1, 2, 4, 6, 8)
MAX_TIMEOUT_S = {"http": 3600, "cloud_event": 540}


class DeployError(Exception):
    """The deploy cannot be planned or a command failed; the message says what to change."""


# --- main.py -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EntryPoint:
    """A function of main.py decorated for functions-framework."""

    name: str
    kind: str  # "http" or "cloud_event"
    serves: str | None  # the collection literal of a `*.serve(request, "<collection>")` call
    line: int


def entry_points(main_py: Path = MAIN) -> list[EntryPoint]:
    """Every `@functions_framework.http` / `.cloud_event` function of main.py, in order."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    modules, direct = {"functions_framework"}, {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "functions_framework"}
        elif isinstance(node, ast.ImportFrom) and node.module == "functions_framework":
            direct |= {a.asname or a.name: a.name for a in node.names}
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            kind = None
            if isinstance(decorator, ast.Attribute) and isinstance(decorator.value, ast.Name) \
                    and decorator.value.id in modules:
                kind = decorator.attr
            elif isinstance(decorator, ast.Name):
                kind = direct.get(decorator.id)
            if kind in ("http", "cloud_event"):
                found.append(EntryPoint(node.name, kind, _served_collection(node), node.lineno))
                break
    return found


def _served_collection(function: ast.AST) -> str | None:
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "serve" and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            return node.args[1].value
    return None


def app_setting_names(settings_py: Path = SETTINGS_PY) -> tuple[str, ...]:
    """The variables `Settings.from_env` reads (`reader.<kind>("NAME", ...)`), emulator hosts
    excluded: only these reach the env-vars file, so nothing else from the operator's shell
    (emulator hosts, tokens) can, and a new setting joins without touching the deploy."""
    names = []
    for node in ast.walk(ast.parse(settings_py.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "reader" \
                and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            name = node.args[0].value
            if not name.endswith("_EMULATOR_HOST") and name not in names:
                names.append(name)
    return tuple(names)


# --- settings of the deploy --------------------------------------------------------------------

@dataclass(frozen=True)
class Resources:
    """Memory, CPU, timeout, concurrency and instance bounds of one kind of function."""

    memory: str
    cpu: str
    timeout_s: int
    concurrency: int
    min_instances: int
    max_instances: int

    def flags(self) -> list[str]:
        """The gcloud flags that set them."""
        return [f"--memory={self.memory}", f"--cpu={self.cpu}", f"--timeout={self.timeout_s}s",
                f"--concurrency={self.concurrency}", f"--min-instances={self.min_instances}",
                f"--max-instances={self.max_instances}"]


DEFAULT_RESOURCES = {
    # Reads: many concurrent small requests per instance; scale to zero.
    "read": Resources("512Mi", "1", 60, 80, 0, 10),
    # A migration streams one large file: one per instance, up to the gen2 HTTP limit.
    "migrate": Resources("1Gi", "1", 3600, 1, 0, 2),
    # An event waits for its collection's write slot (up to PUBLISH_WAIT_S), mostly idle:
    # many per instance, few instances (the write slot is shared through Firestore anyway).
    "publish": Resources("512Mi", "1", 120, 80, 0, 3),
}


@dataclass(frozen=True)
class KnownFunction:
    """How an entry point other than a collection read is deployed."""

    kind: str
    resources: str
    public: bool = False
    per_collection: bool = False


KNOWN_FUNCTIONS = {
    # Reachable from the browser; it checks Firebase ID tokens with the admin claim itself.
    "migrate": KnownFunction("http", "migrate", public=True),
    "publish_snapshot": KnownFunction("cloud_event", "publish", per_collection=True),
}


@dataclass(frozen=True)
class Config:
    """Everything the deploy needs, validated; built from the environment."""

    project: str
    region: str
    firestore_location: str
    database: str
    bucket: str
    collections: tuple[str, ...]
    runtime: str
    retention_days: int
    service_account: str
    trigger_account: str
    build_account: str
    resources: Mapping[str, Resources]
    app_env: Mapping[str, str]
    check_revoked: bool = False

    def email(self, account_id: str) -> str:
        """The e-mail of a service account of the project."""
        return f"{account_id}@{self.project}.iam.gserviceaccount.com"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Read and validate; `DeployError` names the first bad variable."""
        def get(name: str, default: str | None = None) -> str:
            value = (env.get(name) or "").strip()
            if value:
                return value
            if default is None:
                raise DeployError(f"{name} is required (make deploy {name}=...)")
            return default

        project, region = get("PROJECT"), get("REGION")
        if not REGION.match(region):
            raise DeployError(f"REGION {region!r} is not a region like europe-west1")
        location = get("FIRESTORE_LOCATION", region)
        if not LOCATION.match(location):
            raise DeployError(f"FIRESTORE_LOCATION {location!r} is not a location like "
                              "eur3, nam5 or europe-west1")
        app_env = {name: env[name].strip() for name in app_setting_names()
                   if (env.get(name) or "").strip()}
        app_env["GOOGLE_CLOUD_PROJECT"] = project
        app_env.setdefault("SNAPSHOT_BUCKET", f"{project}-snapshots")
        settings = _app_settings(app_env)
        app_env.setdefault("COLLECTIONS", ",".join(settings.collections))
        for name, value in app_env.items():
            if SECRET_LIKE.search(name) or "-----BEGIN" in value:
                raise DeployError(f"{name} looks like a secret: keep it in Secret Manager "
                                  "(--set-secrets), never in the env-vars file")
        accounts = {name: get(name, default) for name, default in (
            ("SERVICE_ACCOUNT", "dashboard-functions"),
            ("TRIGGER_SERVICE_ACCOUNT", "dashboard-events"),
            ("BUILD_SERVICE_ACCOUNT", "dashboard-build"))}
        for name, value in accounts.items():
            if not ACCOUNT_ID.match(value):
                raise DeployError(f"{name} {value!r} is not a service account id (6-30 of "
                                  "a-z, 0-9, -)")
        runtime = get("RUNTIME", "python312")
        if not RUNTIME.match(runtime):
            raise DeployError(f"RUNTIME {runtime!r} is not a current Python runtime "
                              "(python310 to python313)")
        retention = _integer(get("REPORT_RETENTION_DAYS", "30"), "REPORT_RETENTION_DAYS", 1, 3650)
        return cls(
            project=project, region=region, firestore_location=location,
            database=settings.database, bucket=settings.snapshot_bucket,
            collections=settings.collections, runtime=runtime, retention_days=retention,
            service_account=accounts["SERVICE_ACCOUNT"],
            trigger_account=accounts["TRIGGER_SERVICE_ACCOUNT"],
            build_account=accounts["BUILD_SERVICE_ACCOUNT"],
            resources={kind: _resources(env, kind, default)
                       for kind, default in DEFAULT_RESOURCES.items()},
            app_env=app_env,
            check_revoked=bool(settings.check_revoked),
        )


def _app_settings(app_env: Mapping[str, str]) -> Any:
    """Validate the application settings with the functions' own code."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    settings_module = importlib.import_module("shared.settings")
    errors = importlib.import_module("shared.errors")
    try:
        settings = settings_module.Settings.from_env(app_env)
    except errors.ConfigError as exc:
        message = exc.message.replace("GOOGLE_CLOUD_PROJECT", "PROJECT")
        raise DeployError(message) from None
    for collection in settings.collections:
        if not (ROOT / "schemas" / f"{collection}.schema.json").is_file():
            raise DeployError(f"collection {collection!r} has no schemas/{collection}"
                              ".schema.json")
    return settings


def _integer(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise DeployError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise DeployError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _resources(env: Mapping[str, str], kind: str, default: Resources) -> Resources:
    prefix = f"DEPLOY_{kind.upper()}_"

    def value(knob: str, fallback: object) -> str:
        return (env.get(prefix + knob) or "").strip() or str(fallback)

    memory = value("MEMORY", default.memory)
    cpu = value("CPU", default.cpu)
    resources = Resources(
        memory=memory, cpu=cpu,
        timeout_s=_integer(value("TIMEOUT_S", default.timeout_s), prefix + "TIMEOUT_S", 1, 3600),
        concurrency=_integer(value("CONCURRENCY", default.concurrency), prefix + "CONCURRENCY",
                             1, 1000),
        min_instances=_integer(value("MIN_INSTANCES", default.min_instances),
                               prefix + "MIN_INSTANCES", 0, 1000),
        max_instances=_integer(value("MAX_INSTANCES", default.max_instances),
                               prefix + "MAX_INSTANCES", 1, 1000),
    )
    problem = gen2_problem(resources)
    if problem:
        raise DeployError(f"{prefix}*: {problem}")
    return resources


def memory_mib(memory: str) -> int | None:
    """`512Mi`, `1Gi`, `2G` in MiB; None when not a gen2 memory value."""
    match = MEMORY.match(memory)
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2).startswith("G") else 1)


def gen2_problem(resources: Resources, kind: str = "http") -> str | None:
    """Why gen2 (Cloud Run) would refuse these resources, or None when they are valid."""
    mib = memory_mib(resources.memory)
    if mib is None or not 128 <= mib <= 32768:
        return f"memory {resources.memory!r} must be 128Mi to 32Gi (e.g. 512Mi, 1Gi)"
    try:
        cpu = float(resources.cpu)
    except ValueError:
        return f"cpu {resources.cpu!r} is not a number"
    if not (0.08 <= cpu < 1 or cpu in CPU_WHOLE):
        return f"cpu {resources.cpu} must be a fraction from 0.08 to 1 or one of 1, 2, 4, 6, 8"
    if resources.concurrency > 1 and cpu < 1:
        return f"concurrency {resources.concurrency} needs at least 1 CPU (got {resources.cpu})"
    if mib > 4096 * max(1.0, cpu):
        return f"memory {resources.memory} needs more than {resources.cpu} CPU (4Gi per CPU)"
    if cpu >= 4 and mib < 2048:
        return f"{resources.cpu} CPUs need at least 2Gi of memory"
    if resources.timeout_s > MAX_TIMEOUT_S[kind]:
        return (f"timeout {resources.timeout_s}s is over the gen2 limit of "
                f"{MAX_TIMEOUT_S[kind]}s for {kind} functions")
    if resources.min_instances > resources.max_instances:
        return f"min instances {resources.min_instances} exceed max {resources.max_instances}"
    return None


# --- the plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """One command; `unless` skips it when that check succeeds, `expect` is its exact output."""

    argv: tuple[str, ...]
    why: str = ""
    unless: tuple[str, ...] | None = None
    expect: str | None = None
    retries: int = 0


@dataclass(frozen=True)
class WriteFile:
    """A generated file the commands read (the env-vars file, the lifecycle rule)."""

    path: str
    content: str
    why: str = ""


@dataclass
class Plan:
    """The ordered steps, plus notes on what was left out and why."""

    steps: list[Command | WriteFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, *argv: str, why: str = "", unless: Sequence[str] | None = None,
            expect: str | None = None, retries: int = 0) -> None:
        """Append a command."""
        self.steps.append(Command(tuple(argv), why, tuple(unless) if unless else None,
                                  expect, retries))


def build_plan(config: Config, main_py: Path = MAIN) -> Plan:
    """Every step of a deploy of main.py's entry points with these settings."""
    points = entry_points(main_py)
    plan = Plan()
    reads, others = _classify(config, points, plan)
    project = f"--project={config.project}"
    sa, trigger_sa, build_sa = (config.email(config.service_account),
                                config.email(config.trigger_account),
                                config.email(config.build_account))

    plan.run("gcloud", "services", "enable", *APIS, project,
             why="APIs of Cloud Functions gen2 (Cloud Run, Cloud Build, Artifact Registry, "
                 "Eventarc, Pub/Sub), Firestore, Cloud Storage, IAM, Firebase rules and Auth")
    database = f"--database={config.database}"
    plan.run("gcloud", "firestore", "databases", "create", database,
             f"--location={config.firestore_location}", "--type=firestore-native", project,
             why=f"the Firestore database {config.database}, if missing",
             unless=("gcloud", "firestore", "databases", "describe", database, project))
    plan.run("gcloud", "firestore", "databases", "describe", database, project,
             "--format=value(locationId)", expect=config.firestore_location,
             why="the triggers' location must be the database's: stop if FIRESTORE_LOCATION "
                 "is not where the database lives")

    for account_id, title in ((config.service_account, "dashboard functions (runtime)"),
                              (config.trigger_account, "dashboard Firestore triggers"),
                              (config.build_account, "dashboard function builds")):
        plan.run("gcloud", "iam", "service-accounts", "create", account_id,
                 f"--display-name={title}", project,
                 why=f"service account {account_id}, if missing",
                 unless=("gcloud", "iam", "service-accounts", "describe",
                         config.email(account_id), project))
    grants = [
        (sa, "roles/datastore.user", "the functions read and write Firestore documents"),
        (trigger_sa, "roles/eventarc.eventReceiver", "the triggers receive Firestore events"),
        (build_sa, "roles/cloudbuild.builds.builder", "builds the functions' containers"),
    ]
    if config.check_revoked:
        grants.append((sa, "roles/firebaseauth.viewer",
                       "CHECK_REVOKED: the functions look up users to see revoked sessions"))
    for member, role, why in grants:
        plan.run("gcloud", "projects", "add-iam-policy-binding", config.project,
                 f"--member=serviceAccount:{member}", f"--role={role}", "--condition=None",
                 "--quiet", why=why, retries=3)

    bucket = f"gs://{config.bucket}"
    plan.steps.append(WriteFile(LIFECYCLE_FILE, lifecycle_json(config),
                                why=f"delete report objects under {REPORTS_PREFIX} after "
                                    f"{config.retention_days} days"))
    hardening = ("--uniform-bucket-level-access", "--public-access-prevention",
                 f"--lifecycle-file={LIFECYCLE_FILE}")
    plan.run("gcloud", "storage", "buckets", "create", bucket, f"--location={config.region}",
             *hardening, project, why="the snapshot bucket, if missing (private: it holds "
                                      "personal data)",
             unless=("gcloud", "storage", "buckets", "describe", bucket, project))
    plan.run("gcloud", "storage", "buckets", "update", bucket, *hardening, project,
             why="keep it private on every deploy, even if someone changed it by hand")
    plan.run("gcloud", "storage", "buckets", "add-iam-policy-binding", bucket,
             f"--member=serviceAccount:{sa}", "--role=roles/storage.objectUser", project,
             why="the functions read and write objects of this bucket only", retries=3)

    for kind, resources in config.resources.items():
        plan.steps.append(WriteFile(ENV_FILE.format(kind=kind),
                                    env_yaml(config, threads=resources.concurrency),
                                    why=f"the {kind} functions' settings (no secrets)"))
    if config.database != "(default)":
        plan.notes.append(f"FIRESTORE_DATABASE is {config.database}: firebase.json must name it "
                          "(\"firestore\": [{\"database\": ...}]) for its rules and indexes")
    plan.run("firebase", "deploy", "--only", "firestore:rules,firestore:indexes",
             "--project", config.project, "--non-interactive",
             why="Firestore rules and indexes, before the code that queries them")

    common = ("--gen2", project, f"--region={config.region}", f"--runtime={config.runtime}",
              "--source=.", f"--service-account={sa}",
              f"--build-service-account=projects/{config.project}/serviceAccounts/{build_sa}")
    for point in reads:
        plan.run("gcloud", "functions", "deploy", _function_name(point.name), *common,
                 f"--env-vars-file={ENV_FILE.format(kind='read')}",
                 f"--entry-point={point.name}", "--trigger-http", "--allow-unauthenticated",
                 "--ingress-settings=all", *config.resources["read"].flags(), "--quiet",
                 why=f"read API of {point.serves or point.name}: public, the browser calls it")
    publishers = []
    for point, known in others:
        resources = config.resources[known.resources]
        problem = gen2_problem(resources, known.kind)
        if problem:
            raise DeployError(f"DEPLOY_{known.resources.upper()}_*: {problem}")
        if known.per_collection:
            for collection in config.collections:
                name = _function_name(f"{point.name}-{collection}")
                publishers.append(name)
                plan.run("gcloud", "functions", "deploy", name, *common,
                         f"--env-vars-file={ENV_FILE.format(kind=known.resources)}",
                         f"--entry-point={point.name}",
                         f"--trigger-event-filters=type={EVENT_TYPE}",
                         f"--trigger-event-filters=database={config.database}",
                         f"--trigger-event-filters-path-pattern=document={collection}/{{docId}}",
                         f"--trigger-location={config.firestore_location}",
                         f"--trigger-service-account={trigger_sa}", "--retry",
                         "--ingress-settings=internal-only", *resources.flags(), "--quiet",
                         why=f"{point.name} on every write to {collection}, retried on error")
        else:
            access = "--allow-unauthenticated" if known.public else "--no-allow-unauthenticated"
            plan.run("gcloud", "functions", "deploy", _function_name(point.name), *common,
                     f"--env-vars-file={ENV_FILE.format(kind=known.resources)}",
                     f"--entry-point={point.name}", "--trigger-http", access,
                     "--ingress-settings=all", *resources.flags(), "--quiet",
                     why=f"{point.name}: " + ("public, it checks its own tokens" if known.public
                                              else "private"))
    for name in publishers:
        plan.run("gcloud", "functions", "add-invoker-policy-binding", name,
                 f"--region={config.region}", f"--member=serviceAccount:{trigger_sa}", project,
                 why=f"only the trigger identity may invoke {name}", retries=3)
    _check_unique([step.argv[3] for step in plan.steps if isinstance(step, Command)
                   and step.argv[:3] == ("gcloud", "functions", "deploy")])
    return plan


def _classify(config: Config, points: list[EntryPoint],
              plan: Plan) -> tuple[list[EntryPoint], list[tuple[EntryPoint, KnownFunction]]]:
    reads, others = [], []
    for point in points:
        known = KNOWN_FUNCTIONS.get(point.name)
        if known is not None:
            if point.kind != known.kind:
                raise DeployError(f"main.py:{point.line} {point.name} must be "
                                  f"@functions_framework.{known.kind}, not {point.kind}")
            others.append((point, known))
            continue
        collection = point.serves or point.name
        if point.serves is None and point.name not in config.collections:
            raise DeployError(
                f"main.py:{point.line} defines {point.name} ({point.kind}), which the deploy "
                f"does not know: serve a configured collection, or add it to KNOWN_FUNCTIONS "
                f"in deploy/deploy.py (public or private)")
        if point.kind != "http":
            raise DeployError(f"main.py:{point.line} {point.name} serves {collection} and must "
                              "be @functions_framework.http")
        if point.serves is not None and point.serves != point.name:
            raise DeployError(f"main.py:{point.line} {point.name} serves {point.serves}: a read "
                              f"entry point is named after its collection (its URL is "
                              f"/{point.serves})")
        if collection not in config.collections:
            plan.notes.append(f"{point.name} serves {collection}, which is not in COLLECTIONS: "
                              "not deployed")
            continue
        reads.append(point)
    served = {point.serves or point.name for point in reads}
    missing = [c for c in config.collections if c not in served]
    if missing:
        raise DeployError(
            f"collection {missing[0]} is configured but main.py has no entry point for it: add "
            f"`@functions_framework.http def {missing[0]}(request): return "
            f"read_api.serve(request, {missing[0]!r})`")
    present = {point.name for point in points}
    for name in KNOWN_FUNCTIONS:
        if name not in present:
            plan.notes.append(f"main.py has no {name} entry point yet: it joins the deploy "
                              "when it lands")
    return reads, others


def _function_name(raw: str) -> str:
    name = raw.replace("_", "-").lower()
    if not FUNCTION_NAME.match(name):
        raise DeployError(f"{raw!r} does not make a valid function name ({name!r}: a-z, 0-9, "
                          "-, at most 63)")
    return name


def _check_unique(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise DeployError(f"two functions would be named {name}")
        seen.add(name)


def env_yaml(config: Config, *, threads: int) -> str:
    """The `--env-vars-file` YAML: one quoted string per application setting, plus THREADS.

    functions-framework serves `THREADS` requests at once (default: 4 per CPU); without it an
    instance deployed with `--concurrency=80` would queue all but four.
    """
    lines = ["# Written by deploy/deploy.py from the settings; credentials never go here."]
    order = {name: index for index, name in enumerate(app_setting_names())}
    ordered = sorted(config.app_env.items(), key=lambda item: order.get(item[0], len(order)))
    lines += [f"{name}: {json.dumps(value)}" for name, value in ordered]
    lines.append(f"THREADS: {json.dumps(str(threads))}")
    return "\n".join(lines) + "\n"


def lifecycle_json(config: Config) -> str:
    """The bucket's lifecycle configuration: delete old report objects, nothing else."""
    rule = {"action": {"type": "Delete"},
            "condition": {"age": config.retention_days, "matchesPrefix": [REPORTS_PREFIX]}}
    return json.dumps({"lifecycle": {"rule": [rule]}}, indent=2) + "\n"


# --- printing and running ----------------------------------------------------------------------

def quote(arg: str) -> str:
    """Shell-quote like the docs write flags: `--x=key='value'`, `--x='value'`."""
    if shlex.quote(arg) == arg:
        return arg
    if arg.startswith("--") and "=" in arg:
        flag, value = arg.split("=", 1)
        if "=" in value:
            key, inner = value.split("=", 1)
            if shlex.quote(key) == key:
                return f"{flag}={key}={shlex.quote(inner)}"
        return f"{flag}={shlex.quote(value)}"
    return shlex.quote(arg)


def render(plan: Plan, config: Config) -> str:
    """The plan as a shell script (what DRY_RUN=1 prints)."""
    out = ["#!/usr/bin/env bash",
           f"# Deploy of project {config.project}, region {config.region}, Firestore "
           f"{config.database} in {config.firestore_location}, collections "
           f"{','.join(config.collections)}.",
           "# Printed by deploy/deploy.py (DRY_RUN=1): nothing was run.",
           "set -euo pipefail"]
    out += [f"# note: {note}" for note in plan.notes]
    for step in plan.steps:
        out.append("")
        if step.why:
            out.append(f"# {step.why}")
        if isinstance(step, WriteFile):
            out.append(f"mkdir -p {quote(str(Path(step.path).parent))} && "
                       f"cat > {quote(step.path)} <<'EOF'")
            out.append(step.content.rstrip("\n"))
            out.append("EOF")
            continue
        line = " ".join(quote(arg) for arg in step.argv)
        if step.unless:
            line = " ".join(quote(arg) for arg in step.unless) + " >/dev/null 2>&1 || " + line
        if step.expect is not None:
            line = f'test "$({line})" = {quote(step.expect)}'
        out.append(line)
    return "\n".join(out) + "\n"


def execute(plan: Plan, *, cwd: Path = ROOT) -> None:
    """Run the plan, echoing each command; stop at the first failure."""
    tools = sorted({step.argv[0] for step in plan.steps if isinstance(step, Command)})
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise DeployError(f"{' and '.join(missing)} not found on PATH: install and log in "
                          "first (README.md, First deploy)")
    for step in plan.steps:
        if isinstance(step, WriteFile):
            path = cwd / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.content, encoding="utf-8")
            print(f"+ wrote {step.path}", flush=True)
            continue
        shown = " ".join(quote(arg) for arg in step.argv)
        if step.unless and subprocess.run(step.unless, cwd=cwd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL).returncode == 0:
            print(f"= exists, skipped: {shown}", flush=True)
            continue
        print(f"+ {shown}", flush=True)
        for attempt in range(step.retries + 1):
            done = subprocess.run(step.argv, cwd=cwd, text=True,
                                  stdout=subprocess.PIPE if step.expect is not None else None)
            if done.returncode == 0:
                break
            if attempt < step.retries:
                # New service accounts take a few seconds to be visible to IAM.
                time.sleep(10)
        if done.returncode != 0:
            raise DeployError(f"failed (exit {done.returncode}): {shown}")
        if step.expect is not None and done.stdout.strip() != step.expect:
            raise DeployError(f"expected {step.expect!r} from `{shown}`, got "
                              f"{done.stdout.strip()!r}: {step.why}")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Plan, then print (DRY_RUN=1 or --dry-run) or run; 2 on a planning error, 1 on failure."""
    parser = argparse.ArgumentParser(prog="deploy/deploy.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--main", type=Path, default=MAIN, help="the main.py to deploy")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    dry_run = args.dry_run or env.get("DRY_RUN", "").strip().lower() in ("1", "true", "yes")
    try:
        config = Config.from_env(env)
        plan = build_plan(config, args.main)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    if dry_run:
        sys.stdout.write(render(plan, config))
        return 0
    for note in plan.notes:
        print(f"note: {note}", flush=True)
    try:
        execute(plan)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    print(f"deployed: https://{config.region}-{config.project}.cloudfunctions.net/<function>\n"
          f"check it: GOOGLE_CLOUD_PROJECT={config.project} SNAPSHOT_BUCKET={config.bucket} "
          f"COLLECTIONS={','.join(config.collections)} python -m functions doctor", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
