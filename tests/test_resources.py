"""Resource control on real containers and this host's real cgroup v1 controllers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tuibox.engine import Engine, InvalidArgument, RunOptions, SetupError
from tuibox.engine.cgroups import detect_driver
from tuibox.engine.cgroups.resources import shares_to_weight

V1 = Path("/sys/fs/cgroup")


def run_d(engine: Engine, script: str, **opts: object) -> str:
    return engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script],
                                 **opts)).id


def cg(controller: str, cid: str, name: str) -> str:
    return (V1 / controller / "tuibox" / cid / name).read_text().strip()


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_limits_are_written_in_each_controller(engine: Engine) -> None:
    cid = run_d(engine, "sleep 30", memory=64 << 20, memory_reservation=32 << 20,
                cpu_shares=512, cpus=1.5, cpuset_cpus="0", pids_limit=100, blkio_weight=300)
    assert cg("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert cg("memory", cid, "memory.memsw.limit_in_bytes") == str(128 << 20)  # docker: 2×
    assert cg("memory", cid, "memory.soft_limit_in_bytes") == str(32 << 20)
    assert cg("cpu", cid, "cpu.shares") == "512"
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "150000"
    assert cg("cpu", cid, "cpu.cfs_period_us") == "100000"
    assert cg("cpuset", cid, "cpuset.cpus") == "0"
    assert cg("pids", cid, "pids.max") == "100"
    weight = V1 / "blkio/tuibox" / cid / "blkio.weight"
    if not weight.exists():
        weight = weight.with_name("blkio.bfq.weight")
    assert weight.read_text().split()[-1] == "300"


def test_default_pids_limit_and_lifting_it(engine: Engine) -> None:
    cid = run_d(engine, "sleep 30")
    assert cg("pids", cid, "pids.max") == "4096"
    cid = run_d(engine, "sleep 30", pids_limit=-1)
    assert cg("pids", cid, "pids.max") == "max"


def test_cpuset_visible_inside(engine: Engine) -> None:
    from tests.test_container_runtime import sh

    _, out, _ = sh(engine, "grep Cpus_allowed_list /proc/self/status", cpuset_cpus="0")
    assert out.split()[-1] == "0"


def test_memory_hog_is_oom_killed_and_reported(engine: Engine) -> None:
    cid = run_d(engine, "x=a; while true; do x=\"$x$x\"; done", memory=32 << 20)
    assert engine.wait(cid) == 137
    state = engine.inspect(cid)["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    actions = [e.action for e in engine.events(since="1m", follow=False) if e.id == cid]
    assert "oom" in actions


def test_fork_bomb_is_contained(engine: Engine) -> None:
    cid = run_d(engine, "bomb() { bomb | bomb & }; bomb; sleep 30", pids_limit=64)
    time.sleep(2)
    pids = int(cg("pids", cid, "pids.current"))
    assert pids <= 64
    assert int(cg("pids", cid, "pids.events").split()[-1]) > 0  # forks were refused
    # the host still works: we can start another container at once
    assert engine.wait(run_d(engine, "true")) == 0
    engine.remove(cid, force=True)


def test_cpus_half_core_measures_about_half(engine: Engine) -> None:
    cid = run_d(engine, "while true; do :; done", cpus=0.5)
    engine.stats([cid])
    time.sleep(2)
    sample = engine.stats([cid])[cid]
    assert 35 <= sample.cpu_percent <= 65, sample.cpu_percent
    assert sample.cpu_throttled_periods > 0


def test_update_is_live_and_survives_restart(engine: Engine) -> None:
    cid = run_d(engine, "while true; do :; done", cpus=0.5, memory=64 << 20)
    engine.update(cid, cpus=1.0, memory=128 << 20, pids_limit=50)
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "100000"
    assert cg("memory", cid, "memory.limit_in_bytes") == str(128 << 20)
    assert cg("pids", cid, "pids.max") == "50"
    # The container feels it: its busy loop goes above the old 0.5-CPU cap, which the old
    # quota never allows in a 2 s window (50 % plus at most one period's overshoot, ~2.5 %).
    # A loaded host may starve it in some windows, so look at several until a deadline.
    seen: list[float] = []
    deadline = time.monotonic() + 60
    engine.stats([cid])
    while time.monotonic() < deadline and not (seen and seen[-1] > 60):
        time.sleep(2)  # the measuring window, not synchronisation
        seen.append(engine.stats([cid])[cid].cpu_percent)
    assert seen and seen[-1] > 60, seen
    engine.restart(cid, timeout=0)
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "100000"
    assert cg("pids", cid, "pids.max") == "50"
    assert engine.inspect(cid)["State"]["Running"]


def test_update_refused_keeps_old_limits(engine: Engine) -> None:
    cid = run_d(engine, "sleep 30", memory=64 << 20)
    with pytest.raises(InvalidArgument):
        engine.update(cid, memory=1 << 20)
    assert cg("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert engine.containers.config(cid).resources.memory == 64 << 20


def test_bad_limits_are_clear_errors(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="kernel-memory"):
        run_d(engine, "true", kernel_memory=64 << 20)
    with pytest.raises(InvalidArgument, match="minimum memory"):
        run_d(engine, "true", memory=1 << 20)
    with pytest.raises(InvalidArgument, match="CPUs"):
        run_d(engine, "true", cpus=64.0)
    with pytest.raises(InvalidArgument, match="cpuset"):
        run_d(engine, "true", cpuset_cpus="7")
    with pytest.raises(InvalidArgument, match="conflicting"):
        run_d(engine, "true", cpus=1.0, cpu_quota=50000)
    with pytest.raises(InvalidArgument, match="blkio weight"):
        run_d(engine, "true", blkio_weight=5)
    with pytest.raises(InvalidArgument, match="block device"):
        run_d(engine, "true", device_read_bps=["/etc/passwd:1mb"])
    assert engine.list(all=True) == []


def test_device_throttle_written(engine: Engine) -> None:
    root_dev = os.stat("/").st_dev
    dev = next((str(p) for p in Path("/dev").iterdir()
                if p.is_block_device() and os.stat(p).st_rdev == root_dev), None)
    if dev is None:
        pytest.fail("no block device for / found")
    cid = run_d(engine, "sleep 30", device_write_bps=[f"{dev}:1mb"])
    major, minor = os.major(root_dev), os.minor(root_dev)
    assert f"{major}:{minor} {1 << 20}" in cg("blkio", cid, "blkio.throttle.write_bps_device")


def test_pause_freezes_and_unpause_resumes(engine: Engine) -> None:
    cid = run_d(engine, "i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done")
    time.sleep(0.3)
    engine.pause(cid)
    assert engine.containers.state(cid).status == "paused"
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    for pid in detect_driver().pids(f"tuibox/{cid}"):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in ("D", "S")  # frozen tasks sleep in the freezer
    before = len(list(engine.logs(cid)))
    time.sleep(0.5)
    assert len(list(engine.logs(cid))) == before  # the log stops growing
    assert engine.inspect(cid)["State"]["Paused"] is True
    engine.unpause(cid)
    time.sleep(0.3)
    assert len(list(engine.logs(cid))) > before
    assert engine.containers.state(cid).status == "running"


def test_stop_kill_and_rm_of_a_paused_container(engine: Engine) -> None:
    a = run_d(engine, "sleep 60")
    engine.pause(a)
    engine.stop(a, timeout=1)
    st = engine.containers.state(a)
    assert not st.running and not st.paused and st.exit_code == 137
    b = run_d(engine, "trap 'exit 4' USR1; while true; do sleep 0.1; done")
    time.sleep(0.2)
    engine.pause(b)
    engine.kill(b, signal_="USR1")
    assert engine.wait(b) == 4
    c = run_d(engine, "sleep 60")
    engine.pause(c)
    engine.remove(c, force=True)


def test_freeze_a_container_that_forks_in_a_loop(engine: Engine) -> None:
    cid = run_d(engine, "while true; do /bin/true & done", pids_limit=200)
    time.sleep(0.5)
    engine.pause(cid)
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    engine.unpause(cid)
    engine.remove(cid, force=True)


def test_v2_freezer_and_kill_on_this_hosts_unified_tree() -> None:
    """The v2 driver's freeze, thaw and cgroup.kill, for real on /sys/fs/cgroup/unified."""
    import subprocess

    from tuibox.engine.cgroups.v2 import V2Driver

    unified = Path("/sys/fs/cgroup/unified")
    driver = V2Driver(unified)
    rel = f"tuibox/v2test-{os.getpid()}"
    driver.create(rel)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (unified / rel / "cgroup.procs").write_text(str(proc.pid))
        driver.freeze(rel)
        assert driver.frozen(rel)
        driver.thaw(rel)
        assert not driver.frozen(rel)
        driver.kill_all(rel)
        assert proc.wait(timeout=5) == -9
    finally:
        proc.kill()
        proc.wait()
        assert driver.remove(rel)


