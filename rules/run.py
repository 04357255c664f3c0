"""Run the security-rules tests (rules/test/*.test.mjs, node's test runner) under Google's engine.

    python -m rules.run            (`make rules-test`; `make test` runs it too)

Firestore: the tests run against Google's Firestore emulator, the real rules engine: the one at
FIRESTORE_EMULATOR_HOST when set (checked first: it must accept a ruleset and enforce it), else
one this starts (``emulators.harness``) and stops. Any failing rules test fails the run.

Storage: ``storage.test.mjs`` needs Google's Storage emulator (the firebase CLI's
``cloud-storage-rules-runtime``), which cannot be downloaded here. It runs when
FIREBASE_STORAGE_EMULATOR_HOST names one; otherwise this says plainly that the storage rules
tests were NOT RUN, and why, and counts nothing for them.

Exit status: the node test runner's (0 when every test that ran passed); 2 when Google's
Firestore emulator is missing or the one named does not enforce rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from emulators import harness

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "rules" / "test"
FIRESTORE_TESTS = "firestore.test.mjs"
STORAGE_TESTS = "storage.test.mjs"
PROBE_PROJECT = "demo-rules-probe"
DENY_ALL = """rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /{document=**} { allow read, write: if false; }
  }
}
"""


class RunnerError(RuntimeError):
    """The rules tests cannot run: the message says what is missing."""


def enforcement_problem(host: str) -> str | None:
    """None when the emulator at ``host`` accepts a deny-all ruleset and then refuses an
    unauthenticated read (Google's does); else what is wrong."""
    try:
        urllib.request.urlopen(f"http://{host}/", timeout=5).close()
    except urllib.error.HTTPError:
        pass  # something answers HTTP: the probe below says what
    except OSError as exc:
        return f"no Firestore emulator answers at {host} ({exc})"
    emulator = harness.RunningEmulator(name="firestore", host=host)
    try:
        harness.load_rules(emulator, PROBE_PROJECT, DENY_ALL)
    except harness.EmulatorError as exc:
        return (f"the Firestore emulator at {host} does not accept security rules ({exc}): "
                "it is not Google's emulator")
    url = f"http://{host}/v1/projects/{PROBE_PROJECT}/databases/(default)/documents/probe/doc"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"no Firestore emulator answers at {host} ({exc})"
    if status != 403:
        return (f"the Firestore emulator at {host} does not enforce security rules "
                f"(an unauthenticated read got HTTP {status})")
    return None


def run(environ: dict[str, str] | None = None) -> int:
    """Run the rules tests; returns the exit status (see the module docstring)."""
    env = dict(os.environ if environ is None else environ)
    node = shutil.which("node", path=env.get("PATH"))
    if node is None:
        raise RunnerError("`node` is not on PATH: install Node.js 20+")
    if not (REPO / "node_modules" / "@firebase" / "rules-unit-testing").exists():
        raise RunnerError("node_modules is missing: run `make install` (npm ci)")
    files = [TESTS / FIRESTORE_TESTS]
    if env.get("FIREBASE_STORAGE_EMULATOR_HOST"):
        files.append(TESTS / STORAGE_TESTS)
    else:
        print("STORAGE RULES TESTS NOT RUN: they need Google's Storage emulator (the firebase "
              "CLI's cloud-storage-rules-runtime), which cannot be downloaded here; set "
              "FIREBASE_STORAGE_EMULATOR_HOST to one to run them. Nothing was tested for "
              "storage.rules: this is not a pass.", file=sys.stderr, flush=True)
    emulator = None
    scratch = None  # our emulator's log: kept in test-artifacts/ only when a test failed
    returncode = 2
    if env.get("FIRESTORE_EMULATOR_HOST"):
        problem = enforcement_problem(env["FIRESTORE_EMULATOR_HOST"])
        if problem is not None:
            raise RunnerError(problem + "; unset FIRESTORE_EMULATOR_HOST to let this start "
                              "Google's emulator")
    else:
        scratch = Path(tempfile.mkdtemp(prefix="rules-tests-"))
        try:
            emulator = harness.start_firestore(log_path=scratch / "rules-firestore-emulator.log")
        except harness.EmulatorError as exc:
            harness.keep_or_discard(scratch, True, REPO / "test-artifacts")
            raise RunnerError(str(exc)) from None
        env["FIRESTORE_EMULATOR_HOST"] = emulator.host
    try:
        print(f"running the rules tests under Google's Firestore emulator at "
              f"{env['FIRESTORE_EMULATOR_HOST']}: {' '.join(p.name for p in files)}", flush=True)
        returncode = subprocess.run([node, "--test", *map(str, files)], cwd=REPO, env=env,
                                    check=False).returncode
    finally:
        if emulator is not None:
            emulator.stop()
        if scratch is not None:
            harness.keep_or_discard(scratch, returncode != 0, REPO / "test-artifacts")
    return returncode


def main() -> int:
    """Command line entry point."""
    try:
        return run()
    except RunnerError as exc:
        print(f"RULES TESTS NOT RUN: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
