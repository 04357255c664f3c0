"""The one JSON encoder of Firestore values, used by the read API and by the snapshots.

Timestamps become RFC 3339 UTC strings, GeoPoints `{"latitude", "longitude"}`, references
document paths, bytes base64. Because both the API and the snapshot publisher call
`encode_document`, the same document gives the same JSON whichever path served it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

UTC = dt.UTC

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def utc_now() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(UTC)


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a `Z`, fractional seconds only when present (up to nanoseconds)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    nanos = getattr(value, "nanosecond", 0) or value.microsecond * 1000
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


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


def encode_value(value: Any) -> Any:
    """Turn one Firestore value (as the Python client returns it) into JSON-ready data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    latitude = getattr(value, "latitude", None)
    if latitude is not None and hasattr(value, "longitude"):
        return {"latitude": latitude, "longitude": value.longitude}
    path = getattr(value, "path", None)
    if isinstance(path, str):
        return path
    raise TypeError(f"cannot encode Firestore value of type {type(value).__name__}")


def encode_document(doc_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A document as the API and the snapshots show it: `id` first, then its fields by name."""
    encoded = {"id": doc_id}
    for key in sorted(data):
        if key != "id":
            encoded[key] = encode_value(data[key])
    return encoded
