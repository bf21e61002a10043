"""Resource control on a pure cgroup v2 host: every flag to its v2 file, live update, stats
(memory.events, PSI), OOM, freeze, cgroup.kill, clean-up (issue #19).

Runs inside the v2 guest (tests/test_v2guest_suite.py boots it once for all of tests/v2,
this file last: the process ends up in a cgroup namespace of its own).  Every test runs
in three places, this process (and so the supervisor it starts) moved there first:

- ``root``: the root cgroup, as under an init without cgroup management;
- ``delegated``: a leaf of /delegated, a subtree with its controllers handed down (a
  service with systemd's Delegate=yes, a login session's scope);
- ``cgroupns``: inside a cgroup namespace rooted at /delegated-ns with this process in it
  (a container, an nspawn machine): /sys/fs/cgroup is that subtree, holding processes.

Containers always go to ``tuibox/<id>`` below the root of the tree we see (v2.py says why).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.v2 import busybox_archive, guest_only, processes_mentioning, wait_until
from tuibox.engine import Engine, RunOptions
from tuibox.engine.dropped import OOM_KILL_DISABLE

CG = Path("/sys/fs/cgroup")
PLACES = ("root", "delegated", "cgroupns")
CONTROLLERS = {"cpu", "cpuset", "io", "memory", "pids"}
HOG = 'x=a; while true; do x="$x$x"; done'

pytestmark = guest_only


def own_cgroup(pid: int | str = "self") -> str:
    return Path(f"/proc/{pid}/cgroup").read_text().strip().removeprefix("0::")


@dataclass
class Box:
    """One place in the tree, its engine, and every container its tests made."""

    place: str
    engine: Engine
    made: list[str] = field(default_factory=list)

    def run(self, script: str, **opts: Any) -> str:
        # network none: the guest's bridge networking is another file's business
        cid = self.engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script],
                                         network="none", **opts)).id
        self.made.append(cid)
        return cid

    def dir(self, cid: str) -> Path:
        rel = self.engine.containers.state(cid).cgroup
        assert rel == f"tuibox/{cid}"
        return CG / rel

    def read(self, cid: str, name: str) -> str:
        return (self.dir(cid) / name).read_text().strip()


def _enter(place: str) -> None:
    """Move this process (and so the supervisor it starts) into ``place``."""
    if place == "root":
        (CG / "cgroup.procs").write_text(str(os.getpid()))
    elif place == "delegated":
        (CG / "delegated/leaf").mkdir(parents=True, exist_ok=True)
        (CG / "delegated/cgroup.subtree_control").write_text(
            " ".join(f"+{c}" for c in sorted(CONTROLLERS)))
        (CG / "delegated/leaf/cgroup.procs").write_text(str(os.getpid()))
    elif place == "cgroupns":
        from tuibox.engine.runtime import _libc

        # unshare(CLONE_NEWNS) refuses a process whose threads share its fs_struct
        assert threading.active_count() == 1 and len(os.listdir("/proc/self/task")) == 1
        (CG / "delegated-ns").mkdir(exist_ok=True)
        (CG / "delegated-ns/cgroup.procs").write_text(str(os.getpid()))
        _libc.unshare(_libc.CLONE_NEWCGROUP | _libc.CLONE_NEWNS)
        _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
        # A fresh mount shows the namespace's root as the whole tree (the same
        # superblock cannot be mounted over its own root: detach the old view first).
        _libc.umount2(str(CG), _libc.MNT_DETACH)
        _libc.mount("cgroup2", str(CG), "cgroup2",
                    _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC)
        assert own_cgroup() == "/"  # the namespace's root, with us in it


@pytest.fixture(scope="module")
def state_root(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("v2") / "root"
    # No supervisor needed yet: one starts in each place.
    Engine(root).images.load(busybox_archive(request))
    return root


@pytest.fixture(scope="module", params=PLACES)
def box(request: pytest.FixtureRequest, state_root: Path) -> Iterator[Box]:
    _enter(request.param)
    b = Box(request.param, Engine(state_root))
    yield b
    for c in b.engine.list(all=True):
        b.engine.remove(c.id, force=True)
    b.engine.shutdown(force=True)
    # Every cgroup went with its container, and the shared parent with the last one.
    wait_until(lambda: not (CG / "tuibox").exists(), "the tuibox cgroup to go")
    wait_until(lambda: not processes_mentioning(str(state_root)), "the supervisor to go")


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[str]:
    """A block device of the test's own (a loop device over a file in its tmp dir)."""
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=True)


@pytest.fixture
def made(box: Box) -> Iterator[Box]:
    """The box, and afterwards: every container of the test removed with its cgroup."""
    first = len(box.made)
    yield box
    ids = box.made[first:]
    for cid in ids:
        if cid in {c.id for c in box.engine.list(all=True)}:
            box.engine.remove(cid, force=True)
    wait_until(lambda: not any((CG / "tuibox" / cid).exists() for cid in ids),
               "the test's cgroups to go")


# ---------------------------------------------------------------------------- limits


