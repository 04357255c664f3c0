"""The one JSON encoder of Firestore values, used by the read API and by the snapshots.

Timestamps become RFC 3339 UTC strings (`Z`, fractional seconds only when present, up to
nanoseconds), doubles stay numbers but NaN and ±Infinity become the strings `"NaN"`,
`"Infinity"`, `"-Infinity"` (JSON has no such numbers), GeoPoints `{"latitude", "longitude"}`,
references document paths relative to the database (`users/u1`), bytes base64. A document is
`{"id", ...fields}` with its fields sorted by name (a stored field named `id` is not shown);
maps inside keep Firestore's order.

Values arrive in two shapes, and both go through the same rules (the functions at the top):

- protobuf `Value`s straight off the wire, written straight to JSON text
  (`document_json_pb`): the read API's Firestore path (`shared.firestore_wire` reads them
  without the client's object layer, which cost about three quarters of an uncached read);
  the dicts of a snapshot rebuild are that text read back (`encode_document_pb`);
- Python values (`encode_document`): what a write holds, an event decoded by `shared.events`,
  a filter value.

tests/test_wire_encoding.py proves, over generated documents of every value type, that both
shapes give the bytes the client's own decoding and the previous encoder gave.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring as _json_string  # json.dumps' own (C) escaper
from typing import Any

UTC = dt.UTC
_float_repr = float.__repr__  # what json.dumps writes for a finite double
_int_repr = int.__repr__

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
# Text of each day and each second of a day, computed once: a page of documents has a few
# distinct `updatedAt` seconds and many `createdAt` days, and the reads format two per document.
_DAYS: dict[int, str] = {}
_CLOCKS: dict[int, str] = {}
_MILLIS = tuple(f".{millis:03d}".rstrip("0") for millis in range(1000))


def _day_text(days: int) -> str:
    """`YYYY-MM-DDT` of a day counted from the epoch (always four-digit years)."""
    text = _DAYS.get(days)
    if text is None:
        text = (_EPOCH + dt.timedelta(days=days)).isoformat() + "T"
        if len(_DAYS) >= 65536:  # 180 years of days; more is not a cache any more
            _DAYS.clear()
        _DAYS[days] = text
    return text


def _clock_text(clock: int) -> str:
    """`HH:MM:SS` of a second of the day (at most 86,400 of them)."""
    text = _CLOCKS.get(clock)
    if text is None:
        hour, second = divmod(clock, 3600)
        text = _CLOCKS[clock] = f"{hour:02d}:{second // 60:02d}:{second % 60:02d}"
    return text


def _fraction_text(nanos: int) -> str:
    """`.fff` of a nonzero nanosecond count, trailing zeros cut (milliseconds from a table)."""
    if nanos % 1_000_000:
        return f".{nanos:09d}".rstrip("0")
    return _MILLIS[nanos // 1_000_000]


def format_epoch(seconds: int, nanos: int = 0) -> str:
    """RFC 3339 in UTC of a Firestore timestamp (seconds since the epoch and nanoseconds)."""
    days, clock = divmod(seconds, 86400)
    text = (_DAYS.get(days) or _day_text(days)) + (_CLOCKS.get(clock) or _clock_text(clock))
    return text + _fraction_text(nanos) + "Z" if nanos else text + "Z"


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


# --- protobuf Values (google.cloud.firestore_v1.types.Value.pb()), straight to JSON text --------
#
# Written as `http.dumps` writes JSON (the same C string escaper, `repr` of ints and doubles, no
# spaces), without building dicts first: for a page of 10,000 documents, building the dicts,
# collecting them and dumping them cost more than reading the protobuf.

_KEYS_JSON: dict[str, str] = {}


def _key_json(key: str) -> str:
    """`"key":`, remembered for the few field names a collection has."""
    text = _KEYS_JSON.get(key)
    if text is None:
        text = _json_string(key) + ":"
        if len(_KEYS_JSON) < 4096:
            _KEYS_JSON[key] = text
    return text


def _timestamp_json(value: Any) -> str:
    stamp = value.timestamp_value
    return '"' + format_epoch(stamp.seconds, stamp.nanos) + '"'


def _double_json(value: Any) -> str:
    number = value.double_value
    if number - number == 0.0:
        return _float_repr(number)
    if number != number:
        return '"NaN"'
    return '"Infinity"' if number > 0 else '"-Infinity"'


def _finite_json(number: float) -> str:
    if number - number == 0.0:
        return _float_repr(number)
    raise ValueError("Out of range float values are not JSON compliant")  # as json.dumps


def value_json_pb(value: Any) -> str:
    """One protobuf `Value` as JSON text: `http.dumps(encode_value_pb(value))`, decoded."""
    text = value.string_value
    if text:  # a non-empty string_value is that member of the oneof: no WhichOneof needed
        return _json_string(text)
    return _PB_JSON.get(value.WhichOneof("value_type"), _unknown_pb)(value)


def _fields_json_pb(fields: Any) -> str:
    return "{" + ",".join([_key_json(key) + value_json_pb(fields[key]) for key in fields]) + "}"


def document_json_pb(doc_id: str, fields: Any, names: tuple[str, ...] | None = None) -> str:
    """A document's protobuf `fields` as JSON text: `{"id", ...fields}`, fields sorted by name,
    or with `names`, its projection (`id`, then those of `names` it has, in that order), byte
    for byte what `http.dumps` writes for the same dict. `value_json_pb` is inlined: this loop
    runs for every field of every document read."""
    parts = ['{"id":' + _json_string(doc_id)]
    append = parts.append
    for key in sorted(fields) if names is None else [name for name in names if name in fields]:
        if key != "id":
            value = fields[key]
            key_text = _KEYS_JSON.get(key) or _key_json(key)
            text = value.string_value
            if text:
                append(key_text + _json_string(text))
            else:
                append(key_text + _PB_JSON.get(value.WhichOneof("value_type"), _unknown_pb)(value))
    return ",".join(parts) + "}"


_PB_JSON: dict[str | None, Callable[[Any], str]] = {
    "string_value": lambda value: _json_string(value.string_value),
    "integer_value": lambda value: _int_repr(value.integer_value),
    "boolean_value": lambda value: "true" if value.boolean_value else "false",
    "null_value": lambda value: "null",
    None: lambda value: "null",
    "double_value": _double_json,
    "timestamp_value": _timestamp_json,
    "bytes_value": lambda value: '"' + _bytes(value.bytes_value) + '"',
    "reference_value": lambda value: _json_string(_reference_pb(value)),
    "geo_point_value": lambda value: (
        '{"latitude":' + _finite_json(value.geo_point_value.latitude)
        + ',"longitude":' + _finite_json(value.geo_point_value.longitude) + "}"),
    "array_value": lambda value: (
        "[" + ",".join([value_json_pb(item) for item in value.array_value.values]) + "]"),
    "map_value": lambda value: _fields_json_pb(value.map_value.fields),
}


def _reference_pb(value: Any) -> str:
    name = value.reference_value
    _, found, path = name.partition("/documents/")
    return path if found else name


def _unknown_pb(value: Any) -> Any:
    raise TypeError(f"cannot encode a Firestore value of kind {value.WhichOneof('value_type')}")


def encode_value_pb(value: Any) -> Any:
    """One protobuf `Value` as JSON-ready data: what `value_json_pb` writes, as Python data."""
    return json.loads(value_json_pb(value))


def encode_document_pb(doc_id: str, fields: Any) -> dict[str, Any]:
    """A document's protobuf `fields` as a dict (a snapshot's item, a page token's last item):
    what `document_json_pb` writes, read back, so that both shapes come from one encoder."""
    return json.loads(document_json_pb(doc_id, fields))


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
    fields sorted by name (keys, then a lookup each, as `document_json_pb` walks a protobuf
    map, whose `items()` is a Python-level generator)."""
    encoded: dict[str, Any] = {"id": doc_id}
    for key in sorted(data):
        if key != "id":
            encoded[key] = encode_value(data[key])
    return encoded
