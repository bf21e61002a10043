"""``--userns=auto``: each container's root is an unprivileged range of host ids.

A test-owned subordinate-id user is appended to /etc/subuid and /etc/subgid (a unique
name, a high range) and exactly those lines are removed afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_container_runtime import run_output, sh
from tests.test_network import free_port, http_get, web
from tuibox.engine import Engine, InvalidArgument, RunOptions, SetupError
from tuibox.engine.idranges import DEFAULT_SIZE, first_fit, parse_userns
from tuibox.engine.models import IdRange

Cli = Any
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
POOL_SIZE = 4 * DEFAULT_SIZE


def _edit_subids(change: Any) -> None:
    """Rewrite both files in place under an flock (other test runs edit them too)."""
    for path in SUBID_FILES:
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            lines = change(f.read().splitlines())
            f.seek(0)
            f.truncate()
            f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def subids() -> Iterator[tuple[str, int]]:
    """(user, first id): POOL_SIZE ids of a user only this test knows."""
    user = f"tbxtest{secrets.token_hex(4)}"
    # A high range, different per run, inside 32 bits.
    start = 3_000_000_000 + secrets.randbelow(1000) * 1_000_000
    line = f"{user}:{start}:{POOL_SIZE}"
    _edit_subids(lambda lines: [*lines, line])
    try:
        yield user, start
    finally:
        _edit_subids(lambda lines: [x for x in lines if x != line])


@pytest.fixture
def auto_root(engine: Engine, root: Path, subids: tuple[str, int]) -> tuple[str, int]:
    (root / "daemon.json").write_text(json.dumps({"userns-user": subids[0]}))
    return subids


def _range(engine: Engine, cid: str) -> IdRange:
    ids = engine.containers.config(cid).security.id_range
    assert ids is not None
    return ids


def _maps(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_container_root_is_mapped_onto_its_own_range(engine: Engine,
                                                     auto_root: tuple[str, int]) -> None:
    code, out, err = sh(engine, "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g",
                        userns="auto", network="none")
    assert code == 0, err
    lines = _maps(out)
    start = auto_root[1]
    assert lines[:2] == [["0", str(start), str(DEFAULT_SIZE)]] * 2
    assert lines[2:] == [["0"], ["0"]]


def test_two_containers_get_disjoint_ranges_and_rm_gives_them_back(
        engine: Engine, auto_root: tuple[str, int]) -> None:
    _, start = auto_root
    made = [engine.create(RunOptions(image="busybox", command=["true"], userns=u))
            for u in ("auto", "auto:size=1000", "auto")]
    ranges = [_range(engine, c.id) for c in made]
    assert [(r.start, r.size) for r in ranges] == [
        (start, DEFAULT_SIZE), (start + DEFAULT_SIZE, 1000),
        (start + DEFAULT_SIZE + 1000, DEFAULT_SIZE)]
    engine.remove(made[1].id)
    # The freed 1000 ids are too few for a default range, enough for a small one.
    big = _range(engine, engine.create(RunOptions(image="busybox", userns="auto")).id)
    small = _range(engine, engine.create(RunOptions(image="busybox",
                                                    userns="auto:size=500")).id)
    assert big.start == start + 2 * DEFAULT_SIZE + 1000
    assert small.start == start + DEFAULT_SIZE
    with pytest.raises(InvalidArgument, match="no 65536 free ids left"):
        engine.create(RunOptions(image="busybox", userns="auto"))


def test_first_fit_tests_real_intersections() -> None:
    # A small used range strictly inside the candidate window must be seen (Docker's
    # endpoint-only test would miss it).
    assert first_fit([(100, 1000)], [(150, 160)], 100) == 160
    assert first_fit([(100, 1000)], [(100, 200), (250, 300)], 50) == 200
    assert first_fit([(100, 1000)], [(100, 200), (240, 300)], 50) == 300
    assert first_fit([(100, 200), (500, 700)], [(100, 150)], 100) == 500
    assert first_fit([(100, 200)], [], 101) is None
    assert parse_userns("auto:size=10") == ("auto", 10)
    for bad in ("auto:size=0", "auto:size=x", "auto:uidmapping=0:1:1", "keep-id", "host:1"):
        with pytest.raises(InvalidArgument):
            parse_userns(bad)


def test_breakout_through_a_bind_cannot_write_a_root_owned_host_file(
        engine: Engine, auto_root: tuple[str, int], tmp_path: Path) -> None:
    start = auto_root[1]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may create files here: the container too, as itself
    target = shared / "root-owned"
    target.write_text("host secret\n")
    target.chmod(0o644)
    attack = ("echo pwned > /host/root-owned; echo write=$?; "
              "echo pwned >> /host/root-owned; echo append=$?; "
              "chmod 666 /host/root-owned; echo chmod=$?; "
              "chown 0:0 /host/root-owned; echo chown=$?; "
              "cp /bin/busybox /host/sh && chmod 4755 /host/sh; echo setuid=$?; "
              "ls -ln /host/root-owned")
    code, out, err = sh(engine, attack, userns="auto", network="none",
                        volumes=[f"{shared}:/host"])
    results = dict(line.split("=") for line in out.splitlines() if "=" in line)
    assert results == {"write": "1", "append": "1", "chmod": "1", "chown": "1",
                       "setuid": "0"}, err
    assert "Permission denied" in err and "Operation not permitted" in err
    assert out.splitlines()[-1].split()[2:4] == ["65534", "65534"]  # host root is nobody
    assert target.read_text() == "host secret\n"
    st = os.stat(target)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    # What the container made is the container's, on the host: a "setuid root" shell
    # planted through the bind is setuid to an unprivileged id.
    planted = os.stat(shared / "sh")
    assert (planted.st_uid, planted.st_gid) == (start, start)
    assert planted.st_mode & 0o4000


def test_sticky_dir_keeps_the_host_file(engine: Engine, auto_root: tuple[str, int],
                                        tmp_path: Path) -> None:
    shared = tmp_path / "sticky"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "root-owned").write_text("host secret\n")
    code, out, err = sh(engine, "rm -f /host/root-owned; echo rm=$?; mv /host/root-owned "
                                "/host/x; echo mv=$?", userns="auto", network="none",
                        volumes=[f"{shared}:/host"])
    assert out.split() == ["rm=1", "mv=1"], err
    assert (shared / "root-owned").read_text() == "host secret\n"


def test_a_mount_under_a_bind_of_a_shared_host_mount_stays_inside(
        engine: Engine, auto_root: tuple[str, int], tmp_path: Path) -> None:
    # The binds are cloned from the host's mount namespace (the container's root may not
    # reach the private state root): a clone keeps its source's peer group unless made
    # private, and the tmpfs below would then appear on the host.
    import subprocess

    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        cid = engine.run(RunOptions(image="busybox", command=["sleep", "60"], userns="auto",
                                    network="none", tmpfs=["/b/t"],
                                    volumes=[f"{shared}:/b"])).id
        with open(f"/proc/{engine.containers.state(cid).pid}/mountinfo") as f:
            assert " /b/t " in f.read()
        with open("/proc/self/mountinfo") as f:
            assert f"{shared}/t " not in f.read()
        engine.remove(cid, force=True)
    finally:
        subprocess.run(["umount", "-R", str(shared)], check=True)


def test_image_files_are_root_owned_inside_and_the_rootfs_is_writable(
        engine: Engine, auto_root: tuple[str, int]) -> None:
    start = auto_root[1]
    code, out, err = sh(engine, "ls -ln /bin/busybox; echo new > /made; echo x >> /etc/passwd; "
                                "chown 1000:1000 /made; mkdir /d; ls -ln /made",
                        userns="auto", network="none", name="writer")
    assert code == 0, err
    first, last = out.splitlines()
    assert first.split()[2:4] == ["0", "0"]
    assert last.split()[2:4] == ["1000", "1000"]
    cid = engine.resolve("writer")
    upper = engine.containers.dir(cid) / "upper"
    owners = {name: (os.lstat(upper / name).st_uid, os.lstat(upper / name).st_gid)
              for name in ("made", "etc/passwd", "d")}
    assert owners == {"made": (start + 1000, start + 1000), "etc/passwd": (start, start),
                      "d": (start, start)}
    # No chown copy of the image: the layer's files are still host root's on disk.
    layer = Path(engine.containers.config(cid).layer_dirs[0])
    assert os.stat(layer / "bin/busybox").st_uid == 0
    assert os.stat(layer / "etc/passwd").st_size < os.stat(upper / "etc/passwd").st_size


def test_volumes_tmpfs_and_etc_files_work_inside(engine: Engine, auto_root: tuple[str, int],
                                                 tmp_path: Path) -> None:
    script = ("echo kept > /v/f && chown 5:5 /v/f && ls -ln /v/f; "
              "echo t > /t/f && ls -ln /t/f; "
              "cat /etc/hostname; grep -c localhost /etc/hosts; "
              "echo '1.2.3.4 extra' >> /etc/hosts && tail -1 /etc/hosts; "
              "ls -ln /dev/null; echo x > /dev/null && head -c 3 /dev/zero | wc -c; "
              "grep -E ' /sys ' /proc/mounts")
    code, out, err = sh(engine, script, userns="auto", network="none", hostname="inside",
                        volumes=["data:/v"], tmpfs=["/t"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[2:4] == ["5", "5"]  # a named volume shows the container's ids
    assert lines[1].split()[2:4] == ["0", "0"]
    assert lines[2:5] == ["inside", "2", "1.2.3.4 extra"]
    assert lines[5].startswith("crw-rw-rw-") and lines[6] == "3"
    assert lines[7].split()[3].startswith("ro,")
    # On disk the volume keeps the ids a container without a userns would see.
    data = engine.paths.root / "volumes" / "data" / "_data" / "f"
    assert (os.stat(data).st_uid, os.stat(data).st_gid) == (5, 5)


def test_exec_joins_the_user_namespace(cli: Cli, engine: Engine,
                                       auto_root: tuple[str, int]) -> None:
    start = auto_root[1]
    cli("run", "-d", "--name", "uns1", "--network", "none", "--userns=auto", "busybox",
        "sleep", "60")
    out = cli("exec", "uns1", "sh", "-c", "cat /proc/self/uid_map; id -u; touch /from-exec; "
                                       "grep CapEff /proc/self/status").stdout.splitlines()
    assert out[0].split() == ["0", str(start), str(DEFAULT_SIZE)]
    assert out[1] == "0" and out[2].endswith("00000000a80425fb")
    upper = engine.containers.dir(engine.resolve("uns1")) / "upper"
    assert os.stat(upper / "from-exec").st_uid == start
    assert cli("exec", "-u", "nobody", "uns1", "id", "-u").stdout.strip() == "65534"


def test_stop_and_rm_leave_nothing_and_free_the_range(
        cli: Cli, engine: Engine, auto_root: tuple[str, int]) -> None:
    start = auto_root[1]
    cid = cli("run", "-d", "--network", "none", "--userns=auto", "-v", "vol:/v", "busybox",
              "sleep", "60").stdout.strip()
    pid = engine.containers.state(cid).pid
    with open(f"/proc/{pid}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(start)] * 4  # as the host sees it
    cli("stop", "-t", "0", cid)
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
    cli("start", cid)  # the same range again
    assert engine.containers.config(cid).security.id_range == IdRange(start=start,
                                                                      size=DEFAULT_SIZE)
    cli("rm", "-f", cid)
    again = engine.create(RunOptions(image="busybox", userns="auto"))
    assert _range(engine, again.id).start == start


def test_bridge_network_container_sees_its_own_devices(engine: Engine,
                                                        auto_root: tuple[str, int]) -> None:
    # The container makes this netns after its user namespace and the supervisor plugs
    # the veth in from outside: PID 1 may mount its sysfs itself, and sees eth0 there.
    engine.network_create("unsnet", subnet=f"10.{200 + secrets.randbelow(50)}."
                                           f"{secrets.randbelow(250)}.0/24")
    code, out, err = sh(engine, "ls /sys/class/net; cat /proc/self/uid_map; "
                                "ip -o addr show eth0 | grep -c inet", userns="auto",
                        network="unsnet")
    assert code == 0, err
    lines = out.split()
    assert "eth0" in lines and "lo" in lines
    assert str(auto_root[1]) in lines


NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1): the user namespace owning a namespace


def _netns_owner(pid: int) -> tuple[int, int]:
    """(inode of the user namespace owning pid's network namespace, of pid's own)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino, os.stat(f"/proc/{pid}/ns/user").st_ino
    finally:
        os.close(owner)


