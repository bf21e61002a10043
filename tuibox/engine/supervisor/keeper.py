"""The keeper: a tiny parent that outlives the supervisor.

It is a child subreaper above the supervisor, so containers orphaned by a killed
supervisor become its children: it reaps them and hands the exit statuses to the next
supervisor.  It holds duplicates of every container's stdout/stderr read end (passed by
``SCM_RIGHTS``), so a container never sees a closed pipe while no supervisor runs, and no
byte is consumed meanwhile.  It restarts the supervisor at once when it dies.  Stdlib
only, no state of its own on disk: small and hard to break.

Exit statuses are never lost while the keeper lives.  It knows each container's pid (the
``store`` message names it) and keeps the status it reaped for that container until the
supervisor says the exit is recorded (``drop``): a status sent to a supervisor that was
killed before writing it is simply sent again.  A new supervisor gets everything in the
adoption handshake, before it decides anything: the keeper first reaps every child that
is already dead (the containers a killed supervisor held as zombies become ours at its
death, before we can reap it), then sends per container its pipes, its pid and its
status if it exited, then ``ready``.  A container that dies after that is reported with
an ``exit`` message naming it.

``resume`` turns a supervisor whose keeper was killed into the keeper itself (it
``exec``s this module with the pipes and statuses it holds): the containers it started are
its children, so the subreaper above them is back (``rekeep.py``).
"""

from __future__ import annotations

import array
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
from dataclasses import dataclass
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
MAX_FDS_PER_MESSAGE = 250
STARTUP_FAILED = 3  # the supervisor's exit code when it could not start (it told the clients)
# 2: statuses kept per container until dropped, sent in the handshake; exits name the cid.
PROTOCOL = 2


def _send(ctl: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(ctl, [data], fds)
    else:
        ctl.send(data)


@dataclass
class Kept:
    """What the keeper holds for one container: its pipes, its pid, its status once reaped."""

    names: list[str]
    fds: list[int]
    pid: int = 0
    orphan: bool = False  # not our descendant (adopted after keeper and supervisor died)
    status: int | None = None

    def message(self, cid: str) -> dict[str, Any]:
        return {"op": "fds", "cid": cid, "streams": self.names, "pid": self.pid,
                "orphan": self.orphan, "status": self.status}


def _recv_nowait(ctl: socket.socket) -> tuple[bytes, list[int]]:
    """``socket.recv_fds`` without blocking (Python 3.11's ignores its ``flags``)."""
    fds = array.array("i")
    data, ancdata, _, _ = ctl.recvmsg(65536, socket.CMSG_LEN(MAX_FDS_PER_MESSAGE * fds.itemsize),
                                      socket.MSG_DONTWAIT)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


class Keeper:
    def __init__(self, listen: socket.socket, run_supervisor: Callable[[int, int], None]) -> None:
        self.listen = listen
        self.run_supervisor = run_supervisor
        self.store: dict[str, Kept] = {}
        self.pids: dict[int, str] = {}  # container pid -> cid
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
            for kept in self.store.values():
                for fd in kept.fds:
                    os.close(fd)
            code = 0
            try:
                self.run_supervisor(self.listen.fileno(), theirs.fileno())
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                with contextlib.suppress(OSError):  # a full disk must not skip the _exit
                    traceback.print_exc()  # into the supervisor log: a death must say why
                code = 1
            finally:
                with contextlib.suppress(OSError):
                    sys.stderr.flush()
                os._exit(code)
        theirs.close()
        self.pid, self.ctl = pid, ours
        with contextlib.suppress(OSError):
            for cid, kept in self.store.items():
                _send(ours, kept.message(cid), kept.fds)
            _send(ours, {"op": "ready", "protocol": PROTOCOL})

    def handle_ctl(self) -> None:
        """Everything the supervisor sent, to the last message: one that died right after
        a ``store`` must not take the container's pipes and pid with it."""
        while self.ctl is not None and self._one_message(self.ctl):
            pass

    def _one_message(self, ctl: socket.socket) -> bool:
        try:
            data, fds = _recv_nowait(ctl)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data, fds = b"", []
        if not data:
            ctl.close()
            self.ctl = None  # the supervisor is gone; SIGCHLD tells us when to restart
            return False
        msg = json.loads(data)
        op = msg.get("op")
        if op == "store":  # a (re)started or adopted container: what came before is recorded
            self._drop(msg["cid"])
            kept = Kept(msg["streams"], fds, int(msg.get("pid", 0)), bool(msg.get("orphan")))
            self.store[msg["cid"]] = kept
            if kept.pid:
                self.pids[kept.pid] = msg["cid"]
        elif op == "drop":  # its exit is recorded (or it is removed): forget it
            self._drop(msg["cid"])
        elif op == "drop_stream":  # e.g. stdin closed: our copy must not keep it open
            kept_ = self.store.get(msg["cid"])
            if kept_ is not None and msg["stream"] in kept_.names:
                i = kept_.names.index(msg["stream"])
                with contextlib.suppress(OSError):
                    os.close(kept_.fds[i])
                del kept_.names[i], kept_.fds[i]
        elif op == "shutdown":
            self.shutting_down = True
        return True

    def _drop(self, cid: str) -> None:
        kept = self.store.pop(cid, None)
        if kept is None:
            return
        if self.pids.get(kept.pid) == cid:
            del self.pids[kept.pid]
        for fd in kept.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reap(self) -> bool:
        """Collect dead children; False when the keeper should exit.

        Every dead child is collected before a new supervisor starts: the containers that
        died under the killed one are then in the handshake, not after it."""
        supervisor_died = False
        self.handle_ctl()  # a pid must be known (``store``) before its death is
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.pid:
                supervisor_died = True
                self.pid = 0
                self.handle_ctl()  # what it sent before it died still counts
                if self.ctl is not None:
                    self.ctl.close()
                    self.ctl = None
                if os.waitstatus_to_exitcode(status) == STARTUP_FAILED:
                    self.started_at = time.monotonic()  # back off as after a quick death
                    if not self.store:
                        return False  # nothing of ours runs: the next client retries
                continue
            cid = self.pids.pop(pid, None)
            if cid is None:
                continue  # not a container's PID 1 (a set-up helper): nobody needs it
            self.store[cid].status = status  # kept until the supervisor drops it
            if self.ctl is not None:
                with contextlib.suppress(OSError):
                    _send(self.ctl, {"op": "exit", "cid": cid, "pid": pid, "status": status})
        if self.shutting_down and not self.pid:
            return False
        if supervisor_died:
            self.start_supervisor()
        return True

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


def main(listen_fd: int, run_supervisor: Callable[[int, int], None],
         resumed: dict[str, Any] | None = None) -> None:
    """Keep the root whose socket is ``listen_fd``; ``resumed`` is what a supervisor that
    became the keeper held (``rekeep.py``): its containers' pipes, pids and statuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.environ.setdefault("TUIBOX_HOST_NOFILE", f"{soft}:{hard}")  # what containers inherit
    if soft < hard:  # two pipe ends per container
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listen = socket.socket(fileno=listen_fd)
    keeper = Keeper(listen, run_supervisor)
    for cid, item in (resumed or {}).items():
        kept = Kept(list(item["streams"]), list(item["fds"]), int(item["pid"]),
                    bool(item["orphan"]), item["status"])
        for fd in kept.fds:
            os.set_inheritable(fd, False)
        keeper.store[cid] = kept
        if kept.pid and kept.status is None:
            keeper.pids[kept.pid] = cid
    keeper.loop()
    sys.exit(0)
