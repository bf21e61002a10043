"""The supervisor notices its state root vanishing and goes, leaving nothing behind.

A root deleted (``rm -rf``) or replaced (a new directory at the same path) under a
running supervisor takes every record of its containers and networks with it: nothing
would ever stop those containers or delete their bridges, and a new supervisor for a
root at that path (the runtime dir is keyed by the path) would build a second bridge on
the same subnet.  So once a second the root's device and inode are compared with what
they were at start; when they differ, or the root is gone, the containers are killed,
the bridges and the nftables table deleted at once, and the supervisor and its keeper
exit as after ``shutdown --force``, removing their runtime files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import TuiboxError
from .running import cgroup_rel

if TYPE_CHECKING:
    from .server import Supervisor

CHECK_SECONDS = 1.0
# Killed containers are normally reaped within milliseconds; their cgroups may take the
# kernel a moment longer.  Past this the supervisor goes anyway (and says what stayed).
LET_GO_SECONDS = 10.0
POLL_SECONDS = 0.1


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``path``; None if nothing is there any more."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


class RootWatch:
    """Armed by the supervisor once it serves; everything runs on its timers."""

    def __init__(self, supervisor: Supervisor, log: Callable[[str], None]) -> None:
        self.sup = supervisor
        self.log = log
        self.root = str(supervisor.paths.root)
        self.identity = _identity(self.root)
        self.socket = _identity(str(supervisor.paths.supervisor_socket))
        self.killed: list[str] = []
        self.deadline = 0.0

    def arm(self) -> None:
        self.sup.call_later(CHECK_SECONDS, self.check)

    def check(self) -> None:
        now = _identity(self.root)
        if now is not None and now == self.identity:
            self.arm()
            return
        self.log(f"the state root {self.root} was "
                 f"{'deleted' if now is None else 'replaced'}: stopping its containers, "
                 f"deleting its bridges and table, and exiting")
        self._let_go()

    def _let_go(self) -> None:
        sup = self.sup
        # New clients must start a supervisor of their own (for a new root at this path),
        # never reach this one: our socket goes first (if it is still ours).
        sock = sup.paths.supervisor_socket
        if self.socket is not None and _identity(str(sock)) == self.socket:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        for token in sup.restart_timers.values():
            sup.cancel(token)
        sup.restart_timers.clear()
        for cid, run in sup.running.items():
            self.killed.append(cid)
            with contextlib.suppress(ProcessLookupError, OSError):
                if run.pidfd >= 0:
                    signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
                else:
                    os.kill(run.pid, signal.SIGKILL)
            rel = cgroup_rel(cid)
            with contextlib.suppress(TuiboxError, OSError):
                if sup.driver.exists(rel) and sup.driver.frozen(rel):
                    sup.driver.thaw(rel)  # a frozen task acts on SIGKILL only once thawed
                sup.driver.kill_all(rel)  # exec'd processes too
        try:
            sup.network.let_go()
        except Exception as exc:  # the rest must still happen
            self.log(f"network clean-up of a vanished root: {exc!r}")
        self.deadline = time.monotonic() + LET_GO_SECONDS
        self._wait()

    def _wait(self) -> None:
        sup = self.sup
        busy = [cid for cid in self.killed
                if cid in sup.running or sup.driver.exists(cgroup_rel(cid))]
        if busy and time.monotonic() < self.deadline:
            for cid in busy:
                if cid not in sup.running:  # reaped: its cgroup may be free by now
                    sup.driver.remove(cgroup_rel(cid))
            sup.call_later(POLL_SECONDS, self._wait)
            return
        if busy:
            self.log(f"left behind after the root vanished: {', '.join(c[:12] for c in busy)}")
        self._remove_runtime_files()
        sup._keeper({"op": "shutdown"})
        sup.stopping = True  # the loop ends once nothing runs; network.close() follows

    def _remove_runtime_files(self) -> None:
        """Ours only: a new supervisor for a new root at this path may already be there."""
        run = self.sup.paths.run
        spool = run / "spool"
        for cid in self.killed:
            self.sup.store.remove_spool(cid)
        keeper = self.sup.paths.keeper_pidfile
        with contextlib.suppress(OSError, ValueError):
            if int(keeper.read_text()) == os.getppid():
                keeper.unlink()
        for leftover in (spool, run / "start.lock", run):
            with contextlib.suppress(OSError):  # not empty: no longer only ours
                if leftover.is_dir():
                    leftover.rmdir()
                elif not (run / "supervisor.sock").exists():
                    leftover.unlink()


def watch_root(supervisor: Supervisor, log: Callable[[str], None]) -> RootWatch:
    """Start watching ``supervisor``'s root (called once it has started up)."""
    watch = RootWatch(supervisor, log)
    watch.arm()
    return watch
