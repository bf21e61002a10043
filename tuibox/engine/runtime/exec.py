"""``exec``: a new process inside a running container, with nothing of the caller's.

The caller (the CLI, single-threaded) starts ``exec_helper`` as a fresh process: the
interpreter is a sealed in-memory copy (so a container that tricks the kernel into
running "``/proc/self/exe``" gets a copy it cannot write to, CVE-2019-5736), the
environment is empty, and the only descriptors are the job, the error pipe, the pty
socket, the container's namespaces and the command's stdio.  Those are pipes that the
caller relays (or, with ``-t``, a pty from the container's own devpts whose master comes
back over the socket), never the caller's own descriptors: as with Docker and runc, a
process in the container cannot read the file the operator's output goes to, nor keep
reading the operator's terminal after ``exec`` ends.  The namespaces are fds the caller
opened through a verified handle on the container's PID 1 (``liveness``), never paths
under ``/proc/<pid>``: a pid reused by a host process after the check cannot slip in.

The helper joins the container's cgroup and namespaces, forks the command into the pid
namespace and exits with its status, so the caller's ``waitpid`` sees the command's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import marshal
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SetupError
from . import capabilities
from .exec_helper import BOOT, ERR_FD, JOB_FD, NAMESPACES, NS_FD, SOCK_FD

if TYPE_CHECKING:
    from ..liveness import LiveProcess

MFD_EXEC = 0x10  # Linux 6.3+: say the memfd may be executed (vm.memfd_noexec)


@dataclass
class ExecPlan:
    # The container's PID 1, verified, with an fd for every namespace to join (a subset
    # of NAMESPACES): ``start_exec`` closes it once the helper holds the fds.
    process: LiveProcess
    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    tty: bool = False
    stdin: bool = False
    privileged: bool = False
    cgroup_procs: list[Path] = field(default_factory=list)
    winsize: bytes = b""  # struct winsize of the user's terminal, set before the exec
    seccomp: bool = True
    detach: bool = False  # -d: stdio are the container's /dev/null, nothing is relayed
    # What the command drops to; None: Docker's default set (all of ours if privileged)
    # and the default profile.  A per-container set and filter are passed here.
    cap_mask: int | None = None
    seccomp_filter: bytes | None = None
    seccomp_flags: int = 0
    no_new_privs: bool | None = None  # None: on unless privileged


@dataclass
class ExecProcess:
    helper: int  # waitpid() this: its exit status is the command's
    pty_master: int = -1
    stdin: int = -1  # write end of the command's stdin (with -i), else -1
    stdout: int = -1  # read ends of the command's stdout and stderr (without -t, -d)
    stderr: int = -1

    def close(self) -> None:
        for name in ("pty_master", "stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


def sealed_interpreter() -> int:
    """A sealed memfd copy of our interpreter binary (``F_SEAL_WRITE``: nobody, even
    through ``/proc/<pid>/exe``, can change it), or -1 if this kernel forbids it."""
    real = os.path.realpath(sys.executable)
    try:
        fd = os.memfd_create("tuibox-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            return -1
        fd = os.memfd_create("tuibox-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        src = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src).st_size
            done = 0
            while done < size:
                sent = os.sendfile(fd, src, None, size - done)
                if not sent:
                    raise OSError(errno.EIO, f"{real} shrank while being copied")
                done += sent
        finally:
            os.close(src)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _namespaces(process: LiveProcess) -> list[tuple[str, int]]:
    """(name, fd) of the namespaces to join, in the order the helper joins them."""
    joined = [(name, process.ns[name]) for name in NAMESPACES if name in process.ns]
    if not any(name == "mnt" for name, _ in joined):
        raise SetupError("namespaces", "no mount namespace to join", exit_code=126)
    return joined


def _job(plan: ExecPlan) -> bytes:
    from . import seccomp

    code = plan.seccomp_filter
    if code is None and plan.seccomp and not plan.privileged:
        try:
            code = seccomp.compiled()  # compiled here, only loaded in the container
        except OSError as exc:
            raise SetupError("seccomp", str(exc)) from None
    mask = plan.cap_mask
    if mask is None:
        mask = capabilities.own_permitted() if plan.privileged else capabilities.DEFAULT_MASK
    nnp = (not plan.privileged) if plan.no_new_privs is None else plan.no_new_privs
    body = {"args": plan.args, "env": plan.env, "cwd": plan.cwd, "user": plan.user,
            "tty": plan.tty, "stdin": plan.stdin, "detach": plan.detach,
            "winsize": plan.winsize, "cgroup_procs": [str(p) for p in plan.cgroup_procs],
            "cap_mask": mask, "no_new_privs": nnp, "seccomp_flags": plan.seccomp_flags,
            "namespaces": [name for name, _ in _namespaces(plan.process)]}
    return marshal.dumps({"path": [os.path.abspath(p) for p in sys.path if p], "plan": body,
                          "seccomp": code})


def _child(fds: dict[int, int], image: int) -> None:
    """In the forked child: put each descriptor at its number, close all others, exec the
    helper with an empty environment."""
    try:
        # Copies above every target first, so no dup2 overwrites a source still needed.
        moved = {target: fcntl.fcntl(src, fcntl.F_DUPFD, 64) for target, src in fds.items()}
        if image >= 0:
            image = fcntl.fcntl(image, fcntl.F_DUPFD_CLOEXEC, 64)
        for target, fd in moved.items():
            os.dup2(fd, target)  # inheritable: these are the helper's
        for fd in range(max(fds) + 1):
            if fd not in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.closerange(max(fds) + 1, image if image >= 0 else 1 << 20)
        if image >= 0:
            os.closerange(image + 1, 1 << 20)
        argv = ["tuibox-exec", "-I", "-S", "-c", BOOT]
        os.execve(image if image >= 0 else os.path.realpath(sys.executable), argv, {})
    finally:
        os._exit(126)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def start_exec(plan: ExecPlan) -> ExecProcess:
    """Start the helper from this (single-threaded) process; raise ``SetupError`` if the
    command could not start.  The caller relays the stdio and waits for ``helper``.
    ``plan.process`` is closed here, whatever happens: the helper has its own copies."""
    try:
        return _start(plan)
    finally:
        plan.process.close()


def _start(plan: ExecPlan) -> ExecProcess:
    job = _job(plan)
    ns_fds = [fd for _, fd in _namespaces(plan.process)]
    proc = ExecProcess(helper=-1)
    opened: list[int] = []
    try:
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened += [job_r, job_w, err_r, err_w]
        if plan.tty or plan.detach:
            dead_r, dead_w = os.pipe2(os.O_CLOEXEC)  # the helper's stdio: nothing flows
            opened += [dead_r, dead_w]
            stdio = (dead_r, dead_w, dead_w)
        else:
            in_r, proc.stdin = os.pipe2(os.O_CLOEXEC)
            proc.stdout, out_w = os.pipe2(os.O_CLOEXEC)
            proc.stderr, err_out_w = os.pipe2(os.O_CLOEXEC)
            opened += [in_r, out_w, err_out_w]
            stdio = (in_r, out_w, err_out_w)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) \
            if plan.tty else (None, None)
        fds = {0: stdio[0], 1: stdio[1], 2: stdio[2], JOB_FD: job_r, ERR_FD: err_w}
        if theirs is not None:
            fds[SOCK_FD] = theirs.fileno()
        for i, fd in enumerate(ns_fds):
            fds[NS_FD + i] = fd
        image = sealed_interpreter()
        try:
            proc.helper = os.fork()
            if proc.helper == 0:
                _child(fds, image)
        finally:
            if image >= 0:
                os.close(image)
    except BaseException:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        proc.close()
        raise
    for fd in opened:
        if fd not in (job_w, err_r):
            os.close(fd)
    if theirs is not None:
        theirs.close()
    if not plan.stdin and proc.stdin >= 0:
        os.close(proc.stdin)  # the command reads the container's /dev/null
        proc.stdin = -1
    try:
        _write_all(job_w, job)
    except BrokenPipeError:
        pass  # the helper died before reading: its status says why
    finally:
        os.close(job_w)
    if ours is not None:
        with contextlib.suppress(OSError):
            _, passed, _, _ = socket.recv_fds(ours, 16, 1)
            proc.pty_master = passed[0] if passed else -1
        ours.close()
    report = b""
    while chunk := os.read(err_r, 65536):
        report += chunk
    os.close(err_r)
    if report:  # nothing: the command was exec'd (the pipe closed on exec)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.helper, 0)
        proc.close()
        info = marshal.loads(report)
        raise SetupError(info["stage"], info["detail"], exit_code=info["exit_code"])
    return proc
