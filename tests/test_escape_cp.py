"""``cp`` never runs container code on the host (the CVE-2019-14271 class), never opens a
container's FIFOs or devices, never creates device nodes on either side, and never follows
or replaces what it did not create at the host destination.

The trap image plants what a hostile container would: an ``/etc/nsswitch.conf`` naming an
NSS module of its own, that module (``libnss_evil.so.2``, a real shared object whose
constructor leaves a marker), ``/etc/ld.so.preload``, and Python modules and extension
modules on every path the host's interpreter imports from.  The marker is written both to
a host directory the test owns (bind-mounted into the container, so it appears wherever
the code ran) and to the container's own ``/tmp``.
"""

from __future__ import annotations

import _ctypes
import os
import stat
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import test_userns
from tuibox.engine import Engine
from tuibox.engine.paths import StatePaths

subids = test_userns.subids  # the --userns=auto fixtures
auto_root = test_userns.auto_root

Cli = Any
IN_CONTAINER_MARKER = "tmp/evil-ran"

EVIL_C = r"""
#include <fcntl.h>
#include <unistd.h>
static void mark(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, "so\n", 3); close(fd); }
}
__attribute__((constructor)) static void evil(void) {
    mark(HOST_MARKER);
    mark("/tmp/evil-ran");
}
"""

EVIL_PY = """
for _p in ({host!r}, "/tmp/evil-ran"):
    try:
        with open(_p, "a") as _f:
            _f.write("py {name}\\n")
    except OSError:
        pass
"""


@dataclass
class Trap:
    image: str
    markers: Path  # host dir, bind-mounted at the same path inside the container
    marker: Path

    def sprung(self, engine: Engine, cid: str) -> list[str]:
        """Every place the planted code would have left its marker."""
        found = [str(self.marker)] if self.marker.exists() else []
        upper = StatePaths(engine.paths.root).containers / cid / "upper" / IN_CONTAINER_MARKER
        if upper.exists():
            found.append(f"container /{IN_CONTAINER_MARKER}: {upper.read_text()!r}")
        return found


def _build_evil_so(work: Path, marker: Path) -> Path:
    src = work / "evil.c"
    src.write_text(EVIL_C)
    out = work / "libnss_evil.so.2"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DHOST_MARKER="{marker}"', "-o", str(out),
                    str(src)], check=True)
    return out


