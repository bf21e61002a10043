"""The supervisor's log writer: pipe → spool → json-file, exactly once across SIGKILL.

Three files per container carry the state (spools and cursor in a tmpfs ``spool_dir``):

``<cid>.stdout.spool`` / ``<cid>.stderr.spool``
    Raw output.  ``pump`` moves it from the pipe with ``splice`` at the spool's end, so taking
    bytes out of the pipe and keeping them are one kernel operation: a spool's size is exactly
    what was consumed, whenever the process dies.
``<cid>.cursor``
    The commit point (``cursor.py``): how far each spool is converted and how long the live
    log is.  Every change becomes durable with one small ``pwrite`` of it.
``<container_dir>/<cid>-json.log`` (+ ``.1`` … when rotating)
    Entries are appended with one ``pwritev`` *before* the cursor that covers them.

Recovery therefore truncates the log back to the committed size (dropping an append whose
cursor never landed) and converts each spool again from its committed offset.  A spool is
emptied only after everything in it is committed (truncate, then commit offset 0); a spool
shorter than its offset was emptied by a writer killed in between.  While a line is still
incomplete the spool cannot be emptied, so its converted prefix is hole-punched instead to keep
tmpfs memory bounded.

Timestamps: every entry of one conversion shares the time it was converted, and times never
decrease (the last one is in the cursor, so a restarted writer keeps to that too).  Docker also
gives the later chunks of a 16 KiB+ line their first chunk's time; here a chunk converted in a
later pump gets that pump's time, because a shared stamp would step back behind entries of the
other stream written in between.

Nothing is fsynced: the contract is surviving SIGKILL of the writer, not a power cut.

A log write that fails (a full disk above all, or less than ``LOG_RESERVE`` left on it) drops
its entries instead: their spool bytes are committed as converted, counted in ``dropped``
(``dropped.py``) and still streamed to attached clients.  The pipes keep draining, so the
container never blocks on its log, and the next write that fits goes in again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from tuibox.engine.errors import InvalidArgument

from ..diskfull import free_bytes, is_disk_full
from ._libc import punch_hole
from .chunks import convertible, messages
from .cursor import Cursor, CursorFile
from .dropped import LOG_RESERVE, Dropped
from .entry import decode_line
from .files import finish_interrupted, live_path, open_live, rotate
from .jsonfmt import encode_entry, encode_lines_parts

Stream = Literal["stdout", "stderr"]
STREAMS: Final[tuple[Stream, Stream]] = ("stdout", "stderr")

# Most bytes one pump() moves, so one chatty container cannot starve the others.
PUMP_BUDGET: Final = 1 << 20
# Converted spool bytes worth freeing while an incomplete line keeps the spool from emptying.
_PUNCH_AFTER: Final = 1 << 20
_PAGE: Final = 4096


@dataclass(slots=True)
class _Spool:
    fd: int
    size: int  # bytes spliced in so far: the end of the file
    offset: int  # bytes already in the log (committed or about to be)
    punched: int = 0


class LogWriter:
    """Append one container's stdout/stderr to its json-file log; see the module docstring.

    ``on_entry(stream, data)`` is called after each commit with the raw bytes of the entries
    just committed (one or more whole entries, in order), for streaming to attached clients.
    ``dropped`` carries the count of earlier runs on; ``on_drop(dropped)`` is called after
    each write that was dropped.
    """

    def __init__(
        self,
        container_dir: Path,
        cid: str,
        spool_dir: Path,
        *,
        max_size: int = -1,
        max_file: int = 1,
        on_entry: Callable[[str, bytes], None] | None = None,
        dropped: Dropped | None = None,
        on_drop: Callable[[Dropped], None] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_size != -1 and max_size <= 0:
            raise InvalidArgument(f"log max-size must be positive or -1, not {max_size}")
        if max_file < 1:
            raise InvalidArgument(f"log max-file must be at least 1, not {max_file}")
        self._live = live_path(container_dir, cid)
        self._spool_dir = spool_dir
        self._cursor_path = spool_dir / f"{cid}.cursor"
        self._spool_paths = {s: spool_dir / f"{cid}.{s}.spool" for s in STREAMS}
        self._max_size = max_size
        self._max_file = max_file
        self._on_entry = on_entry
        self.dropped = dropped if dropped is not None else Dropped()
        self._on_drop = on_drop
        self._clock = clock
        self._rotation_failed = False
        self._cursor: CursorFile | None = None
        self._spools: dict[str, _Spool] = {}
        self._log_fd = -1
        self._log_size = 0
        self._last_ts = 0

    @property
    def path(self) -> Path:
        """The live log file."""
        return self._live

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> None:
        """Open (or re-open after a crash) the log, spools and cursor; convert what is pending.

        Idempotent; ``pump`` and ``close_stream`` call it if the caller did not.
        """
        if self._cursor is not None:
            return
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._reopen()
        except BaseException:
            self.close()
            raise
        for stream in STREAMS:
            self._convert(stream, final=False)

    def _reopen(self) -> None:
        cursor_file = CursorFile.open(self._cursor_path)
        self._cursor = cursor_file
        self._open_log()
        if cursor_file is None:
            # No cursor: a first start, or tmpfs lost it (reboot) with any spool.  Keep every
            # whole entry already in the log; a torn last line can only be garbage.
            size, last_ts = _whole_entries(self._log_fd) if self._log_fd >= 0 else (0, 0)
            if self._log_fd >= 0:
                os.ftruncate(self._log_fd, size)
            cursor_file = CursorFile.create(self._cursor_path, Cursor(
                0, 0, size, last_ts, self.dropped.lines, self.dropped.size))
            self._cursor = cursor_file
        committed = cursor_file.cursor
        # The cursor's count is exact (committed with each drop); the caller's may be late.
        self.dropped.lines = max(self.dropped.lines, committed.dropped_lines)
        self.dropped.size = max(self.dropped.size, committed.dropped_bytes)
        if self._log_fd >= 0:
            self._settle_log(committed.log_size)
        self._last_ts = committed.last_time_ns
        offsets = {"stdout": committed.stdout_offset, "stderr": committed.stderr_offset}
        for stream, path in self._spool_paths.items():
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            size = os.fstat(fd).st_size
            # Shorter than its offset: it was emptied but the offset-0 commit never landed.
            offset = offsets[stream] if offsets[stream] <= size else 0
            self._spools[stream] = _Spool(fd, size, offset)
        self._commit()

    def _open_log(self) -> bool:
        """Open the live log; False (and writes are dropped) while it cannot be created."""
        try:
            self._log_fd = open_live(self._live)
        except OSError:  # no room for a new file: entries are dropped until there is
            self._log_fd = -1
            return False
        return True

    def _settle_log(self, committed_size: int) -> None:
        """Cut the log back to its last commit, and finish a rotation left halfway."""
        live_size = os.fstat(self._log_fd).st_size
        if live_size >= committed_size:
            os.ftruncate(self._log_fd, committed_size)  # drop an uncommitted append
            self._log_size = committed_size
        else:
            self._log_size = live_size  # a rotation replaced the file before its commit
        try:
            new_fd = finish_interrupted(self._live, self._max_file)
        except OSError:  # e.g. no room for the new live file: finished at the next rotation
            self._rotation_failed = True
            return
        if new_fd is not None:
            os.close(self._log_fd)
            self._log_fd, self._log_size = new_fd, 0

    # -- the supervisor's calls -------------------------------------------------------------

    def pump(self, stream: Stream, fd: int) -> bool:
        """Move what the pipe ``fd`` holds (up to ``PUMP_BUDGET``) into the log.

        ``fd`` must be non-blocking.  Returns False once the pipe is at EOF; then call
        ``close_stream``.
        """
        self.recover()
        spool = self._spools[stream]
        moved = 0
        open_ = True
        while moved < PUMP_BUDGET:
            try:
                n = os.splice(
                    fd,
                    spool.fd,
                    PUMP_BUDGET - moved,
                    offset_dst=spool.size,
                    flags=os.SPLICE_F_NONBLOCK,
                )
            except BlockingIOError:
                break
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                # The spool's tmpfs is full: the pipe must drain all the same.
                n = self._discard_from(stream, fd, PUMP_BUDGET - moved, exc)
                if n < 0:
                    break
                if n == 0:
                    open_ = False
                    break
                moved += n
                continue
            if n == 0:
                open_ = False
                break
            spool.size += n
            moved += n
        if moved:
            self._convert(stream, final=False)
        return open_

    def _discard_from(self, stream: Stream, fd: int, budget: int, exc: OSError) -> int:
        """Read up to ``budget`` bytes from the pipe and drop them; -1 if it was empty."""
        try:
            data = os.read(fd, budget)
        except BlockingIOError:
            return -1
        if data:
            self._dropped(stream, data, exc.strerror or str(exc))
        return len(data)

    def close_stream(self, stream: Stream) -> None:
        """At EOF: log the unterminated last line, as a partial entry without ``\\n``."""
        self.recover()
        self._convert(stream, final=True)

    def close(self) -> None:
        """Release the files; spools and cursor stay for a later ``recover``."""
        for spool in self._spools.values():
            os.close(spool.fd)
        self._spools.clear()
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def remove_spool(self) -> None:
        """Close, then delete the spools and the cursor: the container's output is finished."""
        self.close()
        # Spools before the cursor: a cursor without spools recovers cleanly (offsets reset),
        # spools without a cursor would be converted again from the start.
        for path in (*self._spool_paths.values(), self._cursor_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- conversion -------------------------------------------------------------------------

    def _commit(self) -> None:
        assert self._cursor is not None
        out, err = self._spools["stdout"], self._spools["stderr"]
        self._cursor.commit(Cursor(out.offset, err.offset, self._log_size, self._last_ts,
                                   self.dropped.lines, self.dropped.size))

    def _now(self) -> int:
        # Never earlier than an entry already written, even if the wall clock steps back.
        self._last_ts = max(self._last_ts, self._clock())
        return self._last_ts

    def _convert(self, stream: Stream, *, final: bool) -> None:
        spool = self._spools[stream]
        if spool.offset < spool.size:
            data = os.pread(spool.fd, spool.size - spool.offset, spool.offset)
            count, simple = convertible(data, final=final)
            if count:
                self._write(stream, data[:count], simple=simple)
        if spool.size and spool.offset == spool.size:
            os.ftruncate(spool.fd, 0)
            spool.size = spool.offset = spool.punched = 0
            self._commit()
        elif spool.offset - spool.punched >= _PUNCH_AFTER:
            upto = spool.offset // _PAGE * _PAGE
            with contextlib.suppress(OSError):  # no hole punching there: just use the space
                punch_hole(spool.fd, 0, upto)
            spool.punched = upto

    def _write(self, stream: Stream, region: bytes, *, simple: bool) -> None:
        stamp = self._now()
        if simple:
            parts = encode_lines_parts(region, stream, stamp)
            if self._max_size == -1 or self._log_size + sum(map(len, parts)) < self._max_size:
                self._append(stream, parts, region)
                return
            blob = b"".join(parts)
            # Entries and lines correspond one to one, and both end at their "\n" bytes.
            entry_sizes = [len(e) + 1 for e in blob.split(b"\n")[:-1]]
            raw_sizes = [len(line) + 1 for line in region.split(b"\n")[:-1]]
        else:
            raws = messages(region)
            entries = [encode_entry(m, stream, stamp) for m in raws]
            blob = b"".join(entries)
            entry_sizes, raw_sizes = list(map(len, entries)), list(map(len, raws))
        self._append_rotating(stream, blob, entry_sizes, region, raw_sizes)

    def _append_rotating(
        self,
        stream: Stream,
        blob: bytes,
        entry_sizes: list[int],
        region: bytes,
        raw_sizes: list[int],
    ) -> None:
        """Append entries in runs, rotating before any entry that finds the log full (Docker)."""
        view = memoryview(blob)
        i, n, at, raw_at = 0, len(entry_sizes), 0, 0
        while i < n:
            if self._max_size != -1 and self._log_size >= self._max_size:
                try:
                    self._rotate()
                except OSError as exc:  # no room for the new file: drop, retry next time
                    self._rotation_failed = True
                    self._drop(stream, region[raw_at:], exc)
                    return
            room = self._max_size - self._log_size if self._max_size != -1 else len(blob)
            end, raw_end = at, raw_at
            while i < n and end - at < room:  # entry i starts below max-size: it goes in
                end += entry_sizes[i]
                raw_end += raw_sizes[i]
                i += 1
            self._append(stream, [view[at:end]], region[raw_at:raw_end])
            at, raw_at = end, raw_end

    def _append(self, stream: Stream, parts: list[memoryview], raw: bytes) -> None:
        size = sum(map(len, parts))
        if not size:
            return
        if self._log_fd < 0:  # it could not be created at recovery: try again
            if not self._open_log():
                self._drop(stream, raw, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                return
            assert self._cursor is not None
            self._settle_log(self._cursor.cursor.log_size)
        if self._short_of_space(size):
            self._drop(stream, raw, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
            return
        try:
            _pwrite_all(self._log_fd, parts, self._log_size)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._log_fd, self._log_size)  # e.g. ENOSPC: drop the torn tail
            if not isinstance(exc, OSError):
                raise
            self._drop(stream, raw, exc)  # the container must not wait for the disk
            return
        self._log_size += size
        self._spools[stream].offset += len(raw)
        self._commit()
        if self._on_entry is not None:
            self._on_entry(stream, raw)

    def _short_of_space(self, size: int) -> bool:
        """Whether this write would leave less than ``LOG_RESERVE`` free on the disk."""
        try:
            return free_bytes(self._live.parent) - size < LOG_RESERVE
        except OSError:
            return False  # cannot tell: let the write itself decide

    def _drop(self, stream: Stream, raw: bytes, exc: OSError) -> None:
        """Entries that could not be written: consumed from the spool all the same."""
        self._spools[stream].offset += len(raw)
        self._dropped(stream, raw, exc.strerror or str(exc))

    def _dropped(self, stream: Stream, raw: bytes, error: str) -> None:
        self.dropped.add(raw, error, self._clock())
        self._commit()  # the count with the offset that skips it: exact across SIGKILL
        if self._on_entry is not None:  # an attached client still sees the output
            self._on_entry(stream, raw)
        if self._on_drop is not None:
            self._on_drop(self.dropped)

    def _rotate(self) -> None:
        new_fd = None
        if self._rotation_failed:  # finish the one a full disk interrupted, not a second
            new_fd = finish_interrupted(self._live, self._max_file)
        if new_fd is None:
            new_fd = rotate(self._live, self._max_file)
        self._rotation_failed = False
        os.close(self._log_fd)
        self._log_fd, self._log_size = new_fd, 0
        self._commit()  # before anything is written to the new file


def _pwrite_all(fd: int, parts: list[memoryview], offset: int) -> None:
    """Write ``parts`` at ``offset`` in one system call (more only after a short write)."""
    done = os.pwritev(fd, parts, offset)
    if done == sum(map(len, parts)):
        return
    rest = memoryview(b"".join(parts))[done:]
    offset += done
    while rest:
        n = os.pwrite(fd, rest, offset)
        rest = rest[n:]
        offset += n


def _whole_entries(fd: int) -> tuple[int, int]:
    """Length of ``fd``'s content up to its last ``\\n``, and the time of that last entry."""
    end = os.fstat(fd).st_size
    block = 64 * 1024
    tail = b""
    pos = end
    while pos > 0:
        start = max(0, pos - block)
        tail = os.pread(fd, pos - start, start) + tail
        pos = start
        nl = tail.rfind(b"\n")
        if nl < 0:
            continue
        size = pos + nl + 1
        prev = tail.rfind(b"\n", 0, nl)
        if prev < 0 and pos > 0:
            continue  # the last line started before this block: read one more
        try:
            return size, decode_line(tail[prev + 1 : nl + 1]).time_ns
        except ValueError:
            return size, 0
    return 0, 0
