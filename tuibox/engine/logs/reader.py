"""``docker logs`` for json-file logs: rotated files oldest first, tail, since/until, follow.

Following survives rotation without losing or repeating an entry: files are tracked by inode,
so when the live name points at a new file the old one is read to its end (the writer is done
with it once it has rotated) and reading continues with whatever came after it.

One known gap: if the writer is killed, entries it appended but never committed are removed
by its successor and converted again, so a follower that read them in that window sees them
twice (with a later time the second time).  The files themselves never hold duplicates.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .backscan import complete_end, last_line, tail_start
from .entry import LogEntry, decode_line
from .files import live_path, rotated_indices, rotated_path
from .watch import DirWatch

_READ_BLOCK: Final = 1 << 20


@dataclass(slots=True)
class _File:
    fd: int
    key: tuple[int, int]  # (st_dev, st_ino): names move during rotation, inodes don't


def _open(path: Path) -> _File | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    st = os.fstat(fd)
    return _File(fd, (st.st_dev, st.st_ino))


def _open_all(live: Path) -> list[_File]:
    """The log's files, oldest first, each inode once.

    Opened newest first: a rotation meanwhile only moves files to higher indices, where the
    scan still finds them (one index past the listing covers a shift at the end).
    """
    found: list[_File] = []
    seen: set[tuple[int, int]] = set()
    indices = rotated_indices(live)
    paths = [live] + [rotated_path(live, i) for i in range(1, (indices[-1] if indices else 0) + 2)]
    for path in paths:
        f = _open(path)
        if f is None:
            continue
        if f.key in seen:
            os.close(f.fd)  # caught mid-rotation: .1 and the live name are one inode
            continue
        seen.add(f.key)
        found.append(f)
    found.reverse()
    return found


class _Chain:
    """The files still to read, oldest first; the first is being read at ``pos``."""

    def __init__(self, live: Path) -> None:
        self.live = live
        self.files: list[_File] = []
        self.pos = 0
        self._carry = b""

    def start(self, *, tail: int | None, since_ns: int | None) -> None:
        self.files = _open_all(self.live)
        if tail is not None and tail >= 0:
            self._seek_tail(tail)
        elif since_ns is not None:
            # Timestamps never decrease, so a rotated file whose last entry is older is skipped
            # without being parsed.
            while len(self.files) > 1 and self._last_time(self.files[0]) < since_ns:
                self._drop_first()

    def _seek_tail(self, count: int) -> None:
        needed = count
        for idx in range(len(self.files) - 1, -1, -1):
            fd = self.files[idx].fd
            end = complete_end(fd, os.fstat(fd).st_size)
            offset, found = tail_start(fd, end, needed)
            needed -= found
            if needed <= 0 or idx == 0:
                for _ in range(idx):
                    self._drop_first()
                self.pos = offset if needed <= 0 else 0
                return

    @staticmethod
    def _last_time(f: _File) -> int:
        line = last_line(f.fd, complete_end(f.fd, os.fstat(f.fd).st_size))
        try:
            return decode_line(line).time_ns
        except ValueError:
            return 0

    def _drop_first(self) -> None:
        os.close(self.files.pop(0).fd)
        self.pos = 0
        self._carry = b""  # a file the writer finished ends with "\n"; anything else is torn

    def _read_to_eof(self, f: _File) -> Iterator[bytes]:
        if os.fstat(f.fd).st_size < self.pos:
            # A restarted writer cut off an append it had not committed; rejoin at the cut.
            self.pos = os.fstat(f.fd).st_size
            self._carry = b""
        while chunk := os.pread(f.fd, _READ_BLOCK, self.pos):
            self.pos += len(chunk)
            data = self._carry + chunk if self._carry else chunk
            cut = data.rfind(b"\n") + 1
            self._carry = data[cut:]
            if cut:
                yield from data[: cut - 1].split(b"\n")

    def lines(self, *, follow: bool) -> Iterator[bytes]:
        """Every whole line available now, following rotations when ``follow``."""
        if not self.files and follow:
            self.files = _open_all(self.live)  # the log did not exist yet at the start
        while self.files:
            current = self.files[0]
            yield from self._read_to_eof(current)
            if len(self.files) > 1:
                self._drop_first()
                continue
            if not follow or not self._rotated_away(current):
                return
            # The live name moved on, so the writer has finished with this file: read its
            # last entries, then whatever replaced it.
            yield from self._read_to_eof(current)
            self.files.extend(self._successors(current))
            self._drop_first()

    def _rotated_away(self, f: _File) -> bool:
        try:
            st = os.stat(self.live)
        except FileNotFoundError:
            return False  # between a max-file=1 unlink and its replacement (other writers)
        return (st.st_dev, st.st_ino) != f.key

    def _successors(self, f: _File) -> list[_File]:
        files = _open_all(self.live)
        keys = [g.key for g in files]
        # Not found: it was rotated out of existence, so every file there is newer.
        later = keys.index(f.key) + 1 if f.key in keys else 0
        for g in files[:later]:
            os.close(g.fd)
        return files[later:]

    def close(self) -> None:
        for f in self.files:
            os.close(f.fd)
        self.files.clear()


def read_logs(
    container_dir: Path,
    cid: str,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    tail: int | None = None,
    follow: bool = False,
    stopped: Callable[[], bool] | None = None,
    poll_interval: float = 0.05,
) -> Iterator[LogEntry]:
    """Entries of a container's json-file log, oldest first.

    ``tail`` keeps only the last N entries (None or negative: all; 0: none), then
    ``since_ns``/``until_ns`` filter by time (inclusive), as ``docker logs`` does.  With
    ``follow``, new entries are yielded as they are written until ``stopped()`` is true *and*
    everything written by then has been yielded, or an entry (or the clock) passes
    ``until_ns``.  Partial entries come out as they are; callers join them.  Lines that are not
    json-file entries are skipped.
    """
    chain = _Chain(live_path(container_dir, cid))
    watch = DirWatch(container_dir) if follow else None  # before reading: no change missed
    try:
        chain.start(tail=tail, since_ns=since_ns)
        while True:
            # Decide before draining, so whatever was written before "stopped" is still read.
            done = not follow or (stopped is not None and stopped())
            done = done or (until_ns is not None and time.time_ns() > until_ns)
            for line in chain.lines(follow=follow):
                try:
                    entry = decode_line(line)
                except ValueError:
                    continue
                if since_ns is not None and entry.time_ns < since_ns:
                    continue
                if until_ns is not None and entry.time_ns > until_ns:
                    return
                yield entry
            if done:
                return
            assert watch is not None
            watch.wait(poll_interval)
    finally:
        chain.close()
        if watch is not None:
            with contextlib.suppress(OSError):
                watch.close()