def _plant(rootfs: Path, so: Path, marker: Path) -> None:
    (rootfs / "etc" / "nsswitch.conf").write_text(
        "".join(f"{db}: evil\n" for db in ("passwd", "group", "shadow", "hosts", "initgroups",
                                           "services", "networks", "protocols")))
    for libdir in ("lib", "lib64", "usr/lib", "lib/x86_64-linux-gnu",
                   "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
        (rootfs / libdir).mkdir(parents=True, exist_ok=True)
        (rootfs / libdir / "libnss_evil.so.2").write_bytes(so.read_bytes())
    (rootfs / "etc" / "ld.so.preload").write_text("/lib/libnss_evil.so.2\n")
    # Every module name the stdlib has, on every directory the host interpreter imports
    # from, and every extension module name as the evil shared object.
    names = set(sys.stdlib_module_names) | {"sitecustomize", "usercustomize"}
    dynload = Path(_ctypes.__file__).parent  # lib-dynload of the host interpreter
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for entry in {p for p in sys.path if p.startswith("/")}:
        where = rootfs / entry.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        for name in names:
            (where / f"{name}.py").write_text(EVIL_PY.format(host=str(marker), name=name))
        enc = where / "encodings"
        enc.mkdir(exist_ok=True)
        for codec in ("idna", "punycode", "cp437", "latin_1", "ascii", "utf_8", "aliases"):
            (enc / f"{codec}.py").write_text(EVIL_PY.format(host=str(marker), name=codec))
    target = rootfs / str(dynload).lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for ext in dynload.iterdir():
        (target / ext.name).write_bytes(so.read_bytes())
    for name in ("grp", "pwd", "zlib", "_bz2", "_lzma"):
        (target / f"{name}{ext_suffix}").write_bytes(so.read_bytes())


@pytest.fixture
def trap(engine: Engine, tmp_path: Path) -> Trap:
    from tests.imagefixtures import busybox_rootfs

    markers = tmp_path / "markers"
    markers.mkdir()
    marker = markers / "ran"
    so = _build_evil_so(tmp_path, marker)
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    _plant(rootfs, so, marker)
    data = rootfs / "data"
    (data / "sub").mkdir(parents=True)
    (data / "owned").write_text("owned by 1234\n")
    os.chown(data / "owned", 1234, 1234)
    (data / "owned").chmod(0o640)
    (data / "sub" / "x").write_text("x\n")
    engine.images.import_image(rootfs, ref="trap:1")
    return Trap(image="trap:1", markers=markers, marker=marker)


def _run_trap(cli: Cli, trap: Trap, *cmd: str) -> str:
    return str(cli("run", "-d", "--network", "none", "-v", f"{trap.markers}:{trap.markers}",
                   trap.image,
                   *cmd).stdout.strip())


def test_the_trap_is_live_when_resolved_inside(engine: Engine, cli: Cli, trap: Trap) -> None:
    """Control: a fresh host process that resolves a user or imports a module inside the
    container's root runs the planted code.  Without this, the test below proves nothing."""
    cid = _run_trap(cli, trap, "sleep", "600")
    pid = engine.containers.state(cid).pid
    for code in ("import pwd; pwd.getpwuid(1234)", "import colorsys"):
        if trap.marker.exists():
            trap.marker.unlink()
        subprocess.run([sys.executable, "-c",
                        f"import os; os.chroot('/proc/{pid}/root'); os.chdir('/'); {code}"],
                       capture_output=True, timeout=30)
        assert trap.marker.exists(), code


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_cp_never_runs_container_code(engine: Engine, cli: Cli, trap: Trap, tmp_path: Path,
                                      stopped: bool) -> None:
    cid = _run_trap(cli, trap, "sleep", "600")
    if stopped:
        engine.stop(cid, timeout=0)
    out = tmp_path / "out"
    out.mkdir()
    # out of the container: a tree (names for 1234 would need NSS), a file, with -a too
    cli("cp", f"{cid}:/data", str(out))
    assert (out / "data" / "owned").read_text() == "owned by 1234\n"
    assert (out / "data" / "sub" / "x").read_text() == "x\n"
    cli("cp", f"{cid}:/etc/nsswitch.conf", str(out / "nss"))
    assert (out / "nss").read_text().startswith("passwd: evil")
    cli("cp", "-a", f"{cid}:/data/owned", str(out / "owned-a"))
    assert (out / "owned-a").stat().st_uid == 1234
    # into the container: a file and a tree, plain and -a
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "f").write_text("in\n")
    os.chown(src / "deep" / "f", 4321, 4321)
    cli("cp", str(src), f"{cid}:/tmp/")
    cli("cp", "-a", str(src / "deep" / "f"), f"{cid}:/tmp/f-a")
    cli("cp", str(src / "deep" / "f"), f"{cid}:/etc/passwd-copy")
    # the copies really happened (read back through cp, which must stay clean too)
    cli("cp", f"{cid}:/tmp/src/deep/f", str(out / "back"))
    assert (out / "back").read_text() == "in\n"
    cli("cp", "-a", f"{cid}:/tmp/f-a", str(out / "back-a"))
    assert (out / "back-a").stat().st_uid == 4321
    assert trap.sprung(engine, cid) == []


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_cp_archive_round_trips_numeric_owner(engine: Engine, cli: Cli, tmp_path: Path,
                                              stopped: bool) -> None:
    cid = cli("run", "-d", "--network", "none", "busybox", "sh", "-c",
              "echo hi > /f; chown 1234:1234 /f; chmod 640 /f; touch /ready; sleep 600"
              ).stdout.strip()
    _wait_in(cli, cid, "/ready")
    if stopped:
        engine.stop(cid, timeout=0)
    host = tmp_path / "f"
    cli("cp", "-a", f"{cid}:/f", str(host))
    st = host.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 1234, 0o640)
    cli("cp", f"{cid}:/f", str(tmp_path / "plain"))  # Docker: the caller's ids
    st = (tmp_path / "plain").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    cli("cp", "-a", str(host), f"{cid}:/back-a")
    cli("cp", str(host), f"{cid}:/back")  # Docker: the container's root
    if stopped:
        cli("start", cid)
    out = cli("exec", cid, "stat", "-c", "%u:%g %a", "/back-a", "/back").stdout.split("\n")
    assert out[:2] == ["1234:1234 640", "0:0 640"]


