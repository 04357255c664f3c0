"""The one JSON encoder of Firestore values, used by the read API and by the snapshots.

Timestamps become RFC 3339 UTC strings (`Z`, fractional seconds only when present, up to
nanoseconds), doubles stay numbers but NaN and ±Infinity become the strings `"NaN"`,
`"Infinity"`, `"-Infinity"` (JSON has no such numbers), GeoPoints `{"latitude", "longitude"}`,
references document paths relative to the database (`users/u1`), bytes base64. A document is
`{"id", ...fields}` with its fields sorted by name (a stored field named `id` is not shown);
maps inside keep Firestore's order.

Values arrive in two shapes, and both go through the same rules (the functions at the top):

- protobuf `Value`s straight off the wire (`encode_document_pb`): the read API's Firestore path
  and every rebuild of a snapshot (`shared.firestore_wire` reads them without the client's
  object layer, which cost about three quarters of an uncached read);
- Python values (`encode_document`): what a write holds, an event decoded by `shared.events`,
  a filter value.

tests/test_wire_encoding.py proves, over generated documents of every value type, that both
shapes give the bytes the client's own decoding and the previous encoder gave.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

UTC = dt.UTC

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def utc_now() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(UTC)


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC); raise ValueError."""
    match = _RFC3339.match(text)
    if match:
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        fraction = (match.group(7) or ".0")[1:]
        micros = int((fraction + "000000")[:6])
        zone = match.group(8)
        if zone in ("Z", "z"):
            tz = UTC
        else:
            sign = 1 if zone[0] == "+" else -1
            tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        return dt.datetime(year, month, day, hour, minute, second, micros, tz).astimezone(UTC)
    match = _DATE.match(text)
    if match:
        return dt.datetime(*(int(g) for g in match.groups()), tzinfo=UTC)
    raise ValueError(f"not an RFC 3339 timestamp: {text!r}")


# --- the rules, shared by both shapes -------------------------------------------------------

_EPOCH = dt.date(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def _date_prefix(days: int) -> str:
    """`YYYY-MM-DDT` of a day counted from the epoch (always four-digit years)."""
    return (_EPOCH + dt.timedelta(days=days)).isoformat() + "T"


_TWO_DIGITS = tuple(f"{number:02d}" for number in range(60))


def format_epoch(seconds: int, nanos: int = 0) -> str:
    """RFC 3339 in UTC of a Firestore timestamp (seconds since the epoch and nanoseconds)."""
    days, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    # Concatenation from a table: a third faster than formatting, on the hot path of reads.
    text = (_date_prefix(days) + _TWO_DIGITS[hour] + ":" + _TWO_DIGITS[minute] + ":"
            + _TWO_DIGITS[second])
    if nanos:
        return f"{text}.{nanos:09d}".rstrip("0") + "Z"
    return text + "Z"


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a `Z`, fractional seconds only when present (up to nanoseconds);
    a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    nanos = getattr(value, "nanosecond", 0) or value.microsecond * 1000
    return format_epoch(calendar.timegm(value.utctimetuple()), nanos)


def _double(number: float) -> float | str:
    if number - number == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
        return number
    if number != number:
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _geo_point(latitude: float, longitude: float) -> dict[str, float]:
    return {"latitude": latitude, "longitude": longitude}


# --- protobuf Values (google.cloud.firestore_v1.types.Value.pb()) ----------------------------

# The kinds whose protobuf attribute is already the JSON value.
_PLAIN = frozenset({"string_value", "integer_value", "boolean_value"})


def encode_value_pb(value: Any) -> Any:
    """One protobuf `Value` as JSON-ready data (see the module docstring)."""
    kind = value.WhichOneof("value_type")
    if kind in _PLAIN:
        return getattr(value, kind)
    return _PB_KINDS.get(kind, _unknown_pb)(value)


def encode_fields_pb(fields: Any) -> dict[str, Any]:
    """A protobuf map of `Value`s (a map value), in Firestore's order."""
    return {key: encode_value_pb(fields[key]) for key in fields}


def encode_document_pb(doc_id: str, fields: Any) -> dict[str, Any]:
    """A document's protobuf `fields` as the API and the snapshots show it (the rule of
    `_document`, with `encode_value_pb` inlined: this loop runs for every field read)."""
    encoded: dict[str, Any] = {"id": doc_id}
    for key in sorted(fields):
        if key != "id":
            value = fields[key]
            kind = value.WhichOneof("value_type")
            encoded[key] = (getattr(value, kind) if kind in _PLAIN
                            else _PB_KINDS.get(kind, _unknown_pb)(value))
    return encoded


def _reference_pb(value: Any) -> str:
    name = value.reference_value
    _, found, path = name.partition("/documents/")
    return path if found else name


def _timestamp_pb(stamp: Any) -> str:
    return format_epoch(stamp.seconds, stamp.nanos)


def _unknown_pb(value: Any) -> Any:
    raise TypeError(f"cannot encode a Firestore value of kind {value.WhichOneof('value_type')}")


_PB_KINDS: dict[str | None, Callable[[Any], Any]] = {
    "null_value": lambda value: None,
    None: lambda value: None,
    "double_value": lambda value: _double(value.double_value),
    "timestamp_value": lambda value: _timestamp_pb(value.timestamp_value),
    "bytes_value": lambda value: _bytes(value.bytes_value),
    "reference_value": _reference_pb,
    "geo_point_value": lambda value: _geo_point(value.geo_point_value.latitude,
                                                value.geo_point_value.longitude),
    "array_value": lambda value: [encode_value_pb(item) for item in value.array_value.values],
    "map_value": lambda value: encode_fields_pb(value.map_value.fields),
}


# --- Python values --------------------------------------------------------------------------

def encode_value(value: Any) -> Any:
    """A Python value (as the client's `to_dict()` returns it, or as a write holds it) as
    JSON-ready data, by the same rules as `encode_value_pb`."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _double(value)
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, bytes):
        return _bytes(value)
    if isinstance(value, Mapping):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    latitude = getattr(value, "latitude", None)
    if latitude is not None and hasattr(value, "longitude"):
        return _geo_point(latitude, value.longitude)
    path = getattr(value, "path", None)
    if isinstance(path, str):
        return path
    raise TypeError(f"cannot encode Firestore value of type {type(value).__name__}")


def encode_document(doc_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A document's Python fields as the API and the snapshots show it: `id` first, then the
    fields sorted by name (keys, then a lookup each, as `encode_document_pb` walks a protobuf
    map, whose `items()` is a Python-level generator)."""
    encoded: dict[str, Any] = {"id": doc_id}
    for key in sorted(data):
        if key != "id":
            encoded[key] = encode_value(data[key])
    return encoded
