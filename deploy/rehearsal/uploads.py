"""The uploaded source, checked for real: gcloud's own zip builder, and each zip run as deployed.

`gcloud_zip_names(source)` asks gcloud's `CreateSourcesZipFile` (under gcloud's bundled Python,
as `gcloud functions deploy --source=.` calls it) what it would upload. `install(zip, dir)`
does what Cloud Build does with an upload: unpack it into a clean directory and install its
`requirements.txt` alone into a fresh virtualenv. The install is offline (`--no-index`), from
the wheelhouse `.wheels/` that `make install` fills with `pip download -r requirements.txt`:
the rehearsal sends nothing beyond 127.0.0.1, and a package the pinned file forgets to name
fails the install as it would on Cloud Build.
`FunctionServer` starts one entry point from there with `functions-framework --target=...
--signature-type=...`, the environment the deploy gave it, and the emulators.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

from deploy.rehearsal.clients import GCLOUD

SDK = GCLOUD.resolve().parent.parent
GCLOUD_PYTHON = SDK / "platform" / "bundledpythonunix" / "bin" / "python3"
_ZIP_NAMES = """
import json, sys, tempfile, zipfile
sys.path[:0] = [sys.argv[1] + "/lib", sys.argv[1] + "/lib/third_party"]
from googlecloudsdk.command_lib.functions import source_util
with tempfile.TemporaryDirectory() as out:
    path = source_util.CreateSourcesZipFile(out, sys.argv[2])
    print(json.dumps(zipfile.ZipFile(path).namelist()))
"""
START_TIMEOUT_S = 60.0
# The wheels of requirements.txt, downloaded by `make install` (the Makefile's `.wheels` target).
WHEELHOUSE = Path(__file__).resolve().parents[2] / ".wheels"


def gcloud_zip_names(source: Path) -> list[str]:
    """The names in the zip gcloud builds from `source` (its .gcloudignore applied)."""
    python = GCLOUD_PYTHON if GCLOUD_PYTHON.exists() else Path(sys.executable)
    done = subprocess.run([str(python), "-c", _ZIP_NAMES, str(SDK), str(source)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gcloud's zip builder failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def file_names(zip_bytes: bytes) -> list[str]:
    """The files (not directory entries) of a zip."""
    return sorted(n for n in zipfile.ZipFile(io.BytesIO(zip_bytes)).namelist()
                  if not n.endswith("/"))


def install(zip_bytes: bytes, where: Path, wheelhouse: Path = WHEELHOUSE) -> Path:
    """Unpack into `where/source` and install its requirements.txt, alone, into a fresh
    virtualenv `where/venv`, offline from `wheelhouse`; returns the source directory."""
    if not any(wheelhouse.glob("*.whl")):
        raise RuntimeError(f"{wheelhouse} holds no wheels: run `make install` (it downloads the "
                           "wheels of requirements.txt there) before the rehearsal")
    source = where / "source"
    zipfile.ZipFile(io.BytesIO(zip_bytes)).extractall(source)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "--no-index", "--find-links",
                           str(wheelhouse), "-r", str(source / "requirements.txt")],
                          timeout=600, cwd=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip install -r requirements.txt (the upload's) failed: "
                           f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return source


class FunctionServer:
    """One entry point under functions-framework, from an installed upload."""

    def __init__(self, source: Path, target: str, signature_type: str,
                 env: Mapping[str, str], log: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        framework = source.parent / "venv" / "bin" / "functions-framework"
        self.log = log
        # No PYTHONPATH, no repository on sys.path: only the upload and its virtualenv.
        clean = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
        self.process = subprocess.Popen(
            [str(framework), f"--target={target}", f"--signature-type={signature_type}",
             "--host=127.0.0.1", f"--port={self.port}"],
            cwd=source, env={**clean, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self) -> FunctionServer:
        """Until the port answers; raise with the log if the process exits first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"functions-framework exited: {self.log.read_text()[-3000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"functions-framework did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
