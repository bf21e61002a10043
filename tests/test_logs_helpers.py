"""Helpers shared by the log tests (no tests here): feeding a writer through real pipes,
reading all files back, and an independent port of moby's escaper."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tuibox.engine.logs import LogEntry, LogWriter, decode_line
from tuibox.engine.logs.files import rotated_indices

PIPE_SIZE = 1 << 20


def make_pipe() -> tuple[int, int]:
    """A pipe with a non-blocking, 1 MiB read side, as the supervisor sets it up."""
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    os.set_blocking(r, False)
    return r, w


def feed(writer: LogWriter, stream: str, data: bytes, *, eof: bool = False) -> None:
    """Push ``data`` through a fresh pipe into ``writer``; with ``eof``, end the stream too."""
    r, w = make_pipe()
    try:
        view = memoryview(data)
        while view:
            n = os.write(w, view[:PIPE_SIZE])
            view = view[n:]
            writer.pump(stream, r)  # type: ignore[arg-type]
        if eof:
            os.close(w)
            w = -1
            while writer.pump(stream, r):  # type: ignore[arg-type]
                pass
            writer.close_stream(stream)  # type: ignore[arg-type]
        else:
            writer.pump(stream, r)  # type: ignore[arg-type]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def log_files(container_dir: Path, cid: str) -> list[Path]:
    """The log's files, oldest first."""
    live = container_dir / f"{cid}-json.log"
    rotated = [live.with_name(f"{live.name}.{i}") for i in reversed(rotated_indices(live))]
    return [*rotated, live] if live.exists() else rotated


def all_entries(container_dir: Path, cid: str) -> list[LogEntry]:
    out = []
    for path in log_files(container_dir, cid):
        out.extend(decode_line(line) for line in path.read_bytes().splitlines())
    return out


def join_messages(entries: list[LogEntry], stream: str) -> list[bytes]:
    """Re-join partial chunks of one stream into whole messages (the last may stay open)."""
    out: list[bytes] = []
    pending = b""
    for e in entries:
        if e.stream != stream:
            continue
        pending += e.data
        if not e.partial:
            out.append(pending)
            pending = b""
    if pending:
        out.append(pending)
    return out


# -- an independent port of moby's ffjsonWriteJSONBytesAsString, byte loop and all ----------

_HEX = "0123456789abcdef"


def _go_decode_rune(s: bytes, i: int) -> tuple[int, int]:
    """Go's utf8.DecodeRune: (rune, size), with (0xFFFD, 1) for any invalid start."""
    b0 = s[i]
    if b0 < 0x80:
        return b0, 1
    if 0xC2 <= b0 <= 0xDF:
        size, lo, hi = 2, 0x80, 0xBF
    elif b0 == 0xE0:
        size, lo, hi = 3, 0xA0, 0xBF
    elif 0xE1 <= b0 <= 0xEC or 0xEE <= b0 <= 0xEF:
        size, lo, hi = 3, 0x80, 0xBF
    elif b0 == 0xED:
        size, lo, hi = 3, 0x80, 0x9F
    elif b0 == 0xF0:
        size, lo, hi = 4, 0x90, 0xBF
    elif 0xF1 <= b0 <= 0xF3:
        size, lo, hi = 4, 0x80, 0xBF
    elif b0 == 0xF4:
        size, lo, hi = 4, 0x80, 0x8F
    else:
        return 0xFFFD, 1
    if i + size > len(s) or not lo <= s[i + 1] <= hi:
        return 0xFFFD, 1
    if any(not 0x80 <= c <= 0xBF for c in s[i + 2 : i + size]):
        return 0xFFFD, 1
    return ord(s[i : i + size].decode()), size


def go_escape(s: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(s):
        b = s[i]
        if b < 0x80:
            if b >= 0x20 and b not in b'\\"<>&':
                out.append(b)
            elif b in b'\\"':
                out += b"\\" + bytes([b])
            elif b == 0x0A:
                out += b"\\n"
            elif b == 0x0D:
                out += b"\\r"
            else:
                out += f"\\u00{_HEX[b >> 4]}{_HEX[b & 0xF]}".encode()
            i += 1
            continue
        rune, size = _go_decode_rune(s, i)
        if rune == 0xFFFD and size == 1:
            out += b"\\ufffd"
        elif rune in (0x2028, 0x2029):
            out += f"\\u202{_HEX[rune & 0xF]}".encode()
        else:
            out += s[i : i + size]
        i += size
    return bytes(out)
