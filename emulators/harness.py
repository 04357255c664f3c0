"""Start, reach and stop the local Firestore, Cloud Storage and Firebase Auth emulators.

Used by the test fixtures (``tests/conftest.py``), the benchmarks and the local stack
(``dev/stack.py``)::

    from emulators.harness import firestore_from_env_or_start, storage_from_env_or_start

    firestore = firestore_from_env_or_start()   # FIRESTORE_EMULATOR_HOST wins when set
    storage = storage_from_env_or_start()       # STORAGE_EMULATOR_HOST wins when set
    auth = auth_from_env_or_start("demo-x")     # FIREBASE_AUTH_EMULATOR_HOST wins when set
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host    # "127.0.0.1:P"
    os.environ["STORAGE_EMULATOR_HOST"] = storage.host        # "http://127.0.0.1:P"
    ...
    firestore.stop(); storage.stop()            # no-op for emulators we did not start

Firestore is **Google's own emulator** (``cloud-firestore-emulator``, the gcloud component; the
same jar the firebase CLI downloads), found by ``find_firestore_emulator``: the real query
engine, security-rules engine and trigger delivery. Cloud Storage is the patched
``gcp-storage-emulator`` (``python -m emulators.storage_server``): Google's cannot be
downloaded here. Auth is Firebase's Auth emulator (the pinned npm ``firebase-tools``,
``firebase emulators:start --only auth``: pure Node, no Java). Google's emulator keeps no
billing counter; ``emulators.meter`` counts the document reads its clients receive.

Emulators we start run in their own process group, write stdout and stderr to a log file,
are killed (group-wide) at ``stop()`` or at interpreter exit, and also exit when this process
dies (the storage emulator when its stdin closes, the JVM and Node by the parent-death signal).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATOR_DIR = Path("platform") / "cloud-firestore-emulator"
EMULATOR_JAR = "cloud-firestore-emulator.jar"
EMULATOR_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
# Google Cloud SDK roots: Debian/Ubuntu packages, the snap, the interactive installer, Homebrew.
SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk",
             "/snap/google-cloud-cli/current", "/opt/google-cloud-sdk",
             str(Path.home() / "google-cloud-sdk"),
             "/opt/homebrew/share/google-cloud-sdk", "/usr/local/share/google-cloud-sdk")
FIREBASE_TOOLS = "15.34.2"  # the firebase CLI a user may fetch the emulator with (pinned)
WRITTEN_EVENT = "google.cloud.firestore.document.v1.written"
FIRESTORE_READY = "Dev App Server is now running"
STORAGE_READY = "READY "
PORT_TAKEN = "port taken"  # firebase-tools: "Could not start <emulator>, port taken."
PORT_TAKEN_RETRIES = 3
AUTH_READY = "All emulators ready"  # in firebase-tools' boxed banner, not at a line's start
FIREBASE_CLI = REPO_ROOT / "node_modules" / ".bin" / "firebase"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
# "L12:5: Unexpected '}'." in the rules compiler's answer.
_RULES_ISSUE = re.compile(r"L(?P<line>\d+):(?P<column>\d+):?(?P<text>.*)")


class EmulatorError(RuntimeError):
    """An emulator could not be started or reached."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with reserved_port() as port:
        return port


