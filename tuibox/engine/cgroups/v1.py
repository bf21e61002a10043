"""cgroup v1: one directory per controller hierarchy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .driver import rmdir_tree


@dataclass(frozen=True)
class Hierarchy:
    mount: Path
    controllers: tuple[str, ...]

    @property
    def name(self) -> str:
        return ",".join(self.controllers)


class V1Driver:
    version = 1
    name = "cgroupfs"

    def __init__(self, hierarchies: list[Hierarchy]) -> None:
        self.hierarchies = hierarchies

    @classmethod
    def from_mountinfo(cls) -> V1Driver:
        found: dict[Path, Hierarchy] = {}
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] != "cgroup":
                    continue
                opts = fields[sep + 3].split(",")
                ctrls = tuple(o for o in opts if o not in ("rw", "ro", "relatime", "noexec",
                                                            "nosuid", "nodev", "clone_children",
                                                            "xattr", "noprefix", "cpuset_v2_mode")
                              and not o.startswith(("name=", "release_agent=")))
                if ctrls:  # named hierarchies (name=systemd) carry no resources
                    mount = Path(fields[4])
                    found.setdefault(mount, Hierarchy(mount, ctrls))
        return cls(list(found.values()))

    def controller_dir(self, controller: str, rel: str) -> Path | None:
        for h in self.hierarchies:
            if controller in h.controllers:
                return h.mount / rel
        return None

    def create(self, rel: str) -> None:
        for h in self.hierarchies:
            path = h.mount / rel
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
                path.mkdir(parents=True, exist_ok=True)

    def procs_files(self, rel: str) -> list[Path]:
        return [h.mount / rel / "cgroup.procs" for h in self.hierarchies]

    def bind_dirs(self, rel: str) -> list[tuple[str, str]]:
        return [(h.name, str(h.mount / rel)) for h in self.hierarchies]

    def pids(self, rel: str) -> list[int]:
        for h in self.hierarchies:
            try:
                return [int(x) for x in (h.mount / rel / "cgroup.procs").read_text().split()]
            except OSError:
                continue
        return []

    def exists(self, rel: str) -> bool:
        return any((h.mount / rel).exists() for h in self.hierarchies)

    def remove(self, rel: str) -> bool:
        # A cgroup whose last task just died can be briefly busy: retry a little.
        for attempt in range(20):
            if all([rmdir_tree(h.mount / rel) for h in self.hierarchies]):
                return True
            time.sleep(0.005 * (attempt + 1))
        return False
