"""Issue #12 item 7: the state root is root's alone.

An unprivileged user (made by the test, removed after) tries what any local user could do
to an older root: list it, read a container's config.json (its environment holds secrets),
plant a file in an image layer, a running container's upper dir or a volume.  Device
nodes made in the rootfs or a volume, or shipped in an image layer, must not open (nodev).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tuibox.engine import Engine, RunOptions
from tuibox.engine.images.hostrootfs import busybox_rootfs
from tuibox.engine.paths import StatePaths

Cli = Any
SECRET = "hunter2-" + secrets.token_hex(4)
RUN = ("run", "--network", "none")  # no bridge needed: none of these tests is about it


@dataclass
class Stranger:
    name: str
    uid: int
    gid: int

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user: no capabilities, no supplementary groups."""
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
             "--inh-caps=-all", "--", *argv],
            capture_output=True, text=True, timeout=30, cwd="/")


@pytest.fixture
def stranger() -> Iterator[Stranger]:
    name = "tbx" + secrets.token_hex(6)
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True,
                                 check=True).stdout)
        gid = int(subprocess.run(["id", "-g", name], capture_output=True, text=True,
                                 check=True).stdout)
        yield Stranger(name, uid, gid)
    finally:
        subprocess.run(["userdel", name], check=True)


