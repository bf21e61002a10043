"""``cp``'s wire format: a file tree as a stream of records, written and read through fds.

Both ends are ours, so this is not tar: no user or group names (numeric ids only, nothing
to look up), no paths (each record names one entry of the directory the reader is in, so
nothing can be aimed elsewhere: no ``..``, no ``/``, no link to follow), and no device
nodes.  A record is a fixed header, the name, then a symlink's target or a file's bytes::

    DIR name … ENTRIES … END     FILE name <size bytes>     SYMLINK name target     FIFO name

The writer walks with ``O_NOFOLLOW`` directory fds and opens a regular file only through
an ``O_PATH`` handle it has checked (re-opened via ``/proc/self/fd``), so a FIFO or device
swapped in at the last moment is never opened.  The reader creates every entry itself
(``O_EXCL``, ``O_NOFOLLOW``, relative to a directory fd it holds) and sets owner and mode
on the fd, never through a path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .errors import TuiboxError

DIR, FILE, SYMLINK, FIFO, END = 1, 2, 3, 4, 5
_KINDS = {DIR, FILE, SYMLINK, FIFO, END}
# kind, mode, uid, gid, mtime (ns), size (file bytes or link target length), name length
_HEADER = struct.Struct("<BxxxIIIqQH")
_CHUNK = 1 << 20
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID


class CopyError(TuiboxError):
    """A copy could not be done: the one-line reason."""


class StreamEnded(CopyError):
    """The other end stopped: the reason is on that side."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes:
    parts = []
    while size:
        chunk = os.read(fd, min(size, _CHUNK))
        if not chunk:
            raise StreamEnded("the copy stream ended early")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _receive_data(inp: int, fd: int, size: int) -> None:
    """``size`` bytes from the stream into the file: spliced (no copy through us) while
    the kernel allows it, else read and written."""
    left = size
    while left:
        try:
            moved = os.splice(inp, fd, min(left, _CHUNK))
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            break
        if not moved:
            raise StreamEnded("the copy stream ended early")
        left -= moved
    while left:
        chunk = _read_exact(inp, min(left, _CHUNK))
        _write_all(fd, chunk)
        left -= len(chunk)


def _check_name(name: bytes) -> bytes:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise CopyError(f"refused a bad entry name {name!r}")
    return name


# ------------------------------------------------------------------------- the writer


@dataclass
class Writer:
    """Sends a tree.  ``proc_fd`` is an open ``/proc/self/fd`` of this process (taken
    before entering a container: its ``/proc`` may show another pid namespace or be
    missing).  ``devices`` is "skip" (copying out) or "refuse" (copying in)."""

    out: int
    proc_fd: int
    devices: str = "skip"

    def send(self, parent_fd: int, name: bytes, *, top: bool = False) -> None:
        """Send ``name`` (in ``parent_fd``, not followed if a symlink).  A device node or
        socket is skipped inside a tree (or refused, see ``devices``), refused at the top."""
        arcname = name
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(name, _NOFOLLOW_DIR, dir_fd=parent_fd)
            try:
                st = os.fstat(fd)
                self._header(DIR, st, 0, arcname)
                for child in sorted(os.listdir(fd)):
                    self.send(fd, os.fsencode(child))
                _write_all(self.out, _HEADER.pack(END, 0, 0, 0, 0, 0, 0))
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self._file(parent_fd, name, top)
        elif stat.S_ISLNK(mode):
            target = os.readlink(name, dir_fd=parent_fd)
            self._header(SYMLINK, st, len(target), arcname)
            _write_all(self.out, target)
        elif stat.S_ISFIFO(mode):
            self._header(FIFO, st, 0, arcname)  # made again on the other side, never opened
        else:
            self._special(st, name, top)

    def _special(self, st: os.stat_result, name: bytes, top: bool) -> None:
        what = "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        if self.devices == "refuse" or top:
            raise CopyError(f"{os.fsdecode(name)} is {what}: cp copies no device nodes "
                            "or sockets")

    def _file(self, parent_fd: int, name: bytes, top: bool) -> None:
        arcname = name
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            st = os.fstat(handle)
            if not stat.S_ISREG(st.st_mode):  # swapped since the lstat: send what it is now
                if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
                    raise CopyError(f"{os.fsdecode(arcname)} changed during the copy")
                if stat.S_ISFIFO(st.st_mode):
                    self._header(FIFO, st, 0, arcname)
                else:
                    self._special(st, name, top)
                return
            # Re-open the very inode we checked: a regular file, so opening has no effect.
            fd = os.open(str(handle), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=self.proc_fd)
        finally:
            os.close(handle)
        try:
            size = st.st_size
            self._header(FILE, st, size, arcname)
            sent = 0
            while sent < size:
                n = os.sendfile(self.out, fd, sent, min(size - sent, _CHUNK))
                if n == 0:  # it shrank meanwhile: keep the stream's promise with zeros
                    _write_all(self.out, bytes(min(size - sent, _CHUNK)))
                    n = min(size - sent, _CHUNK)
                sent += n
        finally:
            os.close(fd)

    def _header(self, kind: int, st: os.stat_result, size: int, arcname: bytes) -> None:
        _write_all(self.out, _HEADER.pack(kind, stat.S_IMODE(st.st_mode), st.st_uid,
                                          st.st_gid, st.st_mtime_ns, size, len(arcname))
                   + arcname)


