"""Docker's size units, stdlib only (the CLI's fast path parses flags without pydantic)."""

from __future__ import annotations

import re

from .errors import InvalidArgument

_BINARY = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: str, flag: str) -> int:
    """docker's ``RAMInBytes``: binary units, ``32m`` = 32 MiB."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", value.lower())
    if not m:
        raise InvalidArgument(f"invalid value {value!r} for {flag}: expected a size like 64m")
    return int(float(m.group(1)) * _BINARY[m.group(2)])
