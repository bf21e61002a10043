"""Cutting spooled output into json-file messages the way moby's copier does.

A message is a complete line (``\\n`` included), or a ``CHUNK_SIZE`` piece of a line that
is at least that long (the copier's 16 KiB buffer filled up without a newline), or — only when
the stream has ended — whatever is left.  Chunk boundaries fall at multiples of
``CHUNK_SIZE`` from the start of the line, so converting in several goes gives the same
messages as converting at once.
"""

from __future__ import annotations

from .jsonfmt import CHUNK_SIZE


def convertible(data: bytes, *, final: bool) -> tuple[int, bool]:
    """How many leading bytes of ``data`` form messages now, and whether they are "simple".

    ``data`` must start at a message boundary.  Simple means complete lines all shorter than
    ``CHUNK_SIZE``, which ``encode_lines`` can encode in one pass.  Bytes past the returned
    count are the start of a line still being written.
    """
    cut = data.rfind(b"\n") + 1
    rest = len(data) - cut
    count = len(data) if final else cut + rest // CHUNK_SIZE * CHUNK_SIZE
    if count != cut or cut == 0:
        return count, False
    return count, _all_short(data, cut)


def _all_short(data: bytes, end: int) -> bool:
    """Whether every line in ``data[:end]`` (which ends with ``\\n``) is shorter than a chunk."""
    pos = 0
    while pos < end:
        # The last newline within a chunk's reach ends every line that starts before it, so
        # this hops a chunk at a time instead of a line at a time.
        nl = data.rfind(b"\n", pos, min(pos + CHUNK_SIZE, end))
        if nl < 0:
            return False
        pos = nl + 1
    return True


def messages(region: bytes) -> list[bytes]:
    """Split the convertible ``region`` into messages (``\\n`` kept on complete lines)."""
    out: list[bytes] = []
    pos, end = 0, len(region)
    while pos < end:
        # A newline within the next CHUNK_SIZE bytes ends a line shorter than a chunk.
        nl = region.find(b"\n", pos, pos + CHUNK_SIZE)
        stop = nl + 1 if nl >= 0 else min(pos + CHUNK_SIZE, end)
        out.append(region[pos:stop])
        pos = stop
    return out
