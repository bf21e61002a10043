"""A new supervisor takes over what its predecessor left, and carries on when its keeper dies.

The keeper's handshake (``keeper.py``) comes first and is complete: for each container it
held, its pipes, its pid and, if it has exited, the status the keeper reaped.  Only then is
each record looked at, and the decision is made from facts, never from a timeout:

- the keeper reaped it: that status is recorded (after its output is drained);
- its process still runs: adopted (the keeper, its parent, reports the exit later);
- it is gone without a status although the keeper held it: it died after the keeper's
  last reap, so the keeper's ``exit`` message is on its way (the keeper keeps every status
  until we confirm it is recorded, so it cannot get lost with a killed supervisor);
- the keeper did not hold it (keeper and supervisor were killed together, or the host
  rebooted): a live process is an *orphan*: no tuibox process is its parent, so its exit
  is seen through its pidfd, and its status read from its zombie if we are in time, else
  taken from the signal we sent (``stop``: 143/137, as Docker), else unknown (255).  Its
  pipes are taken back from its own processes (``reclaim.py``) and the gap is recorded.

When the keeper dies under us, the containers it was the parent of become orphans too, and
we become the keeper ourselves once nothing is in flight (``rekeep.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..containers import ContainerStore, now
from ..errors import TuiboxError
from ..liveness import VANISHED, open_live
from ..logs.files import live_path
from ..models import ZERO_TIME, ContainerConfig, ContainerState, NetworkSettings, OutputGap
from .keeper import MAX_FDS_PER_MESSAGE, PROTOCOL
from .reclaim import reclaim
from .running import Running, cgroup_rel

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..cgroups.driver import CgroupDriver
    from ..logs import LogWriter
    from ..network.manager import NetworkManager
    from ..paths import StatePaths

# An old keeper (before PROTOCOL 2) may have sent a status to a supervisor killed before
# recording it: give its late "exit" this long before calling the status lost.
OLD_KEEPER_GRACE = 5.0
ORPHAN_EXIT = ("exit status unknown: keeper and supervisor were killed while it ran, so no "
               "tuibox process was its parent to collect it")


class AdoptionMixin:
    if TYPE_CHECKING:
        paths: StatePaths
        store: ContainerStore
        driver: CgroupDriver
        sel: selectors.BaseSelector
        ctl: socket.socket
        running: dict[str, Running]
        by_pid: dict[int, str]
        keeper_gone: bool
        network: NetworkManager

        def call_later(self, delay: float, fn: Callable[[], None]) -> int: ...
        def _writer(self, config: ContainerConfig) -> LogWriter: ...
        def _attach_streams(self, run: Running, fds: dict[str, int]) -> None: ...
        def pump(self, cid: str, stream: str | None = None) -> None: ...
        def _on_exit(self, pid: int, status: int) -> None: ...
        def _finish(self, cid: str, *, lost: bool = False) -> None: ...
        def _keeper(self, message: dict[str, Any], fds: list[int] | None = None) -> None: ...
        def _schedule_restart(self, cid: str, delay: float) -> None: ...
        def _remove_cgroup(self, rel: str, attempt: int = 0) -> None: ...

    def adopt(self) -> None:
        """Take over from a killed predecessor: the keeper's handshake, then the records."""
        kept: dict[str, dict[str, Any]] = {}
        protocol = 1
        while True:
            data, fds, _, _ = socket.recv_fds(self.ctl, 65536, MAX_FDS_PER_MESSAGE)
            if not data:
                raise SystemExit(0)
            msg = json.loads(data)
            if msg["op"] == "ready":
                protocol = int(msg.get("protocol", 1))
                break
            if msg["op"] == "fds":
                msg["fds"] = dict(zip(msg["streams"], fds, strict=True))
                kept[msg["cid"]] = msg
        self.old_keeper = protocol < PROTOCOL
        containers, _ = self.store.list()
        for c in containers:
            item = kept.pop(c.id, None)
            try:
                self._adopt_container(c.config, c.state, item)
            except Exception as exc:  # one container's trouble must not keep us down
                _log(f"adopting {c.id[:12]}: {exc!r}")
                if c.id not in self.running:
                    with contextlib.suppress(TuiboxError, OSError):
                        self.store.update_state(c.id, mark_lost)
        for cid, item in kept.items():  # containers removed meanwhile
            for fd in item["fds"].values():
                os.close(fd)
            self._keeper({"op": "drop", "cid": cid})
        for doomed in self.paths.tmp.glob("removing-*"):  # an `rm` whose client died
            shutil.rmtree(doomed, ignore_errors=True)
        try:
            self.network.sweep(set(self.running))
        except Exception as exc:  # after a reboot its bridges and table are gone: go on
            _log(f"network clean-up after adoption: {exc!r}")

    def _adopt_container(self, config: ContainerConfig, st: ContainerState,
                         item: dict[str, Any] | None) -> None:
        if st.running and not st.restarting:
            self._adopt_one(config, st, item)
            return
        for fd in (item or {}).get("fds", {}).values():
            os.close(fd)
        if item is not None:  # its exit is recorded already, or it never was started
            self._keeper({"op": "drop", "cid": config.id})
        rel = cgroup_rel(config.id)
        if self.driver.exists(rel) and self.driver.pids(rel):
            # A start killed between its fork and its record: nobody knows this process.
            _log(f"{config.id[:12]}: killing processes its record does not name")
            with contextlib.suppress(TuiboxError, OSError):
                self.driver.kill_all(rel)
        if st.restarting:
            self._schedule_restart(config.id, 0.1)
        elif self.driver.exists(rel):
            self._remove_cgroup(rel)  # left behind by a crash

    def _adopt_one(self, config: ContainerConfig, st: ContainerState,
                   item: dict[str, Any] | None) -> None:
        cid = config.id
        run = Running(cid=cid, pid=st.pid, writer=None)
        self.running[cid] = run
        fds: dict[str, int] = item["fds"] if item else {}
        run.orphan = item is None or bool(item.get("orphan"))
        if fds:
            self._adopt_streams(config, run, fds)
        status = item.get("status") if item and item.get("pid") == st.pid else None
        if status is not None:  # the keeper reaped it: its real status
            self.by_pid[st.pid] = cid
            self._on_exit(st.pid, status)
            return
        # The pidfd is opened before the start time is checked: what we keep is the very
        # process the record names, never a stranger that reused its pid.
        proc = open_live(st)
        if proc is None:
            if not run.orphan and st.pid:
                # The keeper's child, dead after its last reap: its status is on its way.
                self.by_pid[st.pid] = cid
                if self.old_keeper:
                    self.call_later(OLD_KEEPER_GRACE, lambda: self._lost(cid, run))
                return
            _log(f"adopting {cid[:12]}: pid {st.pid} is gone or no longer its process; "
                 f"its exit status is lost")
            run.status = 255 << 8
            self._finish(cid, lost=True)
            return
        self.by_pid[st.pid] = cid
        run.pidfd, proc.pidfd = proc.pidfd, -1
        run.procfd, proc.proc = proc.proc, -1  # its /proc dir: the zombie's status, if in time
        proc.close()
        if run.orphan:
            self.sel.register(run.pidfd, selectors.EVENT_READ, (cid, "pidfd"))
            if not fds:
                self._take_output_back(config, st, run)

    def _adopt_streams(self, config: ContainerConfig, run: Running,
                       fds: dict[str, int]) -> None:
        run.writer = self._writer(config)
        run.writer.recover()
        self._attach_streams(run, fds)
        self.pump(config.id)  # whatever arrived while no supervisor ran

    def _take_output_back(self, config: ContainerConfig, st: ContainerState,
                          run: Running) -> None:
        """Its pipes died with keeper and supervisor: find them again, record the gap."""
        # Kept until the log's last write (before we convert what the spools still hold).
        log_file = live_path(self.store.dir(config.id), config.id)
        since = st.started_at
        with contextlib.suppress(OSError):
            since = max(since, datetime.fromtimestamp(os.stat(log_file).st_mtime, UTC))
        rel = cgroup_rel(config.id)
        pids = sorted(self.driver.pids(rel), key=lambda p: p != st.pid)
        fds = reclaim(pids, st.stdio_pipes) if not config.process.tty else {}
        if fds:
            self._adopt_streams(config, run, fds)
            self._keeper({"op": "store", "cid": config.id, "streams": list(run.external),
                          "pid": st.pid, "orphan": True}, list(run.external.values()))
        gap = OutputGap(since=since, until=now() if fds else ZERO_TIME)

        def lost(state: ContainerState) -> None:
            state.output_lost.append(gap)

        self.store.update_state(config.id, lost)
        _log(f"{config.id[:12]}: its output since {since:%H:%M:%S} was lost (keeper and "
             f"supervisor were killed); " + ("its pipes are read again" if fds else
                                              "its output cannot be taken back"))

    def _lost(self, cid: str, run: Running) -> None:
        if self.running.get(cid) is run and run.status is None:
            _log(f"{cid[:12]}: its process is gone and the keeper reported no exit status")
            run.status = 255 << 8
            self._finish(cid, lost=True)

    # ------------------------------------------------------------------ orphans

    def _orphan_exited(self, cid: str) -> None:
        """An orphan's pidfd says it is gone: its status as well as anyone can know it."""
        run = self.running[cid]
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(run.pidfd)
        status, error = zombie_status(run.procfd), ""
        if status is None and run.last_signal:
            # Killed by what we sent (certain for SIGKILL; for a catchable signal, what
            # Docker reports for the usual end of a stop).
            status = run.last_signal
        if status is None:
            status, error = 255 << 8, ORPHAN_EXIT
        run.exit_error = error
        self._on_exit(run.pid, status)

    def _keeper_lost(self) -> None:
        """The keeper was killed.  We still hold every pipe, so nothing is lost yet, but
        the containers it was the parent of are nobody's children now: watch them through
        their pidfds, and become the keeper ourselves as soon as we can (rekeep.py)."""
        _log("the keeper is gone: this supervisor becomes the keeper once no request is in "
             "flight")
        self.sel.unregister(self.ctl)
        self.ctl.close()
        self.keeper_gone = True
        gone = []
        for cid, run in self.running.items():
            if run.spawned or run.orphan or run.status is not None:
                continue
            run.orphan = True
            if run.pidfd < 0:  # dead at adoption, and the keeper died before reaping it
                gone.append(run)
                continue
            # (One that died with the keeper is readable at once: its zombie, if still
            # there, knows how it ended.)
            self.sel.register(run.pidfd, selectors.EVENT_READ, (cid, "pidfd"))
        for run in gone:
            run.exit_error = ORPHAN_EXIT
            self._on_exit(run.pid, 255 << 8)
        self._rekeep_when_quiet()


    def _rekeep_when_quiet(self) -> None:
        from . import rekeep

        rekeep.arm(self)  # type: ignore[arg-type]


def zombie_status(procfd: int) -> int | None:
    """The wait status of an exited process not yet reaped by its parent (field 52 of
    ``/proc/<pid>/stat``, through the directory fd bound to that very process)."""
    if procfd < 0:
        return None
    try:
        fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)
        try:
            fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
        finally:
            os.close(fd)
    except (OSError, IndexError):
        return None  # reaped already: /proc/<pid> is gone
    if fields[0] != b"Z" or len(fields) < 50:
        return None
    return int(fields[49])


def mark_lost(st: ContainerState) -> None:
    """Exited with nobody knowing how: Docker's 255 (its restore after a daemon crash)."""
    if st.running and not st.restarting:
        st.running = st.paused = False
        st.pid = st.pid_start = 0
        st.exit_code = 255
        st.error = VANISHED
        st.finished_at = now()
        st.network = NetworkSettings()


def _log(message: str) -> None:
    from .server import log

    log(message)
