"""Device escapes, tried as an attacker would, against the devices cgroup.

A default container holds CAP_MKNOD, so it can make a node for any device; what must
stop it is the devices cgroup: the v1 controller on this host, the BPF device program on
a pure v2 kernel (tests/v2/test_devices_v2.py runs these tests there too).  Every probe
opens a node *made inside the container* (or shipped in an image); the only host device
a test uses is a loop device over a file in the test's own temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imagefixtures import TarEntry, layer_tar, write_docker_archive
from tests.test_bpf_devices import programs, wait_released
from tests.test_container_runtime import run_output
from tests.test_userns import auto_root, subids  # noqa: F401 (fixtures)
from tuibox.engine import Engine, RunOptions, SetupError
from tuibox.engine.cgroups import bpf_devices, detect_driver
from tuibox.engine.cgroups.devices import (
    DEFAULT_RULES,
    DevicePolicy,
    DeviceRule,
    apply_v1,
    policy_for,
)

V2 = detect_driver().version == 2
CG = Path("/sys/fs/cgroup/tuibox" if V2 else "/sys/fs/cgroup/devices/tuibox")
v1_only = pytest.mark.skipif(V2, reason="the devices.* files are cgroup v1's")
v2_only = pytest.mark.skipif(not V2, reason="cgroup v2 only: runs in the v2 guest")
EPERM = "Operation not permitted"
Cli = Any  # the conftest fixture: cli(*args, check=True) -> CompletedProcess


def sh(engine: Engine, script: str, **opts: object) -> tuple[int, str, str]:
    opts.setdefault("network", "none")  # nothing here needs one
    return run_output(engine, "/bin/sh", "-c", script, **opts)


def run_d(engine: Engine, *command: str, **opts: object) -> str:
    return engine.run(RunOptions(image="busybox", command=list(command), network="none",
                                 **opts)).id  # type: ignore[arg-type]


def device_control(cid: str) -> list[str] | list[int]:
    """What confines the container: v1's devices.list, or v2's attached program ids."""
    if V2:
        return programs(CG / cid)
    return sorted((CG / cid / "devices.list").read_text().splitlines())


def _root_disk() -> tuple[int, int] | None:
    """The block device the host's / lives on: the prize of a device escape."""
    dev = os.stat("/").st_dev
    return (os.major(dev), os.minor(dev)) if os.major(dev) else None


# (name, kind, major, minor): each was opened from a default container before.
FORBIDDEN = [
    ("kmsg", "c", 1, 11), ("mem", "c", 1, 1), ("port", "c", 1, 4), ("vcs", "c", 7, 0),
    ("tty1", "c", 4, 1), ("ttyS0", "c", 4, 64), ("kvm", "c", 10, 232),
    ("userfaultfd", "c", 10, 126), ("loop-control", "c", 10, 237), ("fuse", "c", 10, 229),
    ("hwrng", "c", 10, 183), ("vsock", "c", 10, 241), ("vhost-net", "c", 10, 238),
    ("loop0", "b", 7, 0), ("sda", "b", 8, 0), ("vda", "b", 254, 0),
]
if _root_disk():
    FORBIDDEN.append(("rootdisk", "b", *_root_disk()))  # type: ignore[arg-type]

# For each node: make it, then open it for reading and for writing in a subshell (a
# `timeout` guards against a serial line that waits for carrier, should a probe pass).
PROBE = """
for spec in {specs}; do
    set -- $(echo "$spec" | tr , ' ')
    if mknod /dev/probe-$1 $2 $3 $4 2>/tmp/err; then echo "$1 mknod ok"
    else echo "$1 mknod $(cat /tmp/err)"; fi
    for dir in '<' '>'; do
        if timeout 2 sh -c "exec 3$dir/dev/probe-$1" 2>/tmp/err; then echo "$1 open$dir ok"
        else echo "$1 open$dir $(cat /tmp/err)"; fi
    done
done
"""


