"""``Engine``: the one public entry point the CLI and the dashboard use.

Synchronous and typed.  It works in the caller's process (images, records, log reading)
and asks the supervisor to do what needs a long-lived single-threaded parent (starting,
stopping, reaping, log writing).  It never imports the UI.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .containers import ContainerStore, new_id, now
from .diskfull import reports_no_space, state_root
from .errors import Conflict, ContainerNotFound, InvalidArgument, NoSpace, RecordError, TuiboxError
from .models import (
    Container,
    ContainerConfig,
    ContainerState,
    Event,
    IdRange,
    LogOptions,
    PortBinding,
    ProcessInfo,
    RunOptions,
    StatsSample,
)
from .paths import StatePaths, default_root
from .signals import parse_signal

if TYPE_CHECKING:
    from .images import ImageStore
    from .images.registry.progress import ProgressCallback
    from .liveness import LiveProcess
    from .logs import LogEntry
    from .models import ImageRecord
    from .network.models import NetworkRecord
    from .network.store import NetworkStore
    from .runtime.exec import ExecPlan
    from .stats import StatsSampler
    from .supervisor.client import Connection, SupervisorClient
    from .volumes import VolumeStore

VERSION = "0.1.0"


def _has_cap(bit: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


class Engine:
    """All of tuibox's container and image operations for one state root."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.paths = StatePaths(Path(root) if root is not None else default_root())
        self.paths.ensure()
        self.containers = ContainerStore(self.paths, live=True)  # stale records read exited
        self._images: ImageStore | None = None
        self._client: SupervisorClient | None = None
        self._sampler: StatsSampler | None = None

    @property
    def images(self) -> ImageStore:
        if self._images is None:
            from .images import ImageStore

            self._images = ImageStore(self.paths)
        return self._images

    @property
    def volumes(self) -> VolumeStore:
        from .volumes import VolumeStore

        return VolumeStore(self.paths)

    def volume_users(self, name: str) -> builtins.list[str]:
        """Short ids of the containers that mount volume ``name``."""
        return [c.id[:12] for c in self.list(all=True)
                if any(m.type == "volume" and m.source == name for m in c.config.mounts)]

    @property
    def networks(self) -> NetworkStore:
        from .network.store import NetworkStore

        return NetworkStore(self.paths)

    @property
    def supervisor(self) -> SupervisorClient:
        if self._client is None:
            from .supervisor.client import SupervisorClient

            self._client = SupervisorClient(self.paths)
        return self._client

    # ------------------------------------------------------------------ lookup

    def resolve(self, ref: str) -> str:
        return self.containers.resolve(ref)

    def get(self, ref: str) -> Container:
        return self.containers.get(self.resolve(ref))

    def live_pid(self, ref: str) -> int | None:
        """The host pid of the container's PID 1 if the recorded process is still that
        process (start time and boot verified), else None.  A pid is only a number: to
        enter or signal the process use ``open_process``, which cannot be raced."""
        from .liveness import is_live

        st = self.containers.state(self.resolve(ref))
        return st.pid if is_live(st) else None

    def open_process(self, ref: str, *,
                     namespaces: tuple[str, ...] = ()) -> LiveProcess | None:
        """A verified handle on the container's PID 1 (pidfd, ``/proc/<pid>`` dir fd and
        an fd per namespace in ``namespaces``, e.g. ``("mnt",)``), or None if it does not
        run.  The caller closes it (``with``).  Never a stranger that reused the pid."""
        from .liveness import open_live

        return open_live(self.containers.state(self.resolve(ref)), namespaces)

    def list(self, *, all: bool = False) -> builtins.list[Container]:
        found, _ = self.list_with_errors()
        return found if all else [c for c in found if c.state.running]

    def list_with_errors(
        self,
    ) -> tuple[builtins.list[Container], builtins.list[RecordError]]:
        found, errors = self.containers.list()
        if self._supervise(found):
            found, errors = self.containers.list()  # as the new supervisor recorded them
        return found, errors

    def _supervise(self, found: builtins.list[Container]) -> bool:
        """Start a supervisor if containers run without one (its keeper was killed with
        it): until then nobody reads their output or can record their exits.  Every
        listing checks (``ps``, the dashboard's refresh and stats poll); True if started."""
        if not any(c.state.running and not c.state.restarting for c in found):
            return False
        if self.supervisor.running():
            return False
        with contextlib.suppress(TuiboxError):  # a verb that needs it will say why
            self.supervisor.request({"op": "ping"})
            return True
        return False

    def _state(self, cid: str) -> ContainerState:
        """The state of a container another client may be removing right now."""
        try:
            return self.containers.state(cid)
        except RecordError:
            if not self.containers.dir(cid).is_dir():
                raise ContainerNotFound(f"No such container: {cid}") from None
            raise

    # ------------------------------------------------------------------ create / start

    @reports_no_space(state_root)
    def create(self, opts: RunOptions) -> ContainerConfig:
        """Make a container (no process yet): Docker's ``create``."""
        from .images.registry.policy import ensure_image
        from .limits import resources_for
        from .mounts import materialize, mounts_for
        from .runtime.spec import build_process, parse_decimal_size, parse_restart, parse_ulimit
        from .security import security_for

        security = security_for(opts, self.paths.root)
        image = ensure_image(self.images, opts.image, policy=opts.pull)
        resources = resources_for(opts)
        mounts = mounts_for(opts, image.config)
        from .network.options import network_config

        net = network_config(opts, image.config, self.networks, self.containers)
        restart = parse_restart(opts.restart)
        if restart.name != "no" and opts.auto_remove:
            raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
        can_raise = _has_cap(24)  # CAP_SYS_RESOURCE
        ulimits = [parse_ulimit(u, can_raise=can_raise) for u in opts.ulimits]
        log_opts = _log_options(opts.log_opts, parse_decimal_size)
        if opts.stop_signal:
            parse_signal(opts.stop_signal)
        cid = new_id()
        hostname = opts.hostname or cid[:12]
        process = build_process(image.config, opts, hostname)
        name = self.containers.reserve_name(opts.name, cid)
        cdir = self.containers.dir(cid)
        ids_held = contextlib.ExitStack()  # the --userns=auto allocation lock
        try:
            mounts = materialize(mounts, self.volumes, self.images.layer_dirs(image))
            cdir.mkdir(mode=0o700)  # config (its env), upper dir, logs: root's only
            for sub in ("upper", "work", "rootfs"):
                (cdir / sub).mkdir(mode=0o700)
            os.chmod(cdir / "upper", 0o755)  # it is the container's "/": not the umask's
            if security.userns == "auto":
                security.id_range = self._claim_ids(ids_held, opts.userns, cdir)
            config = ContainerConfig(
                id=cid, name=name, created=now(), image=opts.image, image_id=image.id,
                process=process, entrypoint=opts.entrypoint, cmd=opts.command or None,
                hostname=hostname, labels={**(image.config.Labels or {}), **opts.labels},
                restart_policy=restart, auto_remove=opts.auto_remove,
                stop_signal=opts.stop_signal or image.config.StopSignal or "SIGTERM",
                stop_timeout=opts.stop_timeout, network_mode=net.mode, networks=net.networks,
                ports=net.ports, network_aliases=opts.network_aliases, ip=opts.ip or "",
                dns=opts.dns,
                dns_search=opts.dns_search, dns_options=opts.dns_options,
                extra_hosts=net.extra_hosts,
                log_options=log_opts, ulimits=ulimits,
                layer_dirs=[str(p) for p in self.images.layer_dirs(image)],
                read_only=opts.read_only, resources=resources, mounts=mounts,
                seccomp=security.seccomp != "unconfined", security=security)
            self.containers.write_config(config)
            self.containers.write_state(cid, ContainerState())
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            self.containers.release_name(name, cid)
            raise
        finally:
            ids_held.close()  # the config records the range now: others see it taken
        self.containers.emit("create", cid, name, image=opts.image)
        return config

    def _claim_ids(self, held: contextlib.ExitStack, userns: str | None,
                   cdir: Path) -> IdRange:
        """``--userns=auto``: host ids for the container, its upper dir owned by its root."""
        from .idranges import claim, give_to_root
        from .security import engine_defaults

        user = engine_defaults(self.paths.root).userns_user
        ids = claim(held, root=self.paths.root, store=self.containers, userns=userns,
                    user=user)
        give_to_root([cdir / "upper", cdir / "work"], ids)
        return ids

    def start(self, ref: str) -> int:
        """Start a created or exited container; returns its PID 1's host pid."""
        from .liveness import is_live

        cid = self.resolve(ref)
        state = self._state(cid)
        if is_live(state):  # "running" alone is not enough: its pid may be a stranger's now
            return state.pid
        reply = self.supervisor.request({"op": "start", "id": cid})
        return int(reply["pid"])

    def start_attached(self, ref: str, *, stdin: bool = False,
                       size: tuple[int, int] | None = None) -> Connection:
        """Start and stream the container's output: frames until ``{"exit": code}``.

        With ``stdin``, ``KIND_STDIN`` frames sent on the connection reach the container;
        ``size`` (rows, cols) sizes its TTY before the command runs."""
        return self._attach_request({"op": "start", "attach": True}, ref, stdin, size)

    def attach(self, ref: str, *, stdin: bool = True,
               size: tuple[int, int] | None = None) -> Connection:
        """Stream a running container's output (and feed its stdin): ``docker attach``."""
        return self._attach_request({"op": "attach"}, ref, stdin, size)

    def _attach_request(self, message: dict[str, Any], ref: str, stdin: bool,
                        size: tuple[int, int] | None) -> Connection:
        cid = self.resolve(ref)
        conn = self.supervisor.connect()
        request = {**message, "id": cid, "stdin": stdin}
        if size:
            request.update(rows=size[0], cols=size[1])
        try:
            conn.send(request)
            conn.reply()
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, opts: RunOptions) -> ContainerConfig:
        """``create`` + ``start`` (detached).  A failed start keeps the container, as Docker."""
        config = self.create(opts)
        try:
            self.start(config.id)
        except TuiboxError:
            if opts.auto_remove:
                self.remove(config.id, force=True)
            raise
        return config

    # ------------------------------------------------------------------ stop / kill / rm

    def stop(self, ref: str, *, timeout: int | None = None, signal_: str | None = None) -> bool:
        """Stop signal, then SIGKILL after the timeout; False if it was not running."""
        cid = self.resolve(ref)
        state = self._state(cid)
        if not state.running:
            return False
        reply = self.supervisor.request({"op": "stop", "id": cid, "timeout": timeout,
                                         "signal": signal_})
        return not reply.get("already", False)

    def restart(self, ref: str, *, timeout: int | None = None) -> int:
        """Stop (if it runs) and start, as one operation of the supervisor."""
        cid = self.resolve(ref)
        try:
            reply = self.supervisor.request({"op": "restart", "id": cid, "timeout": timeout})
        except TuiboxError as exc:
            if not _older_supervisor(exc):
                raise
            self.stop(ref, timeout=timeout)
            return self.start(ref)
        return int(reply["pid"])

    def kill(self, ref: str, *, signal_: str = "KILL") -> None:
        cid = self.resolve(ref)
        parse_signal(signal_)
        if not self._state(cid).running:
            raise Conflict(f"Cannot kill container: {ref}: container {cid[:12]} is not running")
        self.supervisor.request({"op": "kill", "id": cid, "signal": signal_})

    def wait(self, ref: str) -> int:
        cid = self.resolve(ref)
        if not self.containers.state(cid).running and not self.supervisor.running():
            return self.containers.state(cid).exit_code
        return int(self.supervisor.request({"op": "wait", "id": cid})["exit_code"])

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        cid = self.resolve(ref)
        try:
            state = self.containers.state(cid)
            self.containers.config(cid)
        except RecordError:  # a broken record must not make its container unremovable
            from .broken import remove_container

            return remove_container(self, cid, force=force, volumes=volumes)
        if self._remove_queued(cid, force=force, volumes=volumes):
            return cid
        # No supervisor can be started (a broken root): then nothing can start it either.
        if state.running and not force:
            raise Conflict(
                f"You cannot remove a {state.status} container {cid}. Stop the container "
                f"before attempting removal or force remove")
        config = self.containers.config(cid)
        with contextlib.suppress(NoSpace):  # a full disk: removing is what frees space
            self.containers.update_state(cid, lambda st: setattr(st, "removing", True))
        from .cgroups import detect_driver
        from .supervisor.running import cgroup_rel

        driver = detect_driver()
        if force and driver.pids(cgroup_rel(cid)):
            # Whatever still runs in its cgroup goes too, even if no supervisor knew the
            # process any more (both it and its keeper were killed).
            with contextlib.suppress(TuiboxError, OSError):
                driver.kill_all(cgroup_rel(cid))
            time.sleep(0.05)
        driver.remove(cgroup_rel(cid))
        self.containers.remove_files(cid)
        self.containers.emit("destroy", cid, config.name)
        if volumes:
            self._remove_volumes(config)
        return cid

    def _remove_queued(self, cid: str, *, force: bool, volumes: bool) -> bool:
        """``rm`` by the supervisor, in the container's queue, so no start or restart can
        slip in; it renames the directory away and the files are deleted here.  False if
        no supervisor can be started."""
        from .errors import SupervisorError

        config = self.containers.config(cid)
        try:
            reply = self.supervisor.request({"op": "remove", "id": cid, "force": force})
        except SupervisorError:
            return False
        except TuiboxError as exc:
            if not _older_supervisor(exc):
                raise
            if force:  # it knows only stop and forget: then the files go from here
                self.supervisor.request({"op": "stop", "id": cid, "timeout": 0,
                                         "signal": "KILL"})
            if not self.containers.dir(cid).exists():
                return True  # it had --rm: it removed itself as it exited
            self.supervisor.request({"op": "forget", "id": cid})
            return False
        shutil.rmtree(reply["doomed"], ignore_errors=True)
        if volumes:
            self._remove_volumes(config)
        return True

    def _remove_volumes(self, config: ContainerConfig) -> None:
        """rm -v: the container's anonymous volumes go with it."""
        for m in config.mounts:
            if m.type == "volume" and m.anonymous:
                with contextlib.suppress(TuiboxError):
                    self.volumes.remove(m.source, users=self.volume_users)

    def prune(self) -> builtins.list[str]:
        """Remove every stopped container (``container prune``)."""
        removed = []
        for c in self.list(all=True):
            if not c.state.running:
                with contextlib.suppress(TuiboxError):
                    removed.append(self.remove(c.id))
        return removed

    # ------------------------------------------------------------------ resources

    def pause(self, ref: str) -> None:
        """Freeze every process of the container (``docker pause``)."""
        cid = self.resolve(ref)
        st = self._state(cid)
        if not st.running or st.restarting:
            raise Conflict(f"Container {cid} is not running")
        if st.paused:
            raise Conflict(f"Container {cid} is already paused")
        self.supervisor.request({"op": "pause", "id": cid})

    def unpause(self, ref: str) -> None:
        cid = self.resolve(ref)
        if not self._state(cid).paused:
            raise Conflict(f"Container {cid} is not paused")
        self.supervisor.request({"op": "unpause", "id": cid})

    def update(self, ref: str, *, memory: int | None = None, memory_swap: int | None = None,
               memory_reservation: int | None = None, cpus: float | None = None,
               cpu_shares: int | None = None, cpu_period: int | None = None,
               cpu_quota: int | None = None, cpuset_cpus: str | None = None,
               cpuset_mems: str | None = None, pids_limit: int | None = None,
               blkio_weight: int | None = None) -> ContainerConfig:
        """Change limits, live if it runs; recorded in the config so a restart keeps them."""
        from .cgroups import detect_driver
        from .limits import updated
        from .records import locked

        cid = self.resolve(ref)
        path = self.containers.dir(cid) / "config.json"
        with locked(path):
            config = self.containers.config(cid)
            new = updated(config.resources, memory=memory, memory_swap=memory_swap,
                          memory_reservation=memory_reservation, cpus=cpus,
                          cpu_shares=cpu_shares, cpu_period=cpu_period, cpu_quota=cpu_quota,
                          cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                          pids_limit=pids_limit, blkio_weight=blkio_weight)
            st = self.containers.state(cid)
            if st.running and st.cgroup:
                driver = detect_driver()
                try:
                    driver.apply(st.cgroup, new)  # the kernel checks it before we record it
                    driver.forget(st.cgroup)  # stats show the new limit at once
                except TuiboxError:
                    driver.apply(st.cgroup, config.resources)  # leave no half-applied update
                    raise
            config.resources = new
            self.containers.write_config(config)
        self.containers.emit("update", cid, config.name)
        return config

    def stats(self, refs: builtins.list[str] | None = None) -> dict[str, StatsSample]:
        """One stats pass over the running containers (or ``refs``); CPU % is measured
        against this Engine's previous call, so call it at a steady interval."""
        if self._sampler is None:
            from .cgroups import detect_driver
            from .stats import StatsSampler

            self._sampler = StatsSampler(detect_driver())
        # list(): the dashboard's poll starts a missing supervisor, too
        containers = self.list() if refs is None else [self.get(r) for r in refs]
        return self._sampler.sample(containers)

    def top(self, ref: str) -> builtins.list[ProcessInfo]:
        """The container's processes (host pids), ``docker top``."""
        from .cgroups import detect_driver
        from .stats import processes

        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        return processes(detect_driver().pids(c.state.cgroup))

    # ------------------------------------------------------------------ exec

    def exec_plan(self, ref: str, args: builtins.list[str], *,
                  env: builtins.list[str] | None = None, user: str | None = None,
                  workdir: str | None = None, tty: bool = False, stdin: bool = False,
                  privileged: bool = False) -> ExecPlan:
        """What ``exec`` runs; the caller forks it with ``runtime.exec.start_exec`` from a
        single-threaded process (the CLI; the dashboard runs the CLI), which also closes
        the plan's handle on the container's process (``plan.process.close()`` if not)."""
        from .cgroups import detect_driver
        from .liveness import require_live
        from .runtime.exec import ExecPlan
        from .runtime.exec_helper import NAMESPACES
        from .runtime.spec import merge_env
        from .security import joined_confinement

        c = self.get(ref)
        st = c.state
        if not st.running or st.restarting:
            raise Conflict(f"container {c.id} is not running")
        if st.paused:
            raise Conflict(f"container {c.id} is paused, unpause the container before exec")
        if not args:
            raise InvalidArgument("no command given to exec")
        extra = ["TERM=xterm"] if tty else []
        # The container's capabilities, no_new_privs and the filter its PID 1 loaded.
        caps, no_new_privs, program = joined_confinement(c.config, self.containers.dir(c.id),
                                                         privileged=privileged)
        # Its namespaces opened now, through the verified PID 1 (its own user namespace
        # only with --userns=auto): the helper joins these fds, never /proc/<pid> paths.
        names = tuple(n for n in NAMESPACES
                      if n != "user" or c.config.security.userns == "auto")
        process = require_live(st, c.id, names)
        try:
            return ExecPlan(process=process, args=args,
                            env=merge_env(c.config.process.env, extra, env or []),
                            cwd=workdir or c.config.process.cwd,
                            user=user if user is not None else c.config.process.user,
                            tty=tty, stdin=stdin, privileged=privileged,
                            seccomp=program is not None, cap_mask=caps,
                            no_new_privs=no_new_privs,
                            seccomp_filter=program.code if program else None,
                            seccomp_flags=program.flags if program else 0,
                            cgroup_procs=detect_driver().procs_files(st.cgroup))
        except BaseException:
            process.close()
            raise

    def containers_using(self, image_id: str) -> builtins.list[str]:
        return [c.id[:12] for c in self.list(all=True) if c.config.image_id == image_id]

    # ------------------------------------------------------------------ logs / events

    def logs(self, ref: str, *, follow: bool = False, since: str | None = None,
             until: str | None = None, tail: int | None = None) -> Iterator[LogEntry]:
        from .logs import parse_since, read_logs

        cid = self.resolve(ref)
        now_ns = time.time_ns()
        since_ns = parse_since(since, now_ns) if since else None
        until_ns = parse_since(until, now_ns) if until else None

        def stopped() -> bool:
            try:
                st = self.containers.state(cid)
            except RecordError:
                return True
            return not st.running or (st.restarting and not follow)

        return read_logs(self.containers.dir(cid), cid, since_ns=since_ns, until_ns=until_ns,
                         tail=tail, follow=follow, stopped=stopped)

    def events(self, *, since: str | None = None, until: str | None = None,
               follow: bool = True, poll: float = 0.1) -> Iterator[Event]:
        from .logs import parse_since

        now_ns = time.time_ns()
        since_ns = parse_since(since, now_ns) if since else (None if not follow else now_ns)
        until_ns = parse_since(until, now_ns) if until else None
        path = self.paths.events
        path.touch()
        with open(path, "rb") as f:
            buf = b""
            while True:
                chunk = f.readline()
                if chunk:
                    buf += chunk
                    if not buf.endswith(b"\n"):
                        continue
                    line, buf = buf, b""
                    try:
                        event = Event.model_validate_json(line)
                    except ValueError:
                        continue
                    t_ns = int(event.time.timestamp() * 1e9)
                    if since_ns is not None and t_ns < since_ns:
                        continue
                    if until_ns is not None and t_ns > until_ns:
                        return
                    yield event
                    continue
                if not follow or (until_ns is not None and time.time_ns() > until_ns):
                    return
                time.sleep(poll)

    # ------------------------------------------------------------------ networks

    @reports_no_space(state_root)
    def network_create(self, name: str, *, subnet: str = "", gateway: str = "",
                       internal: bool = False, labels: dict[str, str] | None = None,
                       options: dict[str, str] | None = None) -> NetworkRecord:
        """``network create``: a bridge network whose members find each other by name."""
        record = self.networks.create(name, subnet=subnet, gateway=gateway, internal=internal,
                                      labels=labels, options=options)
        self.containers.emit("create", record.id, record.name, type_="network")
        return record

    def network_users(self, ref: str) -> builtins.list[Container]:
        """Containers (running or not) configured to use network ``ref``."""
        name = self.networks.get(ref).name
        return [c for c in self.list(all=True) if name in c.config.networks]

    def network_remove(self, ref: str) -> str:
        from .broken import drop_orphan_bridge, remove_network

        try:
            record = self.networks.get(ref)
        except RecordError as exc:  # a broken record must not make its network unremovable
            return remove_network(self, ref, exc)
        users = [] if record.builtin else self.network_users(record.name)
        if users:
            raise Conflict(f"network {record.name} is in use by container(s) "
                           f"{', '.join(c.name for c in users)}: remove them or "
                           f"`tuibox network disconnect` first")
        self.networks.remove(record.name)
        drop_orphan_bridge(self, record.bridge)
        self.containers.emit("destroy", record.id, record.name, type_="network")
        return record.name

    def network_prune(self) -> builtins.list[str]:
        """Remove every user network no container uses."""
        removed = []
        for record in self.networks.list():
            if record.builtin:
                continue
            with contextlib.suppress(TuiboxError):
                removed.append(self.network_remove(record.name))
        return removed

    def network_connect(self, network: str, ref: str, *,
                        aliases: builtins.list[str] | None = None) -> None:
        """Attach a container to one more network; live (a new interface) if it runs."""
        from .records import locked

        record = self.networks.get(network)
        cid = self.resolve(ref)
        path = self.containers.dir(cid) / "config.json"
        with locked(path):
            config = self.containers.config(cid)
            if not config.networks:
                raise Conflict(f"container {config.name} uses --network "
                               f"{config.network_mode}: it cannot join other networks")
            if record.name in config.networks:
                raise Conflict(f"container {config.name} is already connected to network "
                               f"{record.name}")
            if aliases and record.builtin:
                raise InvalidArgument("network-scoped aliases are supported only for "
                                      "containers in user defined networks")
            if self.containers.state(cid).running:
                self.supervisor.request({"op": "connect", "id": cid, "network": record.name,
                                         "aliases": aliases or []})
            config.networks.append(record.name)
            if aliases:
                config.network_aliases = sorted({*config.network_aliases, *aliases})
            self.containers.write_config(config)
        self.containers.emit("connect", record.id, record.name, type_="network",
                             container=cid)

    def network_disconnect(self, network: str, ref: str) -> None:
        from .records import locked

        record = self.networks.get(network)
        cid = self.resolve(ref)
        path = self.containers.dir(cid) / "config.json"
        with locked(path):
            config = self.containers.config(cid)
            if record.name not in config.networks:
                raise Conflict(f"container {config.name} is not connected to network "
                               f"{record.name}")
            if self.containers.state(cid).running:
                self.supervisor.request({"op": "disconnect", "id": cid,
                                         "network": record.name})
            config.networks.remove(record.name)
            if config.network_mode == record.name:
                config.network_mode = config.networks[0] if config.networks else "none"
            self.containers.write_config(config)
        self.containers.emit("disconnect", record.id, record.name, type_="network",
                             container=cid)

    def ports(self, ref: str) -> builtins.list[PortBinding]:
        """``port``: the published ports of a running container."""
        return list(self.get(ref).state.network.ports)

    # ------------------------------------------------------------------ inspect / info

    def inspect(self, ref: str) -> dict[str, Any]:
        from .daemonconfig import engine_defaults
        from .inspect import container_json

        c = self.get(ref)
        default = "host"
        with contextlib.suppress(TuiboxError):  # a broken daemon.json is create's to report
            default = engine_defaults(self.paths.root).userns
        return container_json(c, self.containers.dir(c.id), userns_default=default)

    def info(self) -> dict[str, Any]:
        from .cgroups import detect_driver

        containers, _ = self.containers.list()
        driver = detect_driver()
        mem = 0
        with contextlib.suppress(OSError), open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
        supervisor, supervisor_pid = self.supervisor.status()
        return {
            "ServerVersion": VERSION,
            "Containers": len(containers),
            "ContainersRunning": sum(c.state.status == "running" for c in containers),
            "ContainersPaused": sum(c.state.status == "paused" for c in containers),
            "ContainersStopped": sum(not c.state.running for c in containers),
            "Images": len(self.images.list()),
            "Driver": "overlay",
            "LoggingDriver": "json-file",
            "CgroupDriver": driver.name,
            "CgroupVersion": str(driver.version),
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "DockerRootDir": str(self.paths.root),
            "SupervisorRunning": supervisor == "running",
            "SupervisorStatus": supervisor,  # "not answering: …" when its socket only accepts
            "SupervisorPid": supervisor_pid,
            "KeeperPid": self.supervisor.keeper_pid(),  # 0: none (killed, or not started)
        }

    def version(self) -> dict[str, str]:
        return {"Version": VERSION, "Os": "linux", "Arch": platform.machine(),
                "KernelVersion": platform.release(),
                "PythonVersion": platform.python_version()}

    # ------------------------------------------------------------------ registries

    @reports_no_space(state_root)
    def pull(self, ref: str, *, platform: str | None = None,
             progress: ProgressCallback | None = None,
             insecure: builtins.list[str] | None = None) -> ImageRecord:
        """``docker pull``: fetch ``ref`` from its registry into the image store."""
        from .images.registry.pull import pull

        return pull(self.images, ref, platform=platform, progress=progress,
                    insecure=insecure or ())

    def push(self, ref: str, *, progress: ProgressCallback | None = None,
             insecure: builtins.list[str] | None = None) -> str:
        """``docker push``: upload the local image ``ref``; returns the manifest digest."""
        from .images.registry.push import push

        return push(self.images, ref, progress=progress, insecure=insecure or ())

    def shutdown(self, *, force: bool = False) -> None:
        """Stop this root's supervisor (containers must be stopped unless ``force``)."""
        self.supervisor.shutdown(force=force)


def _older_supervisor(exc: TuiboxError) -> bool:
    """A supervisor of an older tuibox still runs (until the next shutdown)."""
    return exc.message.startswith("unknown request")


def _log_options(opts: dict[str, str], parse_size: Any) -> LogOptions:
    """``--log-opt``: json-file's max-size/max-file; rotated by default (10 MB × 3)."""
    unknown = set(opts) - {"max-size", "max-file"}
    if unknown:
        raise InvalidArgument(f"unknown log opt '{sorted(unknown)[0]}' for json-file log driver")
    max_size = parse_size(opts.get("max-size", "10m"))
    try:
        max_file = int(opts.get("max-file", "3"))
    except ValueError:
        raise InvalidArgument(f"invalid max-file: {opts['max-file']}") from None
    if max_file < 1:
        raise InvalidArgument("max-file cannot be less than 1")
    if max_size == 0:
        raise InvalidArgument("max-size must be a positive number")
    return LogOptions(max_size=max_size, max_file=max_file)


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "Linux"

