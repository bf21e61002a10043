"""``cp``: files between the host and a container, running or stopped.

The container's side is done by a forked helper that enters the container's root (the
mount namespace of its PID 1; for a stopped container a private namespace with its
overlay mounted and ``pivot_root``), so every container path and symlink resolves inside
the container.  Before it opens any container path the helper has imported all it needs
and can import nothing more, holds no host descriptor but its pipe, and has dropped to
the container's own confinement (``runtime.confine``): the filter its PID 1 loaded, its
capabilities less those a copy never needs, and ``no_new_privs`` always.  Nothing the
container planted — an NSS module, a ``.py`` or ``.so`` on the host's import paths — can
run as host root (CVE-2019-14271), and even code that did would hold nothing the
container's own processes lack.  A running container is entered through a verified handle
on its PID 1 (``liveness``), never by a pid number: a pid reused by a host process is
never entered.  The tree moves over a pipe in
``copy_stream``'s format, with numeric ids only, so neither side ever looks up a name.

On the host, ``cp`` follows Docker's rules with one difference for safety: an existing
destination is replaced only if it is a regular file (atomically, by an exchange that is
undone if something else appeared); a symlink, FIFO, socket or device there is neither
followed nor replaced.  Nothing is merged into an existing directory.  Owners: without
``-a`` the copy belongs to the container's root (in) or to the caller (out); with ``-a``
the numeric ids travel.  Setuid and setgid bits never land on the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .copy_stream import DIR, CopyError, Reader, Writer, is_consequence, reason
from .diskfull import reports_no_space
from .errors import Conflict, InvalidArgument, TuiboxError
from .models import IdRange
from .runtime import _libc, capabilities, confine
from .runtime.init import mount_overlay
from .runtime.userns import become_root
from .supervisor.running import cgroup_rel

if TYPE_CHECKING:
    from .engine import Engine

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                       ctypes.c_uint]
_renameat2.restype = ctypes.c_int
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _rename(src_dir: int, src: str, dst_dir: int, dst: str, flags: int) -> None:
    if _renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dst)


# What a copy may need of the container's capabilities: to write where and as whom the
# container's root could (-a owners, others' directories, the modes it sets).  Everything
# else — CAP_MKNOD, CAP_KILL, CAP_NET_RAW, CAP_SYS_ADMIN … — the helper gives up even
# where the container has it: unlike the container's processes, the helper is in the
# host's pid and network namespaces and outside the container's devices cgroup.
COPY_CAPS = capabilities.mask_of(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                  "CAP_FSETID"])


def _confinement(engine: Engine, cid: str) -> confine.Confinement:
    """What the helper drops to: the container's capabilities within ``COPY_CAPS``, the
    filter its PID 1 loaded (Docker's default profile where it runs unconfined or
    privileged), and ``no_new_privs`` always: stricter than the container costs a copy
    nothing.  So the helper can do nothing the container's own root could not
    (``--cap-drop ALL``: a copy only writes what that root may write, as itself)."""
    from .runtime import seccomp
    from .security import joined_confinement

    caps, _nnp, program = joined_confinement(engine.containers.config(cid),
                                             engine.containers.dir(cid))
    if program is not None:
        return confine.Confinement.of(caps & COPY_CAPS, program.code, program.flags)
    try:
        code = seccomp.compiled()
    except OSError as exc:
        raise TuiboxError(f"copy failed: seccomp: {exc.strerror or exc}") from None
    return confine.Confinement.of(caps & COPY_CAPS, code)


@dataclass
class _Target:
    """How the helper enters the container: its mount (and, with ``--userns=auto``, user)
    namespace fd from the verified handle on its PID 1 (running), or the overlay to mount
    (stopped)."""

    mnt_fd: int = -1
    user_fd: int = -1
    layer_dirs: list[str] = field(default_factory=list)
    container_dir: Path | None = None
    ids: IdRange | None = None  # stopped with --userns=auto: ids on disk are shifted

    def close(self) -> None:
        for fd in (self.mnt_fd, self.user_fd):
            if fd >= 0:
                os.close(fd)
        self.mnt_fd = self.user_fd = -1

    def to_disk(self, uid: int, gid: int) -> tuple[int, int]:
        """Container ids → the ids to write (a stopped container's upper dir holds host
        ids; a running one is entered with its user namespace, which maps them)."""
        if self.ids is None:
            return uid, gid
        if max(uid, gid) >= self.ids.size:
            raise CopyError(f"id {max(uid, gid)} is outside the container's user namespace")
        return uid + self.ids.start, gid + self.ids.start

    def from_disk(self, uid: int, gid: int) -> tuple[int, int]:
        if self.ids is None:
            return uid, gid
        start, end = self.ids.start, self.ids.start + self.ids.size
        return tuple(i - start if start <= i < end else i for i in (uid, gid))  # type: ignore[return-value]


def _target(engine: Engine, cid: str) -> _Target:
    from .liveness import open_live

    state = engine.containers.state(cid)
    config = engine.containers.config(cid)
    stopped = _Target(layer_dirs=config.layer_dirs, container_dir=engine.containers.dir(cid),
                      ids=config.security.id_range)
    if not state.running:
        return stopped
    auto = config.security.userns == "auto"
    process = open_live(state, ("mnt", "user") if auto else ("mnt",))
    if process is None:
        # The record says running but its process is gone (not yet recorded, or a
        # restart between processes).  Its overlay may be mounted for a copy only while
        # nothing of the container runs on it: none of its processes is left.
        if state.restarting or _has_processes(state.cgroup or cgroup_rel(cid)):
            raise Conflict(f"container {cid} is between processes (restarting or "
                           "exiting): try again once it runs or has stopped")
        return stopped
    with process:  # the namespace fds move to the target; the rest is closed
        target = _Target(mnt_fd=process.ns.pop("mnt"), user_fd=process.ns.pop("user", -1))
    return target


def _has_processes(rel: str) -> bool:
    from .cgroups import detect_driver

    return bool(detect_driver().pids(rel))


def _enter(target: _Target) -> None:
    """Make ``/`` the container's root.  Only host paths of ours are resolved here."""
    if target.mnt_fd >= 0:
        _libc.setns(target.mnt_fd, _libc.CLONE_NEWNS)  # also sets our root and cwd
        os.close(target.mnt_fd)
        if target.user_fd >= 0:  # --userns=auto: be its root, not the host's
            _libc.setns(target.user_fd, _libc.CLONE_NEWUSER)
            os.close(target.user_fd)
            become_root()
            confine.go_non_dumpable()  # the uid change reset it
    else:
        assert target.container_dir is not None
        _libc.unshare(_libc.CLONE_NEWNS)
        _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
        mount_overlay(target.layer_dirs, target.container_dir)
        os.chdir(target.container_dir / "rootfs")
        # runc's pivot_root(".", "."): the host's root is stacked under ours, then gone.
        _libc.pivot_root(".", ".")
        _libc.umount2(".", _libc.MNT_DETACH)
    os.chdir("/")


