"""Stats for every running container in one pass, as ``docker stats`` computes them.

No process per container and no supervisor round trip: the cgroup files and
/proc/<pid>/net/dev are read directly.  CPU % needs two readings; the sampler keeps the
previous one per container.
"""

from __future__ import annotations

import os
import time

from .cgroups import CgroupDriver
from .cgroups import files as cgfiles
from .liveness import LiveProcess, open_live
from .models import Container, ProcessInfo, StatsSample

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def system_cpu() -> tuple[int, int]:
    """(system CPU time in ns, online CPUs) from /proc/stat, docker's way."""
    text = cgfiles.read("/proc/stat") or ""
    total = 0
    ncpu = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:8]]
            total = sum(fields) * 1_000_000_000 // _CLK_TCK
        elif line.startswith("cpu"):
            ncpu += 1
    return total, max(ncpu, 1)


def host_memory() -> int:
    for line in (cgfiles.read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def net_bytes(proc: LiveProcess) -> tuple[int, int]:
    """rx/tx bytes over the interfaces of the process's network namespace, loopback
    excluded; read through its verified ``/proc/<pid>`` fd, never a pid reused since."""
    try:
        fd = os.open("net/dev", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc.proc)
    except OSError:
        return 0, 0
    try:
        text = os.read(fd, 1 << 20).decode()
    except OSError:
        text = ""
    finally:
        os.close(fd)
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = data.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


class StatsSampler:
    """Keeps the previous CPU reading per container so CPU % is a rate, not a total."""

    def __init__(self, driver: CgroupDriver) -> None:
        self.driver = driver
        self._previous: dict[str, tuple[int, int]] = {}
        self._host_memory = host_memory()

    def sample(self, containers: list[Container]) -> dict[str, StatsSample]:
        system_ns, ncpu = system_cpu()
        now = time.time_ns()
        samples: dict[str, StatsSample] = {}
        seen = set()
        for c in containers:
            proc = open_live(c.state)  # a pid reused by a host process is not ours
            if proc is None:
                continue
            with proc:  # host: not the container's traffic; none: loopback, never counted
                rx, tx = (0, 0) if c.config.network_mode in ("host", "none") \
                    else net_bytes(proc)
            cid = c.id
            seen.add(cid)
            k = self.driver.counters(c.state.cgroup or f"tuibox/{cid}")
            cpu_percent = 0.0
            previous = self._previous.get(cid)
            if previous is not None:
                d_cpu, d_sys = k.cpu_ns - previous[0], system_ns - previous[1]
                if d_cpu > 0 and d_sys > 0:
                    cpu_percent = d_cpu / d_sys * ncpu * 100.0
            self._previous[cid] = (k.cpu_ns, system_ns)
            usage = k.memory_usage - k.inactive_file if k.inactive_file < k.memory_usage \
                else k.memory_usage
            limit = k.memory_limit
            if limit <= 0 or (self._host_memory and limit > self._host_memory):
                limit = self._host_memory
            samples[cid] = StatsSample(
                id=cid, name=c.name, time_ns=now, cpu_percent=round(cpu_percent, 2),
                cpu_usage_ns=k.cpu_ns, cpu_throttled_periods=k.throttled_periods,
                cpu_throttled_ns=k.throttled_ns, memory_usage=usage, memory_limit=limit,
                memory_percent=round(usage / limit * 100.0, 2) if limit else 0.0,
                oom_kills=k.oom_kills, pids=k.pids,
                pids_limit=k.pids_limit if k.pids_limit > 0 else 0,
                block_read=k.block_read, block_write=k.block_write, net_rx=rx, net_tx=tx,
                psi_cpu=k.psi_cpu, psi_memory=k.psi_memory, psi_io=k.psi_io)
        for gone in set(self._previous) - seen:
            del self._previous[gone]
        return samples


def processes(pids: list[int]) -> list[ProcessInfo]:
    """``ps``-like rows for host pids (``top``): never raises for a process that vanished."""
    users = _users()
    rows = []
    for pid in sorted(pids):
        stat = cgfiles.read(f"/proc/{pid}/stat")
        if stat is None:
            continue
        comm_end = stat.rfind(")")
        fields = stat[comm_end + 2:].split()
        cmd = (cgfiles.read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        rows.append(ProcessInfo(
            pid=pid, ppid=int(fields[1]), user=users.get(uid, str(uid)), state=fields[0],
            cpu_seconds=(int(fields[11]) + int(fields[12])) / _CLK_TCK,
            rss=int(fields[21]) * _PAGE, started=int(fields[19]) / _CLK_TCK,
            command=cmd or stat[stat.find("(") + 1:comm_end]))
    return rows


def _users() -> dict[int, str]:
    result = {}
    for line in (cgfiles.read("/etc/passwd") or "").splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            result[int(parts[2])] = parts[0]
    return result


__all__ = ["StatsSampler", "net_bytes", "processes", "system_cpu"]
