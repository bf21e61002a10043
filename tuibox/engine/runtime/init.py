"""The container's PID 1 side: everything between the second fork and ``execve``.

Runs in a freshly forked, single-threaded child that is already inside new
mount/uts/ipc/pid/cgroup (and maybe net) namespaces.  Every step is named; a failure is
written as one JSON line to the exec-error pipe, which the supervisor turns into a
``SetupError``.  A successful ``execve`` closes that pipe (it is close-on-exec), which is
how the supervisor learns the start worked.
"""

from __future__ import annotations

import array
import errno
import fcntl
import functools
import json
import os
import resource
import socket
import stat
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from . import _libc, capabilities, seccomp
from .devnodes import DeviceNode, make_nodes
from .pathlookup import NotRunnable, find_in_path
from .userns import attach_here
from .users import resolve_user

if TYPE_CHECKING:
    from ..models import SecurityConfig

T = TypeVar("T")

# Docker's masked and read-only /proc and /sys paths (moby daemon/pkg/oci/defaults.go).
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (name, major, minor): Docker's default device nodes, all 0666 root:root.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))

NOSUID, NODEV, NOEXEC = _libc.MS_NOSUID, _libc.MS_NODEV, _libc.MS_NOEXEC

RLIMITS = {
    "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU, "data": resource.RLIMIT_DATA,
    "fsize": resource.RLIMIT_FSIZE, "locks": 10,
    "memlock": resource.RLIMIT_MEMLOCK, "msgqueue": resource.RLIMIT_MSGQUEUE,
    "nice": resource.RLIMIT_NICE, "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC, "rss": resource.RLIMIT_RSS,
    "rtprio": resource.RLIMIT_RTPRIO, "rttime": resource.RLIMIT_RTTIME,
    "sigpending": resource.RLIMIT_SIGPENDING, "stack": resource.RLIMIT_STACK,
    "as": resource.RLIMIT_AS,
}


@dataclass(frozen=True)
class MountSpec:
    kind: str  # "bind" (also volumes: their _data dir) or "tmpfs"
    source: str
    target: str
    read_only: bool = False
    options: str = ""
    volume: bool = False  # a volume's _data: mounted nosuid,nodev
    idmap: bool = False  # the container's own file (/etc/hosts …): idmapped with a userns


@dataclass
class InitPlan:
    """Everything PID 1 needs, computed by the supervisor before forking."""

    container_dir: Path
    layer_dirs: list[str]  # bottom to top
    args: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    new_net: bool
    net_fd: int = -1  # a network namespace the supervisor prepared, to join instead
    read_only: bool = False
    ulimits: list[tuple[str, int, int]] = field(default_factory=list)
    cgroup_binds: list[tuple[str, str]] = field(default_factory=list)  # (name, host dir)
    cap_mask: int = capabilities.DEFAULT_MASK
    seccomp_program: seccomp.Program | None = None  # compiled by the supervisor; None: none
    cgroup_version: int = 1
    mounts: list[MountSpec] = field(default_factory=list)
    tty: bool = False
    open_stdin: bool = False
    pty_sock: int = -1  # with a TTY: where the pty master goes (to the supervisor)
    winsize: bytes = b""
    security: SecurityConfig | None = None  # None: Docker's defaults
    device_nodes: list[DeviceNode] = field(default_factory=list)  # --device, --privileged
    # --userns=auto: detached mounts made before the user namespace (runtime/userns.py):
    # the idmapped rootfs, a sysfs of a netns the container does not own, the binds.
    rootfs_fd: int = -1
    sys_fd: int = -1
    opened: list[tuple[MountSpec, int]] | None = None


class StepFailed(Exception):
    def __init__(self, stage: str, err: int, detail: str, exit_code: int = 125) -> None:
        super().__init__(detail)
        self.stage, self.err, self.detail, self.exit_code = stage, err, detail, exit_code


