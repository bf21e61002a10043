"""The supervisor leaves when nothing needs it, so a host that ran one container once does
not carry a ~55 MB daemon and its keeper for ever.

"Nothing" is: no running, paused or restarting container (a pending restart timer counts
as running), no client connected, no waiter, and no new connection for
``supervisor-idle-timeout`` seconds (``<root>/daemon.json``, 60 by default, 0 = never).
The next verb that needs a supervisor starts one, as after a reboot.

Leaving must never strand a client.  Under the root's ``start.lock`` (so no client is
between "is one alive?" and starting one) the socket is renamed away: a new client now
finds no socket and starts a supervisor of its own, which waits for the lock, i.e. for
us to be gone.  A connection that arrived before the rename is still in the listen
backlog: then we stay and serve it.  Otherwise the listening socket is shut for reading
(any later connect is refused, which a client also answers by starting one), the idle
bridges and the nftables table go, the runtime dir is removed, and the keeper is told to
exit with us.  The lock is held until this process exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import protocol
from .running import Client

if TYPE_CHECKING:
    from .server import Supervisor

LEAVING = "the supervisor was leaving (idle) as this request came: please try again"


class IdleExit:
    """Armed once the supervisor serves; it works on the supervisor's own timers."""

    def __init__(self, supervisor: Supervisor, timeout: float,
                 log: Callable[[str], None]) -> None:
        self.sup = supervisor
        self.timeout = timeout
        self.log = log
        self.last_busy = time.monotonic()
        # Checked a few times per timeout: it leaves within 1.25 x the timeout at worst.
        self.interval = min(max(timeout / 4, 0.25), 5.0)

    def arm(self) -> None:
        if self.timeout > 0:
            self.sup.call_later(self.interval, self.check)

    def touch(self) -> None:
        """A client connected: the quiet period starts again."""
        self.last_busy = time.monotonic()

    def busy(self) -> bool:
        sup = self.sup
        return bool(sup.running or sup.restart_timers or any(sup.waiters.values())
                    or any(isinstance(key.data, Client) for key in sup.sel.get_map().values()))

    def check(self) -> None:
        if self.sup.stopping:
            return  # shutting down already (a shutdown request, or the root vanished)
        now = time.monotonic()
        if self.busy():
            self.last_busy = now
        elif now - self.last_busy >= self.timeout and self.leave():
            return
        self.arm()

    def leave(self) -> bool:
        """Go if no client is on its way in; False (and stay) if one is."""
        sup = self.sup
        run = sup.paths.run
        try:
            lock = os.open(run / "start.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            lock = -1  # the runtime dir is gone (removed under us): nobody can reach us
        if lock >= 0:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a client is checking for us or starting one
                os.close(lock)
                return False
        sock = sup.paths.supervisor_socket
        closing = sock.with_name(sock.name + ".closing")
        renamed = False
        with contextlib.suppress(FileNotFoundError):
            os.rename(sock, closing)
            renamed = True
        if _pending(sup.listen):  # it connected before the rename: serve it
            if renamed:
                os.rename(closing, sock)
            if lock >= 0:
                os.close(lock)
            self.touch()
            return False
        sup.listen.shutdown(socket.SHUT_RD)  # later connects: ECONNREFUSED, start another
        _turn_away(sup.listen)  # one that slipped in between the two checks
        self.log(f"idle for {self.timeout:g}s (no container running, no client): leaving")
        try:
            sup.network.reap_idle(everything=True)  # bridges, then the table with the rules
        except Exception as exc:  # the rest must still happen
            self.log(f"network clean-up before leaving: {exc!r}")
        # The lock file goes too: a client that opened it before sees it was replaced
        # once it gets the lock (client.py), and takes the new one.
        shutil.rmtree(run, ignore_errors=True)
        sup._keeper({"op": "shutdown"})
        sup.stopping = True  # nothing runs: the loop ends, network.close() follows
        return True  # `lock` stays open and held until the process exits


def watch_idle(supervisor: Supervisor, log: Callable[[str], None]) -> IdleExit:
    """Arm the idle exit with the root's ``supervisor-idle-timeout``."""
    from ..daemonconfig import DEFAULT_IDLE_TIMEOUT, engine_defaults
    from ..errors import TuiboxError

    try:
        timeout = engine_defaults(supervisor.paths.root).supervisor_idle_timeout
    except TuiboxError as exc:  # a broken daemon.json must not keep containers from us
        log(f"{exc}; supervisor-idle-timeout: using {DEFAULT_IDLE_TIMEOUT:g}s")
        timeout = DEFAULT_IDLE_TIMEOUT
    watch = IdleExit(supervisor, timeout, log)
    watch.arm()
    return watch


def _pending(listen: socket.socket) -> bool:
    return bool(select.select([listen], [], [], 0)[0])


def _turn_away(listen: socket.socket) -> None:
    """Answer connections still queued after the shutdown: they must retry."""
    frame = protocol.encode_json({"error": LEAVING, "exit_code": 125})
    listen.setblocking(False)
    while True:
        try:
            conn, _ = listen.accept()
        except OSError:
            return
        with contextlib.suppress(OSError), conn:
            conn.settimeout(1.0)
            conn.sendall(frame)
            conn.shutdown(socket.SHUT_WR)
