"""The local stack: `make dev` (or `python -m dev.stack`).

Starts, on this machine and with no cloud account, Google's Firestore emulator and a Cloud
Storage emulator (or uses the ones named by FIRESTORE_EMULATOR_HOST / STORAGE_EMULATOR_HOST),
loads the sample data, publishes the snapshots, serves every function of main.py at
`http://127.0.0.1:$PORT/<function>`, loads `firestore.rules` into the emulator (the demo page
listens to it directly in live mode; `/__/firebase/init.json` tells it where), and registers
one trigger per configured collection, so that the emulator itself delivers every document
change to `publish_snapshot` as Eventarc does (`--functions_emulator 127.0.0.1:$PORT`), until
interrupted. An emulator named by FIRESTORE_EMULATOR_HOST must have been started with
`--functions_emulator 127.0.0.1:$PORT` for its events to arrive.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".dev"
DEFAULTS = {
    "GOOGLE_CLOUD_PROJECT": "demo-dashboard",
    "SNAPSHOT_BUCKET": "demo-dashboard-snapshots",
    "READ_ACCESS": "public",
}
HTTP_FUNCTIONS = ("users", "jobs", "migrate", "catch_up_snapshots")
RULES = ROOT / "firestore.rules"


def trigger_id(collection: str) -> str:
    """The trigger of a collection's events: the name its deployed function has."""
    return f"publish-snapshot-{collection}"


def prepare_emulator(firestore_emu, project: str, collections, database: str = "(default)"):
    """What the stack gives the Firestore emulator: `firestore.rules` for the project (they
    govern the page's own Firestore access; the Admin SDK bypasses them), and one trigger per
    collection, so that the emulator delivers its change events to `publish_snapshot` as
    Eventarc does when deployed."""
    from emulators.harness import load_rules, register_trigger

    load_rules(firestore_emu, project, RULES.read_text(encoding="utf-8"))
    for collection in collections:
        register_trigger(firestore_emu, project, trigger_id(collection),
                         f"{collection}/{{docId}}", database=database)


def web_config(project: str, firestore_host: str) -> dict:
    """What the page's live mode needs (`/__/firebase/init.json`): the project, and where the
    Firestore emulator listens ("HOST:PORT"), which the page connects its Web SDK to."""
    host, _, port = firestore_host.rpartition(":")
    return {"projectId": project, "emulators": {"firestore": {"host": host, "port": int(port)}}}


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground; Ctrl-C stops everything it started."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-seed", action="store_true", help="do not load the sample data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from emulators.harness import firestore_from_env_or_start, storage_from_env_or_start

    STATE_DIR.mkdir(exist_ok=True)
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if os.environ["GOOGLE_CLOUD_PROJECT"].startswith("demo-"):
        # The demo page signs in with an unsigned admin token (local stack only): firebase-admin
        # accepts it only on the auth emulator path, which shared.settings allows for demo- only.
        os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    origin = f"http://{args.host}:{args.port}"
    os.environ.setdefault("ALLOWED_ORIGINS", f"{origin},http://localhost:{args.port}")

    firestore_emu = firestore_from_env_or_start(log_path=STATE_DIR / "firestore.log",
                                                functions_emulator=f"{args.host}:{args.port}")
    storage_emu = storage_from_env_or_start(log_path=STATE_DIR / "storage.log")
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emu.host
    os.environ["STORAGE_EMULATOR_HOST"] = storage_emu.host
    stop = threading.Event()
    # Both stop the stack cleanly. SIGINT is installed explicitly: a background job of a
    # non-interactive shell (`make dev &`) starts with SIGINT ignored, and Python then leaves
    # it ignored instead of raising KeyboardInterrupt.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    try:
        return _run(args, stop, firestore_emu)
    finally:
        storage_emu.stop()
        firestore_emu.stop()


def _run(args: argparse.Namespace, stop: threading.Event, firestore_emu) -> int:
    from werkzeug.serving import make_server

    from dev.app import create_stack_app
    from dev.scheduler import configure, run_every
    from dev.seed import seed
    from shared.clients import Clients
    from shared.settings import Settings

    issuer = configure()  # the catch-up's settings, before they are read
    settings = Settings.from_env()
    clients = Clients(settings)
    storage_client = clients.storage()
    if storage_client.lookup_bucket(settings.snapshot_bucket) is None:
        storage_client.create_bucket(settings.snapshot_bucket)
    if not args.no_seed:
        for collection, (written, rejected) in seed(clients.db(), storage_client,
                                                    settings).items():
            print(f"loaded {written} {collection} ({rejected} rejected by the schema)")

    # The port is bound here, so the emulator's first deliveries wait in its backlog until the
    # server runs; the stack answers requests only once everything is in place.
    app = create_stack_app(
        {**{name: "http" for name in HTTP_FUNCTIONS}, "publish_snapshot": "cloudevent"},
        firebase_config=web_config(settings.project, firestore_emu.host))
    server = make_server(args.host, args.port, app, threaded=True)
    base = f"http://{args.host}:{args.port}"
    prepare_emulator(firestore_emu, settings.project, settings.collections, settings.database)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_every(issuer, f"{base}/catch_up_snapshots", stop)  # every CATCHUP_PERIOD_S (10 s)
    print("\nlocal stack ready:")
    print(f"  {base}/  (demo dashboard)")
    for name in HTTP_FUNCTIONS:
        print(f"  {base}/{name}")
    print(f"  Firestore emulator  {os.environ['FIRESTORE_EMULATOR_HOST']}"
          "  (the page listens to it: live mode)")
    print(f"  Storage emulator    {os.environ['STORAGE_EMULATOR_HOST']}"
          f"  (bucket {settings.snapshot_bucket})")
    print(f"  change events       {', '.join(settings.collections)} -> {base}/functions/"
          f"projects/{settings.project}/triggers/... -> publish_snapshot")
    if firestore_emu.process is None:
        print(f"  (the Firestore emulator at {firestore_emu.host} must run with "
              f"--functions_emulator {args.host}:{args.port} for the events to arrive)")
    print("Ctrl-C stops it.", flush=True)
    stop.wait()
    issuer.stop()
    server.shutdown()
    app.close()  # before the emulators stop
    return 0


if __name__ == "__main__":
    sys.exit(main())