# ------------------------------------------------------------------------- the reader


@dataclass
class Reader:
    """Receives a tree into a directory fd.

    ``owner`` maps the ids in the stream to the ids to set (e.g. all to 0:0, or to the
    caller's).  ``merge``: existing directories are entered and other existing entries
    replaced (inside a container, as Docker does); without it every entry must be new
    (the host side receives into a fresh staging directory).  ``strip_setid``: no setuid
    or setgid bit is kept (files landing on the host)."""

    inp: int
    owner: Callable[[int, int], tuple[int, int]]
    merge: bool = False
    strip_setid: bool = False

    def receive(self, dir_fd: int, top_name: bytes) -> int:
        """Read one entry (a whole tree for a directory) and name it ``top_name``; its
        kind (DIR, FILE …)."""
        kind, meta, _ = self._record()
        if kind == END:
            raise StreamEnded("the copy stream is empty")
        self._entry(dir_fd, kind, meta, _check_name(top_name))
        return kind

    def _record(self) -> tuple[int, tuple[int, int, int, int, int], bytes]:
        head = _read_exact(self.inp, _HEADER.size)
        kind, mode, uid, gid, mtime, size, name_len = _HEADER.unpack(head)
        if kind not in _KINDS:
            raise CopyError(f"bad record kind {kind} in the copy stream")
        name = _read_exact(self.inp, name_len) if name_len else b""
        return kind, (mode, uid, gid, mtime, size), name

    def _entry(self, dir_fd: int, kind: int, meta: tuple[int, int, int, int, int],
               name: bytes) -> None:
        mode, uid, gid, mtime, size = meta
        uid, gid = self.owner(uid, gid)
        if self.strip_setid:
            mode &= ~_SETID
        if kind == DIR:
            fd = self._directory(dir_fd, name)
            try:
                while True:
                    child, child_meta, child_name = self._record()
                    if child == END:
                        break
                    self._entry(fd, child, child_meta, _check_name(child_name))
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
            return
        self._make_room(dir_fd, name)
        if kind == FILE:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            try:
                _receive_data(self.inp, fd, size)
                os.fchown(fd, uid, gid)  # before the mode: chown clears setuid bits
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            except BaseException:
                with contextlib.suppress(OSError):  # ours (O_EXCL): no half-copied file
                    os.unlink(name, dir_fd=dir_fd)
                raise
            finally:
                os.close(fd)
        elif kind == SYMLINK:
            if size > 4096:
                raise CopyError("refused an over-long symbolic link target")
            target = _read_exact(self.inp, size)
            if b"\0" in target or not target:
                raise CopyError("refused a bad symbolic link target")
            os.symlink(target, name, dir_fd=dir_fd)
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
        else:  # FIFO: made with its mode (umask is 0 in the helper), never opened
            os.mkfifo(name, mode & 0o777, dir_fd=dir_fd)
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)

    def _directory(self, dir_fd: int, name: bytes) -> int:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            if not self.merge:
                raise
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise CopyError(f"cannot overwrite non-directory {os.fsdecode(name)!r} "
                                "with a directory") from None
        return os.open(name, _NOFOLLOW_DIR, dir_fd=dir_fd)

    def _make_room(self, dir_fd: int, name: bytes) -> None:
        if not self.merge:
            return
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot overwrite directory {os.fsdecode(name)!r} "
                            "with a non-directory")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


def is_consequence(exc: BaseException) -> bool:
    """The failure only echoes the other side's (it hung up, or sent nothing more)."""
    return isinstance(exc, (StreamEnded, BrokenPipeError))


def reason(exc: BaseException) -> str:
    """One line for the user from whatever a copy raised."""
    if isinstance(exc, TuiboxError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f": {os.fsdecode(exc.filename)}" if exc.filename is not None else ""
        text = exc.strerror or errno.errorcode.get(exc.errno or 0, "error")
        return f"{text}{where}"
    if isinstance(exc, RecursionError):
        return "the tree is too deep to copy"
    return repr(exc)
