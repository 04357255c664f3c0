"""The rebuild path of the snapshots (`python -m ops rebuild`, the end of a migration): every
snapshot of the configured collections rebuilt from Firestore and merged by version with what
the event path published meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from shared.errors import BadRequest
from shared.settings import Settings
from shared.snapshots import RebuildReport, rebuild_collection

log = logging.getLogger("dashboard.publish")


def rebuild(settings: Settings, db: Any, storage_client: Any,
            collections: Iterable[str] | None = None) -> list[RebuildReport]:
    """Rebuild the snapshots of `collections` (all configured ones by default) from Firestore.

    One read per document and one conditional write per snapshot; merged by version with what
    the event path published meanwhile. Returns one report per collection.
    """
    names = list(collections) if collections else list(settings.collections)
    unknown = [name for name in names if name not in settings.collections]
    if unknown:
        raise BadRequest(f"collection {unknown[0]!r} is not configured (COLLECTIONS="
                         f"{','.join(settings.collections)})", code="unknown_collection")
    reports = []
    for collection in names:
        report = rebuild_collection(db, storage_client, settings.snapshot_bucket, collection,
                                    timeout_s=max(settings.storage_timeout_s, 30.0),
                                    retention_s=settings.tombstone_retention_s)
        log.info("rebuilt snapshot %s", report.summary())
        reports.append(report)
    return reports
