"""The ``exec`` helper: the program that joins a container and starts the command.

``exec.start_exec`` runs it from a sealed copy of the interpreter with an empty
environment and only these descriptors, so nothing of the caller's process comes along:

    0, 1, 2   the command's stdio (pipes relayed by the caller; dead pipes with -t or -d)
    3         the job (``marshal``: builtin, no imports), read to its end
    4         the error report pipe (close-on-exec: EOF means the command was exec'd)
    5         with -t: the socket the pty master goes back on
    6 …       the container's namespaces: those the job names, in ``NAMESPACES`` order

It makes itself non-dumpable first (a process of the container may see the child it forks
into the pid namespace: its ``/proc/<pid>/{exe,environ,fd}`` stay closed), imports all it
will ever need, forbids further imports, joins the cgroup and namespaces, forks the
command, waits for it and exits with its code.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import marshal
import os
import signal
import socket
import termios
from typing import Any, NoReturn

from . import _libc, capabilities, confine
from .pathlookup import NotRunnable, find_in_path
from .users import ResolvedUser, resolve_user

# mnt after the others: it moves our root; user last (runc's order): once in a container's
# user namespace (--userns=auto) we are no longer host root.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt", "user")
JOB_FD, ERR_FD, SOCK_FD, NS_FD = 3, 4, 5, 6
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


class Failed(Exception):
    """A step failed: reported to the caller as ``{"stage", "detail", "exit_code"}``."""

    def __init__(self, stage: str, detail: str, exit_code: int = 126) -> None:
        super().__init__(detail)
        self.stage, self.detail, self.exit_code = stage, detail, exit_code


def _step(stage: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Failed:
        raise
    except (OSError, LookupError, ValueError) as exc:
        raise Failed(stage, str(exc)) from exc


def find_executable(argv0: str, env: list[str]) -> str:
    """The command in the container's PATH, as ``docker exec`` reports it (127 / 126)."""
    try:
        return find_in_path(argv0, env)
    except NotRunnable as exc:
        raise Failed("exec", str(exc), exit_code=exc.exit_code) from None


def _open_pty() -> tuple[int, int]:
    """A pty from the container's devpts (we are in its mount namespace already)."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, array.array("i", [0]))
    num = array.array("i", [0])
    fcntl.ioctl(master, TIOCGPTN, num)
    slave = os.open(f"/dev/pts/{num[0]}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def _stdio(plan: dict[str, Any]) -> None:
    os.setsid()  # no controlling terminal of the caller's, ever
    if plan["tty"]:
        master, slave = _open_pty()
        with socket.socket(fileno=SOCK_FD) as sock:
            socket.send_fds(sock, [b"pty"], [master])
        os.close(master)
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        if plan["winsize"]:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, plan["winsize"])
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
    elif plan["detach"] or not plan["stdin"]:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2) if plan["detach"] else (0,):
            os.dup2(null, fd)
        os.close(null)


def _command(plan: dict[str, Any], code: bytes | None, before: frozenset[str]) -> NoReturn:
    """In every namespace: stdio, cwd, identity, filter, exec."""
    try:
        env = list(plan["env"])
        user: ResolvedUser = _step("user", resolve_user, plan["user"])
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")
        _step("tty" if plan["tty"] else "stdio", _stdio, plan)
        _step("chdir", os.chdir, plan["cwd"] or "/")
        path = find_executable(plan["args"][0], env)
        seccomp = (lambda: confine.load_filter(code, plan["seccomp_flags"])) if code else None
        if seccomp and not plan["no_new_privs"]:
            _step("seccomp", seccomp)  # needs CAP_SYS_ADMIN without no_new_privs
        _step("capabilities", lambda: capabilities.become(
            user, plan["cap_mask"], no_new_privs=plan["no_new_privs"]))
        if seccomp and plan["no_new_privs"]:
            _step("seccomp", seccomp)  # as late as possible
        _step("exec", confine.check_no_new_modules, before)  # nothing came from the container
        os.closerange(3, ERR_FD)
        os.closerange(ERR_FD + 1, 1 << 20)
        os.execve(path, plan["args"], dict(e.partition("=")[::2] for e in env))
    except Failed as exc:
        report = {"stage": exc.stage, "detail": exc.detail, "exit_code": exc.exit_code}
    except OSError as exc:
        status = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC) else 127
        report = {"stage": "exec", "detail": f'exec: "{plan["args"][0]}": {exc.strerror}',
                  "exit_code": status}
    except BaseException as exc:
        report = {"stage": "exec", "detail": repr(exc), "exit_code": 126}
    _report(report)


def _report(report: dict[str, Any]) -> NoReturn:
    with contextlib.suppress(OSError):
        os.write(ERR_FD, marshal.dumps(report))
    os._exit(int(report["exit_code"]))


def _join(plan: dict[str, Any]) -> None:
    """The container's cgroup and namespaces (nothing of the container is opened here
    but the cgroup files, which are the host's; the namespaces are the fds we were given,
    opened by the caller through its verified handle on the container's PID 1)."""
    for procs in plan["cgroup_procs"]:
        with contextlib.suppress(OSError), open(procs, "w") as f:
            f.write(str(os.getpid()))
    fds = {name: NS_FD + i for i, name in enumerate(plan["namespaces"])}
    user_fd = fds.pop("user", -1)  # only a --userns=auto container's is passed
    refused = []
    for fd in fds.values():
        try:
            _libc.setns(fd, 0)
        except PermissionError:
            refused.append(fd)  # runc retries these once in the user namespace
            continue
        os.close(fd)
    if user_fd >= 0:
        _libc.setns(user_fd, _libc.CLONE_NEWUSER)
        os.close(user_fd)
        os.setresgid(0, 0, 0)  # the namespace's root: host id start of its range
        os.setgroups([])
        os.setresuid(0, 0, 0)
        confine.go_non_dumpable()  # a change of uid reset it to fs.suid_dumpable
    for fd in refused:
        _libc.setns(fd, 0)
        os.close(fd)


def main(job: dict[str, Any]) -> NoReturn:
    """Run the job; never returns."""
    confine.go_non_dumpable()  # execve made us dumpable again; before any namespace
    plan: dict[str, Any] = job["plan"]
    code: bytes | None = job["seccomp"]
    try:
        fcntl.fcntl(ERR_FD, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        before = confine.forbid_imports()  # everything is imported; the container is next
        _join(plan)
    except OSError as exc:
        _report({"stage": "namespaces", "detail": str(exc), "exit_code": 126})
    try:
        child = os.fork()
    except OSError as exc:  # ENOMEM: the pid namespace's init died since the check
        _report({"stage": "namespaces", "detail": f"the container's process is gone "
                 f"({exc.strerror})", "exit_code": 126})
    if child == 0:
        _command(plan, code, before)
    for fd in (0, 1, 2, ERR_FD, SOCK_FD):  # the caller sees EOF when the command is done
        with contextlib.suppress(OSError):
            os.close(fd)

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
    status = os.waitstatus_to_exitcode(status)
    os._exit(128 - status if status < 0 else status)


# What the interpreter runs (``python -I -S -c BOOT``): read the job, find tuibox, go.
BOOT = """\
import marshal, os, sys
data = b""
while chunk := os.read(3, 1 << 16):
    data += chunk
os.close(3)
job = marshal.loads(data)
sys.path[:] = job["path"]
from tuibox.engine.runtime.exec_helper import main
main(job)
"""
