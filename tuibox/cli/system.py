"""``tuibox system …``: Docker's ``system`` verbs (info, df, prune, events) and tuibox's
own for running it on a host: ``boot`` (what dockerd does at start, for a systemd unit or
an init script; see contrib/), ``shutdown`` (stop a root's supervisor) and ``check``
(broken records, in check.py)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .check import CHECK_HELP, add_check_arguments, cmd_check
from .containers import _err, _out, cmd_events, cmd_info, status_text
from .format import ago, render_rows, table

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.diskusage import DiskUsage


def add_system_actions(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="COMMAND", required=True,
                               parser_class=type(p))

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help)

    a = action("boot", "at host start-up (systemd unit or init script, see contrib/): start "
                       "the supervisor of each root and the containers whose restart policy "
                       "brings them back (always; unless-stopped unless stopped by hand; "
                       "on-failure after a failure)")
    a.add_argument("roots", nargs="*", metavar="ROOT",
                   help="state roots (default: --root, $TUIBOX_ROOT or /var/lib/tuibox)")
    a = action("check", CHECK_HELP)
    add_check_arguments(a)
    a = action("df", "show disk usage")
    a.add_argument("-v", "--verbose", action="store_true", help="show every item's usage")
    a.add_argument("--format", help="'json', 'table' or a Go-style template")
    a = action("events", "get real time events (same as `tuibox events`)")
    a.add_argument("--since")
    a.add_argument("--until")
    a.add_argument("--format")
    a = action("info", "system-wide information (same as `tuibox info`)")
    a.add_argument("-f", "--format")
    a = action("prune", "remove stopped containers, unused networks, dangling images "
                        "(-a: every unused image; --volumes: unused anonymous volumes)")
    a.add_argument("-a", "--all", action="store_true",
                   help="remove all unused images, not just dangling ones")
    a.add_argument("--volumes", action="store_true", help="prune anonymous volumes")
    a.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    a = action("shutdown", "stop this root's supervisor and its keeper now (it also leaves "
                           "by itself when idle: daemon.json's supervisor-idle-timeout); "
                           "refused while containers run unless -f, which kills them and "
                           "counts as stopping them by hand")
    a.add_argument("-f", "--force", action="store_true", help="kill running containers first")


def cmd_system(engine: Engine, args: argparse.Namespace) -> int:
    handler = {"boot": _boot, "check": cmd_check, "df": _df, "events": cmd_events,
               "info": cmd_info, "prune": _prune, "shutdown": _shutdown}[args.action]
    return handler(engine, args)


# ---------------------------------------------------------------------------------- boot


def _boot(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine import Engine as EngineClass
    from ..engine.boot import boot
    from ..engine.errors import TuiboxError

    engines = [EngineClass(Path(r)) for r in args.roots] if args.roots else [engine]
    code = 0
    for eng in engines:  # one root's trouble must not keep the others' containers down
        root = eng.paths.root
        try:
            report = boot(eng)
        except TuiboxError as exc:
            _err(f"{root}: {exc}")
            code = 1
            continue
        _out(f"{root}: supervisor running (pid {report.supervisor_pid})")
        for cid, name, policy in report.started:
            _out(f"{root}: started {name} ({cid[:12]}, restart policy {policy})")
        for cid, name in report.restarting:
            _out(f"{root}: restarting {name} ({cid[:12]})")
        for cid, name, error in report.failed:
            _err(f"{root}: cannot start {name} ({cid[:12]}): {error}")
            code = 1
    return code


# ------------------------------------------------------------------------------------ df


def size4(size: float) -> str:
    """go-units ``HumanSize`` (4 significant digits), as ``docker system df`` prints."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


def _reclaimable(part: int, total: int) -> str:
    return f"{size4(part)} ({part * 100 // total}%)" if total > 0 else size4(part)