def test_bridge_network_namespace_is_owned_by_the_container(
        engine: Engine, auto_root: tuple[str, int], tmp_path: Path) -> None:
    """Made after the user namespace (as runc does under userns-remap), so its root has
    CAP_NET_RAW and CAP_NET_ADMIN over its own network, and only over that one."""
    port = free_port()
    server = web(engine, tmp_path, userns="auto", publish=[f"{port}:80"])
    pid = engine.containers.state(server).pid
    owner, own = _netns_owner(pid)
    assert owner == own
    # It gets what a namespace the supervisor makes gets: no IPv6 on its interfaces.
    assert Path(f"/proc/{pid}/net/if_inet6").read_text().split()[-1] == "lo"  # ::1 only
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from the container"
    peer = engine.get(server).state.network.networks["bridge"]
    # A fresh netns allows no ICMP datagram sockets (ping_group_range "1 0"), so ping needs
    # a raw socket; arping needs a packet socket; ip link needs CAP_NET_ADMIN (added).
    script = (f"ping -c1 -W5 127.0.0.1 >/dev/null; echo lo=$?; "
              f"ping -c1 -W5 {peer.gateway} >/dev/null; echo gateway=$?; "
              f"ping -c1 -W5 {peer.ip} >/dev/null; echo peer=$?; "
              f"arping -c1 -w5 -I eth0 {peer.gateway} >/dev/null; echo arping=$?; "
              f"ip link set lo mtu 1500; echo mtu=$?; "
              f"ip -o link show lo | grep -o 'mtu [0-9]*'; "
              f"wget -q -O - http://{peer.ip}/; echo; "
              f"wget -q -O - http://{peer.gateway}:{port}/; echo")
    code, out, err = sh(engine, script, userns="auto", cap_add=["NET_ADMIN"])
    assert code == 0, err
    assert out.splitlines() == ["lo=0", "gateway=0", "peer=0", "arping=0", "mtu=0",
                                "mtu 1500", "hello from the container",
                                "hello from the container"], err
    # Its root has nothing over the host's network namespace (--network host keeps it).
    # The MTU asked for is the one the host's loopback has: a no-op, were it allowed.
    mtu = Path("/sys/class/net/lo/mtu").read_text().strip()
    code, out, err = sh(engine, f"ping -c1 -W2 127.0.0.1; echo ping=$?; "
                                f"ip link set lo mtu {mtu}; echo mtu=$?",
                        userns="auto", cap_add=["NET_ADMIN"], network="host")
    assert "ping=1" in out and "mtu=2" in out, (out, err)


