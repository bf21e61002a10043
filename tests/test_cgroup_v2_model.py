"""The v2 driver's limits and stats, against a MODEL of a cgroup v2 directory.

This host's controllers are cgroup v1, so the v2 memory/cpu/io/pids files cannot be
exercised for real here.  The model below is a plain directory with the real file names
and formats from the kernel's cgroup-v2 documentation; it checks what the driver writes
and how it parses what the kernel reports.  The freezer and cgroup.kill of the same driver
run for real in ``test_resources.py`` on this host's unified tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuibox.engine.cgroups.resources import DeviceRate, Resources
from tuibox.engine.cgroups.v2 import V2Driver
from tuibox.engine.errors import InvalidArgument

LEAF_FILES = {
    "cgroup.controllers": "cpuset cpu io memory pids\n",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.events": "populated 1\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.low": "0\n",
    "memory.current": "10485760\n",
    "memory.stat": "anon 4194304\nfile 6291456\ninactive_file 2097152\nactive_file 4194304\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
    "cpu.weight": "100\n",
    "cpu.max": "max 100000\n",
    "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
                "nr_periods 40\nnr_throttled 7\nthrottled_usec 123456\n",
    "cpuset.cpus": "\n",
    "cpuset.mems": "\n",
    "pids.max": "max\n",
    "pids.current": "3\n",
    "io.weight": "default 100\n",
    "io.max": "",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
               "8:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
    "cpu.pressure": "some avg10=1.50 avg60=0.80 avg300=0.10 total=12345\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "memory.pressure": "some avg10=0.25 avg60=0.00 avg300=0.00 total=1\n"
                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "io.pressure": "some avg10=3.00 avg60=0.00 avg300=0.00 total=9\n"
                   "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
}


@pytest.fixture
def model(tmp_path: Path) -> tuple[V2Driver, Path]:
    root = tmp_path / "cgroup-v2-model"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    driver = V2Driver(root)
    driver.create("tuibox/abc")
    (root / "tuibox" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    leaf = root / "tuibox" / "abc"
    for name, text in LEAF_FILES.items():
        (leaf / name).write_text(text)
    return driver, leaf


def test_model_limits_written_in_v2_units(model: tuple[V2Driver, Path]) -> None:
    driver, leaf = model
    res = Resources(memory=256 << 20, memory_reservation=128 << 20, cpu_shares=2048,
                    cpu_period=100_000, cpu_quota=150_000, cpuset_cpus="0-1", pids_limit=64,
                    blkio_weight=500,
                    device_read_bps=[DeviceRate(path="/dev/sda", major=8, minor=0,
                                                rate=1 << 20)],
                    device_write_iops=[DeviceRate(path="/dev/sda", major=8, minor=0,
                                                  rate=100)])
    driver.apply("tuibox/abc", res)
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    # docker's default mem+swap of 2× memory is 1× swap on v2 (swap alone)
    assert (leaf / "memory.swap.max").read_text() == str(256 << 20)
    assert (leaf / "memory.low").read_text() == str(128 << 20)
    assert (leaf / "cpu.weight").read_text() == "174"  # runc's formula for 2048 shares
    assert (leaf / "cpu.max").read_text() == "150000 100000"
    assert (leaf / "cpuset.cpus").read_text() == "0-1"
    assert (leaf / "pids.max").read_text() == "64"
    assert (leaf / "io.weight").read_text() == "default 4950"  # 1 + (500-10)·9999/990
    assert (leaf / "io.max").read_text() == "8:0 rbps=1048576 wiops=100"


def test_model_unlimited_values(model: tuple[V2Driver, Path]) -> None:
    driver, leaf = model
    driver.apply("tuibox/abc", Resources(memory=64 << 20, memory_swap=-1, cpu_quota=-1,
                                         cpu_period=100_000))
    assert (leaf / "memory.swap.max").read_text() == "max"
    assert (leaf / "cpu.max").read_text() == "max 100000"
    assert (leaf / "pids.max").read_text() == "max"


def test_model_v1_only_knob_has_no_file(model: tuple[V2Driver, Path]) -> None:
    """--oom-kill-disable: dropped with Docker's warning before it gets here (limits.py);
    a record that still carries it (made on a v1 host) starts without it, as Docker's."""
    driver, leaf = model
    before = {p.name for p in leaf.iterdir()}
    driver.apply("tuibox/abc", Resources(memory=64 << 20, oom_kill_disable=True))
    assert (leaf / "memory.max").read_text() == str(64 << 20)
    assert {p.name for p in leaf.iterdir()} == before


def test_model_bfq_weight_in_v1_units(model: tuple[V2Driver, Path]) -> None:
    """runc: where BFQ offers io.bfq.weight it takes the blkio weight as it is."""
    driver, leaf = model
    (leaf / "io.bfq.weight").write_text("default 100\n")
    driver.apply("tuibox/abc", Resources(blkio_weight=300))
    assert (leaf / "io.bfq.weight").read_text() == "300"
    assert (leaf / "io.weight").read_text() == "default 100\n"  # untouched


def test_model_no_swap_accounting(model: tuple[V2Driver, Path]) -> None:
    """No memory.swap.max (swapaccount=0): -m alone still works; --memory-swap fails."""
    driver, leaf = model
    (leaf / "memory.swap.max").unlink()
    driver.apply("tuibox/abc", Resources(memory=64 << 20))
    assert (leaf / "memory.max").read_text() == str(64 << 20)
    with pytest.raises(InvalidArgument, match="--memory-swap is not supported"):
        driver.apply("tuibox/abc", Resources(memory=64 << 20, memory_swap=128 << 20))


def test_model_stats_parsed_like_docker(model: tuple[V2Driver, Path]) -> None:
    driver, _ = model
    k = driver.counters("tuibox/abc")
    assert k.cpu_ns == 2_500_000_000  # usage_usec × 1000
    assert k.throttled_periods == 7 and k.throttled_ns == 123_456_000
    assert k.memory_usage == 10485760 and k.inactive_file == 2097152
    assert k.memory_limit == -1  # "max"
    assert k.oom_kills == 1
    assert k.pids == 3 and k.pids_limit == -1
    assert (k.block_read, k.block_write) == (4196, 8192)
    assert (k.psi_cpu, k.psi_memory, k.psi_io) == (1.5, 0.25, 3.0)


def test_model_create_enables_controllers_on_ancestors(model: tuple[V2Driver, Path]) -> None:
    driver, leaf = model
    root = leaf.parent.parent
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +memory +pids"
