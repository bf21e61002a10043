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


def _mounts_under(prefixes: tuple[str, ...]) -> set[str]:
    """Mount points (with their roots) under the test's own paths only."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].startswith(prefixes):
                found.add(" ".join(fields[3:5]))
    return found


def _root_events(root: Path) -> list[dict[str, object]]:
    """What the test's root did: its events name every container and network it made."""
    import json

    try:
        lines = (root / "events.jsonl").read_text().splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def _owned_cgroups(root: Path) -> set[str]:
    """cgroups of the containers this root created (other roots' never count)."""
    ids = {str(e["id"]) for e in _root_events(root) if e.get("type", "container") == "container"}
    return {str(p) for cid in ids  # v1: one tree per controller; v2: the one tree
            for p in [*CGROUP_ROOT.glob(f"*/tuibox/{cid}"), *CGROUP_ROOT.glob(f"tuibox/{cid}")]}


def _owned_network(root: Path) -> set[str]:
    """This root's bridges (from its network records and events), the veths still enslaved
    to them, and its nftables table."""
    import json

    from tuibox.engine.network.nft import table_name

    bridges = {f"tbx-{str(e['id'])[:11]}" for e in _root_events(root)
               if e.get("type") == "network"}
    for record in (root / "networks").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            bridge = json.loads(record.read_text()).get("bridge")
            if isinstance(bridge, str) and bridge != "tuibox0":
                bridges.add(bridge)
    links = set()
    for link in Path("/sys/class/net").iterdir():
        master = link / "master"
        if link.name in bridges or (master.exists() and master.resolve().name in bridges):
            links.add(link.name)
    table = table_name(root)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return links | {line.strip() for line in tables.splitlines()
                    if line.split()[-1:] == [table]}


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
    """Fail any test that leaves a mount, a cgroup, a link, a table, a process or a held lock
    behind.  It looks only at what the test's own root and paths own, so other tuibox roots,
    dockerd or podman working beside the suite never make it fail."""
    from tuibox.engine.paths import StatePaths

    root = tmp_path / "root"
    run_dir = StatePaths(root).run
    yield
    deadline = time.monotonic() + 5
    while True:
        leaks = []
        mounts = _mounts_under((str(tmp_path), str(run_dir)))
        if mounts:
            leaks.append(f"mounts: {sorted(mounts)}")
        cgroups = _owned_cgroups(root)
        if cgroups:
            leaks.append(f"cgroups: {sorted(cgroups)}")
        network = _owned_network(root)
        if network:
            leaks.append(f"network: {sorted(network)}")
        procs = _processes_mentioning(str(root))
        if procs:
            leaks.append(f"processes: {procs}")
        if run_dir.exists():
            leaks.append(f"runtime dir: {run_dir}")
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
