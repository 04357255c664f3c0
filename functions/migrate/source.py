"""Where a migration reads its records: a request body, a local file or a `gs://` object.

A source is read as a stream, twice: `scan` checks the JSON syntax, finds the shape and counts
the records without building them (so bad JSON is refused before anything is written, and the
total makes an ETA possible), then `iter_records` yields one record at a time. Memory stays
flat whatever the size of the file: neither pass holds more than one record.

Shapes (found by `scan`, or forced with `root`):
- an array of records: `[{...}, {...}]`;
- an object wrapping one array: `{"users": [...], "lastUpdated": ...}`. The array under the
  collection's own name wins, else the only array-valued key when no value is an object;
  other top-level keys are metadata (a second array is named in the warnings);
- an object keyed by id: `{"u_1": {...}, "u_2": {...}}` (no value is an array).

Each record comes with its index in the source (its position in the array, or among the keys)
and, for the keyed shape, its key. A GCS object is pinned to the generation the scan saw, so
both passes read the same bytes; every source is fingerprinted (SHA-256 and size) so that a
resumed run can check it reads what the interrupted one read.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from shared.errors import BadRequest, NotFound
from shared.retry import retry_policy

READ_CHUNK_BYTES = 1024 * 1024
# Past this size, finding the exact position of a syntax error (a second, slow pure-Python
# parse) costs more than it helps: the error is then located to within one read chunk.
EXACT_ERROR_POSITION_MAX_BYTES = 64 * 1024 * 1024
_GS_URI = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/(.+)$")
_PY_POSITION = re.compile(r" at (\d+)$")

SHAPE_ARRAY = "array"
SHAPE_WRAPPED = "wrapped"
SHAPE_KEYED = "keyed"


@dataclass(frozen=True)
class Layout:
    """What `scan` found: the shape, the wrapping key, the record count and the fingerprint."""

    shape: str
    root: str | None
    total: int
    sha256: str
    size: int
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """A short human description, e.g. `object wrapping "users" (240 records)`."""
        if self.shape == SHAPE_WRAPPED:
            return f'object wrapping "{self.root}" ({self.total} records)'
        if self.shape == SHAPE_KEYED:
            return f"object keyed by id ({self.total} records)"
        return f"array ({self.total} records)"


@dataclass
class Source:
    """A re-readable byte source. `open()` starts from the first byte each time."""

    label: str
    opener: Callable[[], BinaryIO]
    size: int | None = None
    gcs: tuple[str, str] | None = None  # (bucket, object) of a gs:// source
    local_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def open(self) -> BinaryIO:
        """A fresh binary reader of the whole source."""
        return self.opener()


def bytes_source(data: bytes, label: str = "request body") -> Source:
    """A source over bytes already in memory (the HTTP request body)."""
    return Source(label=f"{label} ({len(data)} bytes)", opener=lambda: io.BytesIO(data),
                  size=len(data))


def file_source(path: str | os.PathLike[str]) -> Source:
    """A source over a local file; `NotFound` when it does not exist."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise NotFound(f"no such file: {path}", code="source_not_found")
    return Source(label=str(resolved), opener=lambda: resolved.open("rb"),
                  size=resolved.stat().st_size, local_path=resolved)


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/path.json` -> (bucket, object name); `BadRequest` when malformed."""
    match = _GS_URI.match(uri)
    if not match:
        raise BadRequest(f"not a gs://bucket/object URI: {uri[:200]!r}", code="invalid_source")
    return match.group(1), match.group(2)


def gcs_source(uri: str, storage_client: Any, *, timeout_s: float) -> Source:
    """A source over one Cloud Storage object, pinned to its current generation."""
    from google.api_core import exceptions as gexc
    bucket_name, name = parse_gs_uri(uri)
    retry = retry_policy(timeout_s * 3)
    try:
        blob = storage_client.bucket(bucket_name).get_blob(name, timeout=timeout_s, retry=retry)
    except gexc.NotFound:
        blob = None
    if blob is None:
        raise NotFound(f"no such object: {uri}", code="source_not_found")
    generation = blob.generation

    def opener() -> BinaryIO:
        pinned = storage_client.bucket(bucket_name).blob(name, generation=generation)
        return pinned.open("rb", chunk_size=READ_CHUNK_BYTES, timeout=timeout_s, retry=retry)

    return Source(label=uri, opener=opener, size=blob.size, gcs=(bucket_name, name),
                  extra={"generation": generation})


def open_source(spec: str, storage_client: Callable[[], Any], *, timeout_s: float) -> Source:
    """A `gs://` URI or a local path as a `Source` (the CLI's argument)."""
    if spec.startswith("gs://"):
        return gcs_source(spec, storage_client(), timeout_s=timeout_s)
    return file_source(spec)