def probe(engine: Engine, devices: list[tuple[str, str, int, int]],
          **opts: object) -> dict[str, str]:
    specs = " ".join(f"{n},{k},{ma},{mi}" for n, k, ma, mi in devices)
    code, out, err = sh(engine, PROBE.format(specs=specs), **opts)
    assert code == 0, err
    return {line.split(" ", 2)[0] + " " + line.split(" ", 2)[1]: line.split(" ", 2)[2]
            for line in out.splitlines()}


def test_any_device_can_be_made_but_none_opened(engine: Engine) -> None:
    results = probe(engine, FORBIDDEN)
    for name, *_ in FORBIDDEN:
        assert results[f"{name} mknod"] == "ok", results  # CAP_MKNOD, as Docker
        assert EPERM in results[f"{name} open<"], (name, results[f"{name} open<"])
        assert EPERM in results[f"{name} open>"], (name, results[f"{name} open>"])


def test_default_devices_still_work(engine: Engine) -> None:
    code, out, err = sh(engine, """
        head -c 4 /dev/zero | od -An -tx1
        echo x > /dev/null && echo null ok
        head -c 8 /dev/urandom | wc -c; head -c 8 /dev/random | wc -c
        echo x > /dev/full 2>/tmp/e; cat /tmp/e
        exec 3<>/dev/ptmx && echo ptmx ok
        (exec 4<>/dev/tty) 2>/tmp/e; cat /tmp/e
        mknod /dev/mynull c 1 3 && echo x > /dev/mynull && echo own null ok
    """)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["00"] * 4
    assert "null ok" in lines and "ptmx ok" in lines and "own null ok" in lines
    assert lines[2:4] == ["8", "8"]
    assert "No space left on device" in out  # /dev/full opened and refused the write
    assert "No such device or address" in out  # /dev/tty: opened, no controlling tty
    assert EPERM not in out


def test_tty_container_uses_its_pts(engine: Engine) -> None:
    code, out, _ = sh(engine, "tty; echo hello > $(tty) && echo pts ok", tty=True)
    assert code == 0
    assert "/dev/pts/0" in out and "pts ok" in out


def test_the_cgroup_holds_exactly_docker_default(engine: Engine) -> None:
    cid = run_d(engine, "sleep", "30")
    if V2:
        assert len(programs(CG / cid)) == 1
    else:
        assert device_control(cid) == sorted(str(r) for r in DEFAULT_RULES)
    assert len(DEFAULT_RULES) == 12 and "c 10:200 rwm" in map(str, DEFAULT_RULES)  # tun


def test_update_and_restart_keep_the_device_rules(engine: Engine, cli: Cli) -> None:
    cid = run_d(engine, "sleep", "60")
    before = device_control(cid)
    engine.update(cid, memory=64 << 20, pids_limit=200, cpu_shares=256)
    assert device_control(cid) == before  # on v2: the very same single program
    for _ in range(2):
        engine.restart(cid, timeout=0)
        after = device_control(cid)
        assert len(after) == 1 if V2 else after == before  # never piled up
    # An exec'd process joins the same cgroup: just as confined.
    proc = cli("exec", cid, "sh", "-c", "mknod /dev/lc c 10 237 && exec 3</dev/lc",
               check=False)
    assert proc.returncode != 0 and EPERM in proc.stderr


def test_a_device_gone_at_start_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    node = tmp_path / "mynull"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    config = engine.create(RunOptions(image="busybox", command=["true"], network="none",
                                      devices=[f"{node}:/dev/mynull"]))
    node.unlink()
    with pytest.raises(SetupError) as info:
        engine.start(config.id)
    assert info.value.stage == "devices" and str(node) in info.value.detail
    assert not engine.inspect(config.id)["State"]["Running"]
    assert not (CG / config.id).exists()


