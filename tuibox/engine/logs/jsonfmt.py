"""Docker json-file entries, byte for byte.

The escaping copies moby's ``jsonlogbytes.go:ffjsonWriteJSONBytesAsString`` rather than
``encoding/json``: that writer backslash-escapes only ``"`` ``\\`` ``\\n`` ``\\r``; every other
byte below 0x20 (tab included, so ``\\t`` is written ``\\u0009``) and the HTML-sensitive
``<`` ``>`` ``&`` become ``\\u00XX`` with lowercase hex; U+2028/U+2029 become ``\\u2028``/
``\\u2029``; each byte that does not start a valid UTF-8 sequence becomes ``\\ufffd`` (one per
byte, as Go's ``utf8.DecodeRune`` advances one byte on error); everything else, DEL and valid
non-ASCII included, is copied unchanged.
"""

from __future__ import annotations

import codecs
import functools
import re
import time
from typing import Final

# copier.go's defaultBufSize: a line longer than this is logged as 16 KiB partial chunks.
CHUNK_SIZE: Final = 16 * 1024

_HEAD: Final = b'{"log":"'
_NL: Final = b"\\n"
_CTRL: Final = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f]")
# Every byte but those _CTRL matches: translate(None, this) is a fast "any control byte?" test
# (a regex scan of a MiB costs seven times as much).
_NOT_CTRL: Final = bytes(b for b in range(256) if not _CTRL.match(bytes([b])))
# A lone surrogate never comes out of a strict UTF-8 decode, so it can mark invalid bytes.
_BAD: Final = "\ud800"
_ERRORS: Final = "tuibox-go-utf8"


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go replaces one byte per error and resynchronises at the next byte; Python's "replace"
    # would swallow a whole truncated sequence into a single U+FFFD.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _BAD, exc.start + 1


codecs.register_error(_ERRORS, _go_replace)


def _escape_valid(data: bytes) -> bytes:
    """Escape valid UTF-8 except ``\\n``, which callers turn into entry boundaries or ``\\n``."""
    # Backslash first, so the escapes added below are not escaped again.  ASCII bytes never
    # occur inside a multi-byte sequence, so byte-level replaces are safe on valid UTF-8.
    data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\r", b"\\r")
    data = data.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    if data.translate(None, _NOT_CTRL):
        data = _CTRL.sub(lambda m: b"\\u00%02x" % m.group()[0], data)
    if not data.isascii():
        data = data.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    return data


def escape_keep_newlines(data: bytes) -> bytes:
    """Escape ``data`` for a json-file ``log`` string, leaving raw ``\\n`` bytes in place."""
    if data.isascii():
        return _escape_valid(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        parts = data.decode("utf-8", _ERRORS).split(_BAD)
        return b"\\ufffd".join(_escape_valid(p.encode("utf-8")) for p in parts)
    return _escape_valid(data)


def escape(data: bytes) -> bytes:
    """The JSON string body (no quotes) moby writes for ``data``."""
    return escape_keep_newlines(data).replace(b"\n", _NL)


@functools.lru_cache(maxsize=8)
def _second_prefix(sec: int) -> str:
    # Entries come in bursts within one second; formatting the date once per second is cheap.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def format_time(t_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: fraction with trailing zeros trimmed, none if zero."""
    sec, frac = divmod(t_ns, 1_000_000_000)
    prefix = _second_prefix(sec)
    if frac == 0:
        return prefix + "Z"
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


def _tail(stream: str, t_ns: int) -> bytes:
    return (
        b'","stream":"'
        + escape(stream.encode())
        + b'","time":"'
        + format_time(t_ns).encode()
        + b'"}\n'
    )


def encode_entry(log: bytes, stream: str, t_ns: int) -> bytes:
    """One json-file line (``\\n``-terminated) for ``log`` as given: include its ``\\n``."""
    return _HEAD + escape(log) + _tail(stream, t_ns)


def encode_lines_parts(lines: bytes, stream: str, t_ns: int) -> list[memoryview]:
    """Entries for a run of complete lines sharing one timestamp, in a few C-level passes.

    ``lines`` must end with ``\\n`` and hold no line of ``CHUNK_SIZE`` bytes or more.  The
    result, as buffers for ``pwritev``, concatenates to ``b"".join(encode_entry(line, ...))``
    over its lines.  Not joining them saves copying (and page-faulting in) a MiB-sized buffer
    per batch, a sixth of the writer's time on short lines.
    """
    # Every "\n" becomes the end of one entry and the start of the next; the surplus start
    # after the last line is cut off by a view instead of a copy.
    joint = _NL + _tail(stream, t_ns) + _HEAD
    body = escape_keep_newlines(lines).replace(b"\n", joint)
    return [memoryview(_HEAD), memoryview(body)[: -len(_HEAD)]]


def encode_lines(lines: bytes, stream: str, t_ns: int) -> bytes:
    """``encode_lines_parts`` joined."""
    return b"".join(encode_lines_parts(lines, stream, t_ns))
