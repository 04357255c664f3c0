"""What the deploy learns from the application's code, by importing it (never by parsing text).

The whole interface, so a restructure of the code can keep it working:

- `main` (the file `main.py`, loaded under a private module name): each module-level function
  decorated with `@functions_framework.http` or `@functions_framework.cloud_event` is an entry
  point; its kind is what the decorator registered in functions-framework's registry
  (`functions_framework._function_registry.REGISTRY_MAP`, the registry `functions-framework
  --target` reads). A read entry point is named after its collection; the collection a
  function hands to `serve_collection(...)` is read from its compiled constants, to name a
  renamed entry point in the error.
- `shared.settings.Settings.from_env(env, names_read=[...])`: validates the application
  settings (the deploy refuses what the functions would) and lists the variables it reads,
  which are all the env-vars file may carry (emulator hosts excepted); `.collections`,
  `.database`, `.snapshot_bucket`, `.check_revoked` of the result.
- `shared.errors.ConfigError` (`.message`): a bad setting.

The deploy runs with the project's virtualenv (`make deploy` depends on `make install`), so
these imports find functions-framework and the functions' dependencies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
# What `gcloud functions deploy --source=.` uploads (.gcloudignore allows these and nothing
# else; tests/test_deploy_rehearsal.py checks gcloud's own zip against this list).
UPLOADED = ("main.py", "requirements.txt", "functions", "shared", "schemas")
_COLLECTION = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Any valid pair: only the names read matter (reading stops at the first invalid value).
_PROBE_ENV = {"GOOGLE_CLOUD_PROJECT": "demo-deploy-probe", "SNAPSHOT_BUCKET": "demo-probe"}


class DeployError(Exception):
    """The deploy cannot be planned or a command failed; the message says what to change."""


@dataclass(frozen=True)
class EntryPoint:
    """A function of main.py decorated for functions-framework."""

    name: str
    kind: str  # "http" or "cloud_event"
    serves: str | None  # the collection its code hands to a `serve(...)` call, if any
    line: int


def _importable() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def entry_points(main_py: Path = MAIN) -> list[EntryPoint]:
    """Every `@functions_framework.http` / `.cloud_event` function of main.py, in order.

    main.py is imported in a child process, as functions-framework imports it on Cloud Run:
    its import-time setup (the framework's global error handler) then never meets an app that
    this process already ran, and nothing it loads stays in the deploy's process."""
    done = subprocess.run([sys.executable, "-m", "deploy.application", str(main_py)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise DeployError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                          else f"importing {main_py.name} failed (exit {done.returncode})")
    return [EntryPoint(**point) for point in json.loads(done.stdout)]


def _entry_points_here(main_py: Path) -> list[EntryPoint]:
    """`entry_points`, in this process (the child's side)."""
    _importable()
    name = "_deployed_main_" + hashlib.sha256(str(main_py).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, main_py)
    if spec is None or spec.loader is None:
        raise DeployError(f"{main_py} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the operator's code: any error stops the deploy, named
        raise DeployError(f"importing {main_py.name} failed: {type(exc).__name__}: {exc}") \
            from exc
    registry = importlib.import_module("functions_framework._function_registry").REGISTRY_MAP
    found = []
    for attr, value in vars(module).items():
        inner = getattr(value, "__wrapped__", None)
        if not callable(value) or inner is None or getattr(value, "__module__", None) != name:
            continue
        kind = {"http": "http", "cloudevent": "cloud_event"}.get(registry.get(attr, ""))
        if kind:
            code = inner.__code__
            found.append(EntryPoint(attr, kind, _served_collection(inner), code.co_firstlineno))
    return found


def _served_collection(function: Any) -> str | None:
    """The collection handed to `serve_collection(request, "users", ...)`, if any."""
    code = function.__code__
    if "serve_collection" not in code.co_names:
        return None
    names = [c for c in code.co_consts if isinstance(c, str) and c != function.__doc__
             and _COLLECTION.match(c)]
    return names[0] if len(names) == 1 else None


def app_setting_names() -> tuple[str, ...]:
    """The variables `Settings.from_env` reads, emulator hosts excluded: only these reach the
    env-vars file, so nothing else from the operator's shell (emulator hosts, tokens) can, and
    a new setting joins without touching the deploy."""
    _importable()
    settings = importlib.import_module("shared.settings")
    names: list[str] = []
    settings.Settings.from_env(_PROBE_ENV, names_read=names)
    return tuple(n for n in names if not n.endswith("_EMULATOR_HOST"))


def app_settings(app_env: Mapping[str, str]) -> Any:
    """Validate the application settings with the functions' own code."""
    _importable()
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


def uploaded_files(root: Path = ROOT) -> list[Path]:
    """The files of `UPLOADED` (bytecode caches aside), sorted: what the upload holds."""
    files = []
    for top in UPLOADED:
        path = root / top
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [f for f in candidates if f.is_file() and "__pycache__" not in f.parts
                  and f.suffix != ".pyc"]
    return sorted(files)


def source_digest(root: Path = ROOT) -> str:
    """A digest of the uploaded source: with a function's flags, whether a redeploy is due."""
    digest = hashlib.sha256()
    for path in uploaded_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


if __name__ == "__main__":  # the child of `entry_points`: main.py's entry points as JSON
    try:
        points = _entry_points_here(Path(sys.argv[1]))
    except DeployError as error:
        sys.exit(str(error))
    print(json.dumps([dataclasses.asdict(point) for point in points]))
