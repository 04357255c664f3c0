"""Chromium driven over its DevTools pipe alone, for page-load timings a person would get.

Playwright instruments every navigation (its utility world and bindings in each new document,
network and lifecycle events for every request): measured side by side in `make bench-load`,
it adds ~10-65 ms to a reload's first data event. This client sends only
the commands a measurement needs (`Page.addScriptToEvaluateOnNewDocument`, `Page.navigate`,
`Runtime.evaluate`, ...) over `--remote-debugging-pipe` (fd 3 in, fd 4 out, messages ended by
NUL): no network, no port, and nothing of its own in the page.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import queue
import threading
import time
from pathlib import Path

COMMAND_TIMEOUT_S = 30
CLOSE_TIMEOUT_S = 5


class DevToolsError(RuntimeError):
    """Chromium answered a command with an error, did not answer in time, or exited."""


class PipeBrowser:
    """One Chromium process on `profile` (a user-data directory), and its DevTools pipe."""

    def __init__(self, executable: str, args: list[str], profile: Path, log_path: Path):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        # The child's ends, moved above 3 and 4 first: dup2 onto 3 then 4 must not overwrite the
        # other end on its way.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
                for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        to_browser_r, from_browser_w = high
        argv = [executable, *args, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "about:blank"]
        # posix_spawn, not fork + exec in Python: the bench process may hold gRPC, whose fork
        # handlers are not safe in a child of a threaded parent.
        self.pid = os.posix_spawn(executable, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
            (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ])
        for fd in (to_browser_r, from_browser_w, log):
            os.close(fd)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="devtools-pipe", daemon=True).start()

    def _read(self) -> None:
        pending = b""
        while chunk := self._in.read(1 << 16):
            pending += chunk
            *messages, pending = pending.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._lock:
                    waiter = self._waiting.pop(message.get("id"), None)
                if waiter is not None:
                    waiter.put(message)
        with self._lock:  # the browser is gone: every command still waiting fails now
            for waiter in self._waiting.values():
                waiter.put({"error": {"message": "the browser closed its DevTools pipe"}})
            self._waiting.clear()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = COMMAND_TIMEOUT_S) -> dict:
        """Send one command (to `session`, a page's, or the browser) and return its result."""
        command_id = next(self._ids)
        answer: queue.Queue = queue.Queue()
        with self._lock:
            self._waiting[command_id] = answer
        message = {"id": command_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
            reply = answer.get(timeout=timeout_s)
        except (OSError, queue.Empty) as error:
            raise DevToolsError(f"{method}: no answer ({error!r})") from error
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error'].get('message')}")
        return reply["result"]

    def open_tab(self, url: str = "about:blank") -> tuple[str, str]:
        """A new tab: `(target id, session id)`."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return target, session["sessionId"]

    def first_tab(self) -> tuple[str, str]:
        """The tab the browser opened with: `(target id, session id)`."""
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            targets = self.send("Target.getTargets")["targetInfos"]
            pages = [target for target in targets if target["type"] == "page"]
            if pages:
                session = self.send("Target.attachToTarget",
                                    {"targetId": pages[0]["targetId"], "flatten": True})
                return pages[0]["targetId"], session["sessionId"]
            time.sleep(0.05)
        raise DevToolsError("the browser opened no tab")

    def evaluate(self, session: str, expression: str):
        """The value of a JavaScript expression in the tab's page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=session)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression[:60]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def close(self) -> None:
        """Close the browser (and kill it if it does not exit in time)."""
        try:
            self.send("Browser.close", timeout_s=CLOSE_TIMEOUT_S)
        except DevToolsError:
            pass
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
