"""Command line of the backend: `python -m functions <command> ...`.

Each command lives in the module of the function it serves and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only routes. Commands run against
the project of the settings (the emulators when their variables are set).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shared.errors import AppError

COMMANDS = {
    "migrate": ("functions.migrate", "import a legacy JSON file into a collection"),
    "rebuild": ("functions.publish_snapshot", "rebuild snapshots from Firestore"),
    "doctor": ("functions.doctor", "check settings, Firestore, the bucket and the snapshots"),
    "admin": ("functions.admin", "grant or revoke the admin claim of a user"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, map errors to a message and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m functions",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        modules[name] = module
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