@pytest.fixture
def root() -> Iterator[Path]:
    """A root whose parent every user may traverse (pytest's own tmp dirs are 0700, which
    would hide the root from the stranger whatever its modes)."""
    base = Path(tempfile.mkdtemp(prefix="tbx-perms-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base / "root"
    shutil.rmtree(base, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _attempts(root: Path, cid: str, volume: str) -> dict[str, list[str]]:
    """What a local user would try: the image's /tmp and the container's copied-up /tmp
    are 1777, the volume was made 0777 by the container."""
    paths = StatePaths(root)
    layer = next(paths.layers.iterdir())
    cdir = paths.container_dir(cid)
    return {
        "list the root": ["ls", str(root)],
        "read config.json": ["cat", str(cdir / "config.json")],
        "plant a file in an image layer": ["touch", str(layer / "diff/tmp/planted-layer")],
        "plant a file in the upper dir": ["touch", str(cdir / "upper/tmp/planted-upper")],
        "list a volume": ["ls", str(paths.volumes / volume / "_data")],
        "plant a file in a volume": ["touch", str(paths.volumes / volume / "_data/planted")],
    }


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_other_users_cannot_reach_the_state_root(engine: Engine, root: Path,
                                                 stranger: Stranger, cli: Cli) -> None:
    # The control: the stranger can traverse and read what is really open to it.
    assert stranger.run("ls", str(root.parent)).returncode == 0
    cid = cli(*RUN, "-d", "-e", f"TOKEN={SECRET}", "-v", "shared:/shared", "busybox",
              "sh", "-c", "chmod 777 /shared; touch /tmp/ready; sleep 60").stdout.strip()
    cdir = StatePaths(root).container_dir(cid)
    wait_for(cdir / "upper/tmp/ready")
    assert SECRET in (cdir / "config.json").read_text()
    for what, argv in _attempts(root, cid, "shared").items():
        got = stranger.run(*argv)
        assert got.returncode != 0, f"a local user could {what}: {got.stdout}"
        assert "Permission denied" in got.stderr, (what, got.stderr)
        assert SECRET not in got.stdout
    # Nothing planted appears in the container, and the modes are Docker's (or tighter).
    seen = cli("exec", cid, "sh", "-c", "ls -A /tmp; ls -A /shared").stdout.split()
    assert seen == ["ready"], seen
    assert mode(root) == 0o700
    for top in ("images", "layers", "containers", "volumes", "names", "tmp"):
        assert mode(root / top) == 0o700, top
    assert mode(cdir) == 0o700
    assert mode(cdir / "config.json") == mode(cdir / "state.json") == 0o600
    assert mode(cdir / f"{cid}-json.log") == 0o640
    assert mode(StatePaths(root).volumes / "shared") == 0o700
    assert all(mode(p) == 0o700 for p in StatePaths(root).layers.iterdir())
    assert mode(StatePaths(root).run) == 0o700


def test_a_non_root_container_user_still_works(cli: Cli) -> None:
    """The private root is no obstacle inside: overlay and binds use the mounter's rights."""
    script = ("id -u; echo hi > /tmp/f && cat /tmp/f; grep -q localhost /etc/hosts && "
              "echo hosts; "
              "cat /etc/hostname; test -r /etc/resolv.conf && echo resolv; ls /shared/; "
              "cat /shared/seed")
    cli(*RUN, "--rm", "-v", "shared:/shared", "busybox", "sh", "-c",
        "echo seeded > /shared/seed")
    out = cli(*RUN, "--rm", "-u", "1000", "-v", "shared:/shared", "--hostname", "box",
              "busybox", "sh", "-c", script).stdout.split()
    assert out == ["1000", "hi", "hosts", "box", "resolv", "seed", "seeded"]
    cid = cli(*RUN, "-d", "-u", "1000:1000", "busybox", "sleep", "60").stdout.strip()
    assert cli("exec", "-u", "1000", cid, "sh", "-c",
               "echo x > /tmp/y && cat /tmp/y /etc/hosts >/dev/null && echo ok").stdout \
        == "ok\n"


def test_an_older_open_root_is_tightened(engine: Engine, root: Path,
                                         stranger: Stranger, cli: Cli) -> None:
    cid = engine.create(RunOptions(image="busybox", command=["sleep", "60"], network="none",
                                   env=[f"TOKEN={SECRET}"], volumes=["old:/old"])).id
    paths = StatePaths(root)
    assert not paths.supervisor_socket.exists()  # the supervisor has not started yet
    cdir = paths.container_dir(cid)
    # What an older tuibox left: a 0711 root, 0755 dirs, world-readable records.
    loosened = [(root, 0o711), (cdir, 0o755), (cdir / "config.json", 0o644),
                (cdir / "state.json", 0o644), (paths.volumes / "old", 0o755)]
    loosened += [(root / top, 0o755) for top in ("images", "layers", "containers", "volumes")]
    loosened += [(p, 0o755) for p in paths.layers.iterdir()]
    for path, loose in loosened:
        os.chmod(path, loose)
    leak = stranger.run("cat", str(cdir / "config.json"))
    assert SECRET in leak.stdout  # the control: the hole is really there
    # Any command opens the root: that alone closes it again.
    cli("ps", "-a")
    assert mode(root) == 0o700
    assert "Permission denied" in stranger.run("cat", str(cdir / "config.json")).stderr
    # The supervisor's start tightens everything below.
    engine.start(cid)
    for path, _ in loosened:
        expected = 0o600 if path.suffix == ".json" else 0o700
        assert mode(path) == expected, path
    assert "took group and other access away" in (root / "supervisor.log").read_text()


def _device_image(engine: Engine, work: Path) -> None:
    """busybox plus /bad-null: a 0666 char device 1:3 (a copy of /dev/null) in a layer."""
    rootfs = busybox_rootfs(work / "rootfs")
    os.mknod(rootfs / "bad-null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(rootfs / "bad-null", 0o666)
    engine.images.import_image(rootfs, ref="devnode:1", changes=['CMD ["sh"]'])


def test_device_nodes_do_not_open_in_rootfs_or_volumes(engine: Engine, cli: Cli,
                                                        tmp_path: Path) -> None:
    # 1:3 is on every device allow-list: only nodev stops these opens.
    _device_image(engine, tmp_path)
    out = cli(*RUN, "--rm", "-v", "nodes:/vol", "devnode:1", "sh", "-c",
              "echo ok > /dev/null && echo devnull-ok; "
              "mknod /made c 1 3 && echo made; echo x > /made || echo rootfs-denied; "
              "mknod /vol/made c 1 3 && echo made; echo x > /vol/made || echo vol-denied; "
              "echo x > /bad-null || echo layer-denied; "
              "grep ' /vol ' /proc/mounts; grep ' / ' /proc/mounts", check=False)
    lines = out.stdout.splitlines()
    assert lines[:6] == ["devnull-ok", "made", "rootfs-denied", "made", "vol-denied",
                         "layer-denied"], out
    vol_opts = lines[6].split()[3].split(",")
    root_opts = lines[7].split()[3].split(",")
    assert "nodev" in vol_opts and "nosuid" in vol_opts
    assert "nodev" in root_opts
    assert out.stderr.count("Permission denied") == 3
    # A non-root user of the image cannot open the layer's node either.
    user = cli(*RUN, "--rm", "-u", "1000", "devnode:1", "sh", "-c",
               "cat /bad-null && echo opened", check=False)
    assert "opened" not in user.stdout and "Permission denied" in user.stderr
    # --read-only keeps nodev on its remount of /.
    ro = cli(*RUN, "--rm", "--read-only", "devnode:1", "sh", "-c",
             "grep ' / ' /proc/mounts").stdout.split()[3].split(",")
    assert "ro" in ro and "nodev" in ro


def test_a_root_another_user_made_is_refused(root: Path, stranger: Stranger) -> None:
    """``--root /tmp/x`` where a local user made /tmp/x first: they would own our state."""
    root.mkdir()
    os.chmod(root, 0o755)
    os.chown(root, stranger.uid, stranger.gid)
    got = subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), "ps"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 125
    assert got.stderr == (f"tuibox: state root {root} is owned by uid {stranger.uid}, not "
                          f"by uid 0 who runs tuibox\n")
    assert mode(root) == 0o755 and os.listdir(root) == []  # nothing made in it
