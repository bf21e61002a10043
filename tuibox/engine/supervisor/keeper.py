"""The keeper: a tiny parent that outlives the supervisor.

It is a child subreaper above the supervisor, so containers orphaned by a killed
supervisor become its children: it reaps them and hands the exit statuses to the next
supervisor.  It holds duplicates of every container's stdout/stderr read end (passed by
``SCM_RIGHTS``), so a container never sees a closed pipe while no supervisor runs, and no
byte is consumed meanwhile.  It restarts the supervisor at once when it dies.  Stdlib
only, no state of its own on disk: small and hard to break.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
MAX_FDS_PER_MESSAGE = 250
STARTUP_FAILED = 3  # the supervisor's exit code when it could not start (it told the clients)


def _send(ctl: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(ctl, [data], fds)
    else:
        ctl.send(data)


class Keeper:
    def __init__(self, listen: socket.socket, run_supervisor: Callable[[int, int], None]) -> None:
        self.listen = listen
        self.run_supervisor = run_supervisor
        self.store: dict[str, tuple[list[str], list[int]]] = {}
        self.exits: list[tuple[int, int]] = []
        self.pid = 0
        self.ctl: socket.socket | None = None
        self.shutting_down = False
        self.started_at = 0.0
        self.quick_deaths = 0

    def start_supervisor(self) -> None:
        # A supervisor that keeps dying right after start (say, on a bad record) must not
        # make us spin: back off after a few quick deaths in a row.
        if self.started_at and time.monotonic() - self.started_at < 0.2:
            self.quick_deaths += 1
        else:
            self.quick_deaths = 0
        if self.quick_deaths >= 3:
            time.sleep(min(0.1 * 2 ** self.quick_deaths, 5.0))
        self.started_at = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for _, fds in self.store.values():
                for fd in fds:
                    os.close(fd)
            code = 0
            try:
                self.run_supervisor(self.listen.fileno(), theirs.fileno())
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                traceback.print_exc()  # into the supervisor log: a death must say why
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        theirs.close()
        self.pid, self.ctl = pid, ours
        with contextlib.suppress(OSError):
            for cid, (names, fds) in self.store.items():
                _send(ours, {"op": "fds", "cid": cid, "streams": names}, fds)
            for pid_, status in self.exits:
                _send(ours, {"op": "exit", "pid": pid_, "status": status})
            self.exits.clear()
            _send(ours, {"op": "ready"})

    def handle_ctl(self) -> None:
        assert self.ctl is not None
        try:
            data, fds, _, _ = socket.recv_fds(self.ctl, 65536, MAX_FDS_PER_MESSAGE)
        except OSError:
            data, fds = b"", []
        if not data:
            self.ctl.close()
            self.ctl = None  # the supervisor is gone; SIGCHLD tells us when to restart
            return
        msg = json.loads(data)
        op = msg.get("op")
        if op == "store":
            self._drop(msg["cid"])
            self.store[msg["cid"]] = (msg["streams"], fds)
        elif op == "drop":
            self._drop(msg["cid"])
        elif op == "drop_stream":  # e.g. stdin closed: our copy must not keep it open
            names, held = self.store.get(msg["cid"], ([], []))
            if msg["stream"] in names:
                i = names.index(msg["stream"])
                with contextlib.suppress(OSError):
                    os.close(held[i])
                del names[i], held[i]
        elif op == "shutdown":
            self.shutting_down = True

    def _drop(self, cid: str) -> None:
        _, fds = self.store.pop(cid, ([], []))
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reap(self) -> bool:
        """Collect dead children; False when the keeper should exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return not self.shutting_down
            if pid == 0:
                return True
            if pid == self.pid:
                self.pid = 0
                if self.ctl is not None:
                    self.ctl.close()
                    self.ctl = None
                if self.shutting_down:
                    return False
                if os.waitstatus_to_exitcode(status) == STARTUP_FAILED:
                    if not self.store and not self.exits:
                        return False  # nothing of ours runs: the next client retries
                    self.started_at = time.monotonic()  # back off as after a quick death
                self.start_supervisor()
            elif self.ctl is not None:
                try:
                    _send(self.ctl, {"op": "exit", "pid": pid, "status": status})
                except OSError:
                    self.exits.append((pid, status))
            else:
                self.exits.append((pid, status))

    def loop(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.start_supervisor()
        while True:
            # poll, not select: with many containers our fd numbers pass 1024.
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            ctl = self.ctl
            if ctl is not None:
                poller.register(ctl, select.POLLIN)
            ready: list[tuple[int, int]] = []
            with contextlib.suppress(InterruptedError):
                ready = poller.poll(5000)
            if ctl is not None and self.ctl is ctl and any(fd == ctl.fileno() for fd, _ in ready):
                self.handle_ctl()
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            if not self.reap():
                return


def main(listen_fd: int, run_supervisor: Callable[[int, int], None]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.environ.setdefault("TUIBOX_HOST_NOFILE", f"{soft}:{hard}")  # what containers inherit
    if soft < hard:  # two pipe ends per container
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listen = socket.socket(fileno=listen_fd)
    Keeper(listen, run_supervisor).loop()
    sys.exit(0)
