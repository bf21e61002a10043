"""The driver protocol and host detection.

This host is a v1 "hybrid" (v1 controllers, a cgroup2 tree at /sys/fs/cgroup/unified
holding almost nothing); crun and podman refuse it, we use the v1 controllers.  A pure v2
host (cgroup2 mounted at /sys/fs/cgroup) gets the v2 driver.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .devices import DevicePolicy
    from .files import Counters
    from .resources import Resources

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupDriver(Protocol):
    """What the engine and supervisor need of a cgroup implementation."""

    version: int
    name: str  # "cgroupfs"

    def create(self, rel: str) -> None:
        """Make the container's cgroup (not yet joined)."""

    def procs_files(self, rel: str) -> list[Path]:
        """``cgroup.procs`` files to write a pid into to join every controller."""

    def bind_dirs(self, rel: str) -> list[tuple[str, str]]:
        """(name, host dir) pairs to show read-only under the container's /sys/fs/cgroup."""

    def pids(self, rel: str) -> list[int]:
        """Every process currently in the cgroup."""

    def remove(self, rel: str) -> bool:
        """Remove the cgroup; False if the kernel still holds it (retry later)."""

    def exists(self, rel: str) -> bool:
        """Whether any part of the cgroup is still there."""

    def apply(self, rel: str, res: Resources) -> None:
        """Write every limit that is set; a knob the host lacks is a clear error."""

    def apply_devices(self, rel: str, policy: DevicePolicy) -> None:
        """Let the cgroup's processes open only the devices ``policy`` allows (before any
        process joins); a failure is a ``SetupError``, never an unconfined container."""

    def freeze(self, rel: str) -> None:
        """Freeze every process of the cgroup and wait until the kernel says frozen."""

    def thaw(self, rel: str) -> None:
        """Undo ``freeze``."""

    def frozen(self, rel: str) -> bool:
        """Whether the cgroup is frozen (or freezing)."""

    def kill_all(self, rel: str) -> None:
        """SIGKILL every process in the cgroup."""

    def counters(self, rel: str) -> Counters:
        """Raw cumulative counters for stats; never raises for a missing file."""

    def forget(self, rel: str) -> None:
        """Drop anything cached about ``rel`` (its limits changed, or it is gone)."""


def _is_cgroup2(path: Path) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == str(path):
                    sep = fields.index("-")
                    return fields[sep + 1] == "cgroup2"
    except (OSError, ValueError, IndexError):
        pass
    return False


@functools.cache
def detect_driver() -> CgroupDriver:
    """Pick the driver for this host (cached: the layout does not change under us)."""
    if _is_cgroup2(CGROUP_ROOT):
        from .v2 import V2Driver

        return V2Driver(CGROUP_ROOT)
    from .v1 import V1Driver

    return V1Driver.from_mountinfo()


def read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def rmdir_tree(path: Path) -> bool:
    """Remove a cgroup dir and its children bottom-up; False if one is still busy."""
    if not path.exists():
        return True
    ok = True
    try:
        subs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    except FileNotFoundError:  # another remover (the supervisor, rm -f) was faster
        subs = []
    for sub in subs:
        try:
            os.rmdir(sub)
        except FileNotFoundError:
            pass
        except OSError:
            ok = False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return ok


def remove_dirs(dirs: list[Path]) -> bool:
    """Remove container cgroup dirs, retrying briefly (a cgroup whose last task just died
    can be busy a moment); then the shared ``tuibox`` parent too, once nothing is left
    in it, so an idle host keeps no trace of us."""
    for attempt in range(20):
        if all([rmdir_tree(d) for d in dirs]):
            for d in dirs:
                with contextlib.suppress(OSError):  # busy while other containers live
                    os.rmdir(d.parent)
            return True
        time.sleep(0.005 * (attempt + 1))
    return False


def create_retrying(make: Callable[[], None]) -> None:
    """Run a cgroup ``create``; another engine may remove the shared parent between our
    mkdirs (``remove_dirs``), which shows as FileNotFoundError: try again."""
    for attempt in range(5):
        try:
            make()
            return
        except FileNotFoundError:
            if attempt == 4:
                raise
