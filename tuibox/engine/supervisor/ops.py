"""The lifecycle requests (start, stop, restart, kill, pause, unpause, rm, network connect
and disconnect), each run through the container's queue (``lifecycle.py``).

``restart`` and ``rm`` are single requests: the engine used to stop, then start (or
forget, then delete) with separate requests, and another client's request could land in
between.  ``rm`` renames the container's directory away here, under the queue, and leaves
deleting the files to the engine (a big upper dir must not stall the loop); a supervisor
starting up deletes what a client that died left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import (
    Conflict,
    ContainerNotFound,
    InvalidArgument,
    RecordError,
    SetupError,
    TuiboxError,
)
from ..signals import parse_signal
from .lifecycle import Done, Lifecycle, Operation
from .running import Client, Running, cgroup_rel

if TYPE_CHECKING:
    from ..cgroups.driver import CgroupDriver
    from ..containers import ContainerStore
    from ..models import ContainerState
    from ..paths import StatePaths

DEFAULT_STOP_TIMEOUT = 10
MARKED_FOR_REMOVAL = "container is marked for removal and cannot be started"
Handler = Callable[[Client, dict[str, Any], Done], None]


class LifecycleOps:
    if TYPE_CHECKING:
        paths: StatePaths
        store: ContainerStore
        driver: CgroupDriver
        running: dict[str, Running]
        restart_timers: dict[str, int]
        backoff: dict[str, float]
        waiters: dict[str, list[Client]]

        def call_later(self, delay: float, fn: Callable[[], None]) -> int: ...
        def cancel(self, token: int) -> None: ...
        def start(self, cid: str, attach: Client | None = None, winsize: bytes = b"",
                  *, policy: bool = False) -> int: ...
        def _do_start(self, client: Client, msg: dict[str, Any]) -> None: ...
        def _do_connect(self, client: Client, msg: dict[str, Any]) -> None: ...
        def _do_disconnect(self, client: Client, msg: dict[str, Any]) -> None: ...
        def _remove_cgroup(self, rel: str, attempt: int = 0) -> None: ...
        def _keeper(self, message: dict[str, Any], fds: list[int] | None = None) -> None: ...
        def _notify_waiters(self, cid: str, code: int) -> None: ...

    lifecycle: Lifecycle

    # ------------------------------------------------------------------ plumbing

    def _submit(self, client: Client | None, msg: dict[str, Any], handler: Handler, *,
                first: bool = False) -> None:
        cid = msg.get("id")
        if not isinstance(cid, str) or not cid:
            raise InvalidArgument("the request names no container")
        op = str(msg.get("op"))

        def run(done: Done) -> None:
            if client is not None and client.closed:
                done()  # its client gave up while it waited: do nothing for nobody
                return
            if not self.store.dir(cid).is_dir():
                raise ContainerNotFound(f"No such container: {cid}")
            handler(client, msg, done)  # type: ignore[arg-type]

        self.lifecycle.submit(cid, Operation(op, client, run), first=first)

    def _answer_error(self, op: Operation, exc: Exception) -> None:
        """Reply to an operation that failed after ``handle()`` returned (as it would)."""
        if op.client is None:
            _log(f"{op.name}: {exc}")
            return
        cdir = os.path.dirname(exc.path) if isinstance(exc, RecordError) else ""
        if cdir and not os.path.isdir(cdir):  # removed by an operation just before
            exc = ContainerNotFound(f"No such container: {os.path.basename(cdir)}")
        if isinstance(exc, SetupError):
            op.client.reply({"error": exc.message, "exit_code": exc.exit_code,
                             "stage": exc.stage}, last=True)
        elif isinstance(exc, TuiboxError):  # the engine raises the same class (client.py)
            op.client.reply({"error": exc.message, "exit_code": exc.exit_code,
                             "kind": type(exc).__name__}, last=True)
        else:
            _log(f"internal error in {op.name}: {exc!r}")
            op.client.reply({"error": f"internal error in the supervisor ({op.name}): "
                                      f"{exc!r}; see {self.paths.supervisor_log}"}, last=True)

    def _sync(self, fn: Callable[[Client, dict[str, Any]], None]) -> Handler:
        def handler(client: Client, msg: dict[str, Any], done: Done) -> None:
            try:
                fn(client, msg)
            finally:
                done()

        return handler

    # ------------------------------------------------------------------ requests

    def op_start(self, client: Client, msg: dict[str, Any]) -> None:
        def start(c: Client, m: dict[str, Any]) -> None:
            if self.lifecycle.removing(m["id"]):
                raise Conflict(MARKED_FOR_REMOVAL)
            self._do_start(c, m)

        self._submit(client, msg, self._sync(start))

    def op_connect(self, client: Client, msg: dict[str, Any]) -> None:
        self._submit(client, msg, self._sync(self._do_connect))

    def op_disconnect(self, client: Client, msg: dict[str, Any]) -> None:
        self._submit(client, msg, self._sync(self._do_disconnect))

    def op_kill(self, client: Client, msg: dict[str, Any]) -> None:
        self._submit(client, msg, self._sync(self._kill))

    def op_pause(self, client: Client, msg: dict[str, Any]) -> None:
        self._submit(client, msg, self._sync(self._pause))

    def op_unpause(self, client: Client, msg: dict[str, Any]) -> None:
        self._submit(client, msg, self._sync(self._unpause))

    def op_stop(self, client: Client, msg: dict[str, Any]) -> None:
        def stop(c: Client, m: dict[str, Any], done: Done) -> None:
            def stopped(already: bool) -> None:
                c.reply({"ok": True, "already": already}, last=True)
                done()

            self._stop_then(m, stopped)

        self._submit(client, msg, stop)

    def op_restart(self, client: Client, msg: dict[str, Any]) -> None:
        """``docker restart``: stop (if it runs), then start, as one operation."""
        def restart(c: Client, m: dict[str, Any], done: Done) -> None:
            def start_again(_: bool) -> None:
                try:
                    if self.lifecycle.removing(m["id"]):
                        raise Conflict(MARKED_FOR_REMOVAL)
                    self.store.update_state(m["id"], _clear_manually_stopped)
                    c.reply({"ok": True, "pid": self.start(m["id"])}, last=True)
                except Exception as exc:
                    self._answer_error(Operation("restart", c, lambda _: None), exc)
                finally:
                    done()

            self._stop_then(m, start_again)

        self._submit(client, msg, restart)

    def op_remove(self, client: Client, msg: dict[str, Any]) -> None:
        """``rm [-f]``.  With ``force`` it acts at once and goes first (module docstring)."""
        cid = msg.get("id")
        if msg.get("force") and isinstance(cid, str) and self.store.dir(cid).is_dir():
            if self.lifecycle.removing(cid):
                raise Conflict(f"removal of container {cid} is already in progress")
            self._doom(cid)
            self._submit(client, msg, self._remove, first=True)
            return
        self._submit(client, msg, self._remove)

    def op_forget(self, client: Client, msg: dict[str, Any]) -> None:
        """An older engine removing a stopped container itself: drop our traces of it."""
        def forget(c: Client, m: dict[str, Any]) -> None:
            cid = m["id"]
            if cid in self.running:
                raise Conflict(f"container {cid[:12]} is running")
            self.cancel(self.restart_timers.pop(cid, 0))
            self.backoff.pop(cid, None)
            self._remove_cgroup(cgroup_rel(cid))
            c.reply({"ok": True}, last=True)

        self._submit(client, msg, self._sync(forget))

    # ------------------------------------------------------------------ the work

    def _stop_then(self, msg: dict[str, Any], then: Callable[[bool], None]) -> None:
        """Stop signal, SIGKILL after the timeout; ``then(already)`` once it is recorded."""
        cid = msg["id"]
        self.store.update_state(cid, _set_manually_stopped)
        if cid in self.restart_timers:  # waiting to be restarted: it stays stopped
            self.cancel(self.restart_timers.pop(cid))
            self.store.update_state(cid, _mark_exited)
        run = self.running.get(cid)
        if run is None:
            then(True)
            return
        if run.status is None:
            config = self.store.config(cid)
            timeout = msg.get("timeout")
            if timeout is None:
                timeout = config.stop_timeout if config.stop_timeout is not None \
                    else DEFAULT_STOP_TIMEOUT
            sig = parse_signal(msg.get("signal") or config.stop_signal)
            self._signal(run, sig)
            self.store.emit("kill", cid, config.name, signal=str(int(sig)))
            if timeout >= 0:
                self.cancel(run.stop_timer)
                run.stop_timer = self.call_later(float(timeout), lambda: self._kill_now(cid))
        self.lifecycle.after_exit(cid, lambda: then(False))

    def _kill_now(self, cid: str) -> None:
        run = self.running.get(cid)
        if run is not None and run.status is None:
            self._signal(run, signal.SIGKILL)

    def _signal(self, run: Running, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if run.pidfd >= 0:  # never a pid the keeper reaped and a stranger reused
                signal.pidfd_send_signal(run.pidfd, sig)
            else:
                os.kill(run.pid, sig)
        if sig not in _NOT_FATAL and run.last_signal != signal.SIGKILL:
            run.last_signal = sig  # an orphan's status is unknown: what ended it, likely
        try:
            paused = self.store.state(run.cid).paused
        except RecordError:  # its record is unreadable: ask the cgroup
            paused = self.driver.exists(cgroup_rel(run.cid)) and \
                self.driver.frozen(cgroup_rel(run.cid))
        if paused:
            # Frozen tasks act on a signal only once thawed: send, then thaw (Docker's order).
            self.driver.thaw(cgroup_rel(run.cid))
            with contextlib.suppress(TuiboxError):
                self.store.update_state(run.cid, lambda st: setattr(st, "paused", False))
                self.store.emit("unpause", run.cid, self.store.config(run.cid).name)

    def _kill(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        sig = parse_signal(msg.get("signal") or "KILL")
        run = self.running.get(cid)
        if run is None or run.status is not None:
            raise Conflict(f"cannot kill container {cid[:12]}: container is not running")
        config = self.store.config(cid)
        if sig in (signal.SIGKILL, parse_signal(config.stop_signal)):
            self.store.update_state(cid, _set_manually_stopped)
        self._signal(run, sig)
        self.store.emit("kill", cid, config.name, signal=str(int(sig)))
        client.reply({"ok": True}, last=True)

    def _pause(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        run = self.running.get(cid)
        if run is None or run.status is not None:
            raise Conflict(f"Container {cid} is not running")
        if self.store.state(cid).paused:
            raise Conflict(f"Container {cid} is already paused")
        self.driver.freeze(cgroup_rel(cid))
        self.store.update_state(cid, lambda st: setattr(st, "paused", True))
        self.store.emit("pause", cid, self.store.config(cid).name)
        client.reply({"ok": True}, last=True)

    def _unpause(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        if not self.store.state(cid).paused or cid not in self.running:
            raise Conflict(f"Container {cid} is not paused")
        self.driver.thaw(cgroup_rel(cid))
        self.store.update_state(cid, lambda st: setattr(st, "paused", False))
        self.store.emit("unpause", cid, self.store.config(cid).name)
        client.reply({"ok": True}, last=True)

    def _doom(self, cid: str) -> None:
        """``rm -f`` as it arrives: no restart, no start, and SIGKILL now."""
        self.lifecycle.mark_removing(cid)
        self.cancel(self.restart_timers.pop(cid, 0))
        with contextlib.suppress(TuiboxError):
            self.store.update_state(cid, _set_removing)
        run = self.running.get(cid)
        if run is not None and run.status is None:
            self._signal(run, signal.SIGKILL)

    def _remove(self, client: Client, msg: dict[str, Any], done: Done) -> None:
        cid = msg["id"]
        run = self.running.get(cid)
        if not msg.get("force"):
            state = self.store.state(cid)
            if run is not None or state.running:
                raise Conflict(f"You cannot remove a {state.status} container {cid}. Stop the "
                               f"container before attempting removal or force remove")
            self.lifecycle.mark_removing(cid)
            self.cancel(self.restart_timers.pop(cid, 0))
        elif not self.lifecycle.removing(cid):
            self._doom(cid)  # queued behind another rm -f that failed
        if run is None:
            self._removed(client, cid, done)
            return
        if run.status is None:
            self._signal(run, signal.SIGKILL)
        self.lifecycle.after_exit(cid, lambda: self._removed(client, cid, done))

    def _removed(self, client: Client, cid: str, done: Done) -> None:
        """Its process is gone: take away its cgroup and its directory."""
        try:
            name = ""
            with contextlib.suppress(TuiboxError):
                name = self.store.config(cid).name
            self.cancel(self.restart_timers.pop(cid, 0))
            self.backoff.pop(cid, None)
            rel = cgroup_rel(cid)
            if self.driver.exists(rel) and self.driver.pids(rel):
                # Processes no supervisor knew (its keeper and supervisor were killed).
                with contextlib.suppress(TuiboxError, OSError):
                    self.driver.kill_all(rel)
            self._remove_cgroup(rel)
            doomed = self.paths.tmp / f"removing-{cid}"
            if self.store.dir(cid).is_dir():  # (--rm: it may have removed itself)
                os.rename(self.store.dir(cid), doomed)
                if name:
                    self.store.release_name(name, cid)
                self.store.emit("destroy", cid, name)
            self._keeper({"op": "drop", "cid": cid})
            self._notify_waiters(cid, 0)
            client.reply({"ok": True, "doomed": str(doomed)}, last=True)
        except Exception as exc:
            self._answer_error(Operation("remove", client, lambda _: None), exc)
        finally:
            self.lifecycle.removed(cid)
            done()


_NOT_FATAL = {signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
              signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, 0}


def _set_manually_stopped(st: ContainerState) -> None:
    st.manually_stopped = True


def _clear_manually_stopped(st: ContainerState) -> None:
    st.manually_stopped = False


def _set_removing(st: ContainerState) -> None:
    st.manually_stopped = st.removing = True


def _mark_exited(st: ContainerState) -> None:
    st.running = st.restarting = False


def _log(message: str) -> None:
    from .server import log

    log(message)