def test_joining_a_user_namespaced_network(engine: Engine, auto_root: tuple[str, int],
                                           tmp_path: Path) -> None:
    server = web(engine, tmp_path, userns="auto")
    for userns in ("auto", "host"):
        code, out, err = sh(engine, "wget -q -O - http://127.0.0.1:80/",
                            network=f"container:{server}", userns=userns)
        assert (code, out) == (0, "hello from the container"), err
    # network connect plugs a second veth into it from the host side, as start did.
    engine.network_create("unsnet2", subnet=f"10.{200 + secrets.randbelow(50)}."
                                            f"{secrets.randbelow(250)}.0/24")
    engine.network_connect("unsnet2", server)
    joined = engine.get(server).state.network.networks["unsnet2"]
    code, out, err = sh(engine, "ip -o -4 addr show eth1 | awk '{print $4}'",
                        network=f"container:{server}")
    assert out.strip() == f"{joined.ip}/{joined.prefix_len}", err


def test_failed_start_gives_the_plugged_network_back(engine: Engine,
                                                     auto_root: tuple[str, int]) -> None:
    port = free_port()
    with pytest.raises(SetupError, match="user"):
        engine.run(RunOptions(image="busybox", command=["true"], user="nosuchuser",
                              userns="auto", publish=[f"{port}:80"]))
    bridge = engine.networks.get("bridge")
    assert bridge.endpoints == {}
    # The bridge stays a while for the next container; no veth is left on it.
    assert list(Path(f"/sys/class/net/{bridge.bridge}/brif").iterdir()) == []
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # the host port is free again