def _summary(usage: DiskUsage) -> list[dict[str, str]]:
    images_active = sum(1 for i in usage.images if i.containers)
    containers_size = sum(c.size for c in usage.containers)
    volumes_size = sum(v.size for v in usage.volumes)
    rows = [
        ("Images", len(usage.images), images_active, usage.layers_size,
         _reclaimable(usage.images_reclaimable, usage.layers_size)),
        ("Containers", len(usage.containers), sum(c.active for c in usage.containers),
         containers_size,
         _reclaimable(sum(c.size for c in usage.containers if not c.active), containers_size)),
        ("Local Volumes", len(usage.volumes), sum(1 for v in usage.volumes if v.links),
         volumes_size, _reclaimable(sum(v.size for v in usage.volumes if not v.links),
                                    volumes_size)),
        ("Build Cache", 0, 0, 0, size4(0)),  # tuibox builds nothing (yet)
    ]
    return [{"Type": kind, "TotalCount": str(total), "Active": str(active),
             "Size": size4(size), "Reclaimable": reclaim}
            for kind, total, active, size, reclaim in rows]


def _df(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.diskusage import disk_usage

    usage = disk_usage(engine)
    if not args.verbose:
        _out(render_rows(_summary(usage), args.format,
                         ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                         ["Type", "TotalCount", "Active", "Size", "Reclaimable"]))
        return 0
    images = []
    for i in sorted(usage.images, key=lambda i: i.image.created, reverse=True):
        for ref in i.image.repo_tags or ["<none>:<none>"]:
            repo, _, tag = ref.rpartition(":")
            images.append([repo, tag, i.image.id.removeprefix("sha256:")[:12],
                           ago(i.image.created), size4(i.size), size4(i.shared),
                           size4(i.unique), str(i.containers)])
    containers = []
    for c in usage.containers:
        command = shlex.join(c.container.config.process.args)
        if len(command) > 20:
            command = command[:19] + "…"
        mounted = sum(1 for m in c.container.config.mounts if m.type == "volume")
        containers.append([c.container.id[:12], c.container.config.image, f'"{command}"',
                           str(mounted), size4(c.size), ago(c.container.config.created),
                           status_text(c.container), c.container.name])
    volumes = [[v.volume.name, str(v.links), size4(v.size)] for v in usage.volumes]
    _out("Images space usage:\n\n" + table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE",
         "CONTAINERS"], images))
    _out("\nContainers space usage:\n\n" + table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS",
         "NAMES"], containers))
    _out("\nLocal Volumes space usage:\n\n" + table(["VOLUME NAME", "LINKS", "SIZE"], volumes))
    _out("\nBuild cache usage: 0B\n\n" + table(
        ["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], []))
    return 0


# --------------------------------------------------------------------------------- prune


def confirmation(*, all_images: bool, volumes: bool) -> str:
    """The docker CLI's prompt, word for word."""
    warnings = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        warnings.append("all anonymous volumes not used by at least one container")
    warnings.append("all images without at least one container associated to them"
                    if all_images else "all dangling images")
    warnings.append("all build cache" if all_images else "unused build cache")
    lines = "".join(f"\n  - {w}" for w in warnings)
    return f"WARNING! This will remove:{lines}\n\nAre you sure you want to continue? [y/N] "


def _prune(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.prune import system_prune

    if not args.force:
        sys.stdout.write(confirmation(all_images=args.all, volumes=args.volumes))
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() != "y":
            return 0  # docker: cancelled, exit status 0, nothing more said
    report = system_prune(engine, all_images=args.all, volumes=args.volumes)
    for title, items in (("Deleted Containers:", report.containers),
                         ("Deleted Networks:", report.networks),
                         ("Deleted Volumes:", report.volumes),
                         ("Deleted Images:", report.images)):
        if items:
            _out("\n".join([title, *items]) + "\n")
    _out(f"Total reclaimed space: {size4(report.reclaimed)}")
    return 0


# ------------------------------------------------------------------------------ shutdown


def _shutdown(engine: Engine, args: argparse.Namespace) -> int:
    engine.shutdown(force=args.force)
    return 0