Work = Callable[[int, int], None]  # runs in the container: (its pipe end, /proc/self/fd)


def _helper(target: _Target, confinement: confine.Confinement, work: Work, keep: int,
            err_w: int) -> NoReturn:
    code = 0
    try:
        confine.go_non_dumpable()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        confine.plain_locale()
        proc_fd = os.open("/proc/self/fd", _DIR_FLAGS)
        confine.close_fds_except([keep, err_w, proc_fd, target.mnt_fd, target.user_fd])
        os.umask(0)
        _enter(target)
        before = confine.forbid_imports()
        confinement.apply()
        work(keep, proc_fd)
        confine.check_no_new_modules(before)
    except BaseException as exc:
        echo = b"~" if is_consequence(exc) else b""  # see _run
        with contextlib.suppress(BaseException):
            os.write(err_w, echo + reason(exc).encode(errors="replace"))
        code = 1
    os._exit(code)


def _run(target: _Target, confinement: confine.Confinement, work: Work,
         host_side: Callable[[int], None], *, into: bool) -> None:
    """Fork the helper around one end of a pipe (it reads when copying ``into`` the
    container); run ``host_side`` on the other end; raise the first failure."""
    r, w = os.pipe2(os.O_CLOEXEC)
    theirs, ours = (r, w) if into else (w, r)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError:
        for fd in (r, w, err_r, err_w):
            os.close(fd)
        target.close()
        raise
    if pid == 0:
        _helper(target, confinement, work, theirs, err_w)
    target.close()
    os.close(theirs)
    os.close(err_w)
    failure: BaseException | None = None
    try:
        host_side(ours)
    except (OSError, TuiboxError, RecursionError) as exc:
        failure = exc
    finally:
        os.close(ours)
        _, status = os.waitpid(pid, 0)
        raw = b""
        while chunk := os.read(err_r, 4096):
            raw += chunk
        os.close(err_r)
    # When one side fails the other only sees the pipe end ("~": an echo): report the
    # cause, whichever side it was on.
    theirs_echo = raw.startswith(b"~")
    message = raw.removeprefix(b"~").decode(errors="replace")
    ours_echo = failure is not None and is_consequence(failure)
    if failure is not None and (not ours_echo or not message or theirs_echo):
        if isinstance(failure, InvalidArgument):
            raise failure
        raise CopyError(f"copy failed: {reason(failure)}")
    if message:
        raise CopyError(f"copy failed: {message}")
    if status != 0:
        raise CopyError("copy failed in the container")


