"""The docker-like command line: ``tuibox run|ps|logs|stop|…`` over the Engine.

Parsing lives here; each verb's work lives in ``containers.py`` or ``images.py``.  Heavy
modules (pydantic models, the image store) are imported only by the verbs that use them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine import Engine

Handler = Callable[["Engine", argparse.Namespace], int]


class ArgumentParser(argparse.ArgumentParser):
    """Docker's exit code 125 and one-line message for a bad flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verbs: set[str] = set()  # every verb and alias, built or not

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"tuibox: {message}\nSee 'tuibox --help'.", file=sys.stderr)
        raise SystemExit(125)


def _run_flags(p: argparse.ArgumentParser) -> None:
    from .registry import add_run_pull_flags

    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="keys to detach")
    p.add_argument("-a", "--attach", action="append", default=[],
                   choices=["stdin", "stdout", "stderr"], help="attach to STDIN, STDOUT or STDERR")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="assign a name to the container")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="read env vars from a file")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-h", "--hostname", help="container host name")
    p.add_argument("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    p.add_argument("--restart", default="no",
                   help="restart policy: no, on-failure[:max-retries], always, unless-stopped")
    p.add_argument("--stop-signal", help="signal to stop the container")
    p.add_argument("--stop-timeout", type=int, help="timeout (in seconds) to stop a container")
    p.add_argument("-l", "--label", action="append", default=[], help="set metadata")
    p.add_argument("--network", "--net", default="bridge",
                   help="bridge (default), none, host, container:<name|id>, or a network's name")
    p.add_argument("-p", "--publish", action="append", default=[],
                   help="publish a port: [ip:][hostPort:]containerPort[/tcp|udp]")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every EXPOSEd port to a free host port")
    p.add_argument("--network-alias", "--net-alias", action="append", default=[],
                   help="another name for the container on a user network")
    p.add_argument("--ip", help="a fixed IPv4 address on a user network")
    p.add_argument("--dns", action="append", default=[], help="a DNS server to use")
    p.add_argument("--dns-search", action="append", default=[], help="a DNS search domain")
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[],
                   help="a resolv.conf option")
    p.add_argument("--add-host", action="append", default=[],
                   help="add a host to /etc/hosts (name:ip)")
    p.add_argument("--log-opt", action="append", default=[], help="log driver options")
    p.add_argument("--ulimit", action="append", default=[], help="ulimit options")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--security-opt", action="append", default=[],
                   help="seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false], "
                        "systempaths=unconfined")
    p.add_argument("--privileged", action="store_true",
                   help="all capabilities and devices, no seccomp, no masked paths")
    p.add_argument("--cap-add", action="append", default=[], help="add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    p.add_argument("--device", action="append", default=[],
                   help="add a host device: HOST[:CONTAINER][:rwm]")
    p.add_argument("--device-cgroup-rule", action="append", default=[],
                   help="add a rule to the device allow list: 'c|b|a MAJOR:MINOR rwm'")
    p.add_argument("--userns", help="user namespace: host, or auto[:size=N] (its own range of "
                                    "host ids from /etc/subuid)")
    p.add_argument("-v", "--volume", action="append", default=[],
                   help="bind mount a host path or a named volume: SRC:DST[:ro]")
    p.add_argument("--mount", action="append", default=[],
                   help="type=bind|volume|tmpfs,source=…,target=…[,readonly]")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs: DST[:options]")
    add_run_pull_flags(p)
    _resource_flags(p, run=True)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _resource_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    p.add_argument("-m", "--memory", help="memory limit (e.g. 256m)")
    p.add_argument("--memory-swap", help="memory + swap limit; -1 for unlimited swap")
    p.add_argument("--memory-reservation", help="memory soft limit")
    p.add_argument("--cpus", type=float, help="number of CPUs (e.g. 1.5)")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, help="CPU CFS period (µs)")
    p.add_argument("--cpu-quota", type=int, help="CPU CFS quota (µs)")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="memory nodes in which to allow execution")
    p.add_argument("--pids-limit", type=int,
                   help="process limit (default 4096 or $TUIBOX_DEFAULT_PIDS_LIMIT; -1 lifts it)")
    p.add_argument("--blkio-weight", type=int, help="block IO weight (10-1000)")
    if not run:
        return
    p.add_argument("--kernel-memory", help="not supported (refused with an explanation)")
    p.add_argument("--device-read-bps", action="append", default=[],
                   help="limit read rate from a device (/dev/sda:1mb)")
    p.add_argument("--device-write-bps", action="append", default=[],
                   help="limit write rate to a device")
    p.add_argument("--device-read-iops", action="append", default=[],
                   help="limit read ops per second from a device (/dev/sda:1000)")
    p.add_argument("--device-write-iops", action="append", default=[],
                   help="limit write ops per second to a device")
    p.add_argument("--oom-kill-disable", action="store_true", help="disable the OOM killer")


