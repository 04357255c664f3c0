"""`python -m ops rebuild [--collection C ...] [--json]`: rebuild snapshots from Firestore
(bootstrap, after a migration, to repair drift) and print what changed."""

from __future__ import annotations

import argparse
import json

from functions.publish.rebuild import rebuild
from shared.clients import Clients
from shared.errors import AppError, Unavailable
from shared.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `rebuild [--collection C ...] [--json]`."""
    parser.add_argument("--collection", action="append", metavar="C",
                        help="rebuild only this collection (repeatable; default: all configured)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON lines")


def run(args: argparse.Namespace) -> int:
    """Rebuild the snapshots and print what changed; exit status 0."""
    settings = Settings.from_env()
    clients = Clients(settings)
    try:
        reports = rebuild(settings, clients.db(), clients.storage(), args.collection)
    except AppError:
        raise
    except Exception as exc:  # the CLI prints one line, not a traceback
        raise Unavailable(f"rebuild failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    finally:
        clients.close()
    for report in reports:
        if args.json:
            print(json.dumps(report.__dict__, sort_keys=True))
        else:
            print(report.summary())
    return 0
