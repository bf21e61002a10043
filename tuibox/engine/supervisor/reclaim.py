"""Take a container's stdout/stderr pipes back after its keeper and supervisor were killed.

Who holds the read ends?  The supervisor, and a copy in the keeper.  With both killed
nobody does: every write the container makes fails with ``EPIPE``, and the kernel sends the
writer ``SIGPIPE``, which kills any process of the container except its PID 1 (a pid
namespace's init ignores signals it has no handler for, even the kernel's).  So a shell
loop as PID 1 runs on printing into nothing, its children die of ``SIGPIPE`` at their first
write, and whatever was still unread in the pipe stays there (the pipe lives as long as a
write end does).

The write ends are still open in the container's processes, and on Linux a pipe can be
opened again by name: ``pidfd_getfd`` copies the container's own descriptor into ours
(the very open file, no path involved), its inode is checked against the one recorded at
start (``ContainerState.stdio_pipes``: never a pipe the container made itself, never a
file it put on fd 1), and ``/proc/self/fd/N`` opened for reading gives a new read end of
that pipe.  Output flows again, the unread bytes first; what was written in between is
lost, and the state says since when (``OutputGap``).  A TTY cannot be taken back: its
master side is gone for good.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_PIDFD_GETFD = 438  # the same number on every architecture (the common syscall table)
STREAMS = ("stdout", "stderr")


def pipe_inode(fd: int) -> int:
    """The pipe's inode (both ends share it), recorded at start."""
    return os.fstat(fd).st_ino


def reclaim(pids: list[int], inodes: dict[str, int]) -> dict[str, int]:
    """New non-blocking read ends of the pipes named by ``inodes`` (stream → inode), found
    in the fd tables of ``pids`` (the container's processes, PID 1 first)."""
    found: dict[str, int] = {}
    wanted = {ino: name for name, ino in inodes.items() if name in STREAMS and ino}
    for pid in pids:
        if not wanted:
            break
        for num, ino in _pipes_of(pid, set(wanted)):
            if ino not in wanted:
                continue
            fd = _reopen(pid, num, ino)
            if fd >= 0:
                found[wanted.pop(ino)] = fd
    return found


def _pipes_of(pid: int, inodes: set[int]) -> list[tuple[int, int]]:
    """(fd number, inode) of the process's descriptors that are one of our pipes."""
    out = []
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError, ValueError):
                st = os.stat(f"/proc/{pid}/fd/{name}")
                if stat.S_ISFIFO(st.st_mode) and st.st_ino in inodes:
                    out.append((int(name), st.st_ino))
    return out


def _reopen(pid: int, num: int, ino: int) -> int:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return -1
    try:
        copy = _libc.syscall(SYS_PIDFD_GETFD, pidfd, num, 0)
        if copy < 0:
            return -1
    finally:
        os.close(pidfd)
    try:
        # Checked on the copy itself: whatever the container did to its fd since we
        # listed it, this is the pipe we made or we take nothing.
        st = os.fstat(copy)
        if not stat.S_ISFIFO(st.st_mode) or st.st_ino != ino:
            return -1
        return os.open(f"/proc/self/fd/{copy}",
                       os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return -1
    finally:
        os.close(copy)