def preferred_port(port: int) -> int:
    """`port` when it is free on 127.0.0.1 (a person's usual address), else a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


@contextlib.contextmanager
def reserved_port():
    """A free port of 127.0.0.1, held (bound) until the block ends: nothing started meanwhile
    (an emulator's own extra ports, which it takes at random) can take it. Release it just
    before the process that will listen there starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@dataclass(eq=False)
class RunningEmulator:
    """One emulator: started by us (``process`` set) or external (``process`` None)."""

    name: str
    host: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    ready_line: str = ""  # the log line's marker that says it is ready
    command: list[str] = field(default_factory=list)
    scratch: Path | None = None  # a folder of ours the emulator works in, deleted at stop()
    # Starts the same emulator again on other free ports (firebase-tools': see start_auth).
    respawn: Callable[[], RunningEmulator] | None = None

    def stop(self) -> None:
        """Stops an emulator we started: SIGTERM, then SIGKILL, to its whole process group."""
        process = self.process
        if process is None:
            return
        _started.discard(self)
        if process.returncode is None:  # not reaped yet, so its group id is still ours
            _kill_group(process, signal.SIGTERM)
            _wait_unreaped(process, STOP_TIMEOUT_S)
            # Whatever is left of the group goes (the leader is a zombie at most, so the
            # group id cannot have been reused).
            _kill_group(process, signal.SIGKILL)
            process.wait()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the emulator's log (stdout and stderr)."""
        return _tail(self.log_path, lines)


_started: set[RunningEmulator] = set()


@atexit.register
def _stop_all() -> None:
    for emulator in list(_started):
        with contextlib.suppress(Exception):
            emulator.stop()


def _kill_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _wait_unreaped(process: subprocess.Popen, timeout: float) -> None:
    """Waits for the process to exit without reaping it (it stays a zombie until wait())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return
        except ChildProcessError:
            return
        time.sleep(0.02)


def _tail(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


def _log_file(name: str, log_path: str | os.PathLike | None) -> Path:
    if log_path is not None:
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    handle, path = tempfile.mkstemp(prefix=f"{name}-emulator-", suffix=".log")
    os.close(handle)
    return Path(path)


def keep_or_discard(scratch: Path, keep: bool, into: Path) -> None:
    """End of a test run: its logs and pictures (written to `scratch`) move to `into` when
    something failed (`keep`), and are deleted otherwise (a green run leaves nothing behind)."""
    if keep and scratch.is_dir() and any(scratch.iterdir()):
        into.mkdir(parents=True, exist_ok=True)
        for path in scratch.iterdir():
            target = into / path.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(path), str(target))
    shutil.rmtree(scratch, ignore_errors=True)


def _death_signal_setter(sig: signal.Signals = signal.SIGTERM):
    """Linux: a function for ``preexec_fn`` that makes the child get ``sig`` when the process
    that started it dies (even SIGKILLed); None elsewhere. libc is looked up here, in the
    parent, so that the forked child only makes the one call."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, sig)


def _with_death_signal(command: list[str], sig: signal.Signals):
    """`command` started so that it gets `sig` when the thread that started it ends: through
    util-linux's `setpriv --pdeathsig` where it is (then no ``preexec_fn``), else the returned
    ``preexec_fn``. A ``preexec_fn`` makes Python run its fork handlers in the child, and gRPC's
    (a test's Firestore client in the same process) then aborted the child before its exec (seen
    in CI under pytest-xdist: SIGABRT, ``epoll_wait error: Bad file descriptor``)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv:
        return [setpriv, f"--pdeathsig={sig.name}", "--", *command], None
    return command, _death_signal_setter(sig)


def _launch(name: str, command: list[str], log_path, *, ready: str, env: dict | None = None,
            die_with_parent: bool = False, cwd: Path = REPO_ROOT):
    """Starts a command in its own process group and waits for a log line starting with
    ``ready`` (see ``_spawn`` and ``wait_until_ready``).

    Returns (emulator, the words after ``ready`` on its line)."""
    emulator = _spawn(name, command, log_path, ready=ready, env=env,
                      die_with_parent=die_with_parent, cwd=cwd)
    return emulator, wait_until_ready(emulator)


def _spawn(name: str, command: list[str], log_path, *, ready: str, env: dict | None = None,
           die_with_parent: bool | signal.Signals = False,
           cwd: Path = REPO_ROOT) -> RunningEmulator:
    """Starts a command in its own process group, without waiting. With ``die_with_parent``,
    call this from the thread that lives as long as the emulator: Linux sends the death
    signal when the starting *thread* ends. ``die_with_parent`` may name the signal."""
    log = _log_file(name, log_path)
    argv, preexec_fn = command, None
    if die_with_parent:
        argv, preexec_fn = _with_death_signal(
            command, signal.SIGTERM if die_with_parent is True else die_with_parent)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,  # closed when we die: the storage emulator then exits too
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=preexec_fn,
        )
    emulator = RunningEmulator(name=name, host="", process=process, log_path=log,
                               ready_line=ready, command=command)
    _started.add(emulator)
    return emulator


def wait_until_ready(emulator: RunningEmulator) -> list[str]:
    """Waits for the emulator's ready line (one starting with its marker, or holding it, for
    firebase-tools' boxed banner); the words after the marker. EmulatorError (and the
    emulator stopped) when it exits first or takes longer than STARTUP_TIMEOUT_S."""
    ready, log, process = emulator.ready_line, emulator.log_path, emulator.process
    if process is None:
        return []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    respawns = 0
    while True:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(ready) or (ready == AUTH_READY and ready in line):
                return line[len(ready):].split()
        code = process.poll()
        if (code is not None and emulator.respawn is not None and PORT_TAKEN in text
                and respawns < PORT_TAKEN_RETRIES):
            # A port chosen free was taken before the emulator bound it (another process
            # between our check and its start, seconds later): again, on other ports.
            respawns += 1
            emulator.stop()
            again = emulator.respawn()
            _started.discard(again)
            _started.add(emulator)
            emulator.host, emulator.process = again.host, again.process
            emulator.command, emulator.scratch = again.command, again.scratch
            process = emulator.process
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            continue
        if code is not None or time.monotonic() > deadline:
            emulator.stop()
            why = (
                f"exited with code {code} before it was ready"
                if code is not None
                else f"was not ready within {STARTUP_TIMEOUT_S:.0f} s"
            )
            raise EmulatorError(
                f"the {emulator.name} emulator {why}.\n"
                f"command: {' '.join(emulator.command)}\nlog {log}:\n"
                f"{_tail(log, LOG_TAIL_LINES)}"
            )
        time.sleep(0.05)


def find_firestore_emulator() -> list[str]:
    """The command that runs Google's Firestore emulator (``... start``), or EmulatorError.

    Looked for, in order: the ``FIRESTORE_EMULATOR_PATH`` setting (the ``cloud_firestore_emulator``
    script or a ``.jar``), the usual Google Cloud SDK install paths, ``gcloud info``, and the
    firebase CLI's download cache (``~/.cache/firebase/emulators``). The jar is run with ``java``
    directly (no wrapper shell), so stopping our process group stops the JVM itself.
    """
    java = shutil.which(os.environ.get("JAVA", "java"))
    candidates = _emulator_candidates()
    jar = next((path for path in candidates if path.is_file()), None)
    if jar is None:
        raise EmulatorError(
            "Google's Firestore emulator was not found (looked at "
            f"{', '.join(str(path) for path in candidates) or 'nothing'}). "
            "Install it with one of:\n"
            "  apt-get install google-cloud-cli-firestore-emulator   (Google Cloud's apt repo)\n"
            "  gcloud components install cloud-firestore-emulator\n"
            f"  npx --yes firebase-tools@{FIREBASE_TOOLS} setup:emulators:firestore\n"
            "or set FIRESTORE_EMULATOR_PATH to its cloud_firestore_emulator script or .jar. "
            "It needs Java 11 or newer.")
    if java is None:
        raise EmulatorError(
            "`java` is not on PATH: Google's Firestore emulator needs Java 11 or newer "
            "(Debian: apt-get install default-jre-headless)")
    return [java, "-Duser.language=en", "-cp", str(jar), EMULATOR_MAIN_CLASS, "start"]


def _emulator_candidates() -> list[Path]:
    """Where the emulator's jar may be, in the order we trust them."""
    setting = os.environ.get("FIRESTORE_EMULATOR_PATH")
    if setting:
        path = Path(setting).expanduser()
        return [path if path.suffix == ".jar" else path.parent / EMULATOR_JAR]
    roots = [Path(root) for root in SDK_ROOTS]
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        roots.append(Path(gcloud).resolve().parent.parent)
    candidates = [root / EMULATOR_DIR / EMULATOR_JAR for root in roots]
    if gcloud is not None and not any(path.is_file() for path in candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            root = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                                  capture_output=True, text=True, timeout=20).stdout.strip()
            if root:
                candidates.append(Path(root) / EMULATOR_DIR / EMULATOR_JAR)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "firebase"
    candidates.extend(sorted((cache / "emulators").glob("cloud-firestore-emulator-*.jar"),
                             reverse=True))
    return candidates


