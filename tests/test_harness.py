"""The emulator harness: finding Google's Firestore emulator, saying how to install it, and
stopping what it started when the test run dies."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from emulators import harness


def test_the_setting_names_the_emulator_script_or_jar(monkeypatch, tmp_path):
    script_dir = tmp_path / "cloud-firestore-emulator"
    script_dir.mkdir()
    (script_dir / "cloud_firestore_emulator").write_text("#!/bin/sh\n")
    (script_dir / harness.EMULATOR_JAR).write_bytes(b"PK")
    monkeypatch.setenv("FIRESTORE_EMULATOR_PATH", str(script_dir / "cloud_firestore_emulator"))
    command = harness.find_firestore_emulator()
    assert command[command.index("-cp") + 1] == str(script_dir / harness.EMULATOR_JAR)
    assert command[-2:] == [harness.EMULATOR_MAIN_CLASS, "start"]
    jar = tmp_path / "cloud-firestore-emulator-v1.19.9.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("FIRESTORE_EMULATOR_PATH", str(jar))
    command = harness.find_firestore_emulator()
    assert command[command.index("-cp") + 1] == str(jar)


def test_a_missing_emulator_is_an_error_that_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FIRESTORE_EMULATOR_PATH", str(tmp_path / "nowhere" / "emulator"))
    with pytest.raises(harness.EmulatorError) as missing:
        harness.find_firestore_emulator()
    message = str(missing.value)
    assert "not found" in message and str(tmp_path / "nowhere") in message
    assert "gcloud components install cloud-firestore-emulator" in message
    assert f"firebase-tools@{harness.FIREBASE_TOOLS} setup:emulators:firestore" in message
    assert "Java 11" in message


def test_java_is_required(monkeypatch, tmp_path):
    jar = tmp_path / "cloud-firestore-emulator.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("FIRESTORE_EMULATOR_PATH", str(jar))
    monkeypatch.setenv("PATH", str(tmp_path))  # no java there
    monkeypatch.delenv("JAVA", raising=False)
    with pytest.raises(harness.EmulatorError, match=r"java.*Java 11"):
        harness.find_firestore_emulator()


def test_without_the_setting_the_installed_emulator_is_found(monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_PATH", raising=False)
    command = harness.find_firestore_emulator()
    assert Path(command[command.index("-cp") + 1]).is_file()


def test_a_preset_host_is_used_as_is_and_never_stopped(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    external = harness.firestore_from_env_or_start()
    assert external.host == "127.0.0.1:1" and external.process is None
    external.stop()  # a no-op for an emulator we did not start


def test_broken_rules_are_refused_by_googles_compiler_with_line_and_column(emulators,
                                                                          project_id):
    with pytest.raises(harness.RulesError) as refused:
        harness.load_rules(emulators.firestore, project_id,
                           "rules_version = '2';\nservice cloud.firestore {\n"
                           "  match /x { allow read: if foo(; }\n}\n")
    assert refused.value.issues[0]["line"] == 3
    assert refused.value.issues[0]["column"] > 0
    assert "line 3" in str(refused.value)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")
def test_an_emulator_dies_with_the_thread_that_started_it(tmp_path):
    started = {}

    def start():
        started["emulator"] = harness._spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log",
                                             ready="never", die_with_parent=True)
        time.sleep(1)  # the thread outlives the start (setpriv sets the signal after the fork)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    process = started["emulator"].process
    try:
        # No preexec_fn where setpriv is (a child forked with one ran gRPC's fork handlers).
        assert process.args[0] != "sleep" or shutil.which("setpriv") is None
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()


def test_the_auth_emulator_starts_again_on_other_ports_when_one_it_chose_was_taken(
        monkeypatch, tmp_path):
    """firebase-tools binds its ports seconds after we chose them free: another process can
    take one meanwhile (seen once under two test workers: "Could not start emulator hub, port
    taken"). The start is tried again on other ports."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = harness.reserved_port
    chosen: list[int] = []

    @contextlib.contextmanager
    def first_one_taken():
        if not chosen:
            chosen.append(taken.getsockname()[1])  # the first start's hub port
            yield chosen[-1]
            return
        with real() as port:
            chosen.append(port)
            yield port

    starts: list[tuple] = []
    real_start = harness.start_auth

    def counted_start(*args, **kwargs):
        starts.append(args)
        return real_start(*args, **kwargs)

    monkeypatch.setattr(harness, "reserved_port", first_one_taken)
    monkeypatch.setattr(harness, "start_auth", counted_start)
    emulator = harness.start_auth("demo-port-taken", log_path=tmp_path / "auth.log", wait=False)
    try:
        harness.wait_until_ready(emulator)
        assert emulator.process.poll() is None
        assert len(starts) == 2, starts  # started again once, on other ports
        assert str(taken.getsockname()[1]) not in (tmp_path / "auth.log").read_text()
    finally:
        emulator.stop()
        taken.close()
