"""Device nodes a container gets beyond Docker's defaults: ``--device`` and ``--privileged``.

Two halves.  The supervisor looks the host nodes up at each start (``host_nodes``), so
the container sees the device as the host has it now (numbers, mode, owner), and the
devices cgroup is given the same numbers.  The container's init then makes the nodes
(``make_nodes``) right after mounting its ``/dev``, still before ``pivot_root``: every
path is walked from the container's root one component at a time without following a
symlink, so an image's ``/x -> /etc`` link cannot aim a node at the host.  In a user
namespace the kernel refuses mknod: the host's node is bound instead (as runc does).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SetupError
from . import _libc

if TYPE_CHECKING:
    from ..models import SecurityConfig

HOST_DEV = "/dev"
# What runc/containerd leave out when they copy the host's /dev for --privileged: other
# file systems' contents, and nodes the container's own /dev already provides.
_SKIP_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}
_SKIP_NAMES = {"console", "ptmx"}  # the container's console is its own; ptmx is pts/ptmx

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class DeviceNode:
    """One node to make inside the container, as the host has it."""

    path: str  # absolute, inside the container
    host_path: str  # what a user-namespaced container binds
    kind: str  # "c" or "b"
    major: int
    minor: int
    mode: int  # permission bits
    uid: int
    gid: int
    permissions: str = "rwm"  # what the devices cgroup allows for it


def _node(host_path: str, path: str, permissions: str, st: os.stat_result) -> DeviceNode:
    return DeviceNode(path=path, host_path=host_path, kind="c" if stat.S_ISCHR(st.st_mode) else "b",
                      major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                      mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                      permissions=permissions)


def host_nodes(security: SecurityConfig | None, host_dev: str = HOST_DEV) -> list[DeviceNode]:
    """The ``--device`` nodes (and for ``--privileged`` every node of the host's /dev)."""
    if security is None:
        return []
    found: dict[str, DeviceNode] = {}
    if security.privileged:
        for node in _scan(host_dev):
            found[node.path] = node
    for dev in security.devices:
        try:
            st = os.stat(dev.path_on_host)  # a /dev/disk/by-id link is meant to be followed
        except OSError as exc:
            raise SetupError("devices", f'error gathering device information while adding '
                             f'custom device "{dev.path_on_host}": {exc.strerror}',
                             errno=exc.errno or 0) from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise SetupError("devices", f'"{dev.path_on_host}" is no longer a device node',
                             errno=errno.ENODEV)
        found[dev.path_in_container] = _node(dev.path_on_host, dev.path_in_container,
                                             dev.permissions, st)
    return list(found.values())


def _scan(host_dev: str) -> list[DeviceNode]:
    nodes = []
    for dirpath, dirs, files in os.walk(host_dev):
        if dirpath == host_dev:
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            if dirpath == host_dev and name in _SKIP_NAMES:
                continue
            host = os.path.join(dirpath, name)
            try:
                st = os.lstat(host)
            except FileNotFoundError:  # hot-unplugged while we looked
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                inside = "/dev/" + os.path.relpath(host, host_dev)
                nodes.append(_node(host, inside, "rwm", st))
    return nodes


def make_nodes(rootfs: Path, nodes: Sequence[DeviceNode], *, bind: bool = False) -> None:
    """Make each node under ``rootfs`` (the container's root, before ``pivot_root``);
    ``bind``: bind the host's nodes instead (a user namespace)."""
    if not nodes:
        return
    old_umask = os.umask(0)
    try:
        for node in nodes:
            _make(rootfs, node, bind)
    finally:
        os.umask(old_umask)


def _make(rootfs: Path, node: DeviceNode, bind: bool) -> None:
    parts = [p for p in node.path.split("/") if p]
    if not parts or ".." in parts:
        raise OSError(errno.EINVAL, f"device path {node.path!r} is not allowed")
    # The root itself may be a /proc/self/fd link (user namespaces): that one is followed.
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            child = _enter(fd, part, node.path)
            os.close(fd)
            fd = child
        leaf = parts[-1]
        try:
            st = os.lstat(leaf, dir_fd=fd)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, f"device path {node.path} is a directory")
            os.unlink(leaf, dir_fd=fd)  # a default node or an image's file: replaced
        if bind:
            os.close(os.open(leaf, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC,
                             0o600, dir_fd=fd))
            _libc.mount(node.host_path, f"/proc/self/fd/{fd}/{leaf}", None, _libc.MS_BIND)
            return
        kind = stat.S_IFCHR if node.kind == "c" else stat.S_IFBLK
        os.mknod(leaf, kind | node.mode, os.makedev(node.major, node.minor), dir_fd=fd)
        os.chown(leaf, node.uid, node.gid, dir_fd=fd, follow_symlinks=False)
        flags = os.statvfs(fd).f_flag
        if flags & os.ST_NODEV:
            # Outside /dev the node lands on the rootfs, mounted nodev: give the node a
            # mount of its own without that flag (keeping the others), or it won't open.
            target = f"/proc/self/fd/{fd}/{leaf}"
            _libc.mount(target, target, None, _libc.MS_BIND)
            keep = flags & (os.ST_RDONLY | os.ST_NOSUID | os.ST_NOEXEC)
            _libc.mount(None, target, None, _libc.MS_REMOUNT | _libc.MS_BIND | keep)
    finally:
        os.close(fd)


def _enter(fd: int, part: str, path: str) -> int:
    """Open (making it if missing) the directory ``part`` under ``fd``; never a symlink."""
    try:
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(exc.errno, f"device path {path}: {part} is a symlink or not a "
                          f"directory in the container") from None
        raise
    return child