def start_firestore(host: str = "127.0.0.1", port: int | None = None, log_path=None, *,
                    rules: str | os.PathLike | None = None,
                    functions_emulator: str | None = None) -> RunningEmulator:
    """Starts Google's Firestore emulator; ``host`` of the result is ``"HOST:PORT"``.

    ``rules``: a rules file every project starts with (``--rules``). ``functions_emulator``:
    ``"HOST:PORT"`` that receives the emulator's CloudEvents for registered triggers.
    """
    command = find_firestore_emulator()
    last_error: EmulatorError | None = None
    for _ in range(3):  # a port taken between free_port() and the JVM's bind: try another
        chosen = port or free_port()
        arguments = [f"--host={host}", f"--port={chosen}"]
        if rules is not None:
            arguments.append(f"--rules={Path(rules).resolve()}")
        if functions_emulator is not None:
            arguments.append(f"--functions_emulator={functions_emulator}")
        try:
            emulator, _ = _launch("firestore", command + arguments, log_path,
                               ready=FIRESTORE_READY, die_with_parent=True)
        except EmulatorError as err:
            last_error = err
            if port is not None or "BindException" not in str(err):
                raise
            continue
        emulator.host = f"{host}:{chosen}"
        return emulator
    raise last_error  # type: ignore[misc]