def test_root_default_auto_and_host_opt_out(engine: Engine, root: Path,
                                            subids: tuple[str, int]) -> None:
    (root / "daemon.json").write_text(json.dumps({"userns": "auto",
                                                  "userns-user": subids[0]}))
    _, out, _ = run_output(engine, "cat", "/proc/self/uid_map", network="none")
    assert out.split() == ["0", str(subids[1]), str(DEFAULT_SIZE)]
    _, out, _ = run_output(engine, "cat", "/proc/self/uid_map", network="none",
                           userns="host")
    assert out.split() == ["0", "0", "4294967295"]
    _, out, _ = run_output(engine, "cat", "/proc/self/uid_map", network="none",
                           privileged=True)
    assert out.split() == ["0", "0", "4294967295"]


def test_inspect_shows_the_user_namespace(cli: Cli, engine: Engine, root: Path,
                                          subids: tuple[str, int]) -> None:
    user, start = subids
    (root / "daemon.json").write_text(json.dumps({"userns-user": user}))
    auto = engine.create(RunOptions(image="busybox", userns="auto:size=1000", name="mapped"))
    plain = engine.create(RunOptions(image="busybox"))
    host_config = engine.inspect(auto.id)["HostConfig"]
    assert host_config["UsernsMode"] == "auto"
    # Podman's shape: container id, host id, size.
    assert host_config["IDMappings"] == {"UidMap": [f"0:{start}:1000"],
                                         "GidMap": [f"0:{start}:1000"]}
    host_config = engine.inspect(plain.id)["HostConfig"]
    assert host_config["UsernsMode"] == "" and "IDMappings" not in host_config
    out = cli("inspect", "-f", "{{.HostConfig.UsernsMode}} {{json .HostConfig.IDMappings}}",
              "mapped").stdout
    assert out == f'auto {{"UidMap":["0:{start}:1000"],"GidMap":["0:{start}:1000"]}}\n'
    # Under a root whose default is auto, a container that opted out shows "host", as
    # Docker shows it under userns-remap.
    (root / "daemon.json").write_text(json.dumps({"userns": "auto", "userns-user": user}))
    opted_out = engine.create(RunOptions(image="busybox", userns="host"))
    assert engine.inspect(opted_out.id)["HostConfig"]["UsernsMode"] == "host"
    assert engine.inspect(auto.id)["HostConfig"]["UsernsMode"] == "auto"


def test_missing_subuid_entry_is_a_clear_error(cli: Cli, root: Path) -> None:
    user = f"tbxnobody{secrets.token_hex(4)}"
    (root / "daemon.json").write_text(json.dumps({"userns-user": user}))
    proc = cli("run", "--rm", "--userns=auto", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1
    assert f'add a line such as "{user}:' in proc.stderr and "/etc/subuid" in proc.stderr
    assert cli("ps", "-a", "-q").stdout == ""
    bad = cli("run", "--rm", "--userns=auto:size=0", "busybox", "true", check=False)
    assert bad.returncode == 125 and "size=N" in bad.stderr
    privileged = cli("run", "--rm", "--userns=auto", "--privileged", "busybox", "true",
                     check=False)
    assert privileged.returncode == 125 and "incompatible" in privileged.stderr
