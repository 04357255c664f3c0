"""Settings: read once, validated, with errors that name the variable."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import ConfigError
from shared.settings import Settings

BASE = {"GOOGLE_CLOUD_PROJECT": "demo-test", "SNAPSHOT_BUCKET": "demo-bucket"}


def test_defaults():
    settings = Settings.from_env(BASE)
    assert settings.collections == ("users", "jobs")
    assert settings.read_access == "admin", "nothing is public by default"
    assert settings.allowed_origins == frozenset()
    assert settings.firestore_timeout_s == 2.0 and settings.cache_ttl_s == 10.0
    assert settings.cache_control == "private, no-cache"


def test_values_are_parsed():
    settings = Settings.from_env({**BASE, "COLLECTIONS": "users, jobs ,clients",
                                  "ALLOWED_ORIGINS": "https://a.example, http://localhost:5173/",
                                  "READ_ACCESS": "admin", "FIRESTORE_TIMEOUT_S": "0.75",
                                  "CACHE_TTL_S": "0"})
    assert settings.collections == ("users", "jobs", "clients")
    assert settings.allowed_origins == {"https://a.example", "http://localhost:5173"}
    assert settings.read_access == "admin" and settings.firestore_timeout_s == 0.75
    assert settings.cache_ttl_s == 0


def test_settings_are_frozen():
    settings = Settings.from_env(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.project = "other"  # type: ignore[misc]


@pytest.mark.parametrize(("name", "value"), [
    ("GOOGLE_CLOUD_PROJECT", ""),
    ("GOOGLE_CLOUD_PROJECT", "Bad_Project"),
    ("SNAPSHOT_BUCKET", ""),
    ("COLLECTIONS", "users,Users!"),
    ("COLLECTIONS", "users,users"),
    ("ALLOWED_ORIGINS", "*"),
    ("ALLOWED_ORIGINS", "https://a.example/path"),
    ("READ_ACCESS", "everyone"),
    ("FIRESTORE_TIMEOUT_S", "soon"),
    ("FIRESTORE_TIMEOUT_S", "0"),
    ("CACHE_TTL_S", "-1"),
    ("MAX_LIMIT", "100000"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, name: value})
    assert name in caught.value.message


def test_default_limit_above_maximum_is_rejected():
    with pytest.raises(ConfigError, match="DEFAULT_LIMIT"):
        Settings.from_env({**BASE, "DEFAULT_LIMIT": "50", "MAX_LIMIT": "10"})