# ---------------------------------------------------------------------- container → host


def _kind_of(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return what
    return "a regular file"


def _host_destination(raw: str, name: str) -> tuple[int, str, Path]:
    """The directory fd, the entry name the copy will take at ``raw``, and its path."""
    dest = Path(raw)
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        if not name:
            raise InvalidArgument(f"{dest} already exists: cp does not merge into a directory")
        dir_path, final = dest, name
    else:
        if raw.endswith("/"):
            raise InvalidArgument(f"destination directory {dest} does not exist")
        dir_path, final = dest.parent, dest.name
    try:
        return os.open(dir_path, _DIR_FLAGS), final, dir_path / final
    except FileNotFoundError:
        raise InvalidArgument(f"destination directory {dir_path} does not exist") from None
    except NotADirectoryError:
        raise InvalidArgument(f"destination {dir_path} is not a directory") from None


def _check_replaceable(dir_fd: int, final: str, shown: Path) -> None:
    """Refuse early (before any data moves) what ``_place`` would refuse at the end."""
    try:
        st = os.stat(final, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InvalidArgument(f"cannot write to {shown}: it is {_kind_of(st.st_mode)} "
                              "(cp only replaces regular files)")


def _place(staging: int, dir_fd: int, final: str, kind: int, shown: Path) -> None:
    """Move the received entry to ``final``: new, or over a regular file only."""
    try:
        st = os.stat(final, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        _rename(staging, final, dir_fd, final, _RENAME_NOREPLACE)
        return
    if stat.S_ISDIR(st.st_mode):
        if kind == DIR:
            raise InvalidArgument(f"{shown} already exists: cp does not merge into a "
                                  "directory")
        raise InvalidArgument(f"cannot overwrite directory {shown} with a non-directory")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"cannot write to {shown}: it is {_kind_of(st.st_mode)} "
                              "(cp only replaces regular files)")
    if kind == DIR:
        raise InvalidArgument(f"cannot overwrite non-directory {shown} with a directory")
    # Exchange, then look at what we took out: if it was not a regular file after all
    # (swapped in since the stat), put it back and refuse.
    _rename(staging, final, dir_fd, final, _RENAME_EXCHANGE)
    old = os.stat(final, dir_fd=staging, follow_symlinks=False)
    if not stat.S_ISREG(old.st_mode):
        _rename(staging, final, dir_fd, final, _RENAME_EXCHANGE)
        raise InvalidArgument(f"cannot write to {shown}: it is {_kind_of(old.st_mode)} "
                              "(cp only replaces regular files)")


@reports_no_space(lambda _engine, _ref, _path, dest, **_kw: dest)
def copy_from_container(engine: Engine, ref: str, path: str, dest: Path | str, *,
                        archive: bool = False) -> None:
    """``docker cp [-a] CONTAINER:PATH DEST``."""
    cid = engine.resolve(ref)
    path = posixpath.normpath("/" + path.lstrip("/"))
    parent, leaf = posixpath.split(path)
    dir_fd, final, shown = _host_destination(os.fspath(dest), leaf)
    staging_name = f".tuibox-cp-{secrets.token_hex(6)}"
    uid, gid = os.getuid(), os.getgid()

    def produce(out: int, proc_fd: int) -> None:
        try:
            parent_fd = os.open(parent, _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise CopyError(f"Could not find the file {path} in container {ref}") from None
        try:
            name = os.fsencode(leaf or ".")
            try:
                os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise CopyError(f"Could not find the file {path} in container {ref}") from None
            Writer(out, proc_fd, devices="skip").send(parent_fd, name, top=True)
        finally:
            os.close(parent_fd)

    def consume(fd: int) -> None:
        os.mkdir(staging_name, 0o700, dir_fd=dir_fd)
        staging = os.open(staging_name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            owner = target.from_disk if archive else (lambda u, g: (uid, gid))
            kind = Reader(fd, owner, strip_setid=True).receive(staging, os.fsencode(final))
            _place(staging, dir_fd, final, kind, shown)
        finally:
            os.close(staging)

    try:
        _check_replaceable(dir_fd, final, shown)
        confinement = _confinement(engine, cid)
        target = _target(engine, cid)
        _run(target, confinement, produce, consume, into=False)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging_name, dir_fd=dir_fd)
        os.close(dir_fd)


# ---------------------------------------------------------------------- host → container


def _refuse_devices(source: Path) -> None:
    """Refuse a device node or socket anywhere in ``source`` before anything is sent."""
    def check(path: str, st: os.stat_result) -> None:
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            raise InvalidArgument(f"{path} is {_kind_of(st.st_mode)}: cp copies no device "
                                  "nodes or sockets")

    top = os.lstat(source)
    check(str(source), top)
    if stat.S_ISDIR(top.st_mode):
        for dirpath, dirnames, filenames in os.walk(source):
            for entry in dirnames + filenames:
                full = os.path.join(dirpath, entry)
                check(full, os.lstat(full))


@reports_no_space(lambda engine, _src, ref, path, **_kw: f"{ref}:{path}")
def copy_to_container(engine: Engine, source: Path, ref: str, path: str, *,
                      archive: bool = False) -> None:
    """``docker cp [-a] SRC CONTAINER:PATH``: owned by the container's root unless ``-a``."""
    cid = engine.resolve(ref)
    if not os.path.lexists(source):
        raise InvalidArgument(f"could not find the file {source}")
    _refuse_devices(source)
    trailing = path.endswith("/")
    path = posixpath.normpath("/" + path.lstrip("/"))
    name = os.fsencode(source.name or source.resolve().name)
    if not name:
        raise InvalidArgument(f"cannot copy {source}: give a named file or directory")

    def consume(inp: int, _proc_fd: int) -> None:
        if os.path.isdir(path):  # resolved in the container's root: cannot leave it
            target_dir, final = path, name
        elif trailing:
            raise CopyError(f"no such directory in the container: {path}")
        else:
            target_dir, leaf = posixpath.split(path)
            if not os.path.isdir(target_dir):
                raise CopyError(f"no such directory in the container: {target_dir}")
            final = os.fsencode(leaf)
        dir_fd = os.open(target_dir, _DIR_FLAGS)
        try:
            owner = target.to_disk if archive else (lambda u, g: target.to_disk(0, 0))
            Reader(inp, owner, merge=True).receive(dir_fd, final)
        finally:
            os.close(dir_fd)

    def produce(out: int) -> None:
        proc_fd = os.open("/proc/self/fd", _DIR_FLAGS)
        parent_fd = os.open(source.parent, _DIR_FLAGS)
        try:
            Writer(out, proc_fd, devices="refuse").send(parent_fd, name, top=True)
        finally:
            os.close(parent_fd)
            os.close(proc_fd)

    confinement = _confinement(engine, cid)
    target = _target(engine, cid)
    _run(target, confinement, consume, produce, into=True)
