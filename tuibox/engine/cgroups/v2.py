"""cgroup v2: one unified tree; containers are leaves under ``tuibox/``."""

from __future__ import annotations

import time
from pathlib import Path

from .driver import rmdir_tree

WANTED = ("cpu", "cpuset", "io", "memory", "pids")


class V2Driver:
    version = 2
    name = "cgroupfs"

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, rel: str) -> None:
        parts = Path(rel).parts
        for depth in range(len(parts)):
            parent = self.root.joinpath(*parts[:depth])
            (parent / parts[depth]).mkdir(exist_ok=True)
            available = (parent / "cgroup.controllers").read_text().split()
            enable = " ".join(f"+{c}" for c in WANTED if c in available)
            if enable:
                (parent / "cgroup.subtree_control").write_text(enable)

    def procs_files(self, rel: str) -> list[Path]:
        return [self.root / rel / "cgroup.procs"]

    def bind_dirs(self, rel: str) -> list[tuple[str, str]]:
        return []

    def pids(self, rel: str) -> list[int]:
        try:
            return [int(x) for x in (self.root / rel / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def remove(self, rel: str) -> bool:
        for attempt in range(20):
            if rmdir_tree(self.root / rel):
                return True
            time.sleep(0.005 * (attempt + 1))
        return False
