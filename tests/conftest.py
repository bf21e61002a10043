"""Shared fixtures: a busybox image built by our own code, engines on private roots, and
an autouse leak check (mounts, cgroups, links and nftables tables, processes, held locks)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuibox.engine import Engine

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def _tuibox_cgroups() -> set[str]:
    found = set()
    for base in CGROUP_ROOT.glob("*/tuibox"):
        found.add(str(base))  # the shared parent goes too once it is empty
        found.update(str(p) for p in base.iterdir() if p.is_dir())
    return found


def _network_things() -> set[str]:
    """tuibox's bridges and veths, and its nftables tables."""
    links = {p.name for p in Path("/sys/class/net").iterdir()
             if p.name.startswith(("tbx-", "tuibox", "veth"))}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return links | {line.strip() for line in tables.splitlines() if " tuibox" in line}


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _held_locks(root: Path) -> list[str]:
    held = []
    for lock in root.rglob("*.lock"):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(str(lock))
        finally:
            os.close(fd)
    return held


@pytest.fixture(scope="session")
def busybox_archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.imagefixtures import build_busybox_archives

    return build_busybox_archives(tmp_path_factory.mktemp("busybox"))


def _cleanup(engine: Engine) -> None:
    for c in engine.list(all=True):
        try:
            engine.remove(c.id, force=True)
        except Exception as exc:  # report, then keep cleaning
            print(f"cleanup: {c.id[:12]}: {exc}", file=sys.stderr)
    engine.shutdown(force=True)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def engine(root: Path, busybox_archives: tuple[Path, Path]) -> Iterator[Engine]:
    eng = Engine(root)
    eng.images.load(busybox_archives[0])
    yield eng
    _cleanup(eng)


@pytest.fixture
def cli(root: Path, engine: Engine) -> Iterator[object]:
    """Run the real ``tuibox`` command line against the test's root."""

    def run(*args: str, check: bool = True, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), *args],
                              capture_output=True, text=True, timeout=timeout,
                              input=input.decode() if input else None)
        if check and proc.returncode != 0:
            raise AssertionError(f"tuibox {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    yield run


@pytest.fixture(autouse=True)
def leak_check(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Fail any test that leaves a mount, a cgroup, a process or a held lock behind."""
    mounts, cgroups, network = _mounts(), _tuibox_cgroups(), _network_things()
    yield
    root = tmp_path / "root"
    deadline = time.monotonic() + 5
    while True:
        leaks = []
        extra_mounts = _mounts() - mounts
        if extra_mounts:
            leaks.append(f"mounts: {sorted(extra_mounts)}")
        extra_cgroups = _tuibox_cgroups() - cgroups
        if extra_cgroups:
            leaks.append(f"cgroups: {sorted(extra_cgroups)}")
        extra_network = _network_things() - network
        if extra_network:
            leaks.append(f"network: {sorted(extra_network)}")
        procs = _processes_mentioning(str(root))
        if procs:
            leaks.append(f"processes: {procs}")
        from tuibox.engine.paths import StatePaths

        if StatePaths(root).run.exists():
            leaks.append(f"runtime dir: {StatePaths(root).run}")
        if root.exists():
            locks = _held_locks(root)
            if locks:
                leaks.append(f"held locks: {locks}")
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in _processes_mentioning(str(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert not leaks, "test left things behind: " + "; ".join(leaks)
