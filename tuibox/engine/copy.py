"""``cp``: files between the host and a container, running or stopped.

A forked helper enters the container's root (the mount namespace of its PID 1, or for a
stopped container a private namespace with its overlay mounted and ``chroot``), so every
path and symlink is resolved inside the container and cannot reach the host.  Data moves
as a tar stream over a pipe; the host side extracts with tarfile's ``tar`` filter (no
absolute paths, no ``..``, no links out).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import InvalidArgument, NotFound, TuiboxError
from .runtime import _libc
from .runtime.init import mount_overlay

if TYPE_CHECKING:
    from .engine import Engine


def _enter_root(engine: Engine, cid: str) -> None:
    """In the helper: make ``/`` the container's root (no mount is visible to the host)."""
    state = engine.containers.state(cid)
    if state.running and state.pid:
        fd = os.open(f"/proc/{state.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        _libc.setns(fd, _libc.CLONE_NEWNS)
        os.close(fd)
        os.chdir("/")
        return
    config = engine.containers.config(cid)
    cdir = engine.containers.dir(cid)
    _libc.unshare(_libc.CLONE_NEWNS)
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    mount_overlay(config.layer_dirs, cdir)
    os.chroot(cdir / "rootfs")
    os.chdir("/")


def _in_container(engine: Engine, cid: str, work: Callable[[], None], data_fd: int,
                  err_w: int) -> NoReturn:
    code = 0
    try:
        _enter_root(engine, cid)
        work()
    except BaseException as exc:
        message = str(exc) if isinstance(exc, (TuiboxError, OSError)) else repr(exc)
        with contextlib.suppress(OSError):
            os.write(err_w, message.encode())
        code = 1
    finally:
        with contextlib.suppress(OSError):
            os.close(data_fd)
    os._exit(code)


def _run_helper(engine: Engine, cid: str, work: Callable[[], None], child_fd: int,
                parent_fd: int, parent_side: Callable[[int], None]) -> None:
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        os.close(parent_fd)
        _in_container(engine, cid, work, child_fd, err_w)
    os.close(err_w)
    os.close(child_fd)
    failure: BaseException | None = None
    try:
        parent_side(parent_fd)
    except (OSError, tarfile.TarError, TuiboxError) as exc:
        failure = exc
    finally:
        with contextlib.suppress(OSError):
            os.close(parent_fd)
    _, status = os.waitpid(pid, 0)
    message = b""
    while chunk := os.read(err_r, 4096):
        message += chunk
    os.close(err_r)
    if message:
        raise NotFound(f"copy failed: {message.decode(errors='replace')}")
    if failure is not None:
        raise TuiboxError(f"copy failed: {failure}") from failure
    if status != 0:
        raise TuiboxError("copy failed in the container")


def copy_from_container(engine: Engine, ref: str, path: str, dest: Path) -> None:
    """``docker cp CONTAINER:PATH DEST``."""
    cid = engine.resolve(ref)
    if not path.startswith("/"):
        path = "/" + path
    name = posixpath.basename(posixpath.normpath(path)) or "."
    r, w = os.pipe2(os.O_CLOEXEC)

    def produce() -> None:
        if not os.path.lexists(path):
            raise InvalidArgument(f"Could not find the file {path} in container {ref}")
        with os.fdopen(os.dup(w), "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(path, arcname=name)  # symlinks are stored, not followed

    def consume(fd: int) -> None:
        target_dir, final = (dest, None) if dest.is_dir() else (dest.parent, dest.name)
        if not target_dir.is_dir():
            raise InvalidArgument(f"destination directory {target_dir} does not exist")
        staging = Path(tempfile.mkdtemp(prefix=".tuibox-cp-", dir=target_dir))
        try:
            with os.fdopen(os.dup(fd), "rb") as inp, tarfile.open(fileobj=inp, mode="r|") as t:
                t.extractall(staging, filter="tar")
            os.replace(staging / name, target_dir / (final or name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    _run_helper(engine, cid, produce, w, r, consume)


def copy_to_container(engine: Engine, source: Path, ref: str, path: str) -> None:
    """``docker cp SRC CONTAINER:PATH``; files arrive owned by root, modes kept."""
    cid = engine.resolve(ref)
    if not source.exists() and not source.is_symlink():
        raise InvalidArgument(f"could not find the file {source}")
    if not path.startswith("/"):
        path = "/" + path
    name = source.name
    r, w = os.pipe2(os.O_CLOEXEC)

    def consume() -> None:
        if os.path.isdir(path):
            target_dir, final = path, name
        elif path.endswith("/"):
            raise InvalidArgument(f"no such directory in the container: {path}")
        else:
            target_dir, final = posixpath.dirname(path) or "/", posixpath.basename(path)
            if not os.path.isdir(target_dir):
                raise InvalidArgument(f"no such directory in the container: {target_dir}")
        with os.fdopen(os.dup(r), "rb") as inp, tarfile.open(fileobj=inp, mode="r|") as tar:
            for member in tar:
                member.uid = member.gid = 0
                member.uname = member.gname = "root"
                if member.name == name or member.name.startswith(name + "/"):
                    member.name = final + member.name[len(name):]
                tar.extract(member, target_dir, filter="tar")

    def produce(fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(str(source), arcname=name)

    _run_helper(engine, cid, consume, r, w, produce)
