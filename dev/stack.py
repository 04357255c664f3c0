"""The local stack: `make dev` (or `python -m dev.stack`).

Starts, on this machine and with no cloud account, Google's Firestore emulator, a Cloud
Storage emulator and Firebase's Auth emulator (or uses the ones named by
FIRESTORE_EMULATOR_HOST / STORAGE_EMULATOR_HOST / FIREBASE_AUTH_EMULATOR_HOST), creates the
sample accounts (`SAMPLE_ACCOUNTS`: an admin and a viewer, who sign in to the page with their
email and password), loads the sample data, publishes the snapshots, serves every function
of main.py at `http://127.0.0.1:$PORT/<function>`, loads `firestore.rules` into the emulator
(the demo page listens to it directly in live mode; `/__/firebase/init.json` tells it where),
and registers one trigger per configured collection, so that the emulator itself delivers every
document change to `publish_snapshot` as Eventarc does (`--functions_emulator 127.0.0.1:$PORT`),
until interrupted. An emulator named by FIRESTORE_EMULATOR_HOST must have been started with
`--functions_emulator 127.0.0.1:$PORT` for its events to arrive.
"""

from __future__ import annotations

import argparse
import contextlib
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
AUTH_PORT = 9099  # the Auth emulator's usual port (firebase.json), when free
# The local stack's people (Auth emulator only; these passwords exist nowhere else).
SAMPLE_ACCOUNTS = (
    {"email": "admin@example.com", "password": "admin-password", "name": "Sample admin",
     "claims": {"admin": True}},
    {"email": "viewer@example.com", "password": "viewer-password", "name": "Sample viewer",
     "claims": {}},
)


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


def create_sample_accounts(auth_host: str, project: str) -> list[str]:
    """The `SAMPLE_ACCOUNTS` in the Auth emulator at `auth_host` (those already there are kept:
    an emulator named by FIREBASE_AUTH_EMULATOR_HOST may have them); a line per account."""
    from emulators.auth_accounts import create_account
    from emulators.harness import EmulatorError

    lines = []
    for account in SAMPLE_ACCOUNTS:
        try:
            create_account(auth_host, project, account["email"], account["password"],
                           account["claims"], account["name"])
        except EmulatorError as err:
            if "EMAIL_EXISTS" not in str(err):
                raise
        role = "admin (admin: true claim)" if account["claims"].get("admin") else \
            "viewer (no admin claim)"
        lines.append(f"{account['email']} / {account['password']}  {role}")
    return lines


def web_config(project: str, firestore_host: str, auth_host: str) -> dict:
    """The page's Firebase web config on the local stack (`/__/firebase/init.json`): a demo
    API key and the project (the emulators accept any key), and where the Firestore and Auth
    emulators listen ("HOST:PORT"), which the page connects its Web SDK to."""
    host, _, port = firestore_host.rpartition(":")
    return {"apiKey": f"{project}-local-key", "authDomain": f"{project}.firebaseapp.com",
            "projectId": project,
            "emulators": {"firestore": {"host": host, "port": int(port)},
                          "auth": {"url": f"http://{auth_host}"}}}


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground; Ctrl-C stops everything it started."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-seed", action="store_true", help="do not load the sample data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from emulators.harness import (
        auth_from_env_or_start,
        firestore_from_env_or_start,
        preferred_port,
        storage_from_env_or_start,
        wait_until_ready,
    )

    STATE_DIR.mkdir(exist_ok=True)
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    origin = f"http://{args.host}:{args.port}"
    os.environ.setdefault("ALLOWED_ORIGINS", f"{origin},http://localhost:{args.port}")

    with contextlib.ExitStack() as emulators:
        # The Auth emulator (Node, ~10 s) starts while the other two do.
        auth_emu = auth_from_env_or_start(os.environ["GOOGLE_CLOUD_PROJECT"],
                                          port=preferred_port(AUTH_PORT),
                                          log_path=STATE_DIR / "auth.log", wait=False)
        emulators.callback(auth_emu.stop)
        firestore_emu = firestore_from_env_or_start(log_path=STATE_DIR / "firestore.log",
                                                    functions_emulator=f"{args.host}:{args.port}")
        emulators.callback(firestore_emu.stop)
        storage_emu = storage_from_env_or_start(log_path=STATE_DIR / "storage.log")
        emulators.callback(storage_emu.stop)
        wait_until_ready(auth_emu)
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emu.host
        os.environ["STORAGE_EMULATOR_HOST"] = storage_emu.host
        # The functions, `python -m ops admin` run from here, and the page all use this one.
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = auth_emu.host
        stop = threading.Event()
        # Both stop the stack cleanly. SIGINT is installed explicitly: a background job of a
        # non-interactive shell (`make dev &`) starts with SIGINT ignored, and Python then
        # leaves it ignored instead of raising KeyboardInterrupt.
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda *_: stop.set())
        return _run(args, stop, firestore_emu, auth_emu)


def _run(args: argparse.Namespace, stop: threading.Event, firestore_emu, auth_emu) -> int:
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
    accounts = create_sample_accounts(auth_emu.host, settings.project)

    # The port is bound here, so the emulator's first deliveries wait in its backlog until the
    # server runs; the stack answers requests only once everything is in place.
    app = create_stack_app(
        {**{name: "http" for name in HTTP_FUNCTIONS}, "publish_snapshot": "cloudevent"},
        firebase_config=web_config(settings.project, firestore_emu.host, auth_emu.host))
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
    print(f"  Auth emulator       {auth_emu.host}  (sign-in; FIREBASE_AUTH_EMULATOR_HOST)")
    print(f"sign in to {base}/ with email and password as:")
    for line in accounts:
        print(f"  {line}")
    print(f"  (make one an admin: FIREBASE_AUTH_EMULATOR_HOST={auth_emu.host} "
          f"GOOGLE_CLOUD_PROJECT={settings.project} python -m ops admin grant EMAIL)")
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
