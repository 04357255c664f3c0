"""Operator commands: `python -m ops <command> ...`.

Each command is a module of `ops` with `add_arguments(parser)` and `run(args) -> int`; this
file only routes. Commands run against the project of the settings (the emulators when their
variables are set).
"""

from __future__ import annotations

import argparse
import sys

from ops import admin, doctor, migrate, rebuild, snapshot_file
from shared.errors import AppError

COMMANDS = {
    "migrate": (migrate, "import a legacy JSON file into a collection"),
    "rebuild": (rebuild, "rebuild snapshots from Firestore"),
    "doctor": (doctor, "check settings, Firestore, the bucket and the snapshots"),
    "admin": (admin, "grant or revoke the admin claim of a user"),
    "snapshot-file": (snapshot_file, "write a snapshot as one JSON object (single-file view)"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, map errors to a message and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command][0].run(args) or 0)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
