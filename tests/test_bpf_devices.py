"""The cgroup v2 device program, loaded into this kernel and tried by real processes.

This host is cgroup v1 for its controllers, but the kernel runs device programs attached
to its cgroup2 tree (``/sys/fs/cgroup/unified``) all the same, so the program, the
loader and the replace logic are tested here (the v2 guest, tests/v2/test_devices_v2.py,
tries the program on the full container path).  Only /dev/null, /dev/zero and /dev/full
are ever opened, and nodes are made only in the test's own directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuibox.engine import SetupError
from tuibox.engine.cgroups import bpf_devices
from tuibox.engine.cgroups.devices import DevicePolicy, DeviceRule, policy_for
from tuibox.engine.runtime import _libc


def _cgroup2_root() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    return None


@pytest.fixture
def cgroups() -> Iterator[list[Path]]:
    """Fresh cgroup2 directories (made on demand: ``mk()``), removed at the end."""
    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    made: list[Path] = []
    yield made
    for d in reversed(made):
        deadline = time.monotonic() + 5
        while d.exists():
            try:
                d.rmdir()
            except OSError:
                assert time.monotonic() < deadline, f"cannot remove {d}"
                time.sleep(0.01)


def mk(made: list[Path], parent: Path | None = None) -> Path:
    root = parent or _cgroup2_root()
    assert root is not None
    d = root / f"tuibox-bpftest-{os.getpid()}-{len(made)}"
    d.mkdir()
    made.append(d)
    return d


def programs(cgroup: Path) -> list[int]:
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf_devices.attached(fd)
    finally:
        os.close(fd)


def try_in(cgroup: Path, ops: list[tuple[str, str, int]], scratch: Path | None = None
           ) -> list[str]:
    """Run ``ops`` (("open", path, flags) or ("mknod", path, mode|dev)) in a child placed
    in ``cgroup``; "ok" or the errno name for each.  ``scratch`` gets a tmpfs of the
    child's own (gone with it), without nodev, for the nodes it makes."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if scratch is not None:
                _libc.unshare(_libc.CLONE_NEWNS)
                _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
                _libc.mount("tmpfs", str(scratch), "tmpfs", 0, "size=64k")
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            results = []
            for op, path, arg in ops:
                try:
                    if op == "open":
                        os.close(os.open(path, arg))
                    else:
                        os.mknod(path, arg >> 32, arg & 0xFFFFFFFF)
                    results.append("ok")
                except OSError as exc:
                    results.append(errno.errorcode[exc.errno or 0])
            os.write(w, " ".join(results).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out.split()


def node(kind: int, major: int, minor: int) -> int:
    return ((kind | 0o600) << 32) | os.makedev(major, minor)


def test_program_layout_is_runcs() -> None:
    """Six prologue instructions, a block per rule, deny at the end (runc/crun's shape)."""
    code = bpf_devices.program(DevicePolicy.of([DeviceRule.parse("c 1:3 rwm"),
                                                DeviceRule.parse("c *:* m")]))
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    assert [op for op, *_ in insns[:6]] == [0x61, 0x54, 0x61, 0x74, 0x61, 0x61]
    # c *:* m: type test, access test (3), allow = 6 instructions; jumps skip the block.
    block = insns[6:12]
    assert [op for op, *_ in block] == [0x55, 0xBC, 0x54, 0x5D, 0xB7, 0x95]
    assert block[0][2] == 5 and block[3][2] == 2 and block[2][3] == 1
    # c 1:3 rwm: type, major, minor, allow = 5 instructions, no access test.
    block = insns[12:17]
    assert [(op, off, imm) for op, _, off, imm in block] == [
        (0x55, 4, 2), (0x55, 3, 1), (0x55, 2, 3), (0xB7, 0, 1), (0x95, 0, 0)]
    assert insns[17:] == [(0xB7, 0, 0, 0), (0x95, 0, 0, 0)]
    assert len(bpf_devices.program(policy_for(None, []))) // 8 == 69


def test_policy_decides_every_open_and_mknod(cgroups: list[Path], tmp_path: Path) -> None:
    cg = mk(cgroups)
    bpf_devices.install(cg, DevicePolicy.of(
        DeviceRule.parse(r) for r in ("c *:* m", "c 1:5 rwm", "c 1:3 r")))
    results = try_in(cg, [
        ("open", "/dev/zero", os.O_RDWR), ("open", "/dev/null", os.O_RDONLY),
        ("open", "/dev/null", os.O_WRONLY), ("open", "/dev/full", os.O_RDONLY),
        ("mknod", str(tmp_path / "full"), node(stat.S_IFCHR, 1, 7)),
        ("mknod", str(tmp_path / "blk"), node(stat.S_IFBLK, 7, 0)),
    ], scratch=tmp_path)
    assert results == ["ok", "ok", "EPERM", "EPERM", "ok", "EPERM"]
    # Outside the cgroup nothing changed.
    os.close(os.open("/dev/full", os.O_RDONLY))


def test_default_policy_in_the_kernel(cgroups: list[Path], tmp_path: Path) -> None:
    cg = mk(cgroups)
    bpf_devices.install(cg, policy_for(None, []))
    results = try_in(cg, [
        ("open", "/dev/null", os.O_RDWR), ("open", "/dev/full", os.O_RDWR),
        ("mknod", str(tmp_path / "kmsg"), node(stat.S_IFCHR, 1, 11)),
        ("open", str(tmp_path / "kmsg"), os.O_RDONLY),
        ("mknod", str(tmp_path / "loop"), node(stat.S_IFBLK, 7, 0)),
        ("open", str(tmp_path / "loop"), os.O_RDONLY),
    ], scratch=tmp_path)
    assert results == ["ok", "ok", "ok", "EPERM", "ok", "EPERM"]


def test_reinstall_replaces_never_piles_up(cgroups: list[Path]) -> None:
    cg = mk(cgroups)
    deny_null = DevicePolicy.of([DeviceRule.parse("c 1:5 rwm")])
    first = bpf_devices.install(cg, deny_null)
    assert programs(cg) == [first]
    for _ in range(70):  # past the old per-cgroup limit of 64 (runc issue 2366)
        latest = bpf_devices.install(cg, policy_for(None, []))
    assert programs(cg) == [latest]
    assert try_in(cg, [("open", "/dev/null", os.O_RDWR)]) == ["ok"]  # the old one is gone
    wait_released(first)
    # Two foreign programs attached next to ours: all are replaced by one.
    cgfd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(2):
            fd = bpf_devices.load(bpf_devices.program(deny_null))
            bpf_devices.attach(cgfd, fd, bpf_devices.F_ALLOW_MULTI)
            os.close(fd)
        assert len(bpf_devices.attached(cgfd)) == 3
    finally:
        os.close(cgfd)
    latest = bpf_devices.install(cg, policy_for(None, []))
    assert programs(cg) == [latest]


def wait_released(prog: int) -> None:
    deadline = time.monotonic() + 10
    while bpf_devices.exists(prog):
        assert time.monotonic() < deadline, f"program {prog} still held by the kernel"
        time.sleep(0.02)


def test_program_goes_with_the_cgroup(cgroups: list[Path]) -> None:
    cg = mk(cgroups)
    prog = bpf_devices.install(cg, policy_for(None, []))
    assert bpf_devices.exists(prog)
    cg.rmdir()
    wait_released(prog)


def test_a_broken_program_is_refused_with_the_verifiers_reason() -> None:
    broken = bpf_devices._insn(bpf_devices.EXIT)  # exit with R0 never set
    with pytest.raises(SetupError) as info:
        bpf_devices.load(broken)
    assert info.value.stage == "device program load"
    assert "R0" in info.value.detail  # "R0 !read_ok"


def test_attach_refused_by_a_parent_is_an_error(cgroups: list[Path]) -> None:
    """A parent holding an exclusive (non-multi) device program: nothing can be attached
    below it, and ``install`` says so instead of leaving the cgroup unconfined."""
    parent = mk(cgroups)
    child = mk(cgroups, parent)
    fd = bpf_devices.load(bpf_devices.program(DevicePolicy(allow_all=True)))
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bpf_devices.attach(pfd, fd, 0)
        with pytest.raises(SetupError) as info:
            bpf_devices.install(child, policy_for(None, []))
        assert info.value.stage == "device program attach"
        assert programs(child) == []
    finally:
        with contextlib.suppress(OSError):
            bpf_devices.detach(pfd, fd)
        os.close(pfd)
        os.close(fd)