class _Skipped(ArgumentParser):
    """Stands in for the parsers of verbs not on the command line: their flags are not
    built at all (building all ~40 costs more than a container start)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def set_defaults(self, **kwargs: Any) -> None:
        return None


def _verb_of(argv: Sequence[str]) -> str | None:
    """The verb on the command line (``--root DIR`` may come first), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root":
            i += 2
            continue
        if arg.startswith("--root="):
            i += 1
            continue
        return None if arg.startswith("-") else arg
    return None


def build_parser(only: str | None = None) -> ArgumentParser:
    """The whole parser, or with ``only`` just that verb's sub-parser built."""
    from . import containers as c
    from . import images as i
    from . import networks as n
    from . import registry as r
    from . import system as s

    parser = ArgumentParser(prog="tuibox", add_help=False,
                            description="Containers you can see. With no command: the dashboard.")
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("--root", help="state root (default $TUIBOX_ROOT or /var/lib/tuibox)")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser)

    skipped = _Skipped(add_help=False)

    def verb(name: str, handler: Handler, help: str, aliases: Sequence[str] = ()) -> ArgumentParser:
        parser.verbs.update((name, *aliases))
        if only is not None and only != name and only not in aliases:
            return skipped
        p: ArgumentParser = sub.add_parser(name, help=help, aliases=list(aliases),
                                           add_help=False)
        p.add_argument("--help", action="help", help="show this help and exit")
        p.set_defaults(handler=handler)
        return p

    verb("info", c.cmd_info, "system-wide information").add_argument("-f", "--format")
    verb("version", c.cmd_version, "show the version").add_argument("-f", "--format")

    p = verb("run", r.with_pull(c.cmd_run), "create and run a new container from an image")
    _run_flags(p)
    p = verb("create", r.with_pull(c.cmd_create), "create a new container")
    _run_flags(p)
    p = verb("start", c.cmd_start, "start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="keys to detach")
    p.add_argument("containers", nargs="+")
    p = verb("attach", c.cmd_attach, "attach to a running container's stdio")
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q", help="keys to detach")
    p.add_argument("container")
    for name, handler, text in (("stop", c.cmd_stop, "stop one or more running containers"),
                                ("restart", c.cmd_restart, "restart one or more containers")):
        p = verb(name, handler, text)
        p.add_argument("-t", "--time", "--timeout", dest="time", type=int,
                       help="seconds to wait before killing")
        p.add_argument("-s", "--signal", help="signal to send to the container")
        p.add_argument("containers", nargs="+")
    p = verb("kill", c.cmd_kill, "kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal to send to the container")
    p.add_argument("containers", nargs="+")
    p = verb("rm", c.cmd_rm, "remove one or more containers")
    p.add_argument("-f", "--force", action="store_true", help="kill and remove a running one")
    p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    p.add_argument("containers", nargs="+")
    p = verb("ps", c.cmd_ps, "list containers", aliases=["ls"])
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--format", help="'json', 'table', or a Go-style template")
    p = verb("logs", c.cmd_logs, "fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("-n", "--tail", default="all", help="number of lines from the end")
    p.add_argument("--since", help="since timestamp or relative (e.g. 42m)")
    p.add_argument("--until", help="before timestamp or relative (e.g. 42m)")
    p.add_argument("container")
    p = verb("inspect", c.cmd_inspect, "detailed information on containers or images")
    p.add_argument("-f", "--format", help="Go-style template")
    p.add_argument("--type", choices=["container", "image"])
    p.add_argument("names", nargs="+")
    p = verb("wait", c.cmd_wait, "block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    p = verb("events", c.cmd_events, "get real time events")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--format")
    p = verb("container", c.cmd_container, "manage containers (prune)")
    p.add_argument("action", choices=["prune", "ls", "list"])
    p.add_argument("-f", "--force", action="store_true", help="do not prompt")
    p.add_argument("-a", "--all", action="store_true")

    for name, aliases, text in (("pause", ["freeze"], "freeze all processes of containers"),
                                ("unpause", ["thaw"], "thaw all processes of containers")):
        p = verb(name, getattr(c, f"cmd_{name}"), text, aliases=aliases)
        p.add_argument("containers", nargs="+")
    p = verb("exec", c.cmd_exec, "run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("--privileged", action="store_true", help="all capabilities")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = verb("update", c.cmd_update, "change the limits of containers, live")
    _resource_flags(p, run=False)
    p.add_argument("containers", nargs="+")
    p = verb("stats", c.cmd_stats, "live resource usage of containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    p.add_argument("--format", help="'json', 'table' or a Go-style template")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("containers", nargs="*")
    p = verb("top", c.cmd_top, "the processes of a container")
    p.add_argument("container")

    p = verb("volume", c.cmd_volume, "manage volumes: create ls inspect rm prune")
    p.add_argument("action", choices=["create", "ls", "list", "inspect", "rm", "remove",
                                      "prune"])
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-a", "--all", action="store_true", help="prune: named volumes too")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("names", nargs="*")
    p = verb("network", n.cmd_network,
             "manage networks: create ls inspect rm prune connect disconnect")
    n.add_network_actions(p)
    p = verb("port", n.cmd_port, "list a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?", help="PRIVATE_PORT[/PROTO]")
    p = verb("cp", c.cmd_cp, "copy files between a container and the host")
    p.add_argument("-a", "--archive", action="store_true",
                   help="keep the numeric owner (uid:gid) of every file")
    p.add_argument("source", help="CONTAINER:SRC_PATH or a host path")
    p.add_argument("dest", help="CONTAINER:DEST_PATH or a host path")

    p = verb("images", i.cmd_images, "list images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("reference", nargs="?")
    p = verb("load", i.cmd_load, "load an image from a tar archive")
    p.add_argument("-i", "--input", required=True, help="tar archive to read")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("save", i.cmd_save, "save images to a tar archive")
    p.add_argument("-o", "--output", required=True, help="write to this file")
    p.add_argument("--format", choices=["docker", "oci"], default="docker")
    p.add_argument("images", nargs="+")
    p = verb("import", i.cmd_import, "import a rootfs tarball or directory as an image")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply a Dockerfile instruction (CMD, ENV, WORKDIR …)")
    p.add_argument("source")
    p.add_argument("reference", nargs="?")
    p = verb("rmi", i.cmd_rmi, "remove one or more images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p = verb("tag", i.cmd_tag, "create a tag that refers to an image")
    p.add_argument("source")
    p.add_argument("target")
    p = verb("system", s.cmd_system, "manage tuibox: boot check df events info prune shutdown")
    if p is not skipped:  # argparse allows one set of sub-parsers per parser
        s.add_system_actions(p)
    r.add_verbs(verb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..engine.errors import TuiboxError

    args_list = list(sys.argv[1:] if argv is None else argv)
    verb = _verb_of(args_list)
    parser = build_parser(only=verb)
    if verb is not None and verb not in parser.verbs:
        parser = build_parser()  # an unknown verb: the full parser says which exist
    args = parser.parse_args(args_list)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    if os.geteuid() != 0:
        print("tuibox: must run as root (it creates namespaces, cgroups and mounts)",
              file=sys.stderr)
        return 125
    try:
        if args.verb in ("run", "create"):
            from ..engine.dropped import warnings_for
            from .fastrun import try_fast

            for warning in warnings_for(oom_kill_disable=args.oom_kill_disable):
                print(f"WARNING: {warning}", file=sys.stderr)  # as the docker CLI does

            code = try_fast(args)
            if code is not None:
                return code
        from ..engine import Engine  # after the fast path: this import alone is ~100 ms

        engine = Engine(args.root)
        return int(args.handler(engine, args))
    except TuiboxError as exc:
        print(f"tuibox: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tuibox logs … | head`: the reader left; stop quietly like docker does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # the last resort: one line, never a traceback
        print(f"tuibox: {_os_error_line(exc, args.root)}", file=sys.stderr)
        return 125


def _os_error_line(exc: OSError, root: str | None) -> str:
    """``<strerror>: <file>``; a full disk as the engine says it (``NoSpace``)."""
    from ..engine.diskfull import is_disk_full, no_space
    from ..engine.paths import default_root

    if is_disk_full(exc):
        return no_space(exc, root or default_root()).message
    where = f": {os.fsdecode(exc.filename)}" if exc.filename is not None else ""
    return f"{exc.strerror or exc}{where}"
