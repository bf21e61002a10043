"""``--since``/``--until`` values, parsed the way Docker's ``timetypes.GetTimestamp`` does.

Accepted, in Docker's order of trial: a Go duration relative to now (``10m``, ``1h30m``,
``1.5h``; ``0`` alone is the Unix epoch, not a duration), an RFC 3339-like timestamp (date, an
optional ``T`` time of 1 to 3 fields with an optional fraction, an optional ``Z``/``±hh:mm``
zone; without a zone it is local time, as in Docker), or a Unix timestamp (``1700000000.5``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from tuibox.engine.errors import InvalidArgument

from .entry import fraction_ns

_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, accepted by Go
    "\u03bcs": 1_000,  # Greek mu, accepted by Go
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION: Final = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)[a-zµμ]+)+\Z")
_COMPONENT: Final = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")
_UNIX: Final = re.compile(r"(\d+)(?:\.(\d+))?\Z")
_STAMP: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt](\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?)?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))?\Z"
)


def parse_duration(value: str) -> int | None:
    """Nanoseconds of a Go ``time.ParseDuration`` string, or None if it is not one."""
    if not _DURATION.match(value):
        return None
    sign = -1 if value.startswith("-") else 1
    total = 0
    for whole, frac, unit in _COMPONENT.findall(value.lstrip("+-")):
        scale = _UNIT_NS.get(unit)
        if scale is None:
            return None
        total += int(whole or "0") * scale
        if frac:
            # Go truncates the fractional part towards zero at nanosecond resolution.
            total += int(frac) * scale // 10 ** len(frac)
    return sign * total


def _parse_stamp(value: str) -> int | None:
    m = _STAMP.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in m.group(1, 2, 3, 4, 5, 6))
    tz: timezone | None = None
    if m.group(8):
        tz = UTC
    elif m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(-offset if m.group(9) == "-" else offset)
    try:
        # A naive datetime's timestamp() is local time, which is what Docker uses without a zone.
        when = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        secs = round(when.timestamp())
    except (ValueError, OverflowError):
        return None
    return secs * 1_000_000_000 + fraction_ns(m.group(7))


def parse_since(value: str, now_ns: int) -> int:
    """Unix nanoseconds meant by a ``--since``/``--until`` value, given the current time."""
    text = value.strip()
    if text != "0":
        duration = parse_duration(text)
        if duration is not None:
            return now_ns - duration
    stamp = _parse_stamp(text)
    if stamp is not None:
        return stamp
    m = _UNIX.match(text)
    if m is not None:
        return int(m.group(1)) * 1_000_000_000 + fraction_ns(m.group(2))
    raise InvalidArgument(
        f"invalid time value {value!r}: expected a timestamp (2024-05-01T12:34:56Z, "
        "2024-05-01), a Unix timestamp (1700000000.5) or a duration before now (10m, 1h30m)"
    )