@v1_only
def test_v1_transitions_edit_in_place() -> None:
    """Any policy to any other on a live cgroup, each read back from devices.list."""
    cg = Path(f"/sys/fs/cgroup/devices/tuibox-devtest-{os.getpid()}")
    cg.mkdir()
    try:
        default = policy_for(None, [])
        wider = DevicePolicy.of([*default.rules, DeviceRule.parse("b 7:* rw")])
        narrower = DevicePolicy.of([*(r for r in default.rules if r.major != 136),
                                    DeviceRule.parse("c 136:* r")])  # pts: rwm → r
        for policy in (default, DevicePolicy(allow_all=True), default, wider, narrower,
                       DevicePolicy.of(default.rules[:4]), default):
            apply_v1(cg, policy)
            assert DevicePolicy.from_list((cg / "devices.list").read_text()) == policy
    finally:
        cg.rmdir()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A loop device over a file in the test's own directory (detached afterwards)."""
    backing = tmp_path / "disk.img"
    data = b"tuibox-loop-test-" + os.urandom(8).hex().encode()
    backing.write_bytes(data.ljust(1 << 20, b"\0"))
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev, data
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def _numbers(dev: str) -> tuple[int, int]:
    rdev = os.stat(dev).st_rdev
    return os.major(rdev), os.minor(rdev)


def test_loop_device_over_a_host_file(engine: Engine, loop_device: tuple[str, bytes]) -> None:
    dev, data = loop_device
    major, minor = _numbers(dev)
    read = f"head -c {len(data)} /dev/disk0"
    # Without --device: the node can be made, not opened.
    code, out, err = sh(engine, f"mknod /dev/disk0 b {major} {minor} && {read}")
    assert code != 0 and EPERM in err
    # With --device it is there, with the host's numbers, readable and writable.
    code, out, err = sh(engine, f"stat -c '%t:%T' /dev/disk0; {read}",
                        devices=[f"{dev}:/dev/disk0"])
    assert code == 0, err
    assert out.splitlines()[0] == f"{major:x}:{minor:x}"
    assert out.splitlines()[1] == data.decode()
    # A read-only --device: reading works, opening for writing is refused.
    code, out, err = sh(engine, f"{read}; echo; echo x > /dev/disk0",
                        devices=[f"{dev}:/dev/disk0:r"])
    assert out.strip() == data.decode() and code != 0 and EPERM in err
    # Outside /dev (on the nodev rootfs) too, as Docker allows it.
    code, out, err = sh(engine, read.replace("/dev/disk0", "/data/disk0"),
                        devices=[f"{dev}:/data/disk0"])
    assert (code, out) == (0, data.decode()), err
    # Another loop device stays out of reach.
    code, _, err = sh(engine, f"mknod /dev/other b {major} {minor + 1} && head -c1 /dev/other",
                      devices=[f"{dev}:/dev/disk0"])
    assert code != 0 and EPERM in err


def test_device_cgroup_rule(engine: Engine, loop_device: tuple[str, bytes]) -> None:
    dev, data = loop_device
    major, minor = _numbers(dev)
    script = (f"mknod /dev/d b {major} {minor} && head -c {len(data)} /dev/d && echo && "
              f"echo x > /dev/d")
    code, out, err = sh(engine, script, device_cgroup_rules=[f"b {major}:{minor} r"])
    assert out.strip() == data.decode()
    assert code != 0 and EPERM in err  # r only: no write
    cid = run_d(engine, "sleep", "30", device_cgroup_rules=[f"b {major}:* rw"])
    if not V2:
        assert f"b {major}:* rw" in device_control(cid)


def test_privileged_sees_and_opens_host_devices(engine: Engine,
                                                 loop_device: tuple[str, bytes]) -> None:
    dev, data = loop_device
    cid = run_d(engine, "sleep", "30", privileged=True)
    assert len(device_control(cid)) == 1 if V2 else device_control(cid) == ["a *:* rwm"]
    engine.remove(cid, force=True)
    code, out, err = sh(engine, f"ls /dev; head -c {len(data)} {dev}", privileged=True)
    assert code == 0, err
    names = set(out.split())
    host = {p.name for p in Path("/dev").iterdir()
            if stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)}
    assert host - {"console", "ptmx"} <= names
    assert data.decode() in out


