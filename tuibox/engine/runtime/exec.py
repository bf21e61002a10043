"""``exec``: a new process inside a running container.

The caller (the CLI, single-threaded) forks a helper that joins the container's cgroup
and every namespace of its PID 1, then forks again so the command is inside the pid
namespace.  The helper waits for it and exits with its code, so the caller's ``waitpid``
sees the command's exit status.  With a TTY, the command gets a pty from the container's
own devpts; the master end comes back to the caller over a socket.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..errors import SetupError
from . import _libc, capabilities
from .init import StepFailed, _lookup, _step, step_value
from .seccomp import compiled as seccomp_compiled
from .seccomp import load_default_filter
from .users import resolve_user

# Joined in this order; the mount namespace last (it changes our root and /proc).
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


@dataclass
class ExecPlan:
    pid: int  # host pid of the container's PID 1
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


@dataclass
class ExecProcess:
    helper: int  # waitpid() this: its exit status is the command's
    pty_master: int = -1


def _open_pty() -> tuple[int, int]:
    """A pty from the container's devpts (we are in its mount namespace already)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, array.array("i", [0]))
    num = array.array("i", [0])
    fcntl.ioctl(master, TIOCGPTN, num)
    slave = os.open(f"/dev/pts/{num[0]}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def _command(plan: ExecPlan, err_fd: int, sock: socket.socket | None) -> NoReturn:
    """Inside every namespace: identity, stdio, exec."""
    try:
        env = list(plan.env)
        user = resolve_user(plan.user)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")

        def stdio() -> None:
            os.setsid()
            if plan.tty:
                master, slave = _open_pty()
                assert sock is not None
                socket.send_fds(sock, [b"pty"], [master])
                os.close(master)
                fcntl.ioctl(slave, TIOCSCTTY, 0)
                if plan.winsize:
                    fcntl.ioctl(slave, termios.TIOCSWINSZ, plan.winsize)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                os.close(slave)
            elif not plan.stdin:
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)

        _step("tty" if plan.tty else "stdio", stdio)

        def cwd() -> None:
            os.chdir(plan.cwd or "/")

        _step("chdir", cwd)
        path = step_value("exec", lambda: _lookup(plan.args[0], env))
        mask = capabilities.own_permitted() if plan.privileged else capabilities.DEFAULT_MASK

        _step("capabilities", lambda: capabilities.become(
            user, mask, no_new_privs=not plan.privileged))
        if plan.seccomp and not plan.privileged:
            _step("seccomp", load_default_filter)
        os.closerange(3, err_fd)
        os.closerange(err_fd + 1, 65536)
        os.execve(path, plan.args, dict(e.partition("=")[::2] for e in env))
    except StepFailed as exc:
        report = {"stage": exc.stage, "detail": exc.detail, "exit_code": exc.exit_code}
    except OSError as exc:
        code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC) else 127
        report = {"stage": "exec", "detail": f'exec: "{plan.args[0]}": {exc.strerror}',
                  "exit_code": code}
    except BaseException as exc:
        report = {"stage": "exec", "detail": repr(exc), "exit_code": 126}
    with contextlib.suppress(OSError):
        os.write(err_fd, json.dumps(report).encode())
    os._exit(int(report["exit_code"]))  # type: ignore[call-overload]


def _helper(plan: ExecPlan, err_fd: int, sock: socket.socket | None) -> NoReturn:
    """Join the cgroup and namespaces, fork the command, wait, exit with its code."""
    try:
        fds = {ns: os.open(f"/proc/{plan.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
               for ns in NAMESPACES}
        for procs in plan.cgroup_procs:
            with contextlib.suppress(OSError):
                procs.write_text(str(os.getpid()))
        for ns in NAMESPACES:
            _libc.setns(fds[ns], 0)
            os.close(fds[ns])
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(err_fd, json.dumps({"stage": "namespaces", "detail": str(exc),
                                         "exit_code": 126}).encode())
        os._exit(126)
    child = os.fork()
    if child == 0:
        _command(plan, err_fd, sock)
    os.close(err_fd)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def start_exec(plan: ExecPlan) -> ExecProcess:
    """Fork the helper from this (single-threaded) process; raise ``SetupError`` if the
    command could not start.  The caller waits for ``helper``."""
    if plan.seccomp and not plan.privileged:
        try:
            seccomp_compiled()  # before the fork and the setns: the helper only loads it
        except OSError as exc:
            raise SetupError("seccomp", str(exc)) from None
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if plan.tty \
        else (None, None)
    helper = os.fork()
    if helper == 0:
        os.close(err_r)
        if ours is not None:
            ours.close()
        signal.set_wakeup_fd(-1)
        _helper(plan, err_w, theirs)
    os.close(err_w)
    if theirs is not None:
        theirs.close()
    master = -1
    if ours is not None:
        with contextlib.suppress(OSError):
            _, fds, _, _ = socket.recv_fds(ours, 16, 1)
            master = fds[0] if fds else -1
        ours.close()
    report = b""
    while chunk := os.read(err_r, 65536):
        report += chunk
    os.close(err_r)
    if report:
        info = json.loads(report)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(helper, 0)
        if master >= 0:
            os.close(master)
        raise SetupError(info["stage"], info["detail"], exit_code=info["exit_code"])
    return ExecProcess(helper=helper, pty_master=master)
