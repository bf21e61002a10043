"""``tuibox stats``: docker's columns, JSON lines, or a template."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .format import human_size, render_rows

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.models import StatsSample


def _iec(size: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def row(s: StatsSample, *, no_trunc: bool) -> dict[str, str]:
    return {
        "Container": s.id if no_trunc else s.id[:12],
        "ID": s.id,
        "Name": s.name,
        "CPUPerc": f"{s.cpu_percent:.2f}%",
        "MemUsage": f"{_iec(s.memory_usage)} / {_iec(s.memory_limit)}",
        "MemPerc": f"{s.memory_percent:.2f}%",
        "NetIO": f"{human_size(s.net_rx)} / {human_size(s.net_tx)}",
        "BlockIO": f"{human_size(s.block_read)} / {human_size(s.block_write)}",
        "PIDs": str(s.pids),
        "OOMKills": str(s.oom_kills),
        "PSI": _psi(s),
    }


def _psi(s: StatsSample) -> str:
    """PSI "some avg10" of cpu / memory / io: the share of the last 10 s in which some of
    the container's tasks waited for that resource ("--" where the kernel has no PSI)."""
    values = (s.psi_cpu, s.psi_memory, s.psi_io)
    if all(v is None for v in values):
        return "--"
    return " / ".join("--" if v is None else f"{v:.2f}%" for v in values)


def render_stats(engine: Engine, samples: dict[str, StatsSample], args: argparse.Namespace,
                 refs: list[str] | None) -> str:
    if args.all and refs is None:
        # Stopped containers show as zero rows, as docker stats -a does.
        from ..engine.models import StatsSample as Sample

        for c in engine.list(all=True):
            samples.setdefault(c.id, Sample(id=c.id, name=c.name, time_ns=0))
    rows = [row(s, no_trunc=args.no_trunc) for s in samples.values()]
    headers = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
               "BLOCK I/O", "PIDS"]
    keys = ["Container", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"]
    if any(s.psi_cpu is not None or s.psi_memory is not None for s in samples.values()):
        # A cgroup v2 tree is there: its counters after docker's columns (templates and
        # JSON have them as .OOMKills and .PSI everywhere).
        headers += ["OOM KILLS", "PSI CPU / MEM / IO"]
        keys += ["OOMKills", "PSI"]
    return render_rows(rows, args.format, headers, keys)
