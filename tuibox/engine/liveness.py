"""Is a container's recorded PID 1 still that process?  The one place that answers.

A state record names its PID 1 by ``pid`` + ``pid_start`` (field 22 of ``/proc/<pid>/stat``,
ticks since boot) + ``boot_id``.  After a reboot, or when the container and its supervisor
were all killed, the record still says "running" while the pid may belong to a stranger: a
host process that happens to reuse it.  Acting on such a pid would run ``exec`` in the
host's namespaces, ``cp`` into the host's file system, or read the host's counters.  So:

- ``is_live`` / ``stale`` are the cheap checks for listings (a ``stat`` read and a
  ``stat`` of its pid namespace); ``exited_view`` is how a stale record reads while no
  supervisor is there to record the exit (``ContainerStore`` with ``live``);
- ``open_live`` is the race-free one for verbs that enter the process: it opens a pidfd
  first, then ``/proc/<pid>`` (a directory fd bound to that very process: after the pid
  is reused, reads through it fail instead of reaching the newcomer), verifies the start
  time through it, opens the namespaces through it, refuses the host's own namespaces,
  and finally checks the pidfd still names a process that was not reaped in between.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .errors import Conflict
from .models import ContainerState, NetworkSettings

# Docker records 255 when the daemon cannot know how a container's process ended.
LOST_EXIT_CODE = 255
VANISHED = ("the container's process is gone and no supervisor saw it exit "
            "(host rebooted, or it was killed together with tuibox's supervisor)")
# Namespaces every tuibox container has of its own: one shared with us means the pid
# now names a host process, whatever its start time says.
_ALWAYS_OWN = ("pid", "mnt")


@functools.cache
def boot_id() -> str:
    """This boot's id: a pid recorded under another boot never names our process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_time(pid: int, *, dir_fd: int | None = None) -> int:
    """Field 22 of ``/proc/<pid>/stat`` (0 if there is no such process): with the pid and
    the boot, it names one process over time.  With ``dir_fd`` (an open ``/proc/<pid>``)
    it reads that very process, never a later one with the same pid."""
    return _stat(pid, dir_fd)[1]


def _running_since(pid: int, dir_fd: int | None = None) -> int:
    """``start_time`` of a process that has not exited; 0 for a zombie.  (Where PID 1 of
    the host never reaps, as in some sandboxes, a dead container stays a zombie for good.)"""
    state, started = _stat(pid, dir_fd)
    return 0 if state in (b"Z", b"X", b"x") else started


def _stat(pid: int, dir_fd: int | None) -> tuple[bytes, int]:
    """(state letter, start time) from ``/proc/<pid>/stat``; (b"", 0) if it is gone."""
    try:
        if dir_fd is None:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        else:
            fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
        fields = data.rsplit(b")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return b"", 0


def _recorded(state: ContainerState) -> bool:
    """The record names a process at all (and one of this boot)."""
    if not state.running or state.restarting or state.pid <= 0 or state.pid_start == 0:
        return False
    return not (state.boot_id and state.boot_id != boot_id())


def is_live(state: ContainerState) -> bool:
    """The record says running and its PID 1 is still the process it started."""
    if not _recorded(state) or _running_since(state.pid) != state.pid_start:
        return False
    try:  # a host process never has a container's own pid namespace
        return os.stat(f"/proc/{state.pid}/ns/pid").st_ino != _own_pid_ns()
    except OSError:
        return False


@functools.cache
def _own_pid_ns() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def stale(state: ContainerState) -> bool:
    """The record says running (not restarting) but its process is gone."""
    return state.running and not state.restarting and not is_live(state)


def exited_view(state: ContainerState) -> ContainerState:
    """A ``stale`` record as it really is: exited, with Docker's "cannot know" code.
    Nothing is written: the supervisor records the exit when it adopts the container."""
    view = state.model_copy(deep=True)
    view.running = view.paused = False
    view.pid = view.pid_start = 0
    view.exit_code = LOST_EXIT_CODE
    view.error = VANISHED
    view.network = NetworkSettings()
    # It ended at the latest when this host booted, if it started before that.
    booted = _boot_time()
    view.finished_at = max(view.started_at, booted) if booted else view.started_at
    return view


def supervisor_listening(socket_path: Path) -> bool:
    """Whether a supervisor (or its keeper, which starts one at once) holds the root's
    socket: then a stale record is only a moment old and it records the real exit."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC
                         | socket.SOCK_NONBLOCK)
    try:
        sock.connect(str(socket_path))
    except BlockingIOError:  # its backlog is full: busy, but there
        return True
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _boot_time() -> datetime | None:
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return datetime.fromtimestamp(time.time() - uptime, UTC)


@dataclass
class LiveProcess:
    """A verified handle on a container's PID 1: close it (or use ``with``) when done.

    ``pidfd`` signals it (``signal.pidfd_send_signal``) and can be ``setns``'d;
    ``proc`` is its ``/proc/<pid>`` directory (``os.open(name, dir_fd=proc)``);
    ``ns`` maps each namespace asked for ("mnt", "net", …) to an open fd for ``setns``."""

    pid: int
    pidfd: int
    proc: int
    ns: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        """Not yet reaped: the pid still names this process (a zombie counts)."""
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        for fd in [*self.ns.values(), self.proc, self.pidfd]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ns = {}
        self.proc = self.pidfd = -1

    def __enter__(self) -> LiveProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_live(state: ContainerState, namespaces: tuple[str, ...] = ()) -> LiveProcess | None:
    """A verified handle on the record's PID 1 with ``namespaces`` opened, or None if that
    process is gone (whatever now has its pid).  Race-free: see the module docstring."""
    if not _recorded(state):
        return None
    try:
        pidfd = os.pidfd_open(state.pid)
    except OSError:  # ESRCH: no process has that pid
        return None
    handle = LiveProcess(pid=state.pid, pidfd=pidfd, proc=-1)
    try:
        handle.proc = os.open(f"/proc/{state.pid}", os.O_RDONLY | os.O_DIRECTORY
                              | os.O_CLOEXEC)
        if _running_since(state.pid, handle.proc) != state.pid_start:
            raise LookupError
        for name in dict.fromkeys((*namespaces, *_ALWAYS_OWN)):
            handle.ns[name] = os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC,
                                      dir_fd=handle.proc)
        for name in _ALWAYS_OWN:
            if _same_file(handle.ns[name], f"/proc/self/ns/{name}"):
                raise LookupError  # the host's own namespace: never a container's PID 1
        for name in set(_ALWAYS_OWN) - set(namespaces):
            os.close(handle.ns.pop(name))
        # The pidfd came first: if it still names an unreaped process, the pid was never
        # free in between, so everything opened above belongs to it.
        if not handle.alive():
            raise LookupError
    except (OSError, LookupError):
        handle.close()
        return None
    return handle


def _same_file(fd: int, path: str) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def require_live(state: ContainerState, cid: str,
                 namespaces: tuple[str, ...] = ()) -> LiveProcess:
    """``open_live`` for a verb that needs the process: Conflict if it is gone."""
    handle = open_live(state, namespaces)
    if handle is None:
        raise Conflict(f"container {cid} is not running")
    return handle
