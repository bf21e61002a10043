"""Container verbs of the CLI."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..engine.errors import InvalidArgument, NotFound, TuiboxError
from .format import ago, human_duration, human_size, render_rows, render_template, table
from .hostpaths import mount_spec, volume_spec

if TYPE_CHECKING:
    from ..engine import Container, Engine, RunOptions


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"tuibox: {text}\n")


def _parse_kv(items: list[str], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {item!r}")
        result[key] = value if sep else ""
    return result


def _env(args: argparse.Namespace) -> list[str]:
    import os

    env: list[str] = []
    for path in args.env_file:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise InvalidArgument(f"open {path}: {exc.strerror}") from exc
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                env.append(_env_entry(line, os.environ))
    for entry in args.env:
        env.append(_env_entry(entry, os.environ))
    return [e for e in env if e]


def _env_entry(entry: str, host: Any) -> str:
    # `-e NAME` without a value takes the caller's value, or is dropped (Docker's rule).
    if "=" in entry:
        return entry
    return f"{entry}={host[entry]}" if entry in host else ""


def run_options(args: argparse.Namespace) -> RunOptions:
    from ..engine.models import RunOptions

    return RunOptions(**run_options_dict(args))


def run_options_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as ``RunOptions`` fields, with the stdlib only (the fast path sends them
    to the supervisor, which validates them; importing pydantic here costs ~90 ms)."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else [""]
    return dict(
        image=args.image, command=command, entrypoint=entrypoint, name=args.name,
        env=_env(args), workdir=args.workdir, user=args.user, hostname=args.hostname,
        restart=args.restart, stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        labels=_parse_kv(args.label, "label"), auto_remove=args.rm, network=args.network,
        publish=args.publish, publish_all=args.publish_all,
        network_aliases=args.network_alias, ip=args.ip, dns=args.dns,
        dns_search=args.dns_search,
        dns_options=args.dns_option, add_hosts=args.add_host,
        log_opts=_parse_kv(args.log_opt, "log-opt"), ulimits=args.ulimit,
        read_only=args.read_only, tty=args.tty,
        interactive=args.interactive or "stdin" in args.attach,
        volumes=[volume_spec(v) for v in args.volume],
        mounts=[mount_spec(m) for m in args.mount], tmpfs=args.tmpfs, pull=args.pull,
        security_opt=[_read_profile(o) for o in args.security_opt],
        privileged=args.privileged, cap_add=args.cap_add, cap_drop=args.cap_drop,
        devices=args.device, device_cgroup_rules=args.device_cgroup_rule, userns=args.userns,
        **_limits(args, run=True))


def _read_profile(opt: str) -> str:
    """``seccomp=PATH``: the CLI reads the profile, as the docker CLI does, so the engine
    only ever sees the JSON (never a path relative to somebody else's cwd)."""
    key, sep, value = opt.partition("=")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin", "default") \
            or value.lstrip().startswith("{"):
        return opt
    try:
        with open(value) as f:
            return f"seccomp={f.read()}"
    except OSError as exc:
        raise InvalidArgument(f"opening seccomp profile ({value}) failed: "
                              f"{exc.strerror}") from None


def _size(value: str | None, flag: str) -> int | None:
    from ..engine.units import parse_bytes

    if value is None:
        return None
    if flag == "--memory-swap" and value.strip() == "-1":
        return -1
    return parse_bytes(value, flag)


def _limits(args: argparse.Namespace, *, run: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {
        "memory": _size(args.memory, "--memory"),
        "memory_swap": _size(args.memory_swap, "--memory-swap"),
        "memory_reservation": _size(args.memory_reservation, "--memory-reservation"),
        "cpus": args.cpus, "cpu_shares": args.cpu_shares, "cpu_period": args.cpu_period,
        "cpu_quota": args.cpu_quota, "cpuset_cpus": args.cpuset_cpus,
        "cpuset_mems": args.cpuset_mems, "pids_limit": args.pids_limit,
        "blkio_weight": args.blkio_weight,
    }
    if run:
        limits.update(
            kernel_memory=_size(args.kernel_memory, "--kernel-memory"),
            device_read_bps=args.device_read_bps, device_write_bps=args.device_write_bps,
            device_read_iops=args.device_read_iops, device_write_iops=args.device_write_iops,
            oom_kill_disable=args.oom_kill_disable)
    return limits


def cmd_create(engine: Engine, args: argparse.Namespace) -> int:
    _out(engine.create(run_options(args)).id)
    return 0


def cmd_run(engine: Engine, args: argparse.Namespace) -> int:
    opts = run_options(args)
    if args.detach:
        _out(engine.run(opts).id)
        return 0
    if args.attach:
        from ..engine.supervisor import protocol
        from . import attach

        attach.SHOWN = {kind for name, kind in protocol.STREAM_KINDS.items()
                        if name in args.attach}
    config = engine.create(opts)
    return _attach_and_wait(engine, config.id, remove_on_failure=opts.auto_remove,
                            stdin=opts.interactive, tty=opts.tty, detach_keys=args.detach_keys)


def _attach_and_wait(engine: Engine, cid: str, *, remove_on_failure: bool = False,
                     stdin: bool = False, tty: bool = False,
                     detach_keys: str = "ctrl-p,ctrl-q") -> int:
    from .attach import early_raw, follow, parse_detach_keys, terminal_size

    keys = parse_detach_keys(detach_keys)
    with early_raw(stdin and tty):  # keys typed while it starts keep their meaning
        try:
            conn = engine.start_attached(cid, stdin=stdin,
                                         size=terminal_size() if tty else None)
        except TuiboxError:
            if remove_on_failure:
                engine.remove(cid, force=True)
            raise
        return follow(conn, stdin=stdin, tty=tty, detach_keys=keys,
                      kill=lambda sig: engine.kill(cid, signal_=sig),
                      wait=lambda: engine.wait(cid))


def cmd_start(engine: Engine, args: argparse.Namespace) -> int:
    if args.attach:
        if len(args.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        cid = engine.resolve(args.containers[0])
        config = engine.containers.config(cid)
        return _attach_and_wait(engine, cid, stdin=args.interactive and config.process.open_stdin,
                                tty=config.process.tty, detach_keys=args.detach_keys)
    return _each(args.containers, lambda ref: engine.start(ref), parallel=False)


def _each(refs: list[str], action: Any, *, parallel: bool = True) -> int:
    """Docker's multi-container verbs: echo each name done, report each failure, exit 1.

    As in the docker CLI, the containers are acted on at once (``stop -t 3 a b c`` takes
    3 s, not 9) and reported in the order given; ``start`` stays one by one, as docker's."""

    def one(ref: str) -> TuiboxError | None:
        try:
            action(ref)
        except TuiboxError as exc:
            return exc
        return None

    if parallel and len(refs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(refs), 32)) as pool:
            outcomes = list(pool.map(one, refs))
    else:
        outcomes = [one(ref) for ref in refs]
    code = 0
    for ref, error in zip(refs, outcomes, strict=True):
        if error is None:
            _out(ref)
        else:
            _err(str(error))
            code = 1
    return code


def cmd_stop(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers,
                 lambda ref: engine.stop(ref, timeout=args.time, signal_=args.signal))


def cmd_restart(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers, lambda ref: engine.restart(ref, timeout=args.time))


def cmd_kill(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers, lambda ref: engine.kill(ref, signal_=args.signal))


def cmd_rm(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers,
                 lambda ref: engine.remove(ref, force=args.force, volumes=args.volumes))


def cmd_wait(engine: Engine, args: argparse.Namespace) -> int:
    code = 0
    for ref in args.containers:
        try:
            _out(str(engine.wait(ref)))
        except TuiboxError as exc:
            _err(str(exc))
            code = 1
    return code


def status_text(c: Container) -> str:
    st = c.state
    now = datetime.now(UTC)
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {ago(st.finished_at)}"
    if st.running:
        up = f"Up {human_duration((now - st.started_at).total_seconds())}"
        if st.output_lost:  # keeper and supervisor were killed: nobody read it meanwhile
            lost = sum(gap.seconds(now) for gap in st.output_lost)
            up += f" (output lost: {human_duration(lost)})"
        return up + (" (Paused)" if st.paused else "")
    if st.status == "created":
        return "Created"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    return f"Exited ({st.exit_code}) {ago(st.finished_at)}"


def ps_row(c: Container, *, no_trunc: bool) -> dict[str, str]:
    command = shlex.join(c.config.process.args)
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return {
        "ID": c.id if no_trunc else c.id[:12],
        "Image": c.config.image,
        "Command": f'"{command}"',
        "CreatedAt": c.config.created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "RunningFor": ago(c.config.created),
        "Status": status_text(c),
        "State": c.state.status,
        "Ports": ", ".join(str(p) for p in c.state.network.ports),
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.config.labels.items())),
        "Networks": ",".join(c.config.networks) or c.config.network_mode,
    }


def cmd_ps(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.broken import describe
    from .check import broken_row, report_broken

    containers, errors = engine.list_with_errors()
    broken = describe(engine.containers, errors)  # listed as dead, with their errors
    report_broken(broken)
    if not args.all:
        containers = [c for c in containers if c.state.running]
        broken = []
    if args.quiet:
        for c in containers:
            _out(c.id if args.no_trunc else c.id[:12])
        for b in broken:
            _out(b.id if args.no_trunc else b.short_id)
        return 0
    dated = [(c.config.created, ps_row(c, no_trunc=args.no_trunc)) for c in containers]
    dated += [(b.created, broken_row(b, no_trunc=args.no_trunc)) for b in broken]
    rows = [row for _, row in sorted(dated, key=lambda d: d[0], reverse=True)]
    text = render_rows(rows, args.format,
                       ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                        "NAMES"],
                       ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"])
    if text:
        _out(text)
    return 0


def cmd_logs(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.logs import format_time

    tail = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError:
            raise InvalidArgument(f"invalid --tail value: {args.tail}") from None
        if tail < 0:
            tail = None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    at_line_start = {"stdout": True, "stderr": True}
    if args.follow:  # a follow may never end: say it first
        _log_loss_notice(engine, args.container)
    for entry in engine.logs(args.container, follow=args.follow, since=args.since,
                             until=args.until, tail=tail):
        target = out if entry.stream == "stdout" else err
        if args.timestamps and at_line_start[entry.stream]:
            target.write(format_time(entry.time_ns).encode() + b" ")
        target.write(entry.data)
        at_line_start[entry.stream] = not entry.partial
        if args.follow:
            target.flush()
    out.flush()
    if not args.follow:
        _log_loss_notice(engine, args.container)
    return 0


def _log_loss_notice(engine: Engine, ref: str) -> None:
    """One line on stderr when the log is missing output (a full disk dropped it)."""
    from ..engine.logs.dropped import notice

    with contextlib.suppress(TuiboxError):  # removed meanwhile (--rm): nothing to say
        loss = engine.get(ref).state.log_loss
        if line := notice(loss.lines, loss.error):
            _err(line)


def cmd_inspect(engine: Engine, args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    code = 0
    for name in args.names:
        try:
            results.append(_inspect_one(engine, name, args.type))
        except NotFound:  # docker's words; the others are still shown
            sys.stderr.write(f"Error: No such object: {name}\n")
            code = 1
        except TuiboxError as exc:  # a broken record
            sys.stderr.write(f"Error: {exc}\n")
            code = 1
    if args.format:
        for obj in results:
            _out(render_template(args.format, obj))
    else:
        _out(json.dumps(results, indent=4))
    return code


def _inspect_one(engine: Engine, name: str, kind: str | None) -> dict[str, Any]:
    if kind != "image":
        try:
            return engine.inspect(name)
        except NotFound:
            if kind == "container":
                raise
    from .images import image_json

    return image_json(engine.images.resolve(name))


def cmd_events(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.logs import format_time

    follow = args.until is None
    for event in engine.events(since=args.since, until=args.until, follow=follow):
        if args.format:
            _out(render_template(args.format, event.model_dump(mode="json")))
            sys.stdout.flush()
            continue
        attrs = dict(event.attributes)
        if event.name:
            attrs["name"] = event.name
        extra = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
        stamp = format_time(int(event.time.timestamp() * 1_000_000) * 1000)
        _out(f"{stamp} {event.type} {event.action} {event.id}" + (f" ({extra})" if extra else ""))
        sys.stdout.flush()
    return 0


def cmd_container(engine: Engine, args: argparse.Namespace) -> int:
    if args.action in ("ls", "list"):
        args.quiet = args.no_trunc = False
        args.format = None
        return cmd_ps(engine, args)
    removed = engine.prune()
    _out("Deleted Containers:")
    for cid in removed:
        _out(cid)
    _out("")
    _out("Total reclaimed space: 0B" if not removed else f"Removed {len(removed)} containers")
    return 0


def cmd_info(engine: Engine, args: argparse.Namespace) -> int:
    info = engine.info()
    if args.format:
        _out(render_template(args.format, info) if args.format != "json" else json.dumps(info))
        return 0
    lines = [
        "Server:",
        f" Containers: {info['Containers']}",
        f"  Running: {info['ContainersRunning']}",
        f"  Paused: {info['ContainersPaused']}",
        f"  Stopped: {info['ContainersStopped']}",
        f" Images: {info['Images']}",
        f" Server Version: tuibox {info['ServerVersion']}",
        f" Storage Driver: {info['Driver']}",
        f" Logging Driver: {info['LoggingDriver']}",
        f" Cgroup Driver: {info['CgroupDriver']}",
        f" Cgroup Version: {info['CgroupVersion']}",
        f" Kernel Version: {info['KernelVersion']}",
        f" Operating System: {info['OperatingSystem']}",
        f" OSType: {info['OSType']}",
        f" Architecture: {info['Architecture']}",
        f" CPUs: {info['NCPU']}",
        f" Total Memory: {info['MemTotal'] / 2**30:.2f}GiB",
        f" Docker Root Dir: {info['DockerRootDir']}",
        f" Supervisor: {_supervisor_line(info)}",
        f" Keeper: {_keeper_line(info)}",
    ]
    _out("\n".join(lines))
    return 0


def _supervisor_line(info: dict[str, Any]) -> str:
    status = str(info["SupervisorStatus"])
    if status == "running":
        return f"running (pid {info['SupervisorPid']})"
    if status == "not running":
        return "not running (started by the next verb that needs it)"
    return status


def _keeper_line(info: dict[str, Any]) -> str:
    if info["KeeperPid"]:
        return f"running (pid {info['KeeperPid']})"
    if info["SupervisorStatus"] == "running":  # it was killed: the supervisor takes over
        return "missing: the supervisor becomes the keeper once no request is in flight"
    return "not running"


def cmd_version(engine: Engine, args: argparse.Namespace) -> int:
    v = engine.version()
    if args.format:
        _out(render_template(args.format, v) if args.format != "json" else json.dumps(v))
        return 0
    _out(f"tuibox version {v['Version']}\n OS/Arch: {v['Os']}/{v['Arch']}\n"
         f" Kernel: {v['KernelVersion']}\n Python: {v['PythonVersion']}")
    return 0


def cmd_pause(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers, engine.pause)


def cmd_unpause(engine: Engine, args: argparse.Namespace) -> int:
    return _each(args.containers, engine.unpause)


def cmd_update(engine: Engine, args: argparse.Namespace) -> int:
    limits = _limits(args, run=False)
    if all(v is None for v in limits.values()):
        raise InvalidArgument("you must provide one or more flags when using this command")
    return _each(args.containers, lambda ref: engine.update(ref, **limits))


def cmd_top(engine: Engine, args: argparse.Namespace) -> int:
    from .format import table

    rows = [[p.user, str(p.pid), str(p.ppid), p.state, f"{p.cpu_seconds:.2f}",
             human_size(p.rss), p.command] for p in engine.top(args.container)]
    _out(table(["UID", "PID", "PPID", "STAT", "TIME", "RSS", "CMD"], rows))
    return 0


def cmd_stats(engine: Engine, args: argparse.Namespace) -> int:
    import time

    from .stats import render_stats

    refs = [engine.resolve(r) for r in args.containers] or None
    engine.stats(refs)  # the first reading only sets the baseline for CPU %
    if args.no_stream:
        time.sleep(0.5)
        _out(render_stats(engine, engine.stats(refs), args, refs))
        return 0
    try:
        while True:
            time.sleep(1.0)
            text = render_stats(engine, engine.stats(refs), args, refs)
            # Redraw in place, like docker: home the cursor and clear below.
            sys.stdout.write("\x1b[H\x1b[J" + text + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0


def cmd_exec(engine: Engine, args: argparse.Namespace) -> int:
    import os

    from ..engine.runtime.exec import start_exec

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    plan = engine.exec_plan(args.container, command, env=[_env_entry(e, os.environ)
                                                          for e in args.env],
                            user=args.user, workdir=args.workdir,
                            tty=args.tty, stdin=args.interactive, privileged=args.privileged)
    if args.tty:
        from .tty import winsize

        plan.winsize = winsize(sys.stdin.fileno())
    if args.detach:
        plan.detach = True
        if os.fork() == 0:  # the command outlives us, as docker exec -d
            os.setsid()
            try:
                proc = start_exec(plan)
                os.waitpid(proc.helper, 0)
            finally:
                os._exit(0)
        return 0
    proc = start_exec(plan)
    if proc.stdout >= 0:  # pipes, never our own descriptors: see relay.py
        from .relay import relay_pipes

        signal.signal(signal.SIGINT, lambda s, f: os.kill(proc.helper, s))
        return os.waitstatus_to_exitcode(relay_pipes(proc)) & 0xFF
    if proc.pty_master >= 0:
        from .tty import relay_pty

        exited: list[int] = []

        def done() -> bool:
            pid, status = os.waitpid(proc.helper, os.WNOHANG)
            if pid:
                exited.append(status)
            return bool(pid)

        relay_pty(proc.pty_master, done=done)
        os.close(proc.pty_master)
        status = exited[0] if exited else os.waitpid(proc.helper, 0)[1]
    else:
        signal.signal(signal.SIGINT, lambda s, f: os.kill(proc.helper, s))
        status = os.waitpid(proc.helper, 0)[1]
    return os.waitstatus_to_exitcode(status) & 0xFF


def cmd_volume(engine: Engine, args: argparse.Namespace) -> int:
    store = engine.volumes
    if args.action == "create":
        if len(args.names) > 1:
            raise InvalidArgument("volume create takes at most one name")
        record = store.create(args.names[0] if args.names else None,
                              labels=_parse_kv(args.label, "label"))
        _out(record.name)
        return 0
    if args.action in ("ls", "list"):
        volumes, errors = store.list_with_errors()
        for error in errors:
            _err(f"skipping a broken record: {error} (`tuibox system check --repair` "
                 f"rebuilds it)")
        if args.quiet:
            for v in volumes:
                _out(v.name)
        else:
            _out(table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in volumes]))
        return 0
    if args.action == "inspect":
        result = []
        for name in args.names:
            v = store.get(name)
            result.append({"Name": v.name, "Driver": "local", "Scope": "local",
                           "CreatedAt": v.created.isoformat(), "Labels": v.labels,
                           "Mountpoint": str(store.data(v.name))})
        _out(json.dumps(result, indent=4))
        return 0
    if args.action in ("rm", "remove"):
        return _each(args.names, lambda name: store.remove(name, users=engine.volume_users,
                                                          force=args.force))
    removed = store.prune(users=engine.volume_users, all=args.all)
    _out("Deleted Volumes:")
    for name in removed:
        _out(name)
    return 0


def cmd_cp(engine: Engine, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.copy import copy_from_container, copy_to_container

    src_ctr, _, src_path = args.source.rpartition(":") if ":" in args.source else ("", "", "")
    dst_ctr, _, dst_path = args.dest.rpartition(":") if ":" in args.dest else ("", "", "")
    if src_ctr and dst_ctr:
        raise InvalidArgument("copying between containers is not supported")
    if src_ctr:
        copy_from_container(engine, src_ctr, src_path, args.dest, archive=args.archive)
    elif dst_ctr:
        copy_to_container(engine, Path(args.source), dst_ctr, dst_path,
                          archive=args.archive)
    else:
        raise InvalidArgument("must specify at least one container source")
    return 0


def cmd_attach(engine: Engine, args: argparse.Namespace) -> int:
    from .attach import DETACHED, early_raw, parse_detach_keys, session, terminal_size

    cid = engine.resolve(args.container)
    config = engine.containers.config(cid)
    stdin = not args.no_stdin and (config.process.open_stdin or config.process.tty)
    with early_raw(stdin and config.process.tty):
        conn = engine.attach(cid, stdin=stdin,
                             size=terminal_size() if config.process.tty else None)
        try:
            code = session(conn, stdin=stdin, tty=config.process.tty,
                           detach_keys=parse_detach_keys(args.detach_keys))
        finally:
            conn.close()
    return 0 if code == DETACHED else code
