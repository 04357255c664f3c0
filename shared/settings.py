"""Settings: one frozen object, read once from the environment and validated.

Every variable is documented in README.md ("Settings"). An invalid value raises `ConfigError`
naming the variable, so a misconfigured deploy fails at its first request with a clear log line
instead of serving wrong answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import ConfigError

_COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_ORIGIN = re.compile(r"^https?://[^/\s]+$")


GOOGLE_OIDC_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one function instance."""

    project: str
    snapshot_bucket: str
    collections: tuple[str, ...] = ("users", "jobs")
    allowed_origins: frozenset[str] = frozenset()
    read_access: str = "admin"
    firestore_timeout_s: float = 2.0
    storage_timeout_s: float = 5.0
    cache_ttl_s: float = 10.0
    breaker_cooldown_s: float = 15.0
    default_limit: int = 100
    max_limit: int = 1000
    cache_control: str = "private, no-cache"
    database: str = "(default)"
    max_body_bytes: int = 10 * 1024 * 1024
    check_revoked: bool = False
    app_check: str = "off"
    max_event_age_s: float = 3600.0
    publish_interval_s: float = 1.0
    publish_wait_s: float = 60.0
    tombstone_retention_s: float = 30 * 86400.0
    migration_batch_size: int = 400
    migration_concurrency: int = 8
    migration_start_ops_s: float = 500.0
    migration_timeout_s: float = 30.0
    migration_time_budget_s: float = 3300.0
    catchup_margin_s: float = 60.0
    catchup_invoker: str = ""
    catchup_audience: str = ""
    catchup_certs_url: str = GOOGLE_OIDC_CERTS_URL
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def uses_emulators(self) -> bool:
        """True when the Firestore emulator is configured (local stack or tests)."""
        return bool(self.environ.get("FIRESTORE_EMULATOR_HOST"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 names_read: list[str] | None = None) -> Settings:
        """Read and validate the settings; raise `ConfigError` naming the first bad variable.

        `names_read`, when given, receives the name of each variable read, in order: the
        deploy writes exactly these to the functions' environment (deploy/application.py).
        """
        env = dict(os.environ if env is None else env)
        reader = _Reader(env, names_read)
        project = reader.text("GOOGLE_CLOUD_PROJECT", required=True, pattern=_PROJECT_ID)
        collections = reader.names("COLLECTIONS", default="users,jobs")
        settings = cls(
            project=project,
            snapshot_bucket=reader.text("SNAPSHOT_BUCKET", required=True, pattern=_BUCKET_NAME),
            collections=collections,
            allowed_origins=reader.origins("ALLOWED_ORIGINS"),
            read_access=reader.choice("READ_ACCESS", ("public", "admin"), default="admin"),
            firestore_timeout_s=reader.number("FIRESTORE_TIMEOUT_S", 2.0, low=0.05, high=60),
            storage_timeout_s=reader.number("STORAGE_TIMEOUT_S", 5.0, low=0.1, high=120),
            cache_ttl_s=reader.number("CACHE_TTL_S", 10.0, low=0, high=3600),
            breaker_cooldown_s=reader.number("BREAKER_COOLDOWN_S", 15.0, low=0, high=3600),
            default_limit=int(reader.number("DEFAULT_LIMIT", 100, low=1, high=10000)),
            max_limit=int(reader.number("MAX_LIMIT", 1000, low=1, high=10000)),
            cache_control=reader.text("CACHE_CONTROL", default="private, no-cache"),
            database=reader.text("FIRESTORE_DATABASE", default="(default)"),
            max_body_bytes=int(reader.number("MAX_BODY_BYTES", 10 * 1024 * 1024, low=1024,
                                             high=32 * 1024 * 1024)),
            check_revoked=reader.flag("CHECK_REVOKED", default=False),
            app_check=reader.choice("APP_CHECK", ("off", "optional", "required"), default="off"),
            max_event_age_s=reader.number("MAX_EVENT_AGE_S", 3600.0, low=1, high=7 * 86400),
            publish_interval_s=reader.number("PUBLISH_INTERVAL_S", 1.0, low=0, high=600),
            publish_wait_s=reader.number("PUBLISH_WAIT_S", 60.0, low=1, high=3600),
            tombstone_retention_s=reader.number("TOMBSTONE_RETENTION_S", 30 * 86400.0,
                                                low=60, high=400 * 86400),
            # A migration commit holds its batch plus the batch's checkpoint: 499 + 1 writes.
            migration_batch_size=int(reader.number("MIGRATION_BATCH_SIZE", 400, low=1,
                                                   high=499)),
            migration_concurrency=int(reader.number("MIGRATION_CONCURRENCY", 8, low=1, high=64)),
            # Firestore's 500/50/5 ramp-up: the starting writes per second of a migration.
            migration_start_ops_s=reader.number("MIGRATION_START_OPS_S", 500, low=1,
                                                high=1_000_000),
            migration_timeout_s=reader.number("MIGRATION_TIMEOUT_S", 30, low=1, high=600),
            # Under the function's timeout (deploy: 3600 s), so a run pauses cleanly instead.
            migration_time_budget_s=reader.number("MIGRATION_TIME_BUDGET_S", 3300, low=10,
                                                  high=86400),
            # The catch-up re-reads what changed this long before its last run: commit skew
            # between a write's `updatedAt` and its commit.
            catchup_margin_s=reader.number("CATCHUP_MARGIN_S", 60, low=0, high=86400),
            # Who may call catch_up_snapshots: Cloud Scheduler's service account (its OIDC
            # token's e-mail), the token's audience (the function's URL; empty: not checked
            # here, Cloud Run checks it), and where the token's signing keys are published.
            catchup_invoker=reader.text("CATCHUP_INVOKER", default=""),
            catchup_audience=reader.text("CATCHUP_AUDIENCE", default=""),
            catchup_certs_url=reader.text("CATCHUP_CERTS_URL", default=GOOGLE_OIDC_CERTS_URL),
            environ=env,
        )
        if settings.catchup_certs_url != GOOGLE_OIDC_CERTS_URL and not project.startswith("demo-"):
            # Keys from anywhere but Google would let their holder call the catch-up: only a
            # demo- project (local stack, tests) may use a local issuer.
            raise ConfigError("CATCHUP_CERTS_URL may differ from Google's only in a demo- "
                              "project", code="unsafe_setting",
                              details={"setting": "CATCHUP_CERTS_URL"})
        if reader.text("FIREBASE_AUTH_EMULATOR_HOST") and not project.startswith("demo-"):
            # With the auth emulator set, firebase-admin accepts unsigned tokens: only a demo-
            # project, which never reaches real data, may run that way.
            raise ConfigError(
                f"FIREBASE_AUTH_EMULATOR_HOST is set but GOOGLE_CLOUD_PROJECT {project!r} is not "
                "a demo- project: refusing to start, since the auth emulator makes firebase-admin "
                "accept unsigned ID tokens. Unset FIREBASE_AUTH_EMULATOR_HOST, or use a demo- "
                "project locally", code="unsafe_setting",
                details={"setting": "FIREBASE_AUTH_EMULATOR_HOST"})
        if settings.tombstone_retention_s < settings.max_event_age_s:
            # A pruned tombstone can no longer stop a late update from resurrecting a deleted
            # document, so tombstones must outlive the oldest event the publisher accepts.
            raise ConfigError("TOMBSTONE_RETENTION_S must be at least MAX_EVENT_AGE_S",
                              code="invalid_setting",
                              details={"setting": "TOMBSTONE_RETENTION_S"})
        if settings.default_limit > settings.max_limit:
            raise ConfigError("DEFAULT_LIMIT must not exceed MAX_LIMIT", code="invalid_setting")
        return settings


class _Reader:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str], names_read: list[str] | None = None):
        self.env = env
        self.names_read = names_read

    def _raw(self, name: str) -> str | None:
        if self.names_read is not None and name not in self.names_read:
            self.names_read.append(name)
        value = self.env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def _fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"setting {name} {why}", code="invalid_setting",
                           details={"setting": name})

    def text(self, name: str, *, default: str | None = None, required: bool = False,
             pattern: re.Pattern[str] | None = None) -> str:
        value = self._raw(name)
        if value is None:
            if required:
                raise self._fail(name, "is required but not set")
            return default or ""
        if pattern is not None and not pattern.match(value):
            raise self._fail(name, f"has an invalid value {value!r}")
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self._raw(name)
        if value is None:
            return float(default)
        try:
            number = float(value)
        except ValueError:
            raise self._fail(name, f"must be a number, got {value!r}") from None
        if not low <= number <= high:
            raise self._fail(name, f"must be between {low:g} and {high:g}, got {value!r}")
        return number

    def choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value not in choices:
            raise self._fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def flag(self, name: str, *, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise self._fail(name, f"must be true or false, got {value!r}")

    def names(self, name: str, *, default: str) -> tuple[str, ...]:
        raw = self._raw(name) or default
        names = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not names:
            raise self._fail(name, "must name at least one collection")
        for item in names:
            if not _COLLECTION_NAME.match(item):
                raise self._fail(name, f"has an invalid collection name {item!r}")
        if len(set(names)) != len(names):
            raise self._fail(name, "names a collection twice")
        return names

    def origins(self, name: str) -> frozenset[str]:
        raw = self._raw(name) or ""
        origins = [part.strip().rstrip("/") for part in raw.split(",") if part.strip()]
        for origin in origins:
            if origin == "*" or not _ORIGIN.match(origin):
                raise self._fail(name, f"must list exact origins like https://example.org, "
                                       f"got {origin!r}")
        return frozenset(origins)
