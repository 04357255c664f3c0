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
- Python values (`encode_document`): what a write holds, an event decoded by
  `functions.publish.events`, a filter value.

tests/test_wire_encoding.py proves, over generated documents of every value type, that both
shapes give the bytes the client's own decoding and the previous encoder gave.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring as _json_string  # json.dumps' own (C) escaper
from typing import Any

from shared.times import format_epoch, format_timestamp

_float_repr = float.__repr__  # what json.dumps writes for a finite double
_int_repr = int.__repr__

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