def _step(stage: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except StepFailed:
        raise
    except OSError as exc:
        raise StepFailed(stage, exc.errno or 0, str(exc)) from exc
    except (LookupError, ValueError) as exc:
        raise StepFailed(stage, 0, str(exc)) from exc


def step_value(stage: str, fn: Callable[[], T]) -> T:
    """``_step`` for a step that produces something (the path to exec, the user …)."""
    result: list[T] = []

    def run() -> None:
        result.append(fn())

    _step(stage, run)
    return result[0]


def mount_overlay(layer_dirs: list[str], container_dir: Path) -> None:
    """The container's root at ``container_dir/rootfs`` (changes the working directory)."""
    # Relative lower paths (after chdir into the layers dir) keep the option string short:
    # it must fit in one page (overlay2 does the same).
    layers = [Path(p) for p in layer_dirs]
    rootfs = container_dir / "rootfs"
    base = layers[0].parent.parent if layers else rootfs
    os.chdir(base)
    lower = ":".join(os.path.relpath(p, base) for p in reversed(layers))
    data = (f"index=off,lowerdir={lower},upperdir={container_dir / 'upper'},"
            f"workdir={container_dir / 'work'}")
    if len(data) >= os.sysconf("SC_PAGE_SIZE") - 1:
        raise StepFailed("mount rootfs", errno.E2BIG, f"too many layers ({len(layers)})")
    # nodev: a device node in an image layer or made in the upper dir cannot be opened
    # (containers/storage's default); /dev is a tmpfs of its own on top.
    _libc.mount("overlay", str(rootfs), "overlay", NODEV, data)


def _make_dir(path: Path, mode: int = 0o755) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise StepFailed("mounts", errno.ENOTDIR, f"{path} is not a directory in the image")


def _mount_proc(rootfs: Path) -> None:
    _make_dir(rootfs / "proc")
    _libc.mount("proc", str(rootfs / "proc"), "proc", NOSUID | NOEXEC | NODEV)


def _bind_host_device(path: Path, name: str, major: int, minor: int) -> None:
    """In a user namespace mknod is refused: bind the host's node (runc does the same)."""
    host = f"/dev/{name}"
    st = os.stat(host)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(major, minor):
        raise StepFailed("mount /dev", errno.ENODEV, f"{host} is not device {major}:{minor}")
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
    _libc.mount(host, str(path), None, _libc.MS_BIND)


def _mount_dev(rootfs: Path, *, userns: bool = False) -> None:
    dev = rootfs / "dev"
    _make_dir(dev)
    _libc.mount("tmpfs", str(dev), "tmpfs", NOSUID | _libc.MS_STRICTATIME,
                "mode=755,size=65536k")
    old_umask = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            if userns:
                _bind_host_device(dev / name, name, major, minor)
            else:
                os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    finally:
        os.umask(old_umask)
    for name, target in DEV_LINKS:
        os.symlink(target, dev / name)
    for sub in ("pts", "shm", "mqueue"):
        (dev / sub).mkdir()
    _libc.mount("devpts", str(dev / "pts"), "devpts", NOSUID | NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _libc.mount("shm", str(dev / "shm"), "tmpfs", NOSUID | NOEXEC | NODEV,
                "mode=1777,size=67108864")
    _libc.mount("mqueue", str(dev / "mqueue"), "mqueue", NOSUID | NOEXEC | NODEV)


def _privileged(plan: InitPlan) -> bool:
    return plan.security is not None and plan.security.privileged


def _mount_sys(plan: InitPlan, rootfs: Path) -> None:
    sys_dir = rootfs / "sys"
    _make_dir(sys_dir)
    # Read-only unless --privileged (Docker clears the flag for /sys and its cgroups).
    ro = (0 if _privileged(plan) else _libc.MS_RDONLY) | NOSUID | NOEXEC | NODEV
    # A fresh sysfs on the host's network too (runc does the same): it shows the netns's
    # devices, and none of the host's submounts under /sys (debugfs, bpffs, securityfs …),
    # which a recursive bind would carry in with their own, writable, flags.
    if plan.sys_fd >= 0:  # made by C1 while it was host root (runtime/userns.py)
        _libc.move_mount(plan.sys_fd, str(sys_dir))
    else:
        _libc.mount("sysfs", str(sys_dir), "sysfs", ro)
    cg = sys_dir / "fs/cgroup"
    if not cg.is_dir():
        return
    if plan.cgroup_version == 2:
        # Inside its cgroup namespace a fresh cgroup2 mount shows only the container's tree.
        _libc.mount("cgroup2", str(cg), "cgroup2", ro)
        return
    # cgroup v1: a tmpfs with the container's own cgroup dir bound read-only per
    # controller (what runc does without a cgroup namespace view).
    _libc.mount("tmpfs", str(cg), "tmpfs", NOSUID | NOEXEC | NODEV, "mode=755")
    for name, host_dir in plan.cgroup_binds:
        target = cg / name
        target.mkdir()
        _libc.mount(host_dir, str(target), None, _libc.MS_BIND)
        _libc.mount(None, str(target), None, _libc.MS_REMOUNT | _libc.MS_BIND | ro)
    _libc.mount(None, str(cg), None, _libc.MS_REMOUNT | ro)


def open_sources(plan: InitPlan) -> list[tuple[MountSpec, int]]:
    """Host-side sources, cloned as detached mounts while the host is still visible.

    They are attached after pivot_root, so every target path is resolved inside the
    container's root: an image's symlink cannot aim a mount at the host (crun pre-opens
    its mounts with open_tree the same way).  The container's hostname, hosts and
    resolv.conf come first.
    """
    etc = [MountSpec("bind", str(plan.container_dir / name), f"/etc/{name}", plan.read_only,
                     idmap=True) for name in ("hostname", "hosts", "resolv.conf")]
    opened = []
    for spec in etc + plan.mounts:
        fd = -1
        if spec.kind == "bind":
            fd = _libc.open_tree(spec.source, recursive=os.path.isdir(spec.source))
            if spec.volume:  # a setuid file or a node a container left must do nothing
                _libc.mount_setattr(fd, _libc.MOUNT_ATTR_NOSUID | _libc.MOUNT_ATTR_NODEV,
                                    recursive=True)
        opened.append((spec, fd))
    return opened


def _make_target(target: str, *, directory: bool) -> None:
    if os.path.islink(target):
        os.unlink(target)  # an image's symlink: replace it (in the upper dir), never follow
    if directory:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _mount_all(opened: list[tuple[MountSpec, int]]) -> None:
    for spec, fd in opened:
        if spec.kind == "tmpfs":
            _make_target(spec.target, directory=True)
            _libc.mount("tmpfs", spec.target, "tmpfs", NOSUID | NODEV | NOEXEC,
                        spec.options or None)
            continue
        _make_target(spec.target, directory=stat.S_ISDIR(os.fstat(fd).st_mode))
        _libc.move_mount(fd, spec.target)
        os.close(fd)
        if spec.read_only:
            _libc.mount(None, spec.target, None,
                        _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | NOSUID | NODEV)


def _pivot(rootfs: Path) -> None:
    os.chdir(rootfs)
    _libc.pivot_root(".", ".")
    # The old root is now stacked under "."; detach it so the host is out of reach.
    _libc.mount(None, ".", None, _libc.MS_SLAVE | _libc.MS_REC)
    _libc.umount2(".", _libc.MNT_DETACH)
    os.chdir("/")


def _open_console(rootfs: Path, plan: InitPlan) -> int:
    """A pty from the container's own devpts; the master goes to the supervisor."""
    master = os.open(rootfs / "dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, 0x40045431, array.array("i", [0]))  # TIOCSPTLCK: unlock
    num = array.array("i", [0])
    fcntl.ioctl(master, 0x80045430, num)  # TIOCGPTN
    slave = os.open(rootfs / f"dev/pts/{num[0]}", os.O_RDWR | os.O_NOCTTY)
    if plan.winsize:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, plan.winsize)
    socket.send_fds(socket.socket(fileno=os.dup(plan.pty_sock)), [b"pty"], [master])
    os.close(master)
    return slave


def _mask_and_protect() -> None:
    for path in MASKED_PATHS:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            _libc.mount("tmpfs", path, "tmpfs", _libc.MS_RDONLY, "nr_blocks=1,nr_inodes=1")
        else:
            _libc.mount("/dev/null", path, None, _libc.MS_BIND)
    for path in READONLY_PATHS:
        if not os.path.lexists(path):
            continue
        _libc.mount(path, path, None, _libc.MS_BIND | _libc.MS_REC)
        _libc.mount(None, path, None,
                    _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | NOSUID | NODEV | NOEXEC)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # Already up (C1 brought up a netns the container's user namespace cannot manage):
        # nothing to do, and nothing it may do.
        flags = struct.unpack_from("16sH", fcntl.ioctl(s.fileno(), 0x8913,  # SIOCGIFFLAGS
                                                       struct.pack("16s24x", b"lo")))[1]
        if flags & 0x1:
            return
        ifr = struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40)  # IFF_UP|LOOPBACK|RUNNING
        fcntl.ioctl(s.fileno(), 0x8914, ifr)  # SIOCSIFFLAGS


def _set_rlimits(plan: InitPlan) -> None:
    for name, soft, hard in plan.ulimits:
        resource.setrlimit(RLIMITS[name], (soft, hard))


def _lookup(argv0: str, env: list[str]) -> str:
    """Find the command in the container's PATH; 127 if absent, 126 if not executable."""
    try:
        return find_in_path(argv0, env)
    except NotRunnable as exc:
        raise StepFailed("exec", exc.err, str(exc), exit_code=exc.exit_code) from None


def container_init(plan: InitPlan, err_fd: int) -> NoReturn:
    """Set up the container from inside its namespaces and exec the command."""
    try:
        _run(plan, err_fd)
    except StepFailed as exc:
        report = {"stage": exc.stage, "errno": exc.err, "detail": exc.detail,
                  "exit_code": exc.exit_code}
    except BaseException as exc:  # anything else is still one clear error, never a hang
        report = {"stage": "init", "errno": 0, "detail": repr(exc), "exit_code": 125}
    try:
        os.write(err_fd, json.dumps(report).encode())
    finally:
        os._exit(int(report["exit_code"]))  # type: ignore[call-overload]


def _run(plan: InitPlan, err_fd: int) -> None:
    userns = plan.rootfs_fd >= 0
    # With a user namespace the private state dir is out of the container root's reach:
    # its root file system is reached through the fd of the detached overlay instead.
    rootfs = Path(f"/proc/self/fd/{plan.rootfs_fd}") if userns \
        else plan.container_dir / "rootfs"
    _step("mount propagation",
          lambda: _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE))
    if userns:  # C1's working directory is the rootfs dir (runtime/userns.py)
        _step("mount rootfs", lambda: attach_here(plan.rootfs_fd))
    else:
        _step("mount rootfs", lambda: mount_overlay(plan.layer_dirs, plan.container_dir))
    _step("mount /proc", lambda: _mount_proc(rootfs))
    _step("mount /dev", lambda: _mount_dev(rootfs, userns=userns))
    _step("devices", lambda: make_nodes(rootfs, plan.device_nodes, bind=userns))
    slave = -1
    if plan.tty:

        def console() -> None:
            nonlocal slave
            slave = _open_console(rootfs, plan)

        _step("tty", console)
    _step("mount /sys", lambda: _mount_sys(plan, rootfs))
    opened: list[tuple[MountSpec, int]] = list(plan.opened or [])

    def sources() -> None:
        opened.extend(open_sources(plan))

    if plan.opened is None:  # with a user namespace C1 opened them as host root
        _step("mount sources", sources)
    _step("pivot_root", lambda: _pivot(rootfs))
    _step("mounts", functools.partial(_mount_all, opened))
    sec = plan.security
    if not _privileged(plan) and (sec is None or sec.masked_paths):
        _step("mask paths", _mask_and_protect)
    if plan.read_only:
        _step("read-only rootfs", lambda: _libc.mount(
            None, "/", None, _libc.MS_REMOUNT | _libc.MS_BIND | _libc.MS_RDONLY | NODEV))
    _step("hostname", lambda: _libc.sethostname(plan.hostname))
    if plan.new_net:
        _step("loopback", loopback_up)
    _step("rlimits", lambda: _set_rlimits(plan))

    env = list(plan.env)
    user = None

    def _user() -> None:
        nonlocal user
        user = resolve_user(plan.user)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")

    _step("user", _user)
    assert user is not None
    resolved = user

    def _cwd() -> None:
        os.makedirs(plan.cwd, exist_ok=True)
        os.chdir(plan.cwd)

    _step("chdir", _cwd)
    path = step_value("exec", lambda: _lookup(plan.args[0], env))
    os.umask(0o022)
    if slave >= 0:

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)

        _step("tty", controlling_tty)

    no_new_privs = sec is not None and sec.no_new_privs
    program = plan.seccomp_program
    if no_new_privs:
        _step("no_new_privs", capabilities.set_no_new_privs)
    if program is not None and not no_new_privs:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the next step
        # may drop: load it first (runc's order).  What runs until execve (prctl, capset,
        # setgroups, setresuid, close_range, execve) is allowed by any usable profile.
        _step("seccomp", functools.partial(seccomp.load, program))
    _step("capabilities", functools.partial(capabilities.become, resolved, plan.cap_mask))
    if program is not None and no_new_privs:
        _step("seccomp", functools.partial(seccomp.load, program))  # as late as possible
    # Nothing of the supervisor's may leak into the container (CVE-2024-21626 class).
    os.closerange(3, err_fd)
    os.closerange(err_fd + 1, 65536)
    try:
        os.execve(path, plan.args, dict(e.partition("=")[::2] for e in env))
    except OSError as exc:
        code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
        raise StepFailed("exec", exc.errno or 0, f'exec: "{plan.args[0]}": {exc.strerror}',
                         exit_code=code) from exc
