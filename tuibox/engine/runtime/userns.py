"""The kernel side of ``--userns=auto``: id maps, idmapped layers, detached mounts.

The order at start (runc's, with the maps written by the supervisor):

1. C1, still host root in the host's mount namespace, opens what only host root can
   reach — the bind sources under the private state root, and a fresh sysfs when the
   network namespace is not one it makes itself (``sysfs_fd``) — then unshares the user
   namespace and waits on the sync socket, sending the fds to be idmapped.
2. The supervisor writes C1's ``uid_map``/``gid_map`` (``write_maps``), idmaps those fds
   and builds the root file system (``idmapped_rootfs``): each image layer cloned with
   ``open_tree`` and idmapped with ``mount_setattr(MOUNT_ATTR_IDMAP)``, an overlay made on
   top of them with the new mount API (the upper dir is plain: it holds the container's
   host ids), all detached.  The overlay's fd goes back to C1.
3. C1 becomes root of the new namespace (``become_root``) and unshares the others, which
   the user namespace then owns (so PID 1 may mount proc, sysfs, mqueue, devpts, and its
   root has CAP_NET_RAW/CAP_NET_ADMIN over its network).  On a bridge network C1 waits
   while the supervisor puts the veth pairs into that network namespace from outside.
4. PID 1 attaches the detached mounts where they belong (``attach``).

Image files keep their ids on disk and appear root-owned inside; no layer is copied or
chowned.  Everything is a detached mount or lives in the container's own mount
namespace, so nothing is left on the host when the container's last process exits.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from . import _libc

SYS_FSOPEN = 430  # the new mount API: same numbers on every architecture
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442

FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_T_EMPTY_PATH = 0x40


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall(number: int, what: str, *args: object) -> int:
    return _libc._check(_libc._libc.syscall(number, *args), what)


def idmap(tree_fd: int, userns_fd: int, *, recursive: bool) -> None:
    """Show a detached mount's files through the id mapping of ``userns_fd``."""
    attr = _MountAttr(attr_set=MOUNT_ATTR_IDMAP, userns_fd=userns_fd)
    flags = _libc.AT_EMPTY_PATH | (_libc.AT_RECURSIVE if recursive else 0)
    _syscall(SYS_MOUNT_SETATTR, "mount_setattr(MOUNT_ATTR_IDMAP)", ctypes.c_int(tree_fd),
             b"", ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))


def make_private(tree_fd: int) -> None:
    """No mount propagation between a detached clone of a host mount and the host: a clone
    keeps its source's peer group, so a mount made under it would appear on the host."""
    attr = _MountAttr(propagation=_libc.MS_PRIVATE)
    _syscall(SYS_MOUNT_SETATTR, "mount_setattr(MS_PRIVATE)", ctypes.c_int(tree_fd), b"",
             ctypes.c_uint(_libc.AT_EMPTY_PATH | _libc.AT_RECURSIVE), ctypes.byref(attr),
             ctypes.c_size_t(ctypes.sizeof(attr)))


def _fsopen(fstype: str) -> int:
    return _syscall(SYS_FSOPEN, f"fsopen {fstype}", fstype.encode(), ctypes.c_uint(FSOPEN_CLOEXEC))


def _set(fs_fd: int, key: str, value: str) -> None:
    _syscall(SYS_FSCONFIG, f"fsconfig {key}", ctypes.c_int(fs_fd),
             ctypes.c_uint(FSCONFIG_SET_STRING), key.encode(), os.fsencode(value), ctypes.c_int(0))


def _set_fd(fs_fd: int, key: str, fd: int) -> None:
    _syscall(SYS_FSCONFIG, f"fsconfig {key}", ctypes.c_int(fs_fd),
             ctypes.c_uint(FSCONFIG_SET_FD), key.encode(), None, ctypes.c_int(fd))


def _mount(fs_fd: int, attrs: int) -> int:
    """Create the superblock configured on ``fs_fd`` and return a detached mount of it."""
    _syscall(SYS_FSCONFIG, "fsconfig create", ctypes.c_int(fs_fd),
             ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, ctypes.c_int(0))
    return _syscall(SYS_FSMOUNT, "fsmount", ctypes.c_int(fs_fd),
                    ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attrs))


# ---------------------------------------------------------------------- supervisor side

def write_maps(pid: int, start: int, size: int) -> None:
    """Container ids 0..size-1 are host ids start..start+size-1, for users and groups.

    Written by the supervisor (host root), so ``setgroups`` stays allowed inside."""
    if start <= 0:  # never the host's root, whatever a record says
        raise ValueError(f"refusing an id range that starts at host id {start}")
    line = f"0 {start} {size}\n".encode()
    for name in ("uid_map", "gid_map"):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def idmapped_rootfs(layer_dirs: Sequence[str], upper: str, work: str, userns_fd: int) -> int:
    """A detached overlay: idmapped image layers under the container's plain upper dir.

    nodev as the plain rootfs is: a device node in a layer or the upper dir opens nothing.
    """
    fs_fd = _fsopen("overlay")
    lowers: list[int] = []
    try:
        _set(fs_fd, "index", "off")
        for layer in reversed(layer_dirs):  # the top layer first, as in lowerdir=
            tree = _libc.open_tree(layer, recursive=False)
            lowers.append(tree)
            idmap(tree, userns_fd, recursive=False)
            # The fd must stay open until the superblock exists: closing a detached
            # mount's last fd dissolves it.
            _set_fd(fs_fd, "lowerdir+", tree)
        _set(fs_fd, "upperdir", upper)
        _set(fs_fd, "workdir", work)
        return _mount(fs_fd, MOUNT_ATTR_NODEV)
    finally:
        for fd in lowers:
            os.close(fd)
        os.close(fs_fd)


def open_userns(pid: int) -> int:
    return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


# ---------------------------------------------------------------------- container side

def sysfs_fd() -> int:
    """A read-only sysfs of the calling process's network namespace, detached.

    A sysfs mount needs CAP_SYS_ADMIN over the user namespace owning the network
    namespace; one the supervisor made (or the host's) is the host's, so C1 makes the
    mount while it is still host root, and PID 1 attaches it."""
    fs_fd = _fsopen("sysfs")
    try:
        return _mount(fs_fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                      | MOUNT_ATTR_NOEXEC)
    finally:
        os.close(fs_fd)


def become_root() -> None:
    """After the maps are written: be the namespace's root (host id ``start``).  The
    capabilities the unshare gave stay: root of this namespace keeps them."""
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)


def attach_here(tree_fd: int) -> None:
    """Attach a detached mount on the working directory itself: no path is looked up,
    so the private state dir above it needs no search permission for the container."""
    _syscall(_libc.SYS_MOVE_MOUNT, "move_mount rootfs", ctypes.c_int(tree_fd), b"",
             ctypes.c_int(_libc.AT_FDCWD), b"",
             ctypes.c_uint(_libc.MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
