"""Cloud Storage I/O of the snapshots: objects with deadlines and generation preconditions,
backoff within a deadline, the index and parts of a snapshot, and the manifest.

Every write is conditional (`if_generation_match`: 0 creates, a generation replaces only that
one); HTTP 429 (about one write per second to one object name) and 5xx are retried with
exponential backoff until the caller's deadline, then `Unavailable` (worth a retry) is raised.

`snapshots/manifest.json` holds per collection the count, content hash, index generation and
`generatedAt`: one small request tells a client whether its copy is current.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import Unavailable
from shared.retry import is_transient
from shared.snapshot_format import (
    JSON_CONTENT_TYPE,
    MANIFEST_PATH,
    SNAPSHOT_CACHE_CONTROL,
    ManifestEntry,
)
from shared.snapshot_parts import SnapshotIndex, index_path, parse_index

log = logging.getLogger("dashboard.snapshots")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 8.0
GZIP_CONTENT_TYPE = "application/gzip"


@dataclass
class Attempts:
    """Counters of the retries a write needed."""

    conflicts: int = 0
    throttled: int = 0


def upload(storage_client: Any, bucket: str, name: str, body: bytes, *, timeout_s: float,
            if_generation_match: int | None,
            content_type: str = JSON_CONTENT_TYPE) -> int | None:
    blob = storage_client.bucket(bucket).blob(name)
    blob.cache_control = SNAPSHOT_CACHE_CONTROL
    kwargs: dict[str, Any] = {"content_type": content_type, "timeout": timeout_s,
                              "retry": None}
    if if_generation_match is not None:
        kwargs["if_generation_match"] = if_generation_match
    blob.upload_from_string(body, **kwargs)
    return blob.generation


def download(storage_client: Any, bucket: str, name: str, *, timeout_s: float,
              unless_generation: int | None = None,
              retry: Any = None) -> tuple[bytes, int] | None:
    """(body, generation) of an object, None when it does not exist; other errors raise.

    With `unless_generation`, an object still at that generation is not downloaded again:
    `(b"", unless_generation)` comes back (HTTP 304).
    """
    from google.api_core import exceptions as gexc

    blob = storage_client.bucket(bucket).blob(name)
    kwargs: dict[str, Any] = {"timeout": timeout_s, "retry": retry}
    if unless_generation:
        kwargs["if_generation_not_match"] = unless_generation
    try:
        raw = blob.download_as_bytes(**kwargs)
    except gexc.NotFound:
        return None
    except gexc.NotModified:
        return b"", int(unless_generation or 0)
    return raw, int(blob.generation or 0)


def delete_objects(storage_client: Any, bucket: str, names: list[str], *,
                   timeout_s: float) -> int:
    """Delete objects (superseded parts), best effort: a failure is logged and left to the
    catch-up's sweep. Returns how many were deleted."""
    from google.api_core import exceptions as gexc

    deleted = 0
    for name in names:
        try:
            storage_client.bucket(bucket).blob(name).delete(timeout=timeout_s, retry=None)
            deleted += 1
        except gexc.NotFound:
            continue
        except (gexc.GoogleAPIError, OSError) as exc:
            log.warning("could not delete %s (%s): the catch-up will", name, type(exc).__name__)
    return deleted


def load_index(storage_client: Any, bucket: str, collection: str, *, timeout_s: float,
               known: SnapshotIndex | None = None, retry: Any = None) -> SnapshotIndex | None:
    """A collection's index; None when it does not exist. An index that does not parse comes
    back with `exists=False` and its generation (a rebuild replaces it). `known`, still at its
    generation, comes back as it is (a 304, no download). Network errors raise."""
    unless = known.generation if known is not None and known.exists else None
    found = download(storage_client, bucket, index_path(collection), timeout_s=timeout_s,
                      unless_generation=unless, retry=retry)
    if found is None:
        return None
    raw, generation = found
    if known is not None and unless and generation == unless and not raw:
        return known
    try:
        return parse_index(collection, raw, generation)
    except ValueError as exc:
        log.error("the snapshot index of %s is invalid (%s): it will be rebuilt", collection,
                  exc)
        return SnapshotIndex(collection, generation=generation, exists=False)


def write_index(storage_client: Any, bucket: str, index: SnapshotIndex, generated_at: str, *,
                timeout_s: float) -> int:
    """Write an index conditional on `index.generation` (0: it must not exist); returns the new
    generation. `PreconditionFailed` when another writer came first."""
    return int(upload(storage_client, bucket, index_path(index.collection),
                       index.body(generated_at), timeout_s=timeout_s,
                       if_generation_match=index.generation) or 0)


