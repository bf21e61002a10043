"""Line offsets of a container's json-file log, across rotations (no Textual here).

``LogScanner`` runs in a worker thread: it finds new complete lines and hands out immutable
``Segment`` deltas.  ``LogIndex`` lives on the main thread: it keeps only offsets (8 bytes a
line) and reads a line's text on demand with ``pread``, so scrollback is unlimited and memory
does not grow with the text.  Files are tracked by inode, as the engine's reader does: a
rotation renames files but never rewrites them.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tuibox.engine.logs import LogEntry, decode_line

_BLOCK: Final = 1 << 20
FileKey = tuple[int, int]


@dataclass(frozen=True)
class Delta:
    """New line starts found in one file; ``end`` is where the last complete line ends."""

    key: FileKey
    path: str
    starts: bytes  # array('Q') bytes
    end: int


@dataclass(frozen=True)
class ScanResult:
    """What changed since the last scan: files gone (oldest first) and new lines."""

    dropped: tuple[FileKey, ...]
    deltas: tuple[Delta, ...]


def log_files(container_dir: Path, cid: str) -> list[tuple[Path, FileKey]]:
    """The log's files oldest first, one entry per inode."""
    live = container_dir / f"{cid}-json.log"
    try:
        names = os.listdir(container_dir)
    except FileNotFoundError:
        return []
    prefix = live.name + "."
    indices = sorted((int(n[len(prefix):]) for n in names
                      if n.startswith(prefix) and n[len(prefix):].isdigit()), reverse=True)
    out: list[tuple[Path, FileKey]] = []
    seen: set[FileKey] = set()
    for path in [*(live.with_name(f"{live.name}.{i}") for i in indices), live]:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            out.append((path, key))
    return out


class LogScanner:
    """Finds new lines; private to one worker thread."""

    def __init__(self, container_dir: Path, cid: str) -> None:
        self.dir, self.cid = container_dir, cid
        self._ends: dict[FileKey, int] = {}  # where the last complete line ends
        self._seen: dict[FileKey, int] = {}  # how far the file has been read

    def scan(self, *, budget: int = 64 * _BLOCK) -> ScanResult:
        """New lines since the last call; reads at most ``budget`` bytes (call again)."""
        files = log_files(self.dir, self.cid)
        present = {key for _, key in files}
        dropped = tuple(k for k in self._ends if k not in present)
        for k in dropped:
            del self._ends[k]
            self._seen.pop(k, None)
        deltas: list[Delta] = []
        for path, key in files:
            if budget <= 0:
                break
            start = self._ends.get(key, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < start:  # truncated: start over on this file
                start = 0
            if key in self._ends and size == self._seen.get(key):
                continue
            stop = min(size, start + budget)
            starts, end = _scan_file(path, start, stop)
            budget -= stop - start
            known = key in self._ends
            self._ends[key], self._seen[key] = end, stop
            if starts or not known:
                deltas.append(Delta(key, str(path), starts.tobytes(), end))
        return ScanResult(dropped, tuple(deltas))

    def pending(self) -> bool:
        """Whether bytes are known to be waiting (the last scan hit its budget)."""
        for path, key in log_files(self.dir, self.cid):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > self._seen.get(key, 0):
                    return True
        return False


def _scan_file(path: Path, start: int, stop: int) -> tuple[array[int], int]:
    starts: array[int] = array("Q")
    end = start
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return starts, start
    try:
        pos = start
        while pos < stop:
            buf = os.pread(fd, min(_BLOCK, stop - pos), pos)
            if not buf:
                break
            line_start = end - pos  # relative to buf; may be negative (carried partial)
            find = buf.find
            i = find(b"\n")
            while i >= 0:
                starts.append(pos + line_start)
                line_start = i + 1
                i = find(b"\n", line_start)
            end = pos + line_start
            pos += len(buf)
    finally:
        os.close(fd)
    return starts, end


@dataclass
class _Segment:
    key: FileKey
    path: str
    starts: array[int]
    end: int
    fd: int = -1


class LogIndex:
    """Every known line of one log; ``entry(i)`` reads line ``i`` lazily."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []  # index of each segment's first line
        self._count = 0
        self._cache: OrderedDict[int, LogEntry] = OrderedDict()

    def __len__(self) -> int:
        return self._count

    def apply(self, result: ScanResult) -> int:
        """Apply a scan; returns how many lines were dropped from the front."""
        dropped_lines = 0
        if result.dropped:
            gone = set(result.dropped)
            kept = []
            for seg in self._segments:
                if seg.key in gone:
                    dropped_lines += len(seg.starts)
                    self._close(seg)
                else:
                    kept.append(seg)
            self._segments = kept
            self._cache.clear()
        by_key = {seg.key: seg for seg in self._segments}
        for d in result.deltas:
            new: array[int] = array("Q")
            new.frombytes(d.starts)
            found = by_key.get(d.key)
            if found is None:
                found = _Segment(d.key, d.path, new, d.end)
                self._segments.append(found)
                by_key[d.key] = found
            else:
                found.starts.extend(new)
                found.end = d.end
        self._firsts, total = [], 0
        for seg in self._segments:
            self._firsts.append(total)
            total += len(seg.starts)
        self._count = total
        return dropped_lines

    def raw(self, index: int) -> bytes:
        s = bisect.bisect_right(self._firsts, index) - 1
        seg = self._segments[s]
        j = index - self._firsts[s]
        begin = seg.starts[j]
        stop = seg.starts[j + 1] if j + 1 < len(seg.starts) else seg.end
        fd = self._fd(seg)
        return os.pread(fd, stop - begin, begin) if fd >= 0 else b""

    def entry(self, index: int) -> LogEntry:
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        raw = self.raw(index)
        try:
            entry = decode_line(raw)
        except ValueError:
            entry = LogEntry("stdout", 0, raw.rstrip(b"\n"), False)
        self._cache[index] = entry
        if len(self._cache) > 2000:
            self._cache.popitem(last=False)
        return entry

    def _fd(self, seg: _Segment) -> int:
        if seg.fd < 0:
            # The file may have been renamed by a rotation: find the name holding our inode.
            base = Path(seg.path)
            live = base.with_name(base.name.split(".log")[0] + ".log")
            for path in [base, live, *(live.with_name(f"{live.name}.{i}") for i in range(1, 10))]:
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) == seg.key:
                        seg.fd = fd
                        break
                    os.close(fd)
        return seg.fd

    @staticmethod
    def _close(seg: _Segment) -> None:
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1

    def close(self) -> None:
        for seg in self._segments:
            self._close(seg)
        self._segments, self._firsts, self._count = [], [], 0
        self._cache.clear()
