"""Files tuibox writes on the host at a path somebody named (``save -o``, log export).

tuibox runs as root, so writing "to a path" must never turn into writing *through* one:
``-o /dev/stdout`` must not replace the host's symlink, ``-o /dev/null`` or a FIFO must
not be opened or destroyed, and a symlink that a local user planted at a predictable name
must not aim our write at ``/etc/shadow``.  The rules are those of moby's atomicwriter (the
docker 28 CLI's ``save -o``), with its words:

* the parent must be an existing directory;
* an existing path must be a plain regular file (no setuid, setgid or sticky bit); a
  directory, symlink, FIFO, socket or device is refused before anything is opened;
* the data goes to a new temp file in the same directory, created with ``O_EXCL`` and
  ``O_NOFOLLOW`` and mode 0600 (Docker's), and is renamed over the path only when
  complete.  A rename replaces the directory entry and never writes into another inode,
  so a hard link to someone else's file is not touched either.  The path is checked
  again just before the rename; what a user could swap in between is an entry that user
  could remove anyway.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InvalidArgument

OUTPUT_MODE = 0o600


def _refusal(st: os.stat_result) -> str:
    """Why an existing entry may not be replaced ("" if it may)."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        if mode & stat.S_ISUID:
            return "cannot write to a setuid file"
        if mode & stat.S_ISGID:
            return "cannot write to a setgid file"
        if mode & stat.S_ISVTX:
            return "cannot write to a sticky bit file"
        return ""
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link directly"),
             (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device file"), (stat.S_ISBLK, "a block device file")]
    return next((f"cannot write to {what}" for test, what in kinds if test(mode)),
                f"unknown file mode {mode:#o}")


def _check(dir_fd: int, name: str, path: Path) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    reason = _refusal(st)
    if reason:
        raise InvalidArgument(f"invalid output path {path}: {reason}")


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = OUTPUT_MODE) -> Iterator[BinaryIO]:
    """A binary file to write; it appears at ``path`` (0600) when the block succeeds."""
    name = path.name
    if name in ("", ".", ".."):
        raise InvalidArgument(f"invalid output path {path}: cannot write to a directory")
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgument(f"invalid output path: {path.parent}: {exc.strerror}") from exc
    try:
        _check(dir_fd, name, path)
        tmp = f".{name}.tuibox-{secrets.token_hex(4)}"
        try:
            out = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, OUTPUT_MODE, dir_fd=dir_fd), "wb")
        except OSError as exc:
            raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from exc
        try:
            with out:
                os.fchmod(out.fileno(), mode)  # exactly this mode, whatever the umask
                yield out
                out.flush()
                os.fsync(out.fileno())
            _check(dir_fd, name, path)  # nothing we may not replace appeared meanwhile
            try:
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
