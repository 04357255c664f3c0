"""Load the sample legacy files into Firestore through the migration (local stack only).

Each configured collection with a `data/legacy/<collection>.json` goes through
`functions.migrate.run.run_migration`, the code path of the `migrate` function and its CLI:
same conversion, same account of every record, same snapshot rebuild. Seeding twice writes
nothing new (every record is `unchanged`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.settings import Settings

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "legacy"


def seed(db: Any, storage_client: Any, settings: Settings) -> dict[str, tuple[int, int]]:
    """Migrate every configured collection that has a sample file; make sure its snapshot
    exists. Returns `{collection: (stored, rejected)}`: stored = written + unchanged."""
    from functions.migrate.run import MigrationOptions, run_migration
    from functions.migrate.runs import ReportSink
    from functions.migrate.source import file_source
    from shared.snapshots import rebuild_snapshot

    results = {}
    for collection in settings.collections:
        path = SAMPLE_DIR / f"{collection}.json"
        if not path.exists():
            continue
        outcome = run_migration(db, lambda: storage_client, settings,
                                MigrationOptions(collection=collection, started_by="dev.seed"),
                                file_source(path), report=ReportSink("none"))
        counts = outcome.run["counts"]
        results[collection] = (counts["written"] + counts["unchanged"],
                               counts["failed"] + counts["skipped"])
        if not outcome.run.get("snapshot", {}).get("rebuilt"):
            # Nothing changed, but a fresh storage emulator may lack the snapshot.
            rebuild_snapshot(db, storage_client, settings.snapshot_bucket, collection,
                             timeout_s=30)
    return results
