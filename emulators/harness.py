"""Start, reach and stop the local Firestore and Cloud Storage emulators.

Used by the test fixtures (``tests/conftest.py``) and by the local stack (``dev/stack.py``)::

    from emulators.harness import firestore_from_env_or_start, storage_from_env_or_start

    firestore = firestore_from_env_or_start()   # FIRESTORE_EMULATOR_HOST wins when set
    storage = storage_from_env_or_start()       # STORAGE_EMULATOR_HOST wins when set
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host    # "127.0.0.1:P"
    os.environ["STORAGE_EMULATOR_HOST"] = storage.host        # "http://127.0.0.1:P"
    ...
    firestore.stop(); storage.stop()            # no-op for emulators we did not start

Emulators we start run in their own process group, write stdout and stderr to a log file,
are killed (group-wide) at ``stop()`` or at interpreter exit, and also exit by themselves when
this process dies (their stdin is a pipe from us). Firestore is the patched npm emulator
(``emulators/firestore_server.mjs``, run with ``node``); Cloud Storage is the patched
``gcp-storage-emulator`` (``python -m emulators.storage_server``).

``admin_url`` is the Firestore admin base URL (``/health``, ``/stats``, ``/stats/reset``) of an
emulator we started, or of an external one when ``FIRESTORE_EMULATOR_ADMIN_URL`` is set; it is
None for other external emulators (e.g. Google's), which have no statistics.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRESTORE_LAUNCHER = REPO_ROOT / "emulators" / "firestore_server.mjs"
NODE_PACKAGE = REPO_ROOT / "node_modules" / "@firestore-emulator" / "server"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 40


class EmulatorError(RuntimeError):
    """An emulator could not be started or reached."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(eq=False)
class RunningEmulator:
    """One emulator: started by us (``process`` set) or external (``process`` None)."""

    name: str
    host: str
    admin_url: str | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None

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


def _launch(name: str, command: list[str], log_path, env: dict | None = None):
    """Starts a command in its own process group; returns (process, log path, READY words)."""
    log = _log_file(name, log_path)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # closed when we die: the emulator then exits too
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    emulator = RunningEmulator(name=name, host="", process=process, log_path=log)
    _started.add(emulator)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return emulator, line.split()[1:]
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            emulator.stop()
            why = (
                f"exited with code {code} before it was ready"
                if code is not None
                else f"was not ready within {STARTUP_TIMEOUT_S:.0f} s"
            )
            raise EmulatorError(
                f"the {name} emulator {why}.\n"
                f"command: {' '.join(command)}\nlog {log}:\n{_tail(log, LOG_TAIL_LINES)}"
            )
        time.sleep(0.05)


def start_firestore(
    host: str = "127.0.0.1", port: int | None = None, log_path=None
) -> RunningEmulator:
    """Starts the patched npm Firestore emulator; ``host`` of the result is ``"HOST:PORT"``."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("`node` is not on PATH: install Node.js >= 20 to run Firestore locally")
    if not NODE_PACKAGE.exists():
        raise EmulatorError(
            f"{NODE_PACKAGE} is missing: run `npm ci --ignore-scripts` (or `make install`)"
        )
    # Port 0: the emulator binds a free port itself and reports it (no race with free_port()).
    command = [
        node,
        str(FIRESTORE_LAUNCHER),
        "--host",
        host,
        "--port",
        str(port or 0),
        "--admin-port",
        "0",
        "--exit-on-stdin-close",
    ]
    emulator, words = _launch("firestore", command, log_path)
    # READY <host>:<port> admin <host>:<admin-port>
    emulator.host = words[0]
    emulator.admin_url = f"http://{words[2]}"
    return emulator


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
    emulator, words = _launch("storage", command, log_path, env=env)
    emulator.host = f"http://{words[0]}"
    return emulator


def firestore_from_env_or_start(
    host: str = "127.0.0.1", port: int | None = None, log_path=None
) -> RunningEmulator:
    """The emulator at ``FIRESTORE_EMULATOR_HOST`` when set (not ours to stop), else ours."""
    external = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if external:
        admin_url = os.environ.get("FIRESTORE_EMULATOR_ADMIN_URL") or None
        return RunningEmulator(name="firestore", host=external, admin_url=admin_url)
    return start_firestore(host=host, port=port, log_path=log_path)


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


def _request(base_url: str, method: str, path: str, timeout: float = 10.0) -> bytes:
    parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as err:
        raise EmulatorError(f"{method} {base_url}{path} failed: {err}") from err
    finally:
        connection.close()
    if response.status >= 300:
        raise EmulatorError(f"{method} {base_url}{path}: HTTP {response.status} {body[:200]!r}")
    return body


def _admin_url(emulator: RunningEmulator) -> str:
    if emulator.admin_url is None:
        raise EmulatorError(
            f"the {emulator.name} emulator at {emulator.host} has no admin endpoint "
            "(statistics exist only in our patched emulator)"
        )
    return emulator.admin_url


def clear_firestore_project(
    emulator: RunningEmulator, project: str, database: str = "(default)"
) -> None:
    """Deletes every document of a project's database (Google's emulator has the same route)."""
    path = f"/emulator/v1/projects/{quote(project)}/databases/{quote(database)}/documents"
    _request(emulator.admin_url or emulator.host, "DELETE", path)


def _stats_query(project: str | None) -> str:
    return f"?{urlencode({'project': project})}" if project else ""


def firestore_stats(emulator: RunningEmulator, project: str | None = None) -> dict:
    """``{"documentReads", "queries", "writes"}`` billed so far (all projects when None)."""
    body = _request(_admin_url(emulator), "GET", f"/stats{_stats_query(project)}")
    return json.loads(body)


def reset_firestore_stats(emulator: RunningEmulator, project: str | None = None) -> None:
    """Zeroes the statistics of one project (all projects when None)."""
    _request(_admin_url(emulator), "POST", f"/stats/reset{_stats_query(project)}")