def start_storage(
    host: str = "127.0.0.1", port: int | None = None, log_path=None
) -> RunningEmulator:
    """Starts the patched Cloud Storage emulator; ``host`` is ``"http://HOST:PORT"``."""
    command = [
        sys.executable,
        "-m",
        "emulators.storage_server",
        "--host",
        host,
        "--port",
        str(port or 0),
        "--exit-on-stdin-close",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    emulator, words = _launch("storage", command, log_path, ready=STORAGE_READY, env=env)
    emulator.host = f"http://{words[0]}"
    return emulator


def start_auth(project: str, host: str = "127.0.0.1", port: int | None = None,
               log_path=None, *, wait: bool = True) -> RunningEmulator:
    """Starts Firebase's Auth emulator for ``project`` (a ``demo-`` one); ``host`` of the result
    is ``"HOST:PORT"`` (what ``FIREBASE_AUTH_EMULATOR_HOST`` takes). It takes 7-13 s (Node):
    ``wait=False`` returns at once, and ``wait_until_ready(emulator)`` waits later, so that
    other emulators start meanwhile (from the same thread: see ``_spawn``).

    firebase-tools reads its ports from a ``firebase.json``: this writes one of its own (the
    auth port, and free ports for the emulator hub and logging that it opens too, so that two
    stacks never meet on 4400/4500) in a scratch folder, deleted at ``stop()``.
    """
    if not FIREBASE_CLI.exists():
        raise EmulatorError(f"{FIREBASE_CLI} is missing: the Auth emulator is the npm package "
                            "firebase-tools (package.json): run `npm ci` first")
    if not project.startswith("demo-"):
        raise EmulatorError(f"the Auth emulator runs for demo- projects only, not {project!r}")
    folder = Path(tempfile.mkdtemp(prefix="auth-emulator-"))
    with reserved_port() as hub, reserved_port() as logging_port:
        chosen = port or free_port()
    config = {"emulators": {
        "singleProjectMode": True, "ui": {"enabled": False},
        "auth": {"host": host, "port": chosen},
        "hub": {"host": host, "port": hub}, "logging": {"host": host, "port": logging_port}}}
    (folder / "firebase.json").write_text(json.dumps(config), encoding="utf-8")
    command = [str(FIREBASE_CLI), "emulators:start", "--only", "auth", "--project", project,
               "--config", str(folder / "firebase.json")]
    env = {**os.environ, "CI": "1"}  # no prompts, no spinner
    # SIGKILL when we die: firebase-tools takes a SIGTERM during its start-up as the first of
    # two ("clean shutdown") and can keep running; the emulator keeps nothing worth a clean exit.
    emulator = _spawn("auth", command, log_path, ready=AUTH_READY, env=env,
                      die_with_parent=signal.SIGKILL, cwd=folder)
    emulator.host = f"{host}:{chosen}"
    emulator.scratch = folder
    if port is None:  # its own ports all chosen here: another start may choose others
        emulator.respawn = lambda: start_auth(project, host, None, log_path, wait=False)
    if wait:
        wait_until_ready(emulator)
    return emulator


def auth_from_env_or_start(project: str, host: str = "127.0.0.1", port: int | None = None,
                           log_path=None, *, wait: bool = True) -> RunningEmulator:
    """The Auth emulator at ``FIREBASE_AUTH_EMULATOR_HOST`` when set (not ours to stop), else
    ours (see ``start_auth``; ``wait_until_ready`` does nothing for an external one)."""
    external = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "").strip()
    if external:
        return RunningEmulator(name="auth", host=external)
    return start_auth(project, host=host, port=port, log_path=log_path, wait=wait)