def test_every_flag_lands_in_its_v2_file(made: Box, loopdev: str) -> None:
    box = made
    rdev = os.stat(loopdev).st_rdev
    devno = f"{os.major(rdev)}:{os.minor(rdev)}"
    cid = box.run("sleep 120", memory=64 << 20, memory_reservation=32 << 20,
                  memory_swap=96 << 20, cpu_shares=512, cpus=1.5, cpuset_cpus="0",
                  cpuset_mems="0", pids_limit=100, blkio_weight=300,
                  device_read_bps=[f"{loopdev}:1mb"], device_write_bps=[f"{loopdev}:2mb"],
                  device_read_iops=[f"{loopdev}:100"], device_write_iops=[f"{loopdev}:200"])
    expected = {
        "memory.max": str(64 << 20),
        "memory.low": str(32 << 20),
        "memory.swap.max": str(32 << 20),  # Docker: memory-swap − memory
        "cpu.weight": "59",  # runc ≥ 1.3.2 / crun: 512 shares
        "cpu.max": "150000 100000",
        "cpuset.cpus": "0",
        "cpuset.mems": "0",
        "pids.max": "100",
        "io.weight": "default 2930",  # 1 + (300 − 10) × 9999 / 990
        "io.max": f"{devno} rbps={1 << 20} wbps={2 << 20} riops=100 wiops=200",
    }
    assert {name: box.read(cid, name) for name in expected} == expected

    # Docker's defaults and its "unset" zeros; the unlimited spellings.
    plain = box.run("sleep 120", memory=64 << 20, memory_swap=-1, cpu_shares=0,
                    blkio_weight=0)
    assert {name: box.read(plain, name) for name in (
        "memory.swap.max", "memory.low", "cpu.weight", "cpu.max", "pids.max", "io.weight",
        "io.max")} == {
        "memory.swap.max": "max", "memory.low": "0", "cpu.weight": "100",
        "cpu.max": "max 100000", "pids.max": "4096", "io.weight": "default 100", "io.max": ""}
    other = box.run("sleep 120", memory=64 << 20, memory_swap=64 << 20, cpu_period=50_000,
                    cpu_quota=25_000, pids_limit=-1)
    assert [box.read(other, n) for n in ("memory.swap.max", "cpu.max", "pids.max")] == \
        ["0", "25000 50000", "max"]

    # And back: the container reads its own limits through its cgroup namespace.
    inside = box.run("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max "
                     "/sys/fs/cgroup/cpu.max /proc/self/cgroup", memory=48 << 20,
                     pids_limit=77, cpus=0.25)
    assert box.engine.wait(inside) == 0
    lines = [e.data.decode().rstrip("\n") for e in box.engine.logs(inside)]
    assert lines == [str(48 << 20), "77", "25000 100000", "0::/"]


def test_update_changes_the_files_live(made: Box) -> None:
    box = made
    cid = box.run("sleep 120", memory=64 << 20, cpus=0.5, pids_limit=50)
    pid = box.engine.containers.state(cid).pid
    box.engine.update(cid, memory=96 << 20, cpus=1.0, pids_limit=80, cpu_shares=2048,
                      memory_reservation=16 << 20, blkio_weight=500)
    assert {n: box.read(cid, n) for n in (
        "memory.max", "memory.swap.max", "memory.low", "cpu.max", "cpu.weight", "pids.max",
        "io.weight")} == {
        "memory.max": str(96 << 20), "memory.swap.max": str(96 << 20),
        "memory.low": str(16 << 20), "cpu.max": "100000 100000", "cpu.weight": "174",
        "pids.max": "80", "io.weight": "default 4950"}
    state = box.engine.containers.state(cid)
    assert state.running and state.pid == pid  # the same process, never restarted
    box.engine.update(cid, cpu_quota=-1, pids_limit=-1)
    assert [box.read(cid, n) for n in ("cpu.max", "pids.max")] == ["max 100000", "max"]


# ----------------------------------------------------------------- stats and OOM


def test_stats_show_oom_kills_and_pressure(made: Box) -> None:
    box = made
    # The subshell is OOM-killed; the container lives on, busy under a half-CPU quota.
    cid = box.run(f"({HOG}); while true; do :; done", memory=32 << 20, cpus=0.5)
    wait_until(lambda: "oom_kill 1" in box.read(cid, "memory.events"), "the OOM kill")
    box.engine.stats([cid])
    time.sleep(1.0)  # CPU % is a rate: docker stats' one-second interval
    s = box.engine.stats([cid])[cid]
    assert s.oom_kills == 1  # memory.events, not a guess
    assert s.memory_limit == 32 << 20 and s.pids_limit == 4096 and s.pids >= 1
    assert 25 <= s.cpu_percent <= 75 and s.cpu_throttled_periods > 0  # cpu.max 50000/100000
    assert None not in (s.psi_cpu, s.psi_memory, s.psi_io)  # cpu/memory/io.pressure
    assert box.engine.containers.state(cid).running


