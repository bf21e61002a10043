"""Resource limits in user terms (docker's flags and units), and their validation.

One ``Resources`` record is stored in the container's config; each driver converts it to
its own files (v1 shares vs v2 weight, mem+swap vs swap alone …).
"""

from __future__ import annotations

import math
import os
import re
import stat

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidArgument
from ..units import parse_bytes

DEFAULT_PIDS_LIMIT = 4096
CPU_PERIOD = 100_000


class DeviceRate(BaseModel):
    """A per-device throttle: ``major:minor`` and a rate (bytes/s or ops/s)."""

    model_config = ConfigDict(frozen=True)
    path: str
    major: int
    minor: int
    rate: int


class Resources(BaseModel):
    """What limits a container; ``None`` means "not set" (the kernel default)."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # memory + swap, bytes; -1 = unlimited swap
    memory_reservation: int | None = None
    oom_kill_disable: bool = False
    cpu_shares: int | None = None
    cpu_period: int | None = None  # µs
    cpu_quota: int | None = None  # µs; -1 = unlimited
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None  # None/-1 = unlimited
    blkio_weight: int | None = None
    device_read_bps: list[DeviceRate] = Field(default_factory=list)
    device_write_bps: list[DeviceRate] = Field(default_factory=list)
    device_read_iops: list[DeviceRate] = Field(default_factory=list)
    device_write_iops: list[DeviceRate] = Field(default_factory=list)

    def effective_memory_swap(self) -> int | None:
        """Docker: with ``-m`` but no ``--memory-swap``, mem+swap is twice the memory."""
        if self.memory_swap is not None:
            return self.memory_swap
        if self.memory is not None:
            return self.memory * 2
        return None


__all__ = ["parse_bytes"]  # re-exported: it used to live here


def parse_cpus(value: str) -> tuple[int, int]:
    """``--cpus 1.5`` → (period, quota) in µs."""
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid value {value!r} for --cpus: expected a number") from None
    ncpu = os.cpu_count() or 1
    if cpus <= 0 or cpus > ncpu:
        raise InvalidArgument(f"range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                              f"{ncpu} CPUs available")
    return CPU_PERIOD, max(1000, round(cpus * CPU_PERIOD))


def _cpu_list(value: str, flag: str, available: str) -> str:
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
        raise InvalidArgument(f"invalid value {value!r} for {flag}: expected a list like 0-2,4")
    have = expand_list(available)
    for n in expand_list(value):
        if n not in have:
            raise InvalidArgument(f"{flag} {value}: {n} is not available (this host has "
                                  f"{available.strip()})")
    return value


def expand_list(text: str) -> set[int]:
    result: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        result.update(range(int(lo), int(hi or lo) + 1))
    return result


def device_rate(spec: str, flag: str, *, is_bytes: bool) -> DeviceRate:
    """``/dev/sda:10mb`` → the block device's numbers and the rate."""
    path, sep, rate_s = spec.rpartition(":")
    if not sep or not path:
        raise InvalidArgument(f"invalid value {spec!r} for {flag}: expected <device>:<rate>")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"{flag}: cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{flag}: {path} is not a block device")
    if is_bytes:
        rate = parse_bytes(rate_s, flag)
    else:
        if not rate_s.isdigit():
            raise InvalidArgument(f"invalid rate {rate_s!r} for {flag}: expected a number")
        rate = int(rate_s)
    return DeviceRate(path=path, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                      rate=rate)


def validate(res: Resources, *, available_cpus: str = "", available_mems: str = "") -> None:
    """Docker's checks, with messages that say what to do."""
    if res.memory is not None and res.memory < 6 * 1024 * 1024:
        raise InvalidArgument("minimum memory limit allowed is 6MB")
    swap = res.memory_swap
    if swap is not None and swap != -1:
        if res.memory is None:
            raise InvalidArgument("you should always set the memory limit when using the "
                                  "memoryswap limit, see usage")
        if swap < res.memory:
            raise InvalidArgument("minimum memoryswap limit should be larger than memory "
                                  "limit, see usage")
    if (res.memory_reservation is not None and res.memory is not None
            and res.memory_reservation > res.memory):
        raise InvalidArgument("minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    if res.cpu_shares is not None and res.cpu_shares < 0:
        raise InvalidArgument("invalid --cpu-shares: must be positive")
    if res.cpu_period is not None and not 1000 <= res.cpu_period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    if res.cpu_quota is not None and res.cpu_quota not in (-1, 0) and res.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if res.blkio_weight is not None and not 10 <= res.blkio_weight <= 1000:
        raise InvalidArgument("range of blkio weight is from 10 to 1000")
    if res.cpuset_cpus is not None and available_cpus:
        _cpu_list(res.cpuset_cpus, "--cpuset-cpus", available_cpus)
    if res.cpuset_mems is not None and available_mems:
        _cpu_list(res.cpuset_mems, "--cpuset-mems", available_mems)


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares → v2 cpu.weight, runc's and crun's formula (1024 → 100)."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    return math.ceil(10 ** ((log * log + 125 * log) / 612.0 - 7.0 / 34.0))


def blkio_to_io_weight(weight: int) -> int:
    """v1 blkio.weight (10–1000) → v2 io.weight (1–10000)."""
    return 1 + (weight - 10) * 9999 // 990