def firestore_from_env_or_start(
    host: str = "127.0.0.1", port: int | None = None, log_path=None, **options
) -> RunningEmulator:
    """The emulator at ``FIRESTORE_EMULATOR_HOST`` when set (not ours to stop), else ours
    (started with ``options``: see ``start_firestore``)."""
    external = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if external:
        return RunningEmulator(name="firestore", host=external)
    return start_firestore(host=host, port=port, log_path=log_path, **options)


def storage_from_env_or_start(
    host: str = "127.0.0.1", port: int | None = None, log_path=None
) -> RunningEmulator:
    """The emulator at ``STORAGE_EMULATOR_HOST`` when set (not ours to stop), else ours."""
    external = os.environ.get("STORAGE_EMULATOR_HOST")
    if external:
        if "://" not in external:
            external = f"http://{external}"
        return RunningEmulator(name="storage", host=external.rstrip("/"))
    return start_storage(host=host, port=port, log_path=log_path)


def call_emulator(base_url: str, method: str, path: str, body: bytes | None = None,
          timeout: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request to an emulator: (status, body)."""
    parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {**({"Content-Type": "application/json"} if body is not None else {}),
               **(headers or {})}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as err:
        raise EmulatorError(f"{method} {base_url}{path} failed: {err}") from err
    finally:
        connection.close()


def _request(base_url: str, method: str, path: str, body: bytes | None = None) -> bytes:
    status, answer = call_emulator(base_url, method, path, body)
    if status >= 300:
        raise EmulatorError(f"{method} {base_url}{path}: HTTP {status} {answer[:200]!r}")
    return answer


def clear_firestore_project(
    emulator: RunningEmulator, project: str, database: str = "(default)"
) -> None:
    """Deletes every document of a project's database (Google's emulator has the same route)."""
    path = f"/emulator/v1/projects/{quote(project)}/databases/{quote(database)}/documents"
    _request(emulator.host, "DELETE", path)


def register_trigger(emulator: RunningEmulator, project: str, trigger_id: str,
                     document_pattern: str, event_type: str = WRITTEN_EVENT,
                     database: str = "(default)") -> None:
    """Registers an Eventarc-style trigger in Google's emulator: each matching write is then
    POSTed to ``http://<functions emulator>/functions/projects/<project>/triggers/<trigger_id>``
    (registering the same id again replaces it; there is no removal)."""
    body = json.dumps({"eventType": event_type, "database": database, "namespace": "(default)",
                       "document": {"value": document_pattern, "matchType": "PATH_PATTERN"}})
    _request(emulator.host, "POST", f"/emulator/v1/projects/{quote(project)}/eventarcTrigger"
             f"?eventarcTriggerId={quote(trigger_id)}", body.encode())


class RulesError(EmulatorError):
    """The emulator's rules compiler refused a ruleset; ``issues`` are its messages."""

    def __init__(self, issues: list[dict]):
        self.issues = issues
        lines = [f"line {issue.get('line', '?')}, column {issue.get('column', '?')}: "
                 f"{issue.get('description', issue)}" for issue in issues]
        super().__init__("the rules do not compile:\n  " + "\n  ".join(lines))


def load_rules(emulator: RunningEmulator, project: str, rules: str,
               name: str = "firestore.rules") -> None:
    """Loads a ruleset into one project of Google's emulator; its compiler's errors raise
    ``RulesError`` (with line and column), and nothing changes."""
    body = json.dumps({"rules": {"files": [{"name": name, "content": rules}]}}).encode()
    status, answer = call_emulator(emulator.host, "PUT",
                           f"/emulator/v1/projects/{quote(project)}:securityRules", body)
    if status == 200:
        return
    try:
        details = json.loads(answer)["error"]
    except (ValueError, KeyError, TypeError):
        raise EmulatorError(f"loading rules: HTTP {status} {answer[:300]!r}") from None
    raise RulesError(_rules_issues(details))


def _rules_issues(error: dict) -> list[dict]:
    """Line, column and text of each compiler message of an emulator error answer."""
    issues = []
    for line in str(error.get("message", "")).splitlines():
        match = _RULES_ISSUE.search(line)
        if match:
            issues.append({"line": int(match["line"]), "column": int(match["column"]),
                           "description": match["text"].strip()})
    return issues or [{"description": str(error.get("message", error))}]
