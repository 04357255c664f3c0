"""Time, in one place: the current time, RFC 3339 text (parsed and formatted the one way every
answer writes it: UTC, `Z`, fractional seconds only when present, up to nanoseconds), and
timestamps as integer nanoseconds since the epoch (what versions and `asOf` compare on).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any

UTC = dt.UTC

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# The same shape, cut where `parse_ns` keeps all nine fractional digits.
_RFC3339_PARTS = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


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


# --- formatting ------------------------------------------------------------------------------

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


# --- integer nanoseconds -------------------------------------------------------------------------

def to_ns(value: dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (nanoseconds kept when present)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    whole = value.replace(microsecond=0)
    seconds = int(whole.timestamp())
    nanos = getattr(value, "nanosecond", 0) or value.microsecond * 1000
    return seconds * 1_000_000_000 + nanos


def from_ns(ns: int) -> dt.datetime:
    """The aware datetime (with nanoseconds) of a nanosecond timestamp."""
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    seconds, nanos = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, UTC)
    return DatetimeWithNanoseconds(base.year, base.month, base.day, base.hour, base.minute,
                                   base.second, nanosecond=nanos, tzinfo=UTC)


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with up to nine fractional digits (the encoder's format)."""
    return format_epoch(*divmod(ns, 1_000_000_000))


def parse_ns(text: str) -> int:
    """Parse an RFC 3339 timestamp to nanoseconds, keeping all nine fractional digits."""
    match = _RFC3339_PARTS.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    whole = parse_timestamp(match.group(1) + match.group(3))
    fraction = (match.group(2) or ".")[1:]
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction + "0" * 9)[:9])


def timestamp_ns(timestamp: Any) -> int:
    """A protobuf `Timestamp` as nanoseconds since the epoch."""
    return timestamp.seconds * 1_000_000_000 + timestamp.nanos