class _CountingReader:
    """Reads through to `raw`, hashing and counting every byte the parser takes.

    Only `read` on purpose: ijson's C backend mishandles `io.RawIOBase` subclasses.
    """

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (a chunk when `size` is negative)."""
        data = self.raw.read(size if size >= 0 else READ_CHUNK_BYTES)
        self.digest.update(data)
        self.count += len(data)
        return data


def scan(source: Source, *, collection: str, root: str | None = None) -> Layout:
    """Check the syntax, find the shape, count the records; `BadRequest` with the position."""
    import ijson

    with source.open() as raw:
        reader = _CountingReader(raw)
        try:
            top, keys, total_top = _scan_events(ijson.basic_parse(reader, buf_size=65536))
        except ijson.JSONError as exc:
            raise _syntax_error(source, str(exc), reader.count) from None
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the source is not UTF-8 text ({exc.reason})",
                             code="invalid_json") from None
        tail = reader.read()
        while tail:
            tail = reader.read()
    sha, size = reader.digest.hexdigest(), reader.count
    if top is None:
        raise BadRequest("invalid JSON: the source is empty", code="invalid_json",
                         details={"offset": 0, "line": 1, "column": 1})
    if top == "scalar":
        raise BadRequest("the source must be a JSON array or object of records",
                         code="invalid_shape")
    if top == "array":
        if root is not None:
            raise BadRequest(f"root {root!r} given, but the source is an array",
                             code="invalid_shape")
        return Layout(SHAPE_ARRAY, None, total_top, sha, size)
    return _resolve_object(keys, total_top, collection, root, sha, size)


def _scan_events(events: Iterator[tuple[str, Any]]) -> tuple[str | None, dict[str, Any], int]:
    """One pass over the parser's events: the top-level kind, per top-level key the kind of
    its value (and, for arrays, the number of elements), and the number of top-level values."""
    depth = 0
    top: str | None = None
    keys: dict[str, list[Any]] = {}  # key -> [kind, elements]
    key: str | None = None
    count = 0
    for event, value in events:
        if event == "start_map" or event == "start_array":
            if depth == 0:
                top = "array" if event == "start_array" else "object"
            elif depth == 1:
                count += 1
                if key is not None:
                    entry = keys.setdefault(key, ["array" if event == "start_array" else
                                                  "object", 0])
                    if event == "start_array":
                        entry[0] = "array"
            elif depth == 2 and key is not None and keys[key][0] == "array":
                keys[key][1] += 1
            depth += 1
        elif event == "end_map" or event == "end_array":
            depth -= 1
        elif event == "map_key":
            if depth == 1:
                key = value
        elif depth == 0:
            top = "scalar"
        elif depth == 1:
            count += 1
            if key is not None:
                keys.setdefault(key, ["scalar", 0])
        elif depth == 2 and key is not None and keys[key][0] == "array":
            keys[key][1] += 1
    return top, keys, count


def _resolve_object(keys: dict[str, list[Any]], total_top: int, collection: str,
                    root: str | None, sha: str, size: int) -> Layout:
    arrays = [name for name, (kind, _) in keys.items() if kind == "array"]
    objects = [name for name, (kind, _) in keys.items() if kind == "object"]
    if root is not None:
        if root not in arrays:
            raise BadRequest(f"root {root!r} is not a top-level key holding an array",
                             code="invalid_shape")
        chosen = root
    elif collection in arrays:
        chosen = collection
    elif len(arrays) == 1 and not objects:
        chosen = arrays[0]
    elif not arrays:
        return Layout(SHAPE_KEYED, None, total_top, sha, size)
    else:
        raise BadRequest(
            f"ambiguous source: the object holds arrays ({', '.join(sorted(arrays)[:5])}) and "
            f"objects ({', '.join(sorted(objects)[:5]) or 'none'}); name the array of records "
            "with root", code="invalid_shape")
    others = [name for name in arrays if name != chosen]
    warnings = tuple(f"top-level key {name!r} also holds an array; it was not imported"
                     for name in others)
    return Layout(SHAPE_WRAPPED, chosen, keys[chosen][1], sha, size, warnings)


def iter_records(source: Source, layout: Layout) -> Iterator[tuple[int, str | None, Any]]:
    """Yield `(index, key, record)` one at a time, in source order.

    Raises `BadRequest` (code `source_changed`) when the bytes differ from the scan's.
    """
    import ijson

    with source.open() as raw:
        reader = _CountingReader(raw)
        count = 0
        if layout.shape == SHAPE_KEYED:
            for index, (key, value) in enumerate(ijson.kvitems(reader, "", use_float=True)):
                count += 1
                yield index, key, value
        else:
            prefix = "item" if layout.shape == SHAPE_ARRAY else f"{layout.root}.item"
            for index, value in enumerate(ijson.items(reader, prefix, use_float=True)):
                count += 1
                yield index, None, value
        tail = reader.read()
        while tail:
            tail = reader.read()
    if count != layout.total or reader.digest.hexdigest() != layout.sha256:
        raise BadRequest(f"the source changed while it was read ({source.label})",
                         code="source_changed")


def _syntax_error(source: Source, library_message: str, consumed: int) -> BadRequest:
    """A 400 naming the position of a JSON syntax error (line, column, character offset)."""
    reason = library_message.strip().splitlines()[0] if library_message.strip() else "invalid"
    reason = reason.removeprefix("parse error: ")
    if source.size is not None and source.size <= EXACT_ERROR_POSITION_MAX_BYTES:
        position = _exact_position(source)
        if position is not None:
            offset, line, column, why = position
            return BadRequest(f"invalid JSON at line {line}, column {column} "
                              f"(character {offset}): {why or reason}", code="invalid_json",
                              details={"offset": offset, "line": line, "column": column})
    return BadRequest(f"invalid JSON within the bytes read so far ({consumed}): {reason}",
                      code="invalid_json", details={"offset": consumed})


def _exact_position(source: Source) -> tuple[int, int, int, str] | None:
    """(offset, line, column, reason) of the first syntax error, found by ijson's pure-Python
    parser, which reports character offsets (the C one does not)."""
    import ijson.backends.python as pure
    from ijson import common

    with source.open() as raw:
        try:
            for _ in pure.basic_parse(raw):
                pass
        except common.IncompleteJSONError as exc:
            offset, why = None, str(exc)
        except common.JSONError as exc:
            match = _PY_POSITION.search(str(exc))
            offset = int(match.group(1)) if match else None
            why = _PY_POSITION.sub("", str(exc))
        except UnicodeDecodeError:
            return None
        else:
            return None
    with source.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        line, column, position = 1, 1, 0
        while True:
            chunk = text.read(READ_CHUNK_BYTES)
            if not chunk:
                break
            if offset is not None and position + len(chunk) > offset:
                chunk = chunk[:offset - position]
            newlines = chunk.count("\n")
            if newlines:
                line += newlines
                column = len(chunk) - chunk.rfind("\n")
            else:
                column += len(chunk)
            position += len(chunk)
            if offset is not None and position >= offset:
                break
    return (position if offset is None else offset), line, column, why
