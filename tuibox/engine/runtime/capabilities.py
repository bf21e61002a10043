"""Docker's default capability set, and dropping to it."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from . import _libc

if TYPE_CHECKING:
    from .users import ResolvedUser

# The 14 capabilities Docker grants by default (moby daemon/pkg/oci/caps/defaults.go).
DEFAULT_CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}

DEFAULT_MASK = sum(1 << bit for bit in DEFAULT_CAPS.values())  # 0xa80425fb

# Every capability Linux defines (uapi linux/capability.h), for --cap-add/--cap-drop.
ALL_CAPS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def mask_of(names: list[str]) -> int:
    return sum(1 << ALL_CAPS[name] for name in names)


def names_of(mask: int) -> list[str]:
    return [name for name, bit in ALL_CAPS.items() if mask & (1 << bit)]


def drop_bounding_set(keep: int) -> None:
    """Remove every capability not in ``keep`` from the bounding set."""
    for cap in range(_libc.last_cap() + 1):
        if not keep & (1 << cap):
            _libc.prctl(_libc.PR_CAPBSET_DROP, cap)


def apply(keep: int, *, is_root: bool) -> None:
    """Set effective/permitted to ``keep`` (empty for a non-root user), clear the rest.

    Inheritable and ambient stay empty (CVE-2022-24769), so a non-root user ends with no
    effective capabilities after ``execve``, exactly as under Docker.
    """
    mask = keep if is_root else 0
    _libc.capset(mask, mask, 0)
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)


def become(user: ResolvedUser, keep: int, *, no_new_privs: bool = False) -> None:
    """Switch to ``user`` with capabilities ``keep``, in the order runc uses (finalizeNamespace):
    bounding set, keep-caps across the uid change, groups, gid, uid, then the cap sets.

    ``keep`` bounds the process for good: a setuid-root binary run later (no_new_privs
    off, Docker's default) gets euid 0 but no capability outside ``keep``."""
    drop_bounding_set(keep)
    _libc.prctl(_libc.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.groups)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    _libc.prctl(_libc.PR_SET_KEEPCAPS, 0)
    apply(keep, is_root=user.uid == 0)
    if no_new_privs:
        set_no_new_privs()


def set_no_new_privs() -> None:
    """From now on no execve grants privileges: setuid bits and file capabilities are
    ignored (``--security-opt no-new-privileges``; Docker leaves it off by default)."""
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)


@functools.cache
def own_permitted() -> int:
    """Our own permitted set: ``--privileged`` gets all of it (a host may withhold some,
    as this one withholds CAP_SYS_RESOURCE, and asking for more fails)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return DEFAULT_MASK
