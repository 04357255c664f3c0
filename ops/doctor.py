"""`python -m ops doctor`: what is wrong with this install, one line per check.

Each line reads `ok|FAIL|skip <check>: <detail>`; the exit status is 1 when any check
failed. The checks are `functions.migrate.doctor.Doctor`'s (the status page's too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from functions.migrate.doctor import RULES_FILE, Doctor


def add_arguments(parser: Any) -> None:
    """Options of `python -m ops doctor`."""
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="Firestore deadline to check against (default FIRESTORE_TIMEOUT_S)")
    parser.add_argument("--rules", type=Path, default=RULES_FILE, metavar="FILE",
                        help="the rules file the deployed rules must match "
                             "(default firestore.rules)")


def run(args: Any) -> int:
    """Print one line per check; 1 when any check failed, else 0."""
    checks = Doctor(os.environ, rules_file=args.rules, deadline_s=args.timeout).run()
    for check in checks:
        print(check.line, flush=True)
    failed = [check for check in checks if check.status == "FAIL"]
    if failed:
        print(f"doctor: {len(failed)} of {len(checks)} checks failed", file=sys.stderr)
        return 1
    return 0
