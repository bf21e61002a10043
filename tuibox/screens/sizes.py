"""Parsing what users type into the limits fields (Docker's ``--memory`` binary units)."""

from __future__ import annotations

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int | None:
    """``256m`` → bytes; empty → None; ``ValueError`` if it is not a size."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b") if text.strip() else ""
    if not t:
        return None
    num = t.rstrip("kmgt")
    unit = t[len(num):]
    if unit not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    value = float(num) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"not a positive size: {text!r}")
    return int(value)


def parse_cpus(text: str) -> float | None:
    if not text.strip():
        return None
    value = float(text)
    if value <= 0:
        raise ValueError("cpus must be positive")
    return value


def parse_pids(text: str) -> int | None:
    if not text.strip():
        return None
    value = int(text)
    if value == 0 or value < -1:
        raise ValueError("pids limit must be positive (or -1 for none)")
    return value
