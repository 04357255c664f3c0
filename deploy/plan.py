"""The deploy plan: every command of a deploy of main.py's entry points with these settings.

`build_plan(config)` returns the steps in order (files to write, commands, each with why it
runs and the check that skips it); `deploy/deploy.py` prints them (DRY_RUN=1) or runs them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy import application
from deploy.application import DeployError, EntryPoint
from deploy.config import (
    APIS,
    CATCHUP_JOB,
    DIGEST_CHARS,
    DIGEST_LABEL,
    ENV_FILE,
    EVENT_TYPE,
    FIREBASE_CONFIG,
    FUNCTION_NAME,
    KNOWN_FUNCTIONS,
    LIFECYCLE_FILE,
    REPORTS_PREFIX,
    Config,
    KnownFunction,
    gen2_problem,
)


@dataclass(frozen=True)
class Command:
    """One command; `unless` skips it when that check succeeds (and, with `unless_output`,
    prints exactly that), `expect` is its exact output."""

    argv: tuple[str, ...]
    why: str = ""
    unless: tuple[str, ...] | None = None
    expect: str | None = None
    retries: int = 0
    unless_output: str | None = None


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
            expect: str | None = None, retries: int = 0,
            unless_output: str | None = None) -> None:
        """Append a command."""
        self.steps.append(Command(tuple(argv), why, tuple(unless) if unless else None,
                                  expect, retries, unless_output))


def build_plan(config: Config, main_py: Path = application.MAIN) -> Plan:
    """Every step of a deploy of main.py's entry points with these settings."""
    points = application.entry_points(main_py)
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

    scheduled = [point for point, known in others if known.scheduled]
    accounts = [(config.service_account, "dashboard functions (runtime)"),
                (config.trigger_account, "dashboard Firestore triggers"),
                (config.build_account, "dashboard function builds")]
    if scheduled:
        accounts.append((config.scheduler_account, "dashboard scheduled catch-up (invoker)"))
    for account_id, title in accounts:
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
    plan.steps.append(WriteFile(FIREBASE_CONFIG, firebase_json(config),
                                why="firebase.json's rules, for this database and the snapshot "
                                    "bucket"))
    plan.run("firebase", "deploy", "--only", "firestore:rules,firestore:indexes,storage",
             "--config", FIREBASE_CONFIG, "--project", config.project, "--non-interactive",
             why="Firestore rules and indexes, before the code that queries them, and the "
                 "snapshot bucket's Storage rules (deny every client)")

    common = ("--gen2", project, f"--region={config.region}", f"--runtime={config.runtime}",
              "--source=.", f"--service-account={sa}",
              f"--build-service-account=projects/{config.project}/serviceAccounts/{build_sa}")
    source = application.source_digest()

    def deploy(name: str, kind: str, *flags: str, why: str) -> None:
        _deploy_function(plan, config, source, name, kind, common + flags, why)

    for point in reads:
        deploy(_function_name(point.name), "read",
               f"--entry-point={point.name}", "--trigger-http", "--allow-unauthenticated",
               "--ingress-settings=all", *config.resources["read"].flags(),
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
                deploy(name, known.resources, f"--entry-point={point.name}",
                       f"--trigger-event-filters=type={EVENT_TYPE}",
                       f"--trigger-event-filters=database={config.database}",
                       f"--trigger-event-filters-path-pattern=document={collection}/{{docId}}",
                       f"--trigger-location={config.firestore_location}",
                       f"--trigger-service-account={trigger_sa}", "--retry",
                       "--ingress-settings=internal-only", *resources.flags(),
                       why=f"{point.name} on every write to {collection}, retried on error")
        elif known.scheduled:
            name = _function_name(point.name)
            deploy(name, known.resources, f"--entry-point={point.name}", "--trigger-http",
                   "--no-allow-unauthenticated", "--ingress-settings=all", *resources.flags(),
                   why=f"{point.name}: private, called by Cloud Scheduler with an OIDC token")
            _schedule(plan, config, name, resources.timeout_s)
        else:
            access = "--allow-unauthenticated" if known.public else "--no-allow-unauthenticated"
            deploy(_function_name(point.name), known.resources,
                   f"--entry-point={point.name}", "--trigger-http", access,
                   "--ingress-settings=all", *resources.flags(),
                   why=f"{point.name}: " + ("public, it checks its own tokens" if known.public
                                            else "private"))
    for name in publishers:
        plan.run("gcloud", "functions", "add-invoker-policy-binding", name,
                 f"--region={config.region}", f"--member=serviceAccount:{trigger_sa}", project,
                 why=f"only the trigger identity may invoke {name}", retries=3)
    _check_unique([step.argv[3] for step in plan.steps if isinstance(step, Command)
                   and step.argv[:3] == ("gcloud", "functions", "deploy")])
    return plan


def _schedule(plan: Plan, config: Config, name: str, timeout_s: int) -> None:
    """Only the scheduler's account may invoke `name`; a Cloud Scheduler job calls it on
    `CATCHUP_SCHEDULE` with that account's OIDC token (created once, then kept in line)."""
    invoker = config.email(config.scheduler_account)
    project, location = f"--project={config.project}", f"--location={config.region}"
    plan.run("gcloud", "functions", "add-invoker-policy-binding", name,
             f"--region={config.region}", f"--member=serviceAccount:{invoker}", project,
             why=f"only the scheduler's account may invoke {name}", retries=3)
    url = config.function_url(name)
    target = (f"--schedule={config.catchup_schedule}", f"--uri={url}", "--http-method=POST",
              f"--oidc-service-account-email={invoker}", f"--oidc-token-audience={url}",
              f"--attempt-deadline={min(timeout_s, 1800)}s", location, project)
    plan.run("gcloud", "scheduler", "jobs", "create", "http", CATCHUP_JOB, *target,
             why=f"Cloud Scheduler calls {name} on {config.catchup_schedule!r}, if missing",
             unless=("gcloud", "scheduler", "jobs", "describe", CATCHUP_JOB, location, project))
    plan.run("gcloud", "scheduler", "jobs", "update", "http", CATCHUP_JOB, *target,
             why="keep the job's schedule, target and identity as configured")


def _deploy_function(plan: Plan, config: Config, source: str, name: str, kind: str,
                     flags: Sequence[str], why: str) -> None:
    """`gcloud functions deploy`, skipped when the function is ACTIVE with the digest of this
    source, these flags and this env-vars file in its `deploy-digest` label: a deploy run
    again changes nothing, and a changed setting redeploys only the functions it reaches."""
    env_file = ENV_FILE.format(kind=kind)
    argv = ("gcloud", "functions", "deploy", name, *flags, f"--env-vars-file={env_file}")
    digest = hashlib.sha256(json.dumps(
        [source, argv, env_yaml(config, threads=config.resources[kind].concurrency)]).encode())
    label = digest.hexdigest()[:DIGEST_CHARS]
    plan.run(*argv, f"--update-labels={DIGEST_LABEL}={label}", "--quiet", why=why,
             unless=("gcloud", "functions", "describe", name, f"--region={config.region}",
                     f"--project={config.project}",
                     f"--format=value[separator=:](state,labels.{DIGEST_LABEL})"),
             unless_output=f"ACTIVE:{label}")


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
                f"in deploy/config.py (public or private)")
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
            f"serve_collection(request, {missing[0]!r}, INSTANCE.collection_api)`")
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
    order = {name: index for index, name in enumerate(application.app_setting_names())}
    ordered = sorted(config.app_env.items(), key=lambda item: order.get(item[0], len(order)))
    lines += [f"{name}: {json.dumps(value)}" for name, value in ordered]
    lines.append(f"THREADS: {json.dumps(str(threads))}")
    return "\n".join(lines) + "\n"


def firebase_json(config: Config) -> str:
    """The repository's firebase.json for this deploy: its rules and indexes files, for the
    configured database, and its Storage rules for the snapshot bucket (the `storage` entry
    of firebase.json names no bucket: the CLI would pick the project's default bucket)."""
    repo = json.loads((application.ROOT / "firebase.json").read_text(encoding="utf-8"))
    up = "../" * len(Path(FIREBASE_CONFIG).parent.parts)
    firestore = repo["firestore"]
    return json.dumps({
        "firestore": {"database": config.database, "rules": up + firestore["rules"],
                      "indexes": up + firestore["indexes"]},
        "storage": [{"bucket": config.bucket, "rules": up + repo["storage"]["rules"]}],
    }, indent=2) + "\n"


def lifecycle_json(config: Config) -> str:
    """The bucket's lifecycle configuration: delete old report objects, nothing else."""
    rule = {"action": {"type": "Delete"},
            "condition": {"age": config.retention_days, "matchesPrefix": [REPORTS_PREFIX]}}
    return json.dumps({"lifecycle": {"rule": [rule]}}, indent=2) + "\n"