def test_v1_v2_weight_conversion() -> None:
    assert shares_to_weight(1024) == 100
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(512) < 100 < shares_to_weight(2048)


def test_stats_fields_and_one_pass_for_many(engine: Engine) -> None:
    ids = [run_d(engine, "sleep 60") for _ in range(20)]
    busy = run_d(engine, "dd if=/dev/zero of=/tmp/f bs=1M count=20; sleep 60", memory=256 << 20,
                 network="none")
    time.sleep(1)
    samples = engine.stats()
    assert set(samples) == {*ids, busy}
    s = samples[busy]
    assert s.memory_limit == 256 << 20
    assert s.pids >= 1 and s.pids_limit == 4096
    assert 0 <= s.memory_percent < 100
    assert s.net_rx == 0 and s.net_tx == 0  # network none: loopback does not count
    assert s.psi_cpu is not None  # this host's unified tree gives per-container PSI


def test_top_lists_processes(engine: Engine) -> None:
    cid = run_d(engine, "sleep 60 & sleep 61")
    time.sleep(0.3)
    commands = sorted(p.command for p in engine.top(cid))
    assert commands[-2:] == ["sleep 60", "sleep 61"]


def test_failed_limit_is_setup_error_naming_the_step(engine: Engine) -> None:
    cid = engine.create(RunOptions(image="busybox", command=["true"], cpuset_mems="0")).id
    config = engine.containers.config(cid)
    config.resources.cpuset_mems = "99"  # bypass validation to see the kernel refuse it
    engine.containers.write_config(config)
    with pytest.raises(SetupError) as info:
        engine.start(cid)
    assert info.value.stage == "cgroup limits"
    assert not engine.containers.state(cid).running


