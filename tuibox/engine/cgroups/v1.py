"""cgroup v1: one directory per controller hierarchy.

On a hybrid host (v1 controllers plus a cgroup2 tree at /sys/fs/cgroup/unified) each
container also gets a leaf in the unified tree: it carries no controllers there, but it
gives per-container PSI and ``cgroup.kill``, which v1 lacks.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, SetupError
from . import files
from .devices import DevicePolicy, apply_v1
from .driver import create_retrying, remove_dirs
from .resources import Resources

FREEZE_TIMEOUT = 10.0
SLOW_COUNTERS_TTL = 3.0


@dataclass(frozen=True)
class Hierarchy:
    mount: Path
    controllers: tuple[str, ...]

    @property
    def name(self) -> str:
        return ",".join(self.controllers)


_MOUNT_OPTIONS = {"rw", "ro", "relatime", "noexec", "nosuid", "nodev", "clone_children",
                  "xattr", "noprefix", "cpuset_v2_mode", "noatime", "nodiratime"}


class V1Driver:
    version = 1
    name = "cgroupfs"

    def __init__(self, hierarchies: list[Hierarchy], unified: Path | None = None) -> None:
        self.hierarchies = hierarchies
        self.unified = unified
        self._dirs = {c: h.mount for h in hierarchies for c in h.controllers}
        self._slow: dict[str, tuple[float, dict[str, Any]]] = {}

    @classmethod
    def from_mountinfo(cls) -> V1Driver:
        found: dict[Path, Hierarchy] = {}
        unified = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                fstype = fields[sep + 1]
                if fstype == "cgroup2":
                    unified = Path(fields[4])
                    continue
                if fstype != "cgroup":
                    continue
                opts = fields[sep + 3].split(",")
                ctrls = tuple(o for o in opts if o not in _MOUNT_OPTIONS
                              and not o.startswith(("name=", "release_agent=")))
                if ctrls:  # named hierarchies (name=systemd) carry no resources
                    mount = Path(fields[4])
                    found.setdefault(mount, Hierarchy(mount, ctrls))
        return cls(list(found.values()), unified)

    # ------------------------------------------------------------------ layout

    def dir(self, controller: str, rel: str) -> Path:
        mount = self._dirs.get(controller)
        if mount is None:
            raise InvalidArgument(f"the {controller} cgroup controller is not mounted on "
                                  f"this host")
        return mount / rel

    def has(self, controller: str) -> bool:
        return controller in self._dirs

    def create(self, rel: str) -> None:
        create_retrying(lambda: self._create(rel))

    def _create(self, rel: str) -> None:
        for h in self.hierarchies:
            if "cpuset" in h.controllers:
                # A new cpuset cgroup starts empty and refuses tasks: copy from the parent.
                parts = Path(rel).parts
                for depth in range(1, len(parts) + 1):
                    d = h.mount.joinpath(*parts[:depth])
                    d.mkdir(exist_ok=True)
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        if not (d / knob).read_text().strip():
                            (d / knob).write_text((d.parent / knob).read_text())
            else:
                (h.mount / rel).mkdir(parents=True, exist_ok=True)
        if self.unified is not None:
            with contextlib.suppress(OSError):
                (self.unified / rel).mkdir(parents=True, exist_ok=True)

    def procs_files(self, rel: str) -> list[Path]:
        procs = [h.mount / rel / "cgroup.procs" for h in self.hierarchies]
        if self.unified is not None and (self.unified / rel).is_dir():
            procs.append(self.unified / rel / "cgroup.procs")
        return procs

    def bind_dirs(self, rel: str) -> list[tuple[str, str]]:
        return [(h.name, str(h.mount / rel)) for h in self.hierarchies]

    def pids(self, rel: str) -> list[int]:
        for h in self.hierarchies:
            text = files.read(h.mount / rel / "cgroup.procs")
            if text is not None:
                return [int(x) for x in text.split()]
        return []

    def exists(self, rel: str) -> bool:
        dirs = [h.mount / rel for h in self.hierarchies]
        if self.unified is not None:
            dirs.append(self.unified / rel)
        return any(d.exists() for d in dirs)

    def remove(self, rel: str) -> bool:
        self.forget(rel)  # a later container of the same id must not see these counters
        dirs = [h.mount / rel for h in self.hierarchies]
        if self.unified is not None:
            dirs.append(self.unified / rel)
        return remove_dirs(dirs)

    # ------------------------------------------------------------------ limits

    def apply(self, rel: str, res: Resources) -> None:
        """Write every limit that is set (at create, and again on ``update``)."""
        self._memory(rel, res)
        if res.cpu_shares is not None:
            files.write(self.dir("cpu", rel) / "cpu.shares", str(res.cpu_shares),
                        flag="--cpu-shares")
        if res.cpu_period is not None:
            files.write(self.dir("cpu", rel) / "cpu.cfs_period_us", str(res.cpu_period),
                        flag="--cpu-period")
        if res.cpu_quota is not None:
            files.write(self.dir("cpu", rel) / "cpu.cfs_quota_us",
                        str(res.cpu_quota if res.cpu_quota > 0 else -1), flag="--cpu-quota")
        if res.cpuset_cpus is not None:
            files.write(self.dir("cpuset", rel) / "cpuset.cpus", res.cpuset_cpus,
                        flag="--cpuset-cpus")
        if res.cpuset_mems is not None:
            files.write(self.dir("cpuset", rel) / "cpuset.mems", res.cpuset_mems,
                        flag="--cpuset-mems")
        if self.has("pids"):
            limit = res.pids_limit
            files.write(self.dir("pids", rel) / "pids.max",
                        "max" if limit is None or limit <= 0 else str(limit),
                        flag="--pids-limit")
        elif res.pids_limit is not None and res.pids_limit > 0:
            raise InvalidArgument("--pids-limit needs the pids cgroup controller, which this "
                                  "host does not have")
        self._blkio(rel, res)

    def apply_devices(self, rel: str, policy: DevicePolicy) -> None:
        if not self.has("devices"):
            raise SetupError("devices cgroup", "the devices cgroup controller is not mounted "
                             "on this host: containers could open any device")
        apply_v1(self.dir("devices", rel), policy)

    def _memory(self, rel: str, res: Resources) -> None:
        if res.memory is None and res.memory_reservation is None and not res.oom_kill_disable:
            return
        d = self.dir("memory", rel)
        if res.memory is not None:
            swap = res.effective_memory_swap()
            mem_s, swap_s = str(res.memory), str(swap if swap is not None else -1)
            current = files.read_int(d / "memory.limit_in_bytes", -1)
            has_swap = (d / "memory.memsw.limit_in_bytes").exists()
            # The kernel keeps mem+swap >= mem at every step: raise mem+swap first when the
            # memory limit grows, lower the memory limit first when it shrinks.
            if has_swap and 0 <= current < res.memory:
                files.write(d / "memory.memsw.limit_in_bytes", swap_s, flag="--memory-swap")
                files.write(d / "memory.limit_in_bytes", mem_s, flag="--memory")
            else:
                files.write(d / "memory.limit_in_bytes", mem_s, flag="--memory")
                if has_swap:
                    files.write(d / "memory.memsw.limit_in_bytes", swap_s,
                                flag="--memory-swap")
                elif res.memory_swap not in (None, -1):
                    raise InvalidArgument("--memory-swap is not supported on this host: swap "
                                          "accounting (memory.memsw.*) is off")
        if res.memory_reservation is not None:
            files.write(d / "memory.soft_limit_in_bytes", str(res.memory_reservation),
                        flag="--memory-reservation")
        if res.oom_kill_disable:
            files.write(d / "memory.oom_control", "1", flag="--oom-kill-disable")

    def _blkio(self, rel: str, res: Resources) -> None:
        if res.blkio_weight is not None:
            d = self.dir("blkio", rel)
            # Kernels with only the BFQ scheduler's knob name it blkio.bfq.weight.
            name = "blkio.weight" if (d / "blkio.weight").exists() else "blkio.bfq.weight"
            files.write(d / name, str(res.blkio_weight), flag="--blkio-weight")
        for rates, knob, flag in (
                (res.device_read_bps, "read_bps_device", "--device-read-bps"),
                (res.device_write_bps, "write_bps_device", "--device-write-bps"),
                (res.device_read_iops, "read_iops_device", "--device-read-iops"),
                (res.device_write_iops, "write_iops_device", "--device-write-iops")):
            for r in rates:
                files.write(self.dir("blkio", rel) / f"blkio.throttle.{knob}",
                            f"{r.major}:{r.minor} {r.rate}", flag=flag)

    # ------------------------------------------------------------------ freezer

    def freeze(self, rel: str) -> None:
        state = self.dir("freezer", rel) / "freezer.state"
        deadline = time.monotonic() + FREEZE_TIMEOUT
        # A cgroup that forks fast can sit in FREEZING: thaw and retry, as runc does.
        while True:
            files.write(state, "FROZEN", flag="pause")
            for _ in range(50):
                if (files.read(state) or "").strip() == "FROZEN":
                    return
                time.sleep(0.002)
            if time.monotonic() > deadline:
                files.write(state, "THAWED", flag="pause")
                raise InvalidArgument("the container did not freeze in time; it was thawed")
            files.write(state, "THAWED", flag="pause")

    def thaw(self, rel: str) -> None:
        state = self.dir("freezer", rel) / "freezer.state"
        files.write(state, "THAWED", flag="unpause")
        files.wait_for(lambda: (files.read(state) or "").strip() == "THAWED", FREEZE_TIMEOUT,
                       "the container to thaw")

    def frozen(self, rel: str) -> bool:
        if not self.has("freezer"):
            return False
        return (files.read(self.dir("freezer", rel) / "freezer.state") or "").strip() != "THAWED"

    def kill_all(self, rel: str) -> None:
        if self.unified is not None and (self.unified / rel / "cgroup.kill").exists():
            files.write(self.unified / rel / "cgroup.kill", "1", flag="kill")
            return
        for pid in self.pids(rel):
            with contextlib.suppress(ProcessLookupError):
                import os

                os.kill(pid, signal.SIGKILL)

    # ------------------------------------------------------------------ stats

    def counters(self, rel: str) -> files.Counters:
        # Plain strings, not Path joins: a stats pass reads ~12 files per container and
        # pathlib's parsing was most of its cost.
        d = self._dirs
        mem = f"{d['memory']}/{rel}/" if "memory" in d else ""
        cpu = f"{d['cpu']}/{rel}/" if "cpu" in d else ""
        cpuacct = f"{d['cpuacct']}/{rel}/" if "cpuacct" in d else ""
        pids = f"{d['pids']}/{rel}/" if "pids" in d else ""
        blkio = f"{d['blkio']}/{rel}/" if "blkio" in d else ""
        cpu_stat = files.keyed(files.read(cpu + "cpu.stat")) if cpu else {}
        inactive = files.stat_value(files.read(mem + "memory.stat"), "total_inactive_file") \
            if mem else 0
        read_b = write_b = 0
        if blkio:
            for line in (files.read(blkio + "blkio.throttle.io_service_bytes_recursive")
                         or "").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    read_b += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    write_b += int(parts[2])
        slow = self._slow_counters(rel, mem, pids)
        return files.Counters(
            cpu_ns=files.read_int(cpuacct + "cpuacct.usage") if cpuacct else 0,
            throttled_periods=cpu_stat.get("nr_throttled", 0),
            throttled_ns=cpu_stat.get("throttled_time", 0),
            memory_usage=files.read_int(mem + "memory.usage_in_bytes") if mem else 0,
            inactive_file=inactive,
            pids=files.read_int(pids + "pids.current") if pids else 0,
            block_read=read_b, block_write=write_b, **slow)

    def _slow_counters(self, rel: str, mem: str, pids: str) -> dict[str, Any]:
        """Limits, the OOM-kill count and PSI averages (10 s averages themselves) change
        rarely: read them every few seconds, not every pass.  Half the files of a pass."""
        now = time.monotonic()
        cached = self._slow.get(rel)
        if cached is not None and cached[0] > now:
            return cached[1]
        psi: dict[str, float | None] = {"psi_cpu": None, "psi_memory": None, "psi_io": None}
        if self.unified is not None:
            u = f"{self.unified}/{rel}/"
            for key, name in (("psi_cpu", "cpu"), ("psi_memory", "memory"), ("psi_io", "io")):
                psi[key] = files.psi_some_avg10(files.read(f"{u}{name}.pressure"))
        limit = files.read_int(mem + "memory.limit_in_bytes", -1) if mem else -1
        oom = files.stat_value(files.read(mem + "memory.oom_control"), "oom_kill") if mem else 0
        values: dict[str, Any] = {
            "memory_limit": -1 if limit >= 2**62 else limit, "oom_kills": oom,
            "pids_limit": files.read_int(pids + "pids.max", -1) if pids else -1, **psi}
        if len(self._slow) > 4 * 4096:  # forget containers long gone
            self._slow.clear()
        self._slow[rel] = (now + SLOW_COUNTERS_TTL, values)
        return values

    def forget(self, rel: str) -> None:
        """Drop cached counters (after ``update`` or when the container goes)."""
        self._slow.pop(rel, None)
