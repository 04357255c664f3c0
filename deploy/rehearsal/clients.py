"""The real gcloud and firebase CLIs pointed at the fake of Google's APIs, and `make deploy`.

`client_env(fake, home)` is the environment: a throwaway `CLOUDSDK_CONFIG` and `HOME`, an
access token from a file (gcloud) and a refresh token (firebase), every API endpoint
overridden to the fake, and the fake as the proxy for anything else, so a call to a host
nobody overrode reaches the fake and is refused there. `run_deploy` runs `make deploy` with
it, for real (not the dry run).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from deploy.rehearsal.fake_google import FakeGoogle

ROOT = Path(__file__).resolve().parent.parent.parent
GCLOUD = Path("/usr/lib/google-cloud-sdk/bin/gcloud")
FIREBASE = ROOT / "node_modules" / ".bin" / "firebase"
# gcloud's API names (CLOUDSDK_API_ENDPOINT_OVERRIDES_<NAME>) of every API the deploy reaches.
GCLOUD_APIS = ("CLOUDFUNCTIONS", "RUN", "SERVICEUSAGE", "CLOUDRESOURCEMANAGER", "FIRESTORE",
               "IAM", "STORAGE", "CLOUDBUILD", "ARTIFACTREGISTRY", "EVENTARC", "PUBSUB",
               "LOGGING", "CLOUDBILLING", "IAMCREDENTIALS", "FIREBASERULES", "CLOUDSCHEDULER")
# firebase-tools' origins (its lib/api.js) of what `firebase deploy` reaches: service host.
FIREBASE_ORIGINS = {
    "FIREBASE_TOKEN_URL": "www", "FIREBASE_GOOGLE_URL": "www", "FIRESTORE_URL": "firestore",
    "FIREBASE_RULES_URL": "firebaserules", "FIREBASE_SERVICE_USAGE_URL": "serviceusage",
    "FIREBASE_RESOURCEMANAGER_URL": "cloudresourcemanager",
    "FIREBASE_FIREBASESTORAGE_URL": "firebasestorage", "FIREBASE_API_URL": "firebase",
    "FIREBASE_STORAGE_URL": "storage", "FIREBASE_IAM_URL": "iam",
    "FIREBASE_CLOUDLOGGING_URL": "logging", "FIREBASE_CLOUDBILLING_URL": "cloudbilling",
    "FIREBASE_FUNCTIONS_URL": "cloudfunctions", "FIREBASE_FUNCTIONS_V2_URL": "cloudfunctions",
    "CLOUD_RUN_URL": "run", "CLOUD_RUN_API_URL": "run", "FIREBASE_PUBSUB_URL": "pubsub",
    "FIREBASE_CLOUDBUILD_URL": "cloudbuild", "EVENTARC_URL": "eventarc",
    "FIREBASE_HOSTING_API_URL": "firebasehosting", "FIREBASE_EXT_URL": "firebaseextensions",
    "FIREBASE_FIREDATA_URL": "mobilesdk-pa", "FIREBASE_AUTH_URL": "accounts",
    "FIREBASE_AUTHPROXY_URL": "auth"}


def client_env(fake: FakeGoogle, home: Path, base: Mapping[str, str] | None = None) -> dict:
    """The environment of one rehearsal's CLIs; `home` is a fresh directory for their state."""
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "access-token"
    token_file.write_text("rehearsal-access-token\n", encoding="utf-8")
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "PIP_CACHE_DIR", "XDG_CACHE_HOME")
    env = {name: value for name, value in (base or os.environ).items() if name in keep}
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{GCLOUD.parent}{os.pathsep}{FIREBASE.parent}{os.pathsep}"
                f"{env.get('PATH', '/usr/bin:/bin')}",
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token_file),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_CORE_SHOW_STRUCTURED_LOGS": "never",
        "FIREBASE_TOKEN": "rehearsal-refresh-token",
        "NO_UPDATE_NOTIFIER": "1", "CI": "true",
        "HTTPS_PROXY": fake.url, "HTTP_PROXY": fake.url,
        "https_proxy": fake.url, "http_proxy": fake.url,
    })
    for api in GCLOUD_APIS:
        env[f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"] = fake.url + "/"
    for origin, service in FIREBASE_ORIGINS.items():
        # Google's host name (the CLI derives API names from it), this server's port: the
        # CLI tunnels every request through the proxy, this server, which answers it itself.
        env[origin] = f"http://{service}.googleapis.com:{fake.port}"
    return env


def run_deploy(env: Mapping[str, str], settings: Mapping[str, str], *,
               timeout_s: float = 600) -> subprocess.CompletedProcess:
    """`make deploy` with these deploy settings (PROJECT, REGION, ...), for real; its output is
    captured (stdout and stderr together)."""
    argv = ["make", "--no-print-directory", "deploy"] + [f"{k}={v}" for k, v in settings.items()]
    return subprocess.run(argv, cwd=ROOT, env=dict(env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout_s, check=False)