def write_part(storage_client: Any, bucket: str, name: str, stored: bytes, gzipped: bool, *,
               deadline: float, timeout_s: float, attempts: Attempts) -> None:
    """Create a part object (it must not exist), retrying transient failures until
    `deadline`. A 412 means a previous attempt did write it (its response was lost)."""
    from google.api_core import exceptions as gexc

    delay = BACKOFF_INITIAL_S
    while True:
        try:
            upload(storage_client, bucket, name, stored, timeout_s=remaining(deadline, timeout_s),
                    if_generation_match=0,
                    content_type=GZIP_CONTENT_TYPE if gzipped else JSON_CONTENT_TYPE)
            return
        except gexc.PreconditionFailed:
            return
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            attempts.throttled += 1
            delay = sleep_or_give_up(delay, deadline, exc, f"writing the snapshot part {name}")


def remaining(deadline: float, timeout_s: float) -> float:
    return max(0.5, min(timeout_s, deadline - time.monotonic()))


def sleep_or_give_up(delay: float, deadline: float, exc: BaseException, what: str) -> float:
    """Sleep `delay` (with jitter) before a retry, or raise `Unavailable` past the deadline."""
    pause = delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    if time.monotonic() + pause > deadline:
        raise Unavailable(f"{what} kept failing ({type(exc).__name__}: {str(exc)[:200]})")
    log.warning("%s failed (%s): retrying in %.2f s", what, type(exc).__name__, pause)
    time.sleep(pause)
    return min(delay * 2, BACKOFF_MAX_S)


def call_with_backoff(call: Callable[[], Any], deadline: float, attempts: Attempts,
                       what: str) -> Any:
    delay = BACKOFF_INITIAL_S
    while True:
        try:
            return call()
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            attempts.throttled += 1
            delay = sleep_or_give_up(delay, deadline, exc, what)


# --- manifest ----------------------------------------------------------------------------------

def load_manifest(storage_client: Any, bucket: str, *,
                  timeout_s: float) -> tuple[dict[str, Any], int]:
    """The manifest's `collections` map and its generation (0 when it does not exist)."""
    found = download(storage_client, bucket, MANIFEST_PATH, timeout_s=timeout_s)
    if found is None:
        return {}, 0
    raw, generation = found
    try:
        collections = json.loads(raw).get("collections") or {}
        if not isinstance(collections, dict):
            raise ValueError("collections is not an object")
    except (ValueError, AttributeError) as exc:
        log.error("manifest is invalid (%s): writing a new one", exc)
        return {}, generation
    return collections, generation


def update_manifest(storage_client: Any, bucket: str, entries: Mapping[str, ManifestEntry], *,
                    timeout_s: float, deadline: float,
                    known: tuple[dict[str, Any], int] | None = None) -> tuple[dict[str, Any], int]:
    """Put the entries into the manifest unless it already holds a newer generation of the same
    collection; conditional on the manifest's generation (412: read and merge again).

    `known` is the manifest as last seen (`(collections, generation)`), used without reading it
    again; returns the manifest as it is now.
    """
    from google.api_core import exceptions as gexc

    from shared.http import dumps
    from shared.times import format_timestamp, utc_now

    attempts = Attempts()
    delay = BACKOFF_INITIAL_S
    loaded = known
    while True:
        if loaded is None:
            loaded = call_with_backoff(
                lambda: load_manifest(storage_client, bucket, timeout_s=timeout_s), deadline,
                attempts, "reading the manifest")
        collections, generation = dict(loaded[0]), loaded[1]
        changed = False
        for collection, entry in entries.items():
            current = collections.get(collection)
            try:
                newer = current is not None and int(current.get("generation", 0)) >= \
                    entry.generation
            except (TypeError, ValueError, AttributeError):
                newer = False
            if not newer:
                collections[collection] = entry.to_json()
                changed = True
        if not changed:
            return collections, generation
        body = dumps({"generatedAt": format_timestamp(utc_now()),
                      "collections": dict(sorted(collections.items()))})
        try:
            written = upload(storage_client, bucket, MANIFEST_PATH, body,
                              timeout_s=remaining(deadline, timeout_s),
                              if_generation_match=generation)
        except gexc.PreconditionFailed:
            loaded = None
            continue
        except Exception as exc:  # classified just below: transient ones are retried
            if not is_transient(exc):
                raise
            delay = sleep_or_give_up(delay, deadline, exc, "writing the manifest")
            continue
        return collections, int(written or 0)