def test_200_containers_one_stats_pass_and_many_fds(engine: Engine) -> None:
    """200 running containers: the supervisor holds over 1024 fds (it once broke select()),
    and one stats pass covers them all by reading files, with no process per container."""
    ids = {engine.run(RunOptions(image="busybox", command=["sleep", "60"])).id
           for _ in range(200)}
    supervisor = int(engine.supervisor.request({"op": "ping"})["pid"])
    assert len(os.listdir(f"/proc/{supervisor}/fd")) > 1024
    children_before = set(os.listdir("/proc"))
    samples = engine.stats()
    assert set(samples) == ids
    assert all(s.pids == 1 and s.memory_usage > 0 for s in samples.values())
    new = {p for p in set(os.listdir("/proc")) - children_before if p.isdigit()}
    assert not any("tuibox" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
                   for p in new if Path(f"/proc/{p}").exists())
    # and the supervisor still answers and starts more
    assert engine.wait(engine.run(RunOptions(image="busybox", command=["true"])).id) == 0


def test_busy_cgroup_is_retried_not_leaked(engine: Engine) -> None:
    """A cgroup the kernel still holds when its container exits is removed later."""
    import subprocess

    cid = run_d(engine, "sleep 60")
    holder = subprocess.Popen(["sleep", "60"])  # a host process parked in the cgroup
    try:
        (V1 / "pids/tuibox" / cid / "cgroup.procs").write_text(str(holder.pid))
        engine.stop(cid, timeout=0)
        assert (V1 / "pids/tuibox" / cid).exists()  # busy: could not be removed yet
        (V1 / "pids/cgroup.procs").write_text(str(holder.pid))  # the holder leaves
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: not any((V1 / c / "tuibox" / cid).exists()
                               for c in ("pids", "memory", "cpu", "freezer")), timeout=10)


def test_every_other_flag_lands_in_its_v1_file(engine: Engine, cli: Any,
                                               tmp_path: Path) -> None:
    """The flags test_limits_are_written_in_each_controller leaves out, and Docker's
    "unset" and "unlimited" spellings (the v2 side: tests/v2/test_resources_v2.py)."""
    import subprocess

    image = tmp_path / "disk.img"  # a block device of the test's own, for the throttles
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        rdev = os.stat(loop).st_rdev
        devno = f"{os.major(rdev)}:{os.minor(rdev)}"
        cid = run_d(engine, "sleep 30", memory=64 << 20, memory_swap=96 << 20,
                    oom_kill_disable=True, cpu_period=50_000, cpu_quota=25_000,
                    cpuset_mems="0", device_read_bps=[f"{loop}:1mb"],
                    device_write_bps=[f"{loop}:2mb"], device_read_iops=[f"{loop}:100"],
                    device_write_iops=[f"{loop}:200"])
        assert cg("memory", cid, "memory.memsw.limit_in_bytes") == str(96 << 20)
        assert "oom_kill_disable 1" in cg("memory", cid, "memory.oom_control").splitlines()
        assert cg("cpu", cid, "cpu.cfs_period_us") == "50000"
        assert cg("cpu", cid, "cpu.cfs_quota_us") == "25000"
        assert cg("cpuset", cid, "cpuset.mems") == "0"
        assert [cg("blkio", cid, f"blkio.throttle.{knob}") for knob in (
            "read_bps_device", "write_bps_device", "read_iops_device",
            "write_iops_device")] == [f"{devno} {1 << 20}", f"{devno} {2 << 20}",
                                      f"{devno} 100", f"{devno} 200"]
        engine.remove(cid, force=True)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)
    cid = run_d(engine, "sleep 30", memory=64 << 20, memory_swap=-1, cpu_quota=-1,
                cpu_shares=0, blkio_weight=0)
    assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) >= 2**62  # unlimited
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "-1"
    assert cg("cpu", cid, "cpu.shares") == "1024"  # 0 is Docker's "not set"
    # v1 has the OOM-killer switch: no warning here (a v2 host drops it with one).
    proc = cli("run", "--rm", "--network", "none", "--oom-kill-disable", "-m", "32m",
               "busybox", "true")
    assert proc.stderr == ""
