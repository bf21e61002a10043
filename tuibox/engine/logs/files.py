"""Log file names and rotation, made safe to interrupt at any instant.

Rotation follows Docker (``loggerutils/logfile.go``): drop ``<f>.<max-1>``, shift ``.i`` to
``.i+1``, the live file becomes ``.1`` and a new empty live file starts.  Two changes make it
safe against SIGKILL and kinder to readers:

* The live file becomes ``.1`` by ``link`` and is then *replaced* by a new empty file via
  ``rename``, so ``<f>`` always exists; a reader that sees ``.1`` and ``<f>`` as one inode
  knows it caught the rotation halfway (and skips the duplicate).
* ``finish_interrupted`` recognises each half-done state and completes it instead of running
  a second rotation, which would drop one more old file than Docker does.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LOG_MODE = 0o640


def live_path(container_dir: Path, cid: str) -> Path:
    return container_dir / f"{cid}-json.log"


def rotated_path(live: Path, index: int) -> Path:
    return live.with_name(f"{live.name}.{index}")


def rotated_indices(live: Path) -> list[int]:
    """Indices ``i`` of the existing ``<f>.<i>`` files, ascending (newest first)."""
    prefix = live.name + "."
    try:
        names = os.listdir(live.parent)
    except FileNotFoundError:
        return []
    # str methods, not a regex: this runs at every container start
    return sorted(int(n[len(prefix):]) for n in names
                  if n.startswith(prefix) and n[len(prefix):].isdigit()
                  and n[len(prefix)] != "0")


def open_live(live: Path) -> int:
    """Open (creating with mode 0640 if needed) the live log for reading and writing."""
    try:
        fd = os.open(live, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, LOG_MODE)
    except FileExistsError:
        return os.open(live, os.O_RDWR | os.O_CLOEXEC)
    os.fchmod(fd, LOG_MODE)  # the umask must not decide who may read the log
    return fd


def _scratch(live: Path) -> Path:
    return live.with_name(f".{live.name}.new")


def replace_live(live: Path) -> int:
    """Atomically put a new empty file at ``live``; returns its fd.  The old inode lives on."""
    scratch = _scratch(live)
    fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, LOG_MODE)
    try:
        os.fchmod(fd, LOG_MODE)
        os.rename(scratch, live)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _shift_and_link(live: Path, below: int) -> None:
    """Move ``.i`` to ``.i+1`` for ``i = below-1 … 1``, then hard-link the live file as ``.1``."""
    for i in range(below - 1, 0, -1):
        src = rotated_path(live, i)
        if _exists(src):
            os.rename(src, rotated_path(live, i + 1))
    one = rotated_path(live, 1)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(one)  # only there if someone put it there by hand; the shift moved ours
    os.link(live, one)


def rotate(live: Path, max_file: int) -> int:
    """Rotate the live log; returns the fd of the new, empty live file."""
    if max_file > 1:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rotated_path(live, max_file - 1))
        _shift_and_link(live, max_file - 1)
    # max_file == 1: Docker unlinks and reopens; replacing does the same without a moment
    # where the name is missing, and a follower still finishes the old inode it holds open.
    return replace_live(live)


def finish_interrupted(live: Path, max_file: int) -> int | None:
    """Complete a rotation a killed writer left halfway; the new live fd, or None if none was."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_scratch(live))
    if max_file <= 1 or not _exists(live):
        return None
    one = rotated_path(live, 1)
    if _exists(one) and os.path.samefile(live, one):
        return replace_live(live)  # killed between link and rename
    # Killed inside the shift: the files above the gap have moved, those below have not.
    present = [i for i in rotated_indices(live) if i < max_file]
    gaps = [i for i in range(1, present[-1]) if i not in present] if present else []
    if gaps and os.stat(live).st_size > 0:
        _shift_and_link(live, gaps[0])
        return replace_live(live)
    return None
