"""Reading a log file backwards in blocks, so ``tail`` costs what it returns, not the file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

BLOCK: Final = 64 * 1024


def _blocks_backwards(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` blocks covering ``[0, end)``, last block first."""
    pos = end
    while pos > 0:
        start = max(0, pos - BLOCK)
        yield start, os.pread(fd, pos - start, start)
        pos = start


def complete_end(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` below ``size`` (0 if none): where whole lines end."""
    for start, data in _blocks_backwards(fd, size):
        nl = data.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
    return 0


def tail_start(fd: int, end: int, count: int) -> tuple[int, int]:
    """Where the last ``count`` lines of ``[0, end)`` begin, and how many lines were found.

    ``end`` must be 0 or just past a ``\\n``.  Fewer than ``count`` found means the whole
    range is needed (offset 0).
    """
    if count <= 0 or end == 0:
        return end, 0
    # The newline ending the last line does not start a line; the count+1-th from the end does.
    wanted = count + 1
    seen = 0
    for start, data in _blocks_backwards(fd, end):
        here = data.count(b"\n")
        if seen + here < wanted:
            seen += here
            continue
        pos = len(data)
        while True:
            nl = data.rfind(b"\n", 0, pos)
            if nl < 0:
                break
            seen += 1
            if seen == wanted:
                return start + nl + 1, count
            pos = nl
    return 0, seen


def last_line(fd: int, end: int) -> bytes:
    """The last whole line of ``[0, end)`` (``end`` just past a ``\\n``), or b""."""
    tail = b""
    for _start, data in _blocks_backwards(fd, end):
        tail = data + tail
        nl = tail.rfind(b"\n", 0, len(tail) - 1)
        if nl >= 0:
            return tail[nl + 1 :]
    return tail
