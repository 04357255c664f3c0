"""The deploy's settings: `Config.from_env` reads and validates everything `make deploy` takes.

Deploy settings (`PROJECT`, `REGION`, `FIRESTORE_LOCATION`, `RUNTIME`, the service account
ids, `DEPLOY_<KIND>_*` resources, `REPORT_RETENTION_DAYS`) are checked here; the application
settings (`COLLECTIONS`, `ALLOWED_ORIGINS`, ...) by the functions' own code
(`deploy.application.app_settings`). docs/deploy.md lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy import application
from deploy.application import DeployError

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ".deploy"
ENV_FILE = f"{OUT_DIR}/env-{{kind}}.yaml"  # one per kind of function: THREADS differs
LIFECYCLE_FILE = f"{OUT_DIR}/lifecycle.json"
FIREBASE_CONFIG = ".firebase.deploy.json"  # at the root: the CLI reads no rules outside its dir
DIGEST_LABEL = "deploy-digest"  # a function's label: the digest of what deployed it
DIGEST_CHARS = 32
EVENT_TYPE = "google.cloud.firestore.document.v1.written"
REPORTS_PREFIX = "reports/"

APIS = (
    "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "eventarc.googleapis.com", "pubsub.googleapis.com",
    "firestore.googleapis.com", "storage.googleapis.com", "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com", "logging.googleapis.com",
    "firebase.googleapis.com", "firebaserules.googleapis.com",
    "identitytoolkit.googleapis.com", "cloudscheduler.googleapis.com",
)
CATCHUP_FUNCTION = "catch_up_snapshots"
CATCHUP_JOB = "snapshot-catch-up"
CATCHUP_SCHEDULE = re.compile(r"^\S+( \S+){4}$")  # five cron fields
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_?KEY", re.I)
FUNCTION_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
ACCOUNT_ID = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")
REGION = re.compile(r"^[a-z]+(?:-[a-z]+)+\d+$")
LOCATION = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
RUNTIME = re.compile(r"^python3(?:1[0-3])$")
MEMORY = re.compile(r"^(\d+)(Mi|Gi|M|G)$")
CPU_WHOLE = (1, 2, 4, 6, 8)
MAX_TIMEOUT_S = {"http": 3600, "cloud_event": 540}



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
    # The catch-up: one run at a time (Cloud Scheduler calls it every few minutes).
    "catchup": Resources("512Mi", "1", 540, 1, 0, 1),
}


@dataclass(frozen=True)
class KnownFunction:
    """How an entry point other than a collection read is deployed."""

    kind: str
    resources: str
    public: bool = False
    per_collection: bool = False
    scheduled: bool = False


KNOWN_FUNCTIONS = {
    # Reachable from the browser; it checks Firebase ID tokens with the admin claim itself.
    "migrate": KnownFunction("http", "migrate", public=True),
    "publish_snapshot": KnownFunction("cloud_event", "publish", per_collection=True),
    # Private: only Cloud Scheduler's service account may invoke it (and it checks the token).
    CATCHUP_FUNCTION: KnownFunction("http", "catchup", scheduled=True),
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
    scheduler_account: str
    catchup_schedule: str
    resources: Mapping[str, Resources]
    app_env: Mapping[str, str]
    check_revoked: bool = False

    def email(self, account_id: str) -> str:
        """The e-mail of a service account of the project."""
        return f"{account_id}@{self.project}.iam.gserviceaccount.com"

    def function_url(self, name: str) -> str:
        """The HTTPS URL of a deployed function (also the audience of its OIDC tokens)."""
        return f"https://{self.region}-{self.project}.cloudfunctions.net/{name}"

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
        app_env = {name: env[name].strip() for name in application.app_setting_names()
                   if (env.get(name) or "").strip()}
        app_env["GOOGLE_CLOUD_PROJECT"] = project
        app_env.setdefault("SNAPSHOT_BUCKET", f"{project}-snapshots")
        scheduler = get("SCHEDULER_SERVICE_ACCOUNT", "dashboard-scheduler")
        # Who may call the catch-up, and the audience of its tokens: the scheduler's account
        # and the function's URL (both fixed by the deploy, so the function checks them).
        app_env.setdefault("CATCHUP_INVOKER", f"{scheduler}@{project}.iam.gserviceaccount.com")
        app_env.setdefault("CATCHUP_AUDIENCE", f"https://{region}-{project}.cloudfunctions.net/"
                                               f"{CATCHUP_FUNCTION.replace('_', '-')}")
        settings = application.app_settings(app_env)
        app_env.setdefault("COLLECTIONS", ",".join(settings.collections))
        for name, value in app_env.items():
            if SECRET_LIKE.search(name) or "-----BEGIN" in value:
                raise DeployError(f"{name} looks like a secret: keep it in Secret Manager "
                                  "(--set-secrets), never in the env-vars file")
        accounts = {name: get(name, default) for name, default in (
            ("SERVICE_ACCOUNT", "dashboard-functions"),
            ("TRIGGER_SERVICE_ACCOUNT", "dashboard-events"),
            ("BUILD_SERVICE_ACCOUNT", "dashboard-build"),
            ("SCHEDULER_SERVICE_ACCOUNT", "dashboard-scheduler"))}
        for name, value in accounts.items():
            if not ACCOUNT_ID.match(value):
                raise DeployError(f"{name} {value!r} is not a service account id (6-30 of "
                                  "a-z, 0-9, -)")
        runtime = get("RUNTIME", "python312")
        if not RUNTIME.match(runtime):
            raise DeployError(f"RUNTIME {runtime!r} is not a current Python runtime "
                              "(python310 to python313)")
        retention = _integer(get("REPORT_RETENTION_DAYS", "30"), "REPORT_RETENTION_DAYS", 1, 3650)
        schedule = get("CATCHUP_SCHEDULE", "*/5 * * * *")
        if not CATCHUP_SCHEDULE.match(schedule):
            raise DeployError(f"CATCHUP_SCHEDULE {schedule!r} is not a cron schedule of five "
                              "fields like '*/5 * * * *'")
        return cls(
            project=project, region=region, firestore_location=location,
            database=settings.database, bucket=settings.snapshot_bucket,
            collections=settings.collections, runtime=runtime, retention_days=retention,
            service_account=accounts["SERVICE_ACCOUNT"],
            trigger_account=accounts["TRIGGER_SERVICE_ACCOUNT"],
            build_account=accounts["BUILD_SERVICE_ACCOUNT"],
            scheduler_account=accounts["SCHEDULER_SERVICE_ACCOUNT"],
            catchup_schedule=schedule,
            resources={kind: _resources(env, kind, default)
                       for kind, default in DEFAULT_RESOURCES.items()},
            app_env=app_env,
            check_revoked=bool(settings.check_revoked),
        )



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