def _wait_in(cli: Cli, cid: str, path: str) -> None:
    deadline = time.monotonic() + 20
    while cli("exec", cid, "test", "-e", path, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_cp_out_never_opens_fifos_or_devices(engine: Engine, cli: Cli, tmp_path: Path) -> None:
    """A writer blocks on the container's FIFO until someone opens it for reading: if cp
    did, the writer leaves a flag.  Device nodes never reach the host."""
    cid = cli("run", "-d", "--network", "none", "busybox", "sh", "-c",
              "mkdir /data; echo a > /data/a; mkfifo /data/fifo; mknod /data/zero c 1 5; "
              "(echo x > /data/fifo; touch /opened) & touch /ready; sleep 600").stdout.strip()
    _wait_in(cli, cid, "/ready")
    out = tmp_path / "out"
    out.mkdir()
    cli("cp", f"{cid}:/data", str(out), timeout=30)
    assert (out / "data" / "a").read_text() == "a\n"
    assert stat.S_ISFIFO((out / "data" / "fifo").lstat().st_mode)
    assert not os.path.lexists(out / "data" / "zero")
    refused = cli("cp", f"{cid}:/data/zero", str(out / "zero"), check=False)
    assert refused.returncode == 125 and "device" in refused.stderr
    assert not os.path.lexists(out / "zero")
    cli("cp", f"{cid}:/data/fifo", str(out / "fifo2"), timeout=30)
    assert stat.S_ISFIFO((out / "fifo2").lstat().st_mode)
    assert cli("exec", cid, "test", "-e", "/opened", check=False).returncode == 1


def test_cp_in_refuses_device_nodes(cli: Cli, tmp_path: Path) -> None:
    cid = cli("run", "-d", "--network", "none", "busybox", "sleep", "600").stdout.strip()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    os.mknod(src / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # never opened
    # the container side's reason reaches the user (not the host side's broken pipe)
    missing = cli("cp", str(src / "a"), f"{cid}:/no/such/x", check=False)
    assert missing.returncode == 125 and "no such directory in the container: /no/such" \
        in missing.stderr
    refused = cli("cp", str(src), f"{cid}:/tmp/", check=False)
    assert refused.returncode == 125 and "device" in refused.stderr
    assert cli("exec", cid, "test", "-e", "/tmp/src", check=False).returncode == 1
    os.mkfifo(src / "fifo")
    (src / "null").unlink()
    cli("cp", str(src), f"{cid}:/tmp/", timeout=30)  # FIFOs are made, not opened
    assert cli("exec", cid, "stat", "-c", "%F", "/tmp/src/fifo").stdout == "fifo\n"


def test_cp_to_host_never_follows_or_replaces_what_it_did_not_make(
        cli: Cli, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cid = cli("run", "-d", "--network", "none", "busybox", "sh", "-c",
              f"mkdir /data; ln -s {victim} /data/abs; ln -s ../../../../../.. /data/up; "
              "echo d > /data/d; touch /ready; sleep 600").stdout.strip()
    _wait_in(cli, cid, "/ready")
    out = tmp_path / "out"
    out.mkdir()
    # a symlink at the destination: neither followed nor replaced
    (out / "link").symlink_to(victim)
    refused = cli("cp", f"{cid}:/etc/passwd", str(out / "link"), check=False)
    assert refused.returncode == 125 and "symbolic link" in refused.stderr
    assert victim.read_text() == "precious\n" and (out / "link").is_symlink()
    # ... nor when it is the name the copy would take inside a destination directory
    (out / "passwd").symlink_to(victim)
    refused = cli("cp", f"{cid}:/etc/passwd", str(out), check=False)
    assert refused.returncode == 125 and "symbolic link" in refused.stderr
    assert victim.read_text() == "precious\n" and (out / "passwd").is_symlink()
    # a FIFO at the destination is not opened (this would hang) nor replaced
    os.mkfifo(out / "fifo")
    refused = cli("cp", f"{cid}:/etc/passwd", str(out / "fifo"), check=False, timeout=30)
    assert refused.returncode == 125 and "fifo" in refused.stderr.lower()
    assert stat.S_ISFIFO((out / "fifo").lstat().st_mode)
    # a regular file is overwritten, as Docker does
    (out / "file").write_text("old\n")
    cli("cp", f"{cid}:/data/d", str(out / "file"))
    assert (out / "file").read_text() == "d\n"
    # symlinks from the container arrive as symlinks, never followed
    cli("cp", f"{cid}:/data", str(out))
    assert os.readlink(out / "data" / "abs") == str(victim)
    assert (out / "data" / "up").is_symlink()
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == ["data", "fifo", "file", "link",
                                                     "passwd"]  # no staging left behind


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_cp_with_userns_auto_speaks_container_ids(engine: Engine, cli: Cli, tmp_path: Path,
                                                   auto_root: tuple[str, int],
                                                   stopped: bool) -> None:
    """With --userns=auto the copy is done as the container's root (its user namespace,
    or the shift for a stopped one): ids inside are the container's, on disk the host's."""
    start = auto_root[1]
    cid = cli("run", "-d", "--network", "none", "--userns=auto", "busybox", "sh", "-c",
              "echo hi > /f; chown 5:5 /f; touch /ready; sleep 600").stdout.strip()
    _wait_in(cli, cid, "/ready")
    if stopped:
        engine.stop(cid, timeout=0)
    src = tmp_path / "src"
    src.write_text("in\n")
    os.chown(src, 1234, 1234)
    cli("cp", str(src), f"{cid}:/plain")
    cli("cp", "-a", str(src), f"{cid}:/kept")
    upper = StatePaths(engine.paths.root).containers / cid / "upper"
    assert (upper / "plain").stat().st_uid == start  # the container's root
    assert (upper / "kept").stat().st_uid == start + 1234
    cli("cp", "-a", f"{cid}:/f", str(tmp_path / "f"))
    assert (tmp_path / "f").stat().st_uid == 5  # as the container sees it
    if stopped:
        cli("start", cid)
    out = cli("exec", cid, "stat", "-c", "%u", "/plain", "/kept").stdout.split()
    assert out == ["0", "1234"]


@pytest.fixture
def owned_image(engine: Engine, tmp_path: Path) -> str:
    """busybox with a private directory and a secret of user 1234's."""
    from tests.imagefixtures import busybox_rootfs

    rootfs = busybox_rootfs(tmp_path / "owned-rootfs")
    (rootfs / "private").mkdir(mode=0o700)
    os.chown(rootfs / "private", 1234, 1234)
    (rootfs / "secret").write_text("1234's\n")
    os.chown(rootfs / "secret", 1234, 1234)
    (rootfs / "secret").chmod(0o600)
    engine.images.import_image(rootfs, ref="owned:1")
    return "owned:1"


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_cp_has_no_capability_the_container_lacks(engine: Engine, cli: Cli, tmp_path: Path,
                                                  owned_image: str, stopped: bool) -> None:
    """With --cap-drop ALL the container's root cannot read 1234's secret, write into 1234's
    directory or give a file away, and neither can cp: its helper drops to the container's
    capabilities.  What that root may do (its own files and directories) cp still does;
    with the default capabilities it does all of it."""
    src = tmp_path / "src"
    src.write_text("in\n")
    os.chown(src, 4321, 4321)
    for caps, allowed in ((["--cap-drop", "ALL"], False), ([], True)):
        cid = cli("run", "-d", "--network", "none", *caps, owned_image, "sleep", "600"
                  ).stdout.strip()
        inside = cli("exec", cid, "sh", "-c", "cat /secret && touch /private/x",
                     check=False)
        assert (inside.returncode == 0) == allowed, inside.stderr  # the container's own root
        if stopped:
            engine.stop(cid, timeout=0)
        out = tmp_path / f"out-{allowed}"
        out.mkdir()
        tries = {"read 1234's 0600 file": ("cp", f"{cid}:/secret", str(out / "secret")),
                 "write into 1234's 0700 dir": ("cp", str(src), f"{cid}:/private/src"),
                 "give a file to 4321 (-a)": ("cp", "-a", str(src), f"{cid}:/tmp/kept")}
        for what, argv in tries.items():
            r = cli(*argv, check=False)
            if allowed:
                assert r.returncode == 0, (what, r.stderr)
            else:
                assert r.returncode == 125 and ("Permission denied" in r.stderr or
                                                "not permitted" in r.stderr), (what, r.stderr)
        assert (out / "secret").exists() == allowed
        # what the container's root may do, cp does whatever the capabilities
        cli("cp", str(src), f"{cid}:/tmp/plain")
        cli("cp", f"{cid}:/tmp/plain", str(out / "plain"))
        assert (out / "plain").read_text() == "in\n"
        cli("rm", "-f", cid)


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_cp_runs_under_the_containers_own_seccomp_filter(cli: Cli, tmp_path: Path,
                                                         stopped: bool, engine: Engine) -> None:
    """A container whose profile denies utimensat (with an errno Docker's default never
    gives): cp into it fails on exactly that call, because its helper loaded the
    container's filter, not Docker's default.  Reading out of it needs no utimensat."""
    profile = tmp_path / "no-utimensat.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                       '["utimensat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]}')
    cid = cli("run", "-d", "--network", "none", "--security-opt", f"seccomp={profile}",
              "busybox", "sleep", "600").stdout.strip()
    touched = cli("exec", cid, "touch", "-d", "@0", "/etc/hostname", check=False)
    assert touched.returncode != 0 and "not supported" in touched.stderr  # the filter is on
    if stopped:
        engine.stop(cid, timeout=0)
    src = tmp_path / "src"
    src.write_text("in\n")
    r = cli("cp", str(src), f"{cid}:/tmp/src", check=False)
    assert r.returncode == 125 and "Operation not supported" in r.stderr, r.stderr
    cli("cp", f"{cid}:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:")