def test_device_nodes_in_an_image_layer(engine: Engine, tmp_path: Path,
                                        loop_device: tuple[str, bytes]) -> None:
    """A hostile image ships world-openable nodes: kmsg and a loop device."""
    dev, _ = loop_device
    major, minor = _numbers(dev)
    layer = layer_tar([
        TarEntry("bin/", type=tarfile.DIRTYPE, mode=0o755),
        TarEntry("bin/busybox", data=Path("/bin/busybox").read_bytes(), mode=0o755),
        TarEntry("bin/sh", type=tarfile.SYMTYPE, linkname="busybox"),
        TarEntry("tmp/", type=tarfile.DIRTYPE, mode=0o1777),
        TarEntry("kmsg", type=tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=11),
        TarEntry("disk", type=tarfile.BLKTYPE, mode=0o666, devmajor=major, devminor=minor),
    ])
    archive = tmp_path / "devs.tar"
    write_docker_archive(archive, [([layer], ["devs:latest"])])
    engine.images.load(archive)
    script = """
        for n in kmsg disk; do
            ls -l /$n
            for dir in '<' '>'; do sh -c "exec 3$dir/$n" && echo "$n opened"; done
            cp -a /$n /dev/$n && sh -c "exec 3</dev/$n" && echo "$n copy opened"
        done
        true
    """
    code, out, err = sh(engine, script, image="devs", user="1000")
    assert code == 0 and "opened" not in out, out + err
    assert out.count("rw-rw-rw-") == 2  # the nodes are there, open to everyone by mode
    # As root in the container, copied onto /dev (no nodev there): the cgroup refuses.
    code, out, err = sh(engine, script, image="devs")
    assert "opened" not in out, out + err
    assert err.count(EPERM) >= 2, err


# ---------------------------------------------------------------------- cgroup v2 only


@v2_only
def test_v2_program_goes_with_the_container(engine: Engine) -> None:
    cid = run_d(engine, "sleep", "60")
    (prog,) = programs(CG / cid)
    assert bpf_devices.exists(prog)
    engine.remove(cid, force=True)
    assert not (CG / cid).exists()
    wait_released(prog)


@v2_only
def test_v2_program_refused_means_no_container(engine: Engine) -> None:
    """A foreign exclusive device program on tuibox's parent cgroup: no program can be
    attached below it, so the start fails, naming the step; nothing runs unconfined."""
    CG.mkdir(exist_ok=True)
    fd = bpf_devices.load(bpf_devices.program(DevicePolicy(allow_all=True)))
    parent = os.open(CG, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bpf_devices.attach(parent, fd, 0)
        config = engine.create(RunOptions(image="busybox", command=["sleep", "60"],
                                          network="none"))
        with pytest.raises(SetupError) as info:
            engine.start(config.id)
        assert info.value.stage == "device program attach"
        assert not engine.inspect(config.id)["State"]["Running"]
        assert not (CG / config.id).exists()
    finally:
        with contextlib.suppress(OSError):
            bpf_devices.detach(parent, fd)
        os.close(parent)
        os.close(fd)


# ---------------------------------------------------------------------- user namespaces


@pytest.mark.usefixtures("auto_root")
def test_userns_device_is_bound_and_still_filtered(engine: Engine,
                                                   loop_device: tuple[str, bytes]) -> None:
    """In a user namespace the kernel refuses mknod: --device binds the host's node (the
    cgroup rule is the same).  The node is one the test makes, world-readable, in a
    directory of its own that the container's unmapped root may traverse."""
    dev, data = loop_device
    major, minor = _numbers(dev)
    where = Path(tempfile.mkdtemp(prefix="tuibox-devtest-", dir="/var/tmp"))
    try:
        where.chmod(0o755)
        node = where / "disk"
        os.mknod(node, 0o644 | stat.S_IFBLK, os.makedev(major, minor))
        try:
            code, out, err = sh(engine, f"head -c {len(data)} /dev/disk0; echo; "
                                f"mknod /dev/other b {major} {minor} || echo no mknod",
                                userns="auto", devices=[f"{node}:/dev/disk0:r"])
        except SetupError as exc:  # the v2 guest's tmpfs state root, on Linux 6.1
            if exc.stage != "idmapped mounts":
                raise
            pytest.skip(f"no user namespaces here: {exc.detail}")
        assert out.splitlines() == [data.decode(), "no mknod"], out + err
    finally:
        shutil.rmtree(where)
