"""`python -m ops snapshot-file --collection C [--out FILE]`: the single-file view of a
snapshot, assembled from its index and parts, for a consumer that needs one object (the legacy
static dashboard read `users.json`).

It writes `gs://$SNAPSHOT_BUCKET/snapshots/<collection>.json` (the shape one snapshot object
had: the read API's list shape with every document, `generatedAt`, `updateTimes`,
`tombstones`, the index's `contentHash`), or the local file `--out`. The publisher does not
keep it current (that would cost the whole collection on every change, which parts exist to
avoid): run it when the consumer needs a fresh copy, e.g. from a scheduled job.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.clients import Clients
from shared.errors import BadRequest
from shared.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `snapshot-file --collection C [--out FILE]`."""
    parser.add_argument("--collection", required=True, metavar="C",
                        help="the configured collection to write")
    parser.add_argument("--out", metavar="FILE", type=Path,
                        help="write this local file instead of snapshots/<C>.json in the bucket")


def run(args: argparse.Namespace) -> int:
    """Assemble the collection's snapshot into one body and write it; exit status 0."""
    from shared.snapshot_format import snapshot_path
    from shared.snapshot_io import upload
    from shared.snapshot_reader import load_view, single_file_body

    settings = Settings.from_env()
    if args.collection not in settings.collections:
        raise BadRequest(f"collection {args.collection!r} is not configured (COLLECTIONS="
                         f"{','.join(settings.collections)})", code="unknown_collection")
    clients = Clients(settings)
    try:
        storage = clients.storage()
        view = load_view(storage, settings.snapshot_bucket, args.collection,
                         timeout_s=max(settings.storage_timeout_s, 30.0))
        body = single_file_body(view)
        if args.out is not None:
            args.out.write_bytes(body)
            where = str(args.out)
        else:
            upload(storage, settings.snapshot_bucket, snapshot_path(args.collection), body,
                   timeout_s=max(settings.storage_timeout_s, 60.0), if_generation_match=None)
            where = f"gs://{settings.snapshot_bucket}/{snapshot_path(args.collection)}"
    finally:
        clients.close()
    print(f"{args.collection}: {view.index.count} documents from {len(view.index.parts)} parts "
          f"-> {where} ({len(body)} bytes)")
    return 0
