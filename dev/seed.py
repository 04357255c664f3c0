"""Load the sample legacy files into Firestore and publish their snapshots (local stack only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.records import RecordError, convert_record
from shared.schema import load_schema
from shared.settings import Settings
from shared.snapshots import rebuild_snapshot

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "legacy"


def seed_collection(db: Any, collection: str, records: list[Any]) -> tuple[int, int]:
    """Write the valid records (server `updatedAt`); returns (written, rejected)."""
    from google.cloud import firestore

    schema = load_schema(collection)
    written = rejected = 0
    batch = db.batch()
    for record in records:
        try:
            converted = convert_record(record, schema)
        except RecordError:
            rejected += 1
            continue
        data = {**converted.data, "updatedAt": firestore.SERVER_TIMESTAMP}
        batch.set(db.collection(collection).document(converted.doc_id), data)
        written += 1
        if written % 400 == 0:
            batch.commit(timeout=30)
            batch = db.batch()
    batch.commit(timeout=30)
    return written, rejected


def seed(db: Any, storage_client: Any, settings: Settings) -> dict[str, tuple[int, int]]:
    """Seed every configured collection that has a sample file, then rebuild its snapshot."""
    results = {}
    for collection in settings.collections:
        path = SAMPLE_DIR / f"{collection}.json"
        if not path.exists():
            continue
        raw = json.loads(path.read_text(encoding="utf-8"))
        records = raw[collection] if isinstance(raw, dict) else raw
        results[collection] = seed_collection(db, collection, records)
        rebuild_snapshot(db, storage_client, settings.snapshot_bucket, collection, timeout_s=30)
    return results
