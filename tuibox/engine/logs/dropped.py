"""Output the log writer could not keep, counted instead of blocking the container.

When the state root's disk is full (or the log cannot be written for another reason), the
writer still drains the container's pipes — a container must never stall, or be killed,
because its log cannot grow — and drops what it cannot write.  ``Dropped`` counts it; the
supervisor records the count in ``state.json`` (``log_loss``), ``inspect`` shows it as
``State.LogLoss`` and ``logs`` prints a notice.  Writing resumes by itself when space returns.

``LOG_RESERVE``: logs stop this many bytes short of a full disk, so the supervisor can still
record exits and ``rm`` can still run when a chatty container has filled the rest.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Final

LOG_RESERVE: Final = 1 << 20


def lines_in(raw: bytes) -> int:
    """Lines in a piece of output; an unterminated tail counts as one."""
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


@dataclass(slots=True)
class Dropped:
    """What one container's log has lost so far (over all its runs)."""

    lines: int = 0
    size: int = 0  # bytes
    error: str = ""  # the last reason, e.g. "No space left on device"
    last_ns: int = 0  # when the last bytes were dropped

    def add(self, raw: bytes, error: str, now_ns: int) -> None:
        self.lines += lines_in(raw)
        self.size += len(raw)
        self.error = error
        self.last_ns = now_ns


def notice(lines: int, error: str) -> str | None:
    """The one line ``logs`` prints on stderr when output was lost, else None."""
    if not lines:
        return None
    what = f"{lines} log line{'s' if lines != 1 else ''} {'were' if lines != 1 else 'was'} lost"
    if error in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)):
        return f"{what} while the disk was full"
    return f"{what}: {error}" if error else what
