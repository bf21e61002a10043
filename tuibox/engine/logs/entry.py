"""Decoding json-file lines back into entries, with exact nanosecond times."""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from typing import Final

# RFC 3339 as Go writes it (and as other json-file writers may): the fraction is optional and
# of any length, the zone is Z or an offset.
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z"
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One json-file line: ``data`` keeps its ``\\n`` unless the entry is ``partial``."""

    stream: str
    time_ns: int
    data: bytes
    partial: bool


def fraction_ns(digits: str | None) -> int:
    """Nanoseconds of a decimal fraction's digits; digits past the ninth are dropped."""
    if not digits:
        return 0
    return int(digits[:9].ljust(9, "0"))


def parse_rfc3339(value: str) -> int:
    """Unix nanoseconds of an RFC 3339 timestamp with a zone; ``ValueError`` if it is not one."""
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise ValueError(f"no such date: {value!r}")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"no such time of day: {value!r}")
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= offset if m.group(9) == "+" else -offset
    return secs * 1_000_000_000 + fraction_ns(m.group(7))


def decode_line(line: bytes) -> LogEntry:
    """Parse one json-file line (with or without its ``\\n``); ``ValueError`` if malformed."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a json-file log line: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("not a json-file log line: not an object")
    log, stream, stamp = obj.get("log", ""), obj.get("stream", ""), obj.get("time")
    if not isinstance(log, str) or not isinstance(stream, str) or not isinstance(stamp, str):
        raise ValueError("not a json-file log line: log, stream or time has the wrong type")
    # surrogatepass: a foreign writer may have escaped a lone surrogate; keep it, don't crash.
    data = log.encode("utf-8", "surrogatepass")
    return LogEntry(stream, parse_rfc3339(stamp), data, not data.endswith(b"\n"))
