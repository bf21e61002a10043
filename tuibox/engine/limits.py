"""From docker's resource flags to a validated ``Resources`` record, for create and update."""

from __future__ import annotations

import os
from pathlib import Path

from .cgroups.resources import DEFAULT_PIDS_LIMIT, Resources, device_rate, parse_cpus, validate
from .dropped import warnings_for
from .errors import InvalidArgument
from .models import RunOptions


def default_pids_limit() -> int | None:
    """On by default so a fork bomb never takes the host; ``TUIBOX_DEFAULT_PIDS_LIMIT``
    changes it (0 or -1 turns the default off)."""
    raw = os.environ.get("TUIBOX_DEFAULT_PIDS_LIMIT")
    if raw is None:
        return DEFAULT_PIDS_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"TUIBOX_DEFAULT_PIDS_LIMIT={raw!r} is not a number") from None
    return value if value > 0 else None


def _host_list(name: str) -> str:
    for base in (Path("/sys/fs/cgroup/cpuset"), Path("/sys/fs/cgroup")):
        for fname in (f"cpuset.{name}.effective", f"cpuset.{name}"):
            try:
                text = (base / fname).read_text().strip()
            except OSError:
                continue
            if text:
                return text
    return ""


def check(res: Resources) -> Resources:
    validate(res, available_cpus=_host_list("cpus"), available_mems=_host_list("mems"))
    return res


def resources_for(opts: RunOptions) -> Resources:
    if opts.kernel_memory is not None:
        raise InvalidArgument("--kernel-memory is not supported: kernel memory limits were "
                              "removed from Linux (5.16+) and from Docker; use --memory")
    period, quota = opts.cpu_period, opts.cpu_quota
    if opts.cpus is not None:
        if opts.cpu_period is not None or opts.cpu_quota is not None:
            raise InvalidArgument("conflicting options: --cpus and --cpu-period/--cpu-quota "
                                  "cannot both be set")
        period, quota = parse_cpus(str(opts.cpus))
    pids: int | None
    if opts.pids_limit is None:
        pids = default_pids_limit()
    else:
        pids = opts.pids_limit if opts.pids_limit > 0 else None
    # cgroup v2 has no OOM-killer switch: dropped, as Docker does (dropped.py warns).
    oom_kill_disable = opts.oom_kill_disable and not warnings_for(oom_kill_disable=True)
    res = Resources(
        memory=opts.memory, memory_swap=opts.memory_swap,
        memory_reservation=opts.memory_reservation, oom_kill_disable=oom_kill_disable,
        cpu_shares=opts.cpu_shares or None,  # 0 is Docker's "not set"
        cpu_period=period, cpu_quota=quota,
        cpuset_cpus=opts.cpuset_cpus, cpuset_mems=opts.cpuset_mems, pids_limit=pids,
        blkio_weight=opts.blkio_weight or None,  # 0: not set, as --cpu-shares
        device_read_bps=[device_rate(s, "--device-read-bps", is_bytes=True)
                         for s in opts.device_read_bps],
        device_write_bps=[device_rate(s, "--device-write-bps", is_bytes=True)
                          for s in opts.device_write_bps],
        device_read_iops=[device_rate(s, "--device-read-iops", is_bytes=False)
                          for s in opts.device_read_iops],
        device_write_iops=[device_rate(s, "--device-write-iops", is_bytes=False)
                           for s in opts.device_write_iops])
    if oom_kill_disable and opts.memory is None:
        raise InvalidArgument("--oom-kill-disable without --memory could let one container "
                              "hang the host: set a --memory limit too")
    return check(res)


def updated(current: Resources, *, memory: int | None = None, memory_swap: int | None = None,
            memory_reservation: int | None = None, cpus: float | None = None,
            cpu_shares: int | None = None, cpu_period: int | None = None,
            cpu_quota: int | None = None, cpuset_cpus: str | None = None,
            cpuset_mems: str | None = None, pids_limit: int | None = None,
            blkio_weight: int | None = None) -> Resources:
    """The container's resources with the given changes (``docker update`` semantics)."""
    res = current.model_copy(deep=True)
    if memory is not None:
        res.memory = memory
        if memory_swap is None and res.memory_swap is not None and res.memory_swap != -1 \
                and res.memory_swap < memory:
            res.memory_swap = None  # an old mem+swap below the new memory would be refused
    if memory_swap is not None:
        res.memory_swap = memory_swap
    if memory_reservation is not None:
        res.memory_reservation = memory_reservation
    if cpus is not None:
        if cpu_period is not None or cpu_quota is not None:
            raise InvalidArgument("conflicting options: --cpus and --cpu-period/--cpu-quota "
                                  "cannot both be set")
        res.cpu_period, res.cpu_quota = parse_cpus(str(cpus))
    if cpu_period is not None:
        res.cpu_period = cpu_period
    if cpu_quota is not None:
        res.cpu_quota = cpu_quota
    if cpu_shares:  # update --cpu-shares 0 leaves them as they are (Docker)
        res.cpu_shares = cpu_shares
    if cpuset_cpus is not None:
        res.cpuset_cpus = cpuset_cpus
    if cpuset_mems is not None:
        res.cpuset_mems = cpuset_mems
    if pids_limit is not None:
        res.pids_limit = pids_limit if pids_limit > 0 else None
    if blkio_weight:
        res.blkio_weight = blkio_weight
    return check(res)
