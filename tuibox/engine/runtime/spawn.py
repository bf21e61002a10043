"""The supervisor's side of starting a container: fork, cgroup, namespaces, fork, exec.

Order (runc's, in Python): fork C1 → parent puts C1 in the cgroup while C1 waits on a
sync socket → C1 unshares the namespaces and forks C2, PID 1 of the new pid namespace →
C2 runs ``init.container_init`` → ``execve``.  C2 is re-parented to the supervisor (a
child subreaper) when C1 exits.  The exec-error pipe reports a failed step, or closes on
a successful ``execve``.

With ``--userns=auto`` C1 also waits, after unsharing the user namespace, for the
supervisor to map it (runtime/userns.py) and, on a bridge network, after unsharing the
others, for the supervisor to put the veth pairs into the network namespace it just
made (``plug_network``): that namespace is then owned by the container's user namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError
from . import _libc, userns
from .init import InitPlan, container_init, loopback_up, open_sources

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # a 1 MiB pipe rides out a busy or restarting supervisor
SETUP_TIMEOUT = 30.0

BASE_NAMESPACES = (_libc.CLONE_NEWNS | _libc.CLONE_NEWUTS | _libc.CLONE_NEWIPC
                   | _libc.CLONE_NEWPID | _libc.CLONE_NEWCGROUP)


def _inherited_nofile() -> tuple[int, int]:
    """The open-files limit the keeper was started with, before it raised its own."""
    raw = os.environ.get("TUIBOX_HOST_NOFILE", "")
    soft, _, hard = raw.partition(":")
    if soft.isdigit() and hard.isdigit():
        return int(soft), int(hard)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


INHERITED_NOFILE = _inherited_nofile()


def raise_nofile_limit() -> None:
    """Let a supervisor hold the pipes of thousands of containers (soft limit → hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Spawned:
    pid: int  # host pid of the container's PID 1
    stdout: int  # read ends, non-blocking (-1 with a TTY)
    stderr: int
    stdin: int = -1  # write end of the container's stdin pipe (-i without -t)
    pty_master: int = -1  # with a TTY: the pty master, all stdio goes through it


def _reset_signals() -> None:
    # The supervisor ignores SIGPIPE (Python's default) and routes SIGCHLD to a wakeup fd;
    # a container must start with every disposition at its default and nothing blocked.
    signal.set_wakeup_fd(-1)
    for sig in range(1, signal.NSIG):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _first_child(plan: InitPlan, flags: int, sync: socket.socket, out_w: int, err_w: int,
                 exec_w: int, in_r: int, ids: tuple[int, int] | None, plugged: bool) -> None:
    """C1: wait until the parent placed us in the cgroup, unshare, fork PID 1."""
    stage = "stdio"
    try:
        _reset_signals()
        # The supervisor raised its own open-files limit to hold many containers' pipes;
        # the container gets the limit the supervisor was started with (the host's).
        resource.setrlimit(resource.RLIMIT_NOFILE, INHERITED_NOFILE)
        os.dup2(in_r if in_r >= 0 else os.open("/dev/null", os.O_RDONLY), 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.setsid()
        stage = "cgroup"
        if sync.recv(16) != b"go":
            os._exit(125)
        stage = "namespaces"
        if plan.net_fd >= 0:  # the network the supervisor set up (veth, address, routes)
            _libc.setns(plan.net_fd, _libc.CLONE_NEWNET)
            os.close(plan.net_fd)
        if ids is not None:
            stage = "mount sources"
            _before_userns(plan)
            stage = "user namespace"
            _enter_userns(plan, sync)
            stage = "namespaces"
        _libc.unshare(flags)
        if plugged:  # our new netns gets its endpoints from the supervisor (_plug)
            stage = "network"
            sync.send(b"netns")
            if sync.recv(16) != b"plugged":
                os._exit(125)  # the supervisor failed and reports why
        stage = "fork"
        pid = os.fork()
        if pid == 0:
            container_init(plan, exec_w)
        sync.send(str(pid).encode())
        os._exit(0)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(exec_w, json.dumps({"stage": stage, "errno": getattr(exc, "errno", 0) or 0,
                                         "detail": str(exc), "exit_code": 125}).encode())
        os._exit(125)


def _id_range(plan: InitPlan) -> tuple[int, int] | None:
    sec = plan.security
    if sec is None or sec.userns != "auto":
        return None
    if sec.id_range is None:
        raise SetupError("user namespace", "the container has no id range (recreate it)")
    return sec.id_range.start, sec.id_range.size


def _before_userns(plan: InitPlan) -> None:
    """C1, still host root: what the container's root will not be allowed to do."""
    if plan.net_fd >= 0 or not plan.new_net:
        # A netns the user namespace will not own (the supervisor's, another container's,
        # the host's): only host root may mount its sysfs or bring its loopback up.
        plan.sys_fd = userns.sysfs_fd()
        if plan.new_net:
            loopback_up()
    plan.opened = open_sources(plan)  # under the private state root, too
    for _, fd in plan.opened:
        if fd >= 0:  # cloned from the host's mount namespace, not the container's
            userns.make_private(fd)
    os.chdir(plan.container_dir / "rootfs")  # PID 1 attaches the rootfs here


def _enter_userns(plan: InitPlan, sync: socket.socket) -> None:
    """C1: a new user namespace, mapped by the supervisor; then be its root."""
    assert plan.opened is not None
    _libc.unshare(_libc.CLONE_NEWUSER)
    # The container's own files (volumes, /etc/hosts …) go to the supervisor to be shown
    # through the id mapping; the detached mounts are shared, so nothing comes back.
    own = [fd for spec, fd in plan.opened if spec.idmap or spec.volume]
    socket.send_fds(sync, [b"userns"], own)
    msg, fds, _, _ = socket.recv_fds(sync, 16, 1)
    if msg != b"mapped" or len(fds) != 1:
        os._exit(125)  # the supervisor failed and reports why
    plan.rootfs_fd = fds[0]
    userns.become_root()


def _map_userns(plan: InitPlan, c1: int, sync: socket.socket, ids: tuple[int, int]) -> None:
    """Supervisor: write C1's id maps, idmap its files, build the idmapped rootfs."""
    msg, fds, _, _ = socket.recv_fds(sync, 16, 253)
    try:
        if msg != b"userns":
            return  # C1 failed first: its report on the exec-error pipe says why
        try:
            userns.write_maps(c1, *ids)
            ns_fd = userns.open_userns(c1)
        except OSError as exc:
            raise SetupError("user namespace", f"cannot map ids {ids[0]}+{ids[1]}: "
                             f"{exc.strerror}", errno=exc.errno or 0) from exc
        try:
            for fd in fds:
                userns.idmap(fd, ns_fd, recursive=True)
            rootfs = userns.idmapped_rootfs(plan.layer_dirs, str(plan.container_dir / "upper"),
                                            str(plan.container_dir / "work"), ns_fd)
        except OSError as exc:
            raise SetupError("idmapped mounts", f"{exc} (the kernel or the file system of "
                             f"the state root cannot idmap it)", errno=exc.errno or 0) from exc
        finally:
            os.close(ns_fd)
        try:
            socket.send_fds(sync, [b"mapped"], [rootfs])
        finally:
            os.close(rootfs)
    finally:
        for fd in fds:
            os.close(fd)


def _plug(c1: int, sync: socket.socket, plug_network: Callable[[int], None]) -> None:
    """Supervisor: C1's fresh network namespace gets its endpoints (from the host side)."""
    if sync.recv(16) != b"netns":
        return  # C1 failed first: its report on the exec-error pipe says why
    # Our child, not reaped: the pid names C1 until we wait for it.
    ns_fd = os.open(f"/proc/{c1}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        plug_network(ns_fd)
    finally:
        os.close(ns_fd)
    sync.send(b"plugged")


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(r, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def _read_report(fd: int) -> bytes:
    chunks: list[bytes] = []
    poller = select.poll()  # not select(): a supervisor of many containers has fds > 1024
    poller.register(fd, select.POLLIN)
    while True:
        if not poller.poll(SETUP_TIMEOUT * 1000):
            raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def spawn(plan: InitPlan, *, cgroup_procs: list[Path],
          plug_network: Callable[[int], None] | None = None) -> Spawned:
    """Start the container described by ``plan``; raise ``SetupError`` naming the step.

    ``plug_network``: with ``--userns=auto`` and a namespace of its own, called with an
    fd of that namespace once C1 made it, to set its interfaces up from the host side."""
    own_net = plan.new_net and plan.net_fd < 0
    ids = _id_range(plan)
    if plug_network is not None and (ids is None or not own_net):
        raise SetupError("network", "only a container with its own user and network "
                         "namespaces makes its network namespace itself")
    flags = BASE_NAMESPACES | (_libc.CLONE_NEWNET if own_net else 0)
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if plan.open_stdin and not plan.tty else (-1, -1)
    exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
    parent_sync, child_sync = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent_pty, child_pty = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) \
        if plan.tty else (None, None)
    plan.pty_sock = child_pty.fileno() if child_pty is not None else -1
    c1 = os.fork()
    if c1 == 0:
        parent_sync.close()
        if parent_pty is not None:
            parent_pty.close()
        for fd in (out_r, err_r, exec_r, in_w):
            if fd >= 0:
                os.close(fd)
        _first_child(plan, flags, child_sync, out_w, err_w, exec_w, in_r, ids,
                     plug_network is not None)
    child_sync.close()
    if child_pty is not None:
        child_pty.close()
    for fd in (out_w, err_w, exec_w, in_r):
        if fd >= 0:
            os.close(fd)
    pid = 0
    master = -1
    try:
        try:
            for procs in cgroup_procs:
                procs.write_text(str(c1))
        except OSError as exc:
            raise SetupError("cgroup", f"cannot join {procs}: {exc.strerror}",
                             errno=exc.errno or 0) from exc
        parent_sync.send(b"go")
        if ids is not None:
            _map_userns(plan, c1, parent_sync, ids)
        if plug_network is not None:
            _plug(c1, parent_sync, plug_network)
        raw = parent_sync.recv(32)
        pid = int(raw) if raw else 0
        os.waitpid(c1, 0)
        if parent_pty is not None:
            with contextlib.suppress(OSError):
                _, fds, _, _ = socket.recv_fds(parent_pty, 16, 1)
                master = fds[0] if fds else -1
        try:
            report = _read_report(exec_r)
        except TimeoutError:
            if pid:
                os.kill(pid, signal.SIGKILL)
            raise SetupError("init", f"container set-up took over {SETUP_TIMEOUT:.0f}s") from None
        if report:
            info = json.loads(report)
            if pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            raise SetupError(info["stage"], info["detail"], errno=info["errno"],
                             exit_code=info["exit_code"])
        if not pid:
            raise SetupError("fork", "the namespace helper exited without starting PID 1")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c1, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(c1, 0)
        for fd in (out_r, err_r, in_w, master):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        os.close(exec_r)
        parent_sync.close()
        if parent_pty is not None:
            parent_pty.close()
    if plan.tty:
        # All output goes through the pty; the pipes only ever see EOF.
        os.close(out_r)
        os.close(err_r)
        out_r = err_r = -1
        os.set_blocking(master, False)
    else:
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
    if in_w >= 0:
        os.set_blocking(in_w, False)
    return Spawned(pid=pid, stdout=out_r, stderr=err_r, stdin=in_w, pty_master=master)
