"""The supervisor: one single-threaded event loop for every container of a state root.

It forks containers (``runtime.spawn``), owns their stdout/stderr, writes their json-file
logs, reaps their exits, applies restart policies, stops them on request and streams
their output to attached clients.  It is the keeper's child; if it is killed the keeper
starts another, which adopts the running containers from the keeper's fd store and the
state records (see ``keeper.py``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import itertools
import json
import os
import selectors
import shutil
import signal
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cgroups import detect_driver
from ..cgroups.devices import policy_for
from ..containers import now
from ..diskfull import is_disk_full, no_space, start_failure
from ..errors import RecordError, SetupError, TuiboxError
from ..liveness import VANISHED, boot_id, open_live, start_time
from ..logs import LogWriter
from ..models import ContainerConfig, ContainerState, Mount, NetworkSettings
from ..network.etcfiles import write_etc_files
from ..network.manager import Attachment, NetworkManager
from ..paths import StatePaths
from ..runtime import capabilities, seccomp
from ..runtime.devnodes import host_nodes
from ..runtime.init import InitPlan, MountSpec
from ..runtime.spawn import raise_nofile_limit, spawn
from ..security import cap_mask
from . import protocol
from .adoption import AdoptionMixin
from .deferred import DeferringStore, LossRecorder
from .idle import watch_idle
from .keeper import MAX_FDS_PER_MESSAGE
from .lifecycle import Lifecycle, Operation
from .ops import LifecycleOps
from .reclaim import pipe_inode
from .refuse import STARTUP_FAILED, refuse
from .requests import STREAM_CONTROLS, client_gone, ensure_client
from .rootwatch import watch_root
from .running import Client, Running, cgroup_rel, exit_code_of
from .stdio import StdioMixin, winsize_of

# After PID 1 exits the pipes normally reach EOF at once (the pid namespace dies with it);
# this bounds the wait for a straggler before the exit is recorded anyway.
DRAIN_GRACE = 2.0


class Supervisor(LifecycleOps, AdoptionMixin, StdioMixin):
    def __init__(self, paths: StatePaths, listen: socket.socket, ctl: socket.socket) -> None:
        self.paths = paths
        # A full disk defers state writes instead of failing exits and rm (deferred.py).
        self.store = DeferringStore(paths, self.call_later, log)
        self.log_loss = LossRecorder(self.store, self.call_later)
        self.driver = detect_driver()
        self.sel = selectors.DefaultSelector()
        self.listen = listen
        self.ctl = ctl
        self.running: dict[str, Running] = {}
        self.by_pid: dict[int, str] = {}
        self.waiters: dict[str, list[Client]] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.cancelled: set[int] = set()
        self.seq = itertools.count(1)
        self.backoff: dict[str, float] = {}
        self.restart_timers: dict[str, int] = {}
        self.spool = paths.run / "spool"
        self.stopping = False
        self.keeper_gone = False
        self.old_keeper = False
        # One lifecycle operation at a time per container (lifecycle.py, ops.py).
        self.lifecycle = Lifecycle(self._answer_error)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.network = NetworkManager(paths, self.store, log, self.call_later)
        self.idle = watch_idle(self, log)  # leaves when nothing needs it (idle.py)

    # ------------------------------------------------------------------ timers

    def call_later(self, delay: float, fn: Callable[[], None]) -> int:
        token = next(self.seq)
        heapq.heappush(self.timers, (time.monotonic() + delay, token, fn))
        return token

    def cancel(self, token: int) -> None:
        if token:
            self.cancelled.add(token)

    def _run_timers(self) -> float | None:
        while self.timers:
            when, token, fn = self.timers[0]
            if token in self.cancelled:
                heapq.heappop(self.timers)
                self.cancelled.discard(token)
                continue
            delay = when - time.monotonic()
            if delay > 0:
                return delay
            heapq.heappop(self.timers)
            self._guard(fn)
        return None

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # one container's trouble must not stop the others
            log(f"error: {exc!r}")

    # ------------------------------------------------------------------ start-up

    # ------------------------------------------------------------------ containers

    def _writer(self, config: ContainerConfig) -> LogWriter:
        return LogWriter(self.store.dir(config.id), config.id, self.spool,
                         max_size=config.log_options.max_size,
                         max_file=config.log_options.max_file,
                         on_entry=functools.partial(self._fanout, config.id),
                         dropped=LossRecorder.seed(self.store.state(config.id)),
                         on_drop=functools.partial(self.log_loss.dropped, config.id))

    def _fanout(self, cid: str, stream: str, data: bytes) -> None:
        run = self.running.get(cid)
        if run is None or not run.attached:
            return
        frame = protocol.encode(protocol.STREAM_KINDS[stream], data)
        for client in run.attached:
            client.send(frame)

    def start(self, cid: str, attach: Client | None = None, winsize: bytes = b"", *,
              policy: bool = False) -> int:
        """Start it (``policy``: a restart policy's restart, counted as it starts)."""
        if cid in self.running:
            raise TuiboxError(f"container {cid[:12]} is already running")
        self.cancel(self.restart_timers.pop(cid, 0))
        config = self.store.config(cid)
        cdir = self.store.dir(cid)
        rel = cgroup_rel(cid)
        net: Attachment | None = None
        try:
            try:
                self.driver.create(rel)
                self.driver.apply(rel, config.resources)
                nodes = host_nodes(config.security)  # the host's numbers as of this start
                self.driver.apply_devices(rel, policy_for(config.security, nodes))
            except OSError as exc:
                raise SetupError("cgroup", f"cannot create cgroup {rel}: {exc.strerror}") from exc
            except SetupError:
                raise
            except TuiboxError as exc:
                raise SetupError("cgroup limits", exc.message) from exc
            net = self.network.attach(config)
            write_etc_files(cdir, config, own=net.own, peers=net.peers)
            if net.shared_from:  # container:<id> shares its names as well as its netns
                for name in ("hosts", "resolv.conf"):
                    shutil.copyfile(self.store.dir(net.shared_from) / name, cdir / name)
            caps = cap_mask(config.security) & capabilities.own_permitted()
            program = seccomp.program_for(config.security.seccomp, caps,
                                          privileged=config.security.privileged)
            seccomp.save(program, cdir)  # exec loads the same filter
            plan = InitPlan(
                container_dir=cdir, layer_dirs=config.layer_dirs, args=config.process.args,
                env=config.process.env, cwd=config.process.cwd, user=config.process.user,
                hostname=config.hostname, new_net=not net.host, net_fd=net.ns_fd,
                read_only=config.read_only,
                ulimits=[(u.name, u.soft, u.hard) for u in config.ulimits],
                cgroup_binds=self.driver.bind_dirs(rel), cgroup_version=self.driver.version,
                mounts=[self._mount_spec(m) for m in config.mounts], tty=config.process.tty,
                open_stdin=config.process.open_stdin, winsize=winsize, seccomp_program=program,
                security=config.security, device_nodes=nodes,
                cap_mask=caps)
            # A --userns=auto container makes its network namespace itself: its veth
            # pairs go in while it waits (owned by its user namespace, as under runc).
            plug = functools.partial(self.network.plug, net, adopt=True) \
                if net.pending else None
            spawned = spawn(plan, cgroup_procs=self.driver.procs_files(rel), plug_network=plug)
        except (TuiboxError, OSError) as exc:
            if net is not None:
                net.close()
            try:
                self.network.detach(cid)
            except TuiboxError as undo:  # the first error is the one the user needs
                log(f"network clean-up of {cid[:12]} after a failed start: {undo}")
            self.driver.remove(rel)
            error = start_failure(exc, cdir)

            def failed(st: ContainerState) -> None:
                st.error = error.message
                st.exit_code = error.exit_code
                st.running = st.restarting = False
                st.pid = 0
                if st.started_at.year > 1:
                    st.finished_at = now()

            self.store.update_state(cid, failed)
            raise error from None
        net.close()  # the container holds its namespace now
        settings = net.settings
        run = Running(cid=cid, pid=spawned.pid, writer=self._writer(config), spawned=True)
        assert run.writer is not None
        run.writer.recover()
        if attach is not None:
            run.attached.append(attach)
        self.running[cid] = run
        self.by_pid[spawned.pid] = cid
        streams = {"stdout": spawned.stdout, "stderr": spawned.stderr, "pty": spawned.pty_master,
                   "stdin": spawned.stdin}
        self._attach_streams(run, {k: v for k, v in streams.items() if v >= 0})
        self._keeper({"op": "store", "cid": cid, "streams": list(run.external),
                      "pid": spawned.pid}, list(run.external.values()))
        pipes = {name: pipe_inode(fd) for name, fd in run.fds.items() if run.pty < 0}
        # Our child, not reaped yet: the pid cannot name anything else until we reap it.
        run.pidfd = os.pidfd_open(spawned.pid)
        started_at_tick = start_time(spawned.pid)

        def started(st: ContainerState) -> None:
            st.running, st.paused, st.restarting, st.dead = True, False, False, False
            st.pid, st.pid_start, st.boot_id = spawned.pid, started_at_tick, boot_id()
            st.exit_code, st.error, st.oom_killed = 0, "", False
            st.started_at = now()
            st.cgroup = rel
            st.network = settings
            st.stdio_pipes, st.output_lost = pipes, []
            if policy:  # in the same write: a kill in between cannot count it twice
                st.restart_count += 1

        self.store.update_state(cid, started)
        self.store.emit("start", cid, config.name)
        return spawned.pid





    def _mount_spec(self, m: Mount) -> MountSpec:
        if m.type == "tmpfs":
            return MountSpec("tmpfs", "", m.target, False, m.options)
        source = m.source if m.type == "bind" else str(self.paths.volumes / m.source / "_data")
        return MountSpec("bind", source, m.target, m.read_only, volume=m.type == "volume")

    def pump(self, cid: str, stream: str | None = None) -> None:
        run = self.running.get(cid)
        if run is None or run.writer is None:
            return
        for name in [stream] if stream else list(run.fds):
            fd = run.fds.get(name)
            if fd is None:
                continue
            if not run.writer.pump(name, fd):  # type: ignore[arg-type]
                run.writer.close_stream(name)  # type: ignore[arg-type]
                self.sel.unregister(fd)
                os.close(fd)
                del run.fds[name]
        if run.status is not None and not run.fds:
            self._finish(cid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_exit(pid, status)

    def _on_exit(self, pid: int, status: int) -> None:
        cid = self.by_pid.pop(pid, None)
        if cid is None:
            return
        run = self.running[cid]
        run.status = status
        self.cancel(run.stop_timer)
        self.pump(cid)
        if self.running.get(cid) is not run:
            return  # pump() finished it
        if run.fds:
            run.finish_timer = self.call_later(DRAIN_GRACE, lambda: self._finish(cid))
        else:  # adopted without its pipes (the keeper died too): nothing left to drain
            self._finish(cid)

    def _finish(self, cid: str, *, lost: bool = False) -> None:
        run = self.running.pop(cid, None)
        if run is None:
            return
        self.by_pid.pop(run.pid, None)
        self.cancel(run.finish_timer)
        self.cancel(run.stop_timer)
        for name, fd in list(run.fds.items()):
            if run.writer is not None:
                run.writer.pump(name, fd)  # type: ignore[arg-type]
                run.writer.close_stream(name)  # type: ignore[arg-type]
            self.sel.unregister(fd)
            os.close(fd)
        if run.pidfd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(run.pidfd)  # registered only for orphans
            os.close(run.pidfd)
        if run.procfd >= 0:
            os.close(run.procfd)
        for fd in {run.pty, run.stdin, run.relay_w} - {-1}:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        if run.writer is not None:
            run.writer.close()
            run.writer.remove_spool()
        try:
            self._record_exit(cid, run, lost)
        finally:  # whatever happened, the operation waiting for this exit goes on (once
            # this exit is done with: a restart's start must not run inside it)
            self.call_later(0, functools.partial(self.lifecycle.exited, cid))

    def _record_exit(self, cid: str, run: Running, lost: bool) -> None:
        code = exit_code_of(run.status if run.status is not None else 255 << 8)
        oom = self.driver.counters(cgroup_rel(cid)).oom_kills > 0
        # After a reboot the cgroup is gone: nothing to thaw, and no reason to fail.
        if self.driver.exists(cgroup_rel(cid)) and self.driver.frozen(cgroup_rel(cid)):
            try:
                self.driver.thaw(cgroup_rel(cid))
            except (TuiboxError, OSError) as exc:
                log(f"thaw of {cid[:12]} after its exit: {exc}")
        try:
            config = self.store.config(cid)
        except RecordError:
            self._tear_down(cid)
            self._keeper({"op": "drop", "cid": cid})
            return
        ran_for = time.monotonic() - run.started
        restart = False

        def exited(st: ContainerState) -> None:
            nonlocal restart
            st.running = st.paused = False
            st.pid = st.pid_start = 0
            st.exit_code = code
            st.oom_killed = oom
            st.finished_at = now()
            st.network = NetworkSettings()
            if lost or run.exit_error:
                st.error = run.exit_error or VANISHED
            restart = self._should_restart(config, st, code)
            if restart:  # in the same write: no reader may see it exited in between
                _mark_restarting(st)

        self.store.update_state(cid, exited)
        # Recorded: the keeper may forget its status (it sends it again until then).
        self._keeper({"op": "drop", "cid": cid})
        if oom:
            self.store.emit("oom", cid, config.name)
        self.store.emit("die", cid, config.name, exitCode=str(code))
        # Attached clients (`run` in the foreground) hear the exit before the tear-down:
        # nothing they can do next is served before it is finished anyway.
        for client in run.attached:
            client.reply({"exit": code}, last=True)
        self._tear_down(cid)
        if restart:  # the restart timer fires after the tear-down above
            self._schedule_restart(cid, self._next_backoff(cid, ran_for))
        else:
            self._notify_waiters(cid, code)
            if config.auto_remove:
                self.store.remove_files(cid)
                self.store.emit("destroy", cid, config.name)

    def _tear_down(self, cid: str) -> None:
        """What belongs to a run and not to the container: its network and its cgroup."""
        try:
            # The namespace dies with the container and takes its veths along (unless
            # another container joined it: detach() knows and deletes them itself).
            self.network.detach(cid, netns_dying=True)
        except (TuiboxError, OSError) as exc:  # OSError: a full disk, say
            log(f"network tear-down of {cid[:12]}: {exc}")
        self._remove_cgroup(cgroup_rel(cid))

    def _remove_cgroup(self, rel: str, attempt: int = 0) -> None:
        """Remove a container's cgroup; one the kernel still holds (a dying cgroup) is
        retried in the background for two minutes rather than leaked."""
        if self.driver.remove(rel) or not self.driver.exists(rel):
            return
        if attempt >= 120:
            log(f"cgroup {rel} could not be removed: the kernel still holds it")
            return
        self.call_later(1.0, lambda: self._remove_cgroup(rel, attempt + 1))

    def _should_restart(self, config: ContainerConfig, state: ContainerState,
                        code: int) -> bool:
        policy = config.restart_policy
        if state.manually_stopped or self.stopping or self.lifecycle.removing(config.id):
            return False
        if policy.name == "always":
            return True
        if policy.name == "unless-stopped":
            return True
        if policy.name == "on-failure":
            return code != 0 and (policy.maximum_retry_count == 0
                                  or state.restart_count < policy.maximum_retry_count)
        return False

    def _next_backoff(self, cid: str, ran_for: float) -> float:
        # Docker: 100 ms doubling to 1 min; a run of ≥ 10 s resets it.
        previous = self.backoff.get(cid, 0.0)
        delay = 0.1 if ran_for >= 10 or previous == 0 else min(previous * 2, 60.0)
        self.backoff[cid] = delay
        return delay

    def _schedule_restart(self, cid: str, delay: float) -> None:
        def fire(done: Callable[[], None]) -> None:
            try:
                if cid in self.running or not self.store.state(cid).restarting:
                    return  # started or stopped by a request since
                self.start(cid, policy=True)
                self.store.emit("restart", cid, self.store.config(cid).name)
            except TuiboxError as exc:
                log(f"restart of {cid[:12]} failed: {exc}")
                self.store.update_state(cid, _mark_exited)
                self._notify_waiters(cid, self.store.state(cid).exit_code)
            finally:
                done()

        def due() -> None:  # in the container's queue, like any request
            self.restart_timers.pop(cid, None)
            self.lifecycle.submit(cid, Operation("restart (policy)", None, fire))

        self.restart_timers[cid] = self.call_later(delay, due)

    def _notify_waiters(self, cid: str, code: int) -> None:
        for client in self.waiters.pop(cid, []):
            client.reply({"ok": True, "exit_code": code}, last=True)

    # ------------------------------------------------------------------ requests

    def _keeper(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if self.keeper_gone:
            return
        data = json.dumps(message).encode()
        try:
            if fds:
                socket.send_fds(self.ctl, [data], fds)
            else:
                self.ctl.send(data)
        except OSError as exc:
            log(f"keeper unreachable: {exc}")

    def handle(self, client: Client, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            client.reply({"error": f"unknown request {op!r}"}, last=True)
            return
        if op not in STREAM_CONTROLS and client_gone(client.sock):
            log(f"dropped a {op} request: its client disconnected before it was served")
            client.close()
            return
        try:
            handler(client, msg)
        except SetupError as exc:
            client.reply({"error": exc.message, "exit_code": exc.exit_code,
                          "stage": exc.stage}, last=True)
        except TuiboxError as exc:
            client.reply({"error": exc.message, "exit_code": exc.exit_code}, last=True)
        except Exception as exc:  # a bug must still answer the caller, never hang it
            if isinstance(exc, OSError) and is_disk_full(exc):  # not a bug: say so in a line
                full = no_space(exc, self.paths.root)
                client.reply({"error": full.message, "exit_code": full.exit_code}, last=True)
                return
            log(f"internal error in {op}: {exc!r}")
            client.reply({"error": f"internal error in the supervisor ({op}): {exc!r}; "
                                   f"see {self.paths.supervisor_log}"}, last=True)

    def op_ping(self, client: Client, msg: dict[str, Any]) -> None:
        client.reply({"ok": True, "pid": os.getpid(), "running": len(self.running),
                      "keeper": not self.keeper_gone}, last=True)

    def _do_start(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        ensure_client(client.sock, f"starting {cid[:12]}")  # e.g. after a long create
        attach = client if msg.get("attach") else None
        if cid in self.restart_timers:  # a manual start pre-empts the back-off
            self.cancel(self.restart_timers.pop(cid))
        self.store.update_state(cid, lambda st: setattr(st, "manually_stopped", False))
        if msg.get("stdin"):
            client.attached_to = cid
        pid = self.start(cid, attach, winsize=winsize_of(msg))
        client.reply({"ok": True, "pid": pid}, last=attach is None)

    def op_create(self, client: Client, msg: dict[str, Any]) -> None:
        """``create`` (and ``start``) for the CLI's fast path: we have the engine loaded
        already, so a ``tuibox run`` need not import pydantic at all.  We never pull (that
        takes threads): a missing image is answered with ``missing_image`` and the CLI
        pulls, then takes the ordinary path."""
        from ..engine import Engine
        from ..errors import ImageNotFound
        from ..models import RunOptions

        opts = RunOptions.model_validate(msg["options"])
        try:
            config = Engine(self.paths.root).create(opts.model_copy(update={"pull": "never"}))
        except ImageNotFound as exc:
            client.reply({"error": exc.message, "exit_code": exc.exit_code,
                          "missing_image": True}, last=True)
            return
        client.reply({"ok": True, "id": config.id}, last=not msg.get("start"))
        if not msg.get("start"):
            return
        try:
            ensure_client(client.sock, f"starting {config.id[:12]}")  # after a long create
            # Not queued: nobody knew its id before the reply above, and a failure must
            # reach the --rm clean-up below.
            self._do_start(client, {**msg, "id": config.id})
        except TuiboxError:
            if opts.auto_remove:  # --rm: a container that could not start goes too
                self.store.remove_files(config.id)
                self.store.emit("destroy", config.id, config.name)
            raise

    def _do_connect(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        run = self.running.get(cid)
        if run is None or run.status is not None:
            raise TuiboxError(f"container {cid[:12]} is not running")
        config = self.store.config(cid)
        proc = open_live(self.store.state(cid), ("net",))
        if proc is None:
            raise TuiboxError(f"container {cid[:12]} is not running")
        with proc:
            joined = self.network.connect(config, proc.ns["net"], msg["network"],
                                          list(msg["aliases"]))

        def added(st: ContainerState) -> None:
            st.network.networks[msg["network"]] = joined

        self.store.update_state(cid, added)
        client.reply({"ok": True}, last=True)

    def _do_disconnect(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        if cid not in self.running:
            raise TuiboxError(f"container {cid[:12]} is not running")
        self.network.disconnect(self.store.config(cid), msg["network"])

        def dropped(st: ContainerState) -> None:
            st.network.networks.pop(msg["network"], None)

        self.store.update_state(cid, dropped)
        client.reply({"ok": True}, last=True)

    def op_wait(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        if cid in self.running or cid in self.restart_timers:
            self.waiters.setdefault(cid, []).append(client)
            return
        client.reply({"ok": True, "exit_code": self.store.state(cid).exit_code}, last=True)

    def op_shutdown(self, client: Client, msg: dict[str, Any]) -> None:
        if self.running and not msg.get("force"):
            raise TuiboxError(f"{len(self.running)} containers are running")
        for cid, run in self.running.items():
            with contextlib.suppress(TuiboxError):  # its records are gone: kill it anyway
                self.store.update_state(cid, lambda st: setattr(st, "manually_stopped", True))
            self._signal(run, signal.SIGKILL)
        self._keeper({"op": "shutdown"})
        client.reply({"ok": True}, last=True)
        self.stopping = True

    # ------------------------------------------------------------------ loop

    def start_up(self) -> None:
        """Listen, adopt what a predecessor left; an error here means we cannot serve."""
        self.listen.setblocking(False)
        self.sel.register(self.listen, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.sel.register(self.ctl, selectors.EVENT_READ, "keeper")
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
        self.adopt()
        self._reap()
        watch_root(self, log)  # a root deleted under us takes us (and what we made) along

    def serve(self) -> None:
        while not (self.stopping and not self.running):
            timeout = self._run_timers()
            if self.stopping:
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            for key, events in self.sel.select(timeout):
                self._guard(functools.partial(self._dispatch, key, events))
        self._guard(self.network.close)

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        data = key.data
        if data == "listen":
            with contextlib.suppress(BlockingIOError):
                sock, _ = self.listen.accept()
                self.idle.touch()
                sock.setblocking(False)
                client = Client(sock, self.sel)
                self.sel.register(sock, selectors.EVENT_READ, client)
        elif data == "signal":
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)
            self._reap()
        elif data == "keeper":
            self._from_keeper()
        elif isinstance(data, Client):
            if events & selectors.EVENT_WRITE:
                data.flush()
            if events & selectors.EVENT_READ:
                self._read_client(data)
        else:
            cid, stream = data
            if stream == "pidfd":
                self._orphan_exited(cid)
            elif stream == "pty":
                if events & selectors.EVENT_WRITE:
                    self._flush_stdin(self.running[cid])
                if events & selectors.EVENT_READ:
                    self._relay_pty(cid)
            elif stream == "stdin":
                self._flush_stdin(self.running[cid])
            else:
                self.pump(cid, stream)

    def _from_keeper(self) -> None:
        data, fds, _, _ = socket.recv_fds(self.ctl, 65536, MAX_FDS_PER_MESSAGE)
        if not data:
            self._keeper_lost()  # adoption.py
            return
        for fd in fds:
            os.close(fd)
        msg = json.loads(data)
        # The cid guards against a pid reused since: an old keeper's messages have none.
        if msg["op"] == "exit" and msg.get("cid", self.by_pid.get(msg["pid"])) == \
                self.by_pid.get(msg["pid"]):
            self._on_exit(msg["pid"], msg["status"])

    def _read_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            # A client that goes away detaches; the container keeps running.
            for run in self.running.values():
                if client in run.attached:
                    run.attached.remove(client)
            for waiting in self.waiters.values():
                if client in waiting:
                    waiting.remove(client)
            client.close()
            return
        try:
            frames = client.reader.feed(data)
        except ValueError:
            client.close()
            return
        for kind, payload in frames:
            if kind == protocol.KIND_JSON:
                self.handle(client, json.loads(payload))
            elif kind == protocol.KIND_STDIN and client.attached_to in self.running:
                self._write_stdin(self.running[client.attached_to], payload)


def _mark_restarting(st: ContainerState) -> None:
    st.running = st.restarting = True
    st.pid = st.pid_start = 0


def _mark_exited(st: ContainerState) -> None:
    st.running = st.restarting = False


def log(message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor[{os.getpid()}]: {message}\n"
    # Straight to the log file (stdout), never fatal: on a full disk the line is lost, and
    # nothing else (a failed print used to take the whole supervisor down).
    with contextlib.suppress(OSError):
        os.write(1, line.encode(errors="replace"))


def run(root: str, listen_fd: int, ctl_fd: int) -> None:
    """Entry point in the freshly forked supervisor process."""
    paths = StatePaths(Path(root))
    listen = socket.socket(fileno=os.dup(listen_fd))
    ctl = socket.socket(fileno=ctl_fd)
    try:
        supervisor = _prepare(paths, listen, ctl)
    except Exception as exc:  # say why to the clients, and to the log, instead of looping
        log(f"cannot start:\n{traceback.format_exc()}")
        refuse(listen, f"the supervisor cannot start: {type(exc).__name__}: {exc}; see "
                       f"{paths.supervisor_log}")
        os._exit(STARTUP_FAILED)
    supervisor.serve()


def _prepare(paths: StatePaths, listen: socket.socket, ctl: socket.socket) -> Supervisor:
    from ..runtime import _libc

    _libc.prctl(_libc.PR_SET_CHILD_SUBREAPER, 1)
    raise_nofile_limit()
    from ..stateperms import tighten

    if tightened := tighten(paths):  # a root that an older tuibox left open to every user
        log(f"state root: took group and other access away from {tightened} paths")
    if seccomp.available():  # load libseccomp and compile the default once, before any fork
        seccomp.compile_profile(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT_MASK)
    gc.freeze()  # forked containers then share the interpreter's pages copy-on-write
    supervisor = Supervisor(paths, listen, ctl)
    supervisor.start_up()
    return supervisor
