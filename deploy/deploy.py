"""Deploy everything to Google Cloud with one command: `make deploy PROJECT=... REGION=...`.

With `gcloud` and `firebase` installed and logged in, this enables the APIs, creates the
Firestore database if missing, dedicated service accounts with only the roles they need, the
snapshot bucket (uniform access, public access prevention enforced, old `reports/` deleted by
a lifecycle rule), writes the env-vars files from the settings (no secrets), releases the
Firestore rules and indexes and the snapshot bucket's Storage rules, and deploys every
function whose source or settings changed since its last deploy. `DRY_RUN=1` prints every
command, as a shell script, and runs nothing.

The functions are derived, not listed: every entry point of `main.py` (imported: see
`deploy/application.py` for what the deploy reads from the code) joins the deploy as it lands, the
read API once per configured collection, `publish_snapshot` as one Firestore trigger per
collection. An entry point the deploy does not know, or a configured collection without
one, stops the deploy before anything runs, so a rename cannot silently break it.

Modules: `deploy.application` (the application's code: entry points, settings, uploaded files),
`deploy.config` (the deploy's settings), `deploy.plan` (the steps), this one (print or run).
Settings: docs/deploy.md. Rehearsed end to end against a fake of Google's APIs by
`make deploy-rehearsal` (`deploy/rehearsal/`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python deploy/deploy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.application import MAIN, ROOT, DeployError, app_setting_names, entry_points
from deploy.config import Config
from deploy.plan import Command, Plan, WriteFile, build_plan

__all__ = ["Config", "DeployError", "app_setting_names", "build_plan", "entry_points",
           "execute", "main", "quote", "render"]


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
        if step.unless and step.unless_output is not None:
            check = " ".join(quote(arg) for arg in step.unless)
            line = f'test "$({check} 2>/dev/null)" = {quote(step.unless_output)} || {line}'
        elif step.unless:
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
        if step.unless and _satisfied(step, cwd):
            print(f"= {'up to date' if step.unless_output else 'exists'}, skipped: {shown}",
                  flush=True)
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


def _satisfied(step: Command, cwd: Path) -> bool:
    """Whether the step's check says it has nothing to do."""
    check = subprocess.run(step.unless, cwd=cwd, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    if check.returncode != 0:
        return False
    return step.unless_output is None or check.stdout.strip() == step.unless_output


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
          f"COLLECTIONS={','.join(config.collections)} python -m ops doctor", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