def test_memory_hog_is_oom_killed_and_reported(made: Box) -> None:
    box = made
    cid = box.run(HOG, memory=32 << 20)
    assert box.engine.wait(cid) == 137
    state = box.engine.inspect(cid)["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    assert "oom" in [e.action for e in box.engine.events(since="5m", follow=False)
                     if e.id == cid]
    # --oom-kill-disable: v2 has no such switch; dropped as Docker does, the OOM killer
    # still acts.
    cid = box.run(HOG, memory=32 << 20, oom_kill_disable=True)
    assert box.engine.containers.config(cid).resources.oom_kill_disable is False
    assert box.engine.wait(cid) == 137
    assert box.engine.inspect(cid)["State"]["OOMKilled"] is True


def test_cli_warns_as_docker_and_shows_v2_counters(made: Box,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    if made.place != "root":
        pytest.skip("once is enough: the CLI's output does not depend on the place")
    from tuibox.cli import main

    root = str(made.engine.paths.root)
    capfd.readouterr()
    assert main(["--root", root, "run", "--rm", "--network", "none", "--oom-kill-disable",
                 "-m", "32m", "busybox", "true"]) == 0
    assert capfd.readouterr().err == f"WARNING: {OOM_KILL_DISABLE}\n"
    cid = made.run(f"({HOG}); sleep 120", memory=32 << 20)
    wait_until(lambda: "oom_kill 1" in made.read(cid, "memory.events"), "the OOM kill")
    capfd.readouterr()
    assert main(["--root", root, "stats", "--no-stream", cid]) == 0
    header, row = capfd.readouterr().out.splitlines()
    assert re.search(r"  PIDS +OOM KILLS +PSI CPU / MEM / IO$", header), header
    # memory.events' OOM kill, then cpu/memory/io.pressure's "some avg10"
    assert re.search(r" 1 +\d+\.\d\d% / \d+\.\d\d% / \d+\.\d\d%$", row), row


# ------------------------------------------------------------- freezer and kill


def test_pause_freezes_through_cgroup_freeze(made: Box) -> None:
    box = made
    cid = box.run("i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done")
    wait_until(lambda: len(list(box.engine.logs(cid))) > 2, "output")
    box.engine.pause(cid)
    assert box.read(cid, "cgroup.freeze") == "1"
    assert "frozen 1" in box.read(cid, "cgroup.events").splitlines()
    assert box.engine.containers.state(cid).status == "paused"
    before = len(list(box.engine.logs(cid)))
    time.sleep(0.5)  # a frozen container prints nothing, however long one looks
    assert len(list(box.engine.logs(cid))) == before
    box.engine.unpause(cid)
    assert "frozen 0" in box.read(cid, "cgroup.events").splitlines()
    wait_until(lambda: len(list(box.engine.logs(cid))) > before, "output after the thaw")
    box.engine.pause(cid)
    box.engine.remove(cid, force=True)  # a frozen container goes too


def test_rm_f_kills_every_process_through_cgroup_kill(made: Box) -> None:
    box = made
    cid = box.run("for i in $(seq 40); do sleep 1000 & done; wait")
    wait_until(lambda: int(box.read(cid, "pids.current")) >= 41, "41 processes")
    # A process outside the container's pid namespace, in its cgroup: killing the
    # container's init does not reach it; only cgroup.kill does.
    holder = subprocess.Popen(["sleep", "1000"])
    try:
        (box.dir(cid) / "cgroup.procs").write_text(str(holder.pid))
        box.engine.remove(cid, force=True)
        assert holder.wait(timeout=15) == -9
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: not (CG / "tuibox" / cid).exists(), "the cgroup to go")


# ----------------------------------------------------------------- the tree itself


def test_where_the_cgroups_are(made: Box) -> None:
    box = made
    cid = box.run("sleep 120")
    supervisor = int(box.engine.supervisor.request({"op": "ping"})["pid"])
    ours = own_cgroup()
    assert own_cgroup(supervisor) == ours  # it runs where we started it
    assert own_cgroup(box.engine.containers.state(cid).pid) == f"/tuibox/{cid}"
    parent = CG / "tuibox"
    assert parent.joinpath("cgroup.procs").read_text() == ""  # no internal processes
    assert set(parent.joinpath("cgroup.subtree_control").read_text().split()) >= CONTROLLERS
    assert set(box.read(cid, "cgroup.controllers").split()) >= CONTROLLERS
    if box.place == "root":
        assert ours == "/"  # the root may hold processes and hand controllers down
    elif box.place == "delegated":
        assert ours == "/delegated/leaf"
    else:
        # The namespace's root held this process: it moved to a leaf so the root could
        # hand its controllers down (v2's no-internal-processes rule).
        assert ours == "/init"
        assert (CG / "cgroup.procs").read_text() == ""
        assert set((CG / "cgroup.subtree_control").read_text().split()) >= CONTROLLERS
        # ... and the tree we see is that subtree: only a non-root cgroup can freeze.
        assert os.readlink("/proc/self/ns/cgroup") != os.readlink("/proc/1/ns/cgroup")
        assert (CG / "cgroup.freeze").exists()
