"""The end of a benchmark's report: each target PASS or FAIL, and the exit status."""

from __future__ import annotations


def verdict(checks: list[tuple[str, bool]]) -> int:
    """Print `PASS`/`FAIL` per `(label, ok)`; 0 when every target is met, else 1."""
    print()
    for label, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1
