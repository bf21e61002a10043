"""The writer's commit point: how much of each spool is in the log, and the log's size.

A cursor is one 64-byte record at offset 0 of its file, rewritten in place with a single
``pwrite``.  A write that small and page-aligned is never torn by SIGKILL (the kernel copies it
into the page cache in one go), so the record is always either the old or the new state.  The
CRC only guards against a file that was damaged some other way.

It also counts the output the writer dropped (``dropped.py``), committed with the spool
offset that skips it, so the count is exact across SIGKILL too.  A 48-byte cursor from
before (``TBXLOGC1``, no counts) still reads.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tuibox.engine.errors import RecordError
from tuibox.engine.records import write_atomic

_MAGIC: Final = b"TBXLOGC2"
_BODY: Final = struct.Struct("<QQQQQQ")
_RECORD: Final = struct.Struct("<8s48sI4x")
_MAGIC_V1: Final = b"TBXLOGC1"
_BODY_V1: Final = struct.Struct("<QQQQ")
_RECORD_V1: Final = struct.Struct("<8s32sI4x")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Committed state: spool offsets already converted, and the live log's committed size."""

    stdout_offset: int = 0
    stderr_offset: int = 0
    log_size: int = 0
    # Time of the newest committed entry, so a restarted writer never stamps an earlier time.
    last_time_ns: int = 0
    # Output dropped so far (over all runs), because the log could not be written.
    dropped_lines: int = 0
    dropped_bytes: int = 0

    def pack(self) -> bytes:
        body = _BODY.pack(self.stdout_offset, self.stderr_offset, self.log_size,
                          self.last_time_ns, self.dropped_lines, self.dropped_bytes)
        return _RECORD.pack(_MAGIC, body, zlib.crc32(body))

    @classmethod
    def unpack(cls, raw: bytes, path: Path) -> Cursor:
        record, fields, magic_wanted = {_RECORD.size: (_RECORD, _BODY, _MAGIC),
                                        _RECORD_V1.size: (_RECORD_V1, _BODY_V1, _MAGIC_V1),
                                        }.get(len(raw), (None, _BODY, b""))
        if record is None:
            raise RecordError(str(path), f"log cursor is {len(raw)} bytes, not {_RECORD.size}")
        magic, body, crc = record.unpack(raw)
        if magic != magic_wanted or zlib.crc32(body) != crc:
            raise RecordError(str(path), "log cursor is corrupt")
        return cls(*fields.unpack(body))


class CursorFile:
    """The open cursor file; ``commit`` is the single write that makes progress durable."""

    def __init__(self, path: Path, fd: int, cursor: Cursor) -> None:
        self.path = path
        self._fd = fd
        self.cursor = cursor

    @classmethod
    def open(cls, path: Path) -> CursorFile | None:
        """The existing cursor, or None if there is none yet."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            cursor = Cursor.unpack(os.pread(fd, _RECORD.size + 1, 0), path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, cursor)

    @classmethod
    def create(cls, path: Path, cursor: Cursor) -> CursorFile:
        # Temp file + rename: a cursor file either holds a whole record or does not exist.
        write_atomic(path, cursor.pack(), mode=0o600)
        opened = cls.open(path)
        assert opened is not None
        return opened

    def commit(self, cursor: Cursor) -> None:
        if cursor == self.cursor:
            return
        if os.pwrite(self._fd, cursor.pack(), 0) != _RECORD.size:
            raise OSError(f"short write to {self.path}")
        self.cursor = cursor

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
