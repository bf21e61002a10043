"""cgroup v2: one unified tree; containers are leaves under ``tuibox/``.

Where the containers go: ``tuibox/<id>`` under the root of the hierarchy as mounted at
/sys/fs/cgroup, as Docker's and Podman's cgroupfs drivers do, wherever tuibox itself
runs (a login session's scope has the user's shell in it: no place for child cgroups).
Inside a cgroup namespace (a container, LXC, systemd-nspawn) that root is the delegated
subtree, and it may hold processes: cgroup v2 lets a non-root cgroup hand controllers
down only when it holds none ("no internal processes"), so they move into an ``init``
leaf first, as Podman and Docker's dind do.

This host is v1 for its controllers: the v2 limits and stats are proven in a pure v2
guest (tests/v2/test_resources_v2.py) and against a model of the files here.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from . import bpf_devices, files
from .devices import DevicePolicy
from .driver import create_retrying, remove_dirs
from .resources import Resources, blkio_to_io_weight, shares_to_weight

WANTED = ("cpu", "cpuset", "io", "memory", "pids")
FREEZE_TIMEOUT = 10.0


class V2Driver:
    version = 2
    name = "cgroupfs"

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, rel: str) -> None:
        create_retrying(lambda: self._create(rel))

    def _create(self, rel: str) -> None:
        # Every ancestor hands its controllers down; the leaf itself holds the processes.
        d = self.root
        for part in Path(rel).parts:
            self._hand_down(d)
            d = d / part
            d.mkdir(exist_ok=True)

    def _hand_down(self, d: Path) -> None:
        available = (files.read(d / "cgroup.controllers") or "").split()
        enabled = (files.read(d / "cgroup.subtree_control") or "").split()
        enable = " ".join(f"+{c}" for c in WANTED if c in available and c not in enabled)
        if not enable:
            return  # the usual case after the first container: no write at all
        for attempt in range(10):
            try:
                _write_raw(d / "cgroup.subtree_control", enable)
                return
            except OSError as exc:
                # EBUSY: a non-root cgroup with processes in it (our view's root inside a
                # cgroup namespace). Only that root is ours to rearrange.
                if exc.errno != errno.EBUSY or d != self.root or attempt == 9:
                    files.write(d / "cgroup.subtree_control", enable,
                                flag="cgroup controllers")  # raises, naming the file
                    return
                _evacuate(d, d / "init")


    def procs_files(self, rel: str) -> list[Path]:
        return [self.root / rel / "cgroup.procs"]

    def bind_dirs(self, rel: str) -> list[tuple[str, str]]:
        return []

    def pids(self, rel: str) -> list[int]:
        text = files.read(self.root / rel / "cgroup.procs")
        return [int(x) for x in text.split()] if text else []

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def remove(self, rel: str) -> bool:
        return remove_dirs([self.root / rel])

    # ------------------------------------------------------------------ limits

    def _knob(self, rel: str, name: str, value: str, flag: str) -> None:
        files.write(self.root / rel / name, value, flag=flag)

    def apply(self, rel: str, res: Resources) -> None:
        # --oom-kill-disable has no v2 knob: limits.py drops it with Docker's warning.
        if res.memory is not None:
            self._knob(rel, "memory.max", str(res.memory), "--memory")
            swap = res.effective_memory_swap()
            # v1 counts memory+swap together; v2's memory.swap.max is the swap alone.
            swap_v2 = "max" if swap is None or swap == -1 else str(max(0, swap - res.memory))
            if res.memory_swap not in (None, -1) \
                    or (self.root / rel / "memory.swap.max").exists():
                # No swap accounting: runc skips what was not asked for; asked, it fails.
                self._knob(rel, "memory.swap.max", swap_v2, "--memory-swap")
        if res.memory_reservation is not None:
            self._knob(rel, "memory.low", str(res.memory_reservation), "--memory-reservation")
        if res.cpu_shares:  # 0 is Docker's "not set"
            self._knob(rel, "cpu.weight", str(shares_to_weight(res.cpu_shares)),
                       "--cpu-shares")
        if res.cpu_quota is not None or res.cpu_period is not None:
            quota = "max" if not res.cpu_quota or res.cpu_quota < 0 else str(res.cpu_quota)
            self._knob(rel, "cpu.max", f"{quota} {res.cpu_period or 100_000}", "--cpus")
        if res.cpuset_cpus is not None:
            self._knob(rel, "cpuset.cpus", res.cpuset_cpus, "--cpuset-cpus")
        if res.cpuset_mems is not None:
            self._knob(rel, "cpuset.mems", res.cpuset_mems, "--cpuset-mems")
        limit = res.pids_limit
        self._knob(rel, "pids.max", "max" if limit is None or limit <= 0 else str(limit),
                   "--pids-limit")
        if res.blkio_weight:
            # runc's order: BFQ's weight takes v1's units as they are; io.weight (iocost)
            # has a 1-10000 scale.
            if (self.root / rel / "io.bfq.weight").exists():
                self._knob(rel, "io.bfq.weight", str(res.blkio_weight), "--blkio-weight")
            else:
                self._knob(rel, "io.weight", f"default {blkio_to_io_weight(res.blkio_weight)}",
                           "--blkio-weight")
        devices: dict[tuple[int, int], list[str]] = {}
        for rates, key in ((res.device_read_bps, "rbps"), (res.device_write_bps, "wbps"),
                           (res.device_read_iops, "riops"), (res.device_write_iops, "wiops")):
            for r in rates:
                devices.setdefault((r.major, r.minor), []).append(f"{key}={r.rate}")
        for (major, minor), settings in devices.items():
            self._knob(rel, "io.max", f"{major}:{minor} {' '.join(settings)}",
                       "--device-read/write-bps/iops")

    def apply_devices(self, rel: str, policy: DevicePolicy) -> None:
        # v2 has no devices files: a BPF program is the only device control there is.
        bpf_devices.install(self.root / rel, policy)

    # ------------------------------------------------------------------ freezer

    def freeze(self, rel: str) -> None:
        self._knob(rel, "cgroup.freeze", "1", "pause")
        files.wait_for(lambda: self.frozen(rel), FREEZE_TIMEOUT, "the container to freeze")

    def thaw(self, rel: str) -> None:
        self._knob(rel, "cgroup.freeze", "0", "unpause")
        files.wait_for(lambda: not self.frozen(rel), FREEZE_TIMEOUT, "the container to thaw")

    def frozen(self, rel: str) -> bool:
        return files.keyed(files.read(self.root / rel / "cgroup.events")).get("frozen") == 1

    def kill_all(self, rel: str) -> None:
        self._knob(rel, "cgroup.kill", "1", "kill")

    # ------------------------------------------------------------------ stats

    def forget(self, rel: str) -> None:
        """Nothing is cached on v2: every counter is read on every pass."""

    def counters(self, rel: str) -> files.Counters:
        d = self.root / rel
        cpu = files.keyed(files.read(d / "cpu.stat"))
        mstat = files.keyed(files.read(d / "memory.stat"))
        events = files.keyed(files.read(d / "memory.events"))
        read_b = write_b = 0
        for line in (files.read(d / "io.stat") or "").splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "rbytes":
                    read_b += int(value)
                elif key == "wbytes":
                    write_b += int(value)
        return files.Counters(
            cpu_ns=cpu.get("usage_usec", 0) * 1000,
            throttled_periods=cpu.get("nr_throttled", 0),
            throttled_ns=cpu.get("throttled_usec", 0) * 1000,
            memory_usage=files.read_int(d / "memory.current"),
            inactive_file=mstat.get("inactive_file", 0),
            memory_limit=files.read_int(d / "memory.max", -1),
            oom_kills=events.get("oom_kill", 0),
            pids=files.read_int(d / "pids.current"),
            pids_limit=files.read_int(d / "pids.max", -1),
            block_read=read_b, block_write=write_b,
            psi_cpu=files.psi_some_avg10(files.read(d / "cpu.pressure")),
            psi_memory=files.psi_some_avg10(files.read(d / "memory.pressure")),
            psi_io=files.psi_some_avg10(files.read(d / "io.pressure")))


def _write_raw(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _evacuate(source: Path, leaf: Path) -> None:
    """Move every process of ``source`` into ``leaf`` (one pid per write, as the kernel
    wants); one that exits meanwhile is no loss."""
    leaf.mkdir(exist_ok=True)
    for pid in (files.read(source / "cgroup.procs") or "").split():
        with contextlib.suppress(ProcessLookupError):
            _write_raw(leaf / "cgroup.procs", pid)
