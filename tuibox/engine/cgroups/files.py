"""Small, fast helpers for cgroup files: raw ``os`` calls, errors that name the file."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument, TuiboxError


def read(path: Path | str) -> str | None:
    """The file's text, or None if it is missing (a stats pass must never raise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def read_int(path: Path | str, default: int = 0) -> int:
    text = read(path)
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events …) as a dict."""
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def stat_value(text: str | None, key: str) -> int:
    """One ``key value`` line of a long stat file, without parsing the rest."""
    if not text:
        return 0
    start = text.find(key + " ")
    while start > 0 and text[start - 1] != "\n":
        start = text.find(key + " ", start + 1)
    if start < 0:
        return 0
    end = text.find("\n", start)
    try:
        return int(text[start + len(key) + 1:end if end >= 0 else None])
    except ValueError:
        return 0


def psi_some_avg10(text: str | None) -> float | None:
    for line in (text or "").splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                if field.startswith("avg10="):
                    return float(field[6:])
    return None


def write(path: Path, value: str, *, flag: str) -> None:
    """Write one knob; a missing file or a refusal is one clear error naming the flag."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidArgument(f"{flag} is not supported on this host: the cgroup file "
                              f"{path.name} does not exist") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        if exc.errno == errno.EBUSY and path.name.startswith("memory"):
            raise TuiboxError(f"cannot set {flag} to {value.strip()}: the container uses more "
                              f"memory than that right now ({path.name}: busy)") from None
        raise TuiboxError(f"cannot set {flag}: writing {value.strip()!r} to {path} failed: "
                          f"{exc.strerror}") from None
    finally:
        os.close(fd)


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TuiboxError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


@dataclass(frozen=True, slots=True)
class Counters:
    """Raw cumulative counters of one cgroup, as the kernel keeps them."""

    cpu_ns: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0
    memory_usage: int = 0
    inactive_file: int = 0
    memory_limit: int = -1  # -1 = unlimited
    oom_kills: int = 0
    pids: int = 0
    pids_limit: int = -1
    block_read: int = 0
    block_write: int = 0
    psi_cpu: float | None = None
    psi_memory: float | None = None
    psi_io: float | None = None
