"""Confining a helper of ours before it touches a container's files.

tuibox's helpers (``cp``'s copier, ``exec``'s joiner) are Python running as host root,
and they enter a container's mount namespace.  From then on every path the interpreter or
libc opens is the container's: an ``import`` finds the container's ``.py``/``.so`` under
the host's ``sys.path`` names, and a user or group lookup loads the container's
``/etc/nsswitch.conf`` and ``libnss_*.so.2`` (CVE-2019-14271, ``docker cp``).  So a helper

* imports everything it needs first, then calls ``forbid_imports``: any later import
  fails instead of loading (``check_no_new_modules`` proves none slipped through);
* never resolves a user or group by name (numeric ids only; ``users.py`` parses
  ``/etc/passwd`` itself);
* drops to the container's privileges with ``Confinement.apply`` (bounding and capability
  sets, ``no_new_privs``, the seccomp filter) before it opens any container path.

The capability mask and the filter are parameters: today the callers pass Docker's
default set and the compiled default profile; a per-container set slots in unchanged.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from . import _libc

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine, -1)
_self = ctypes.CDLL(None, use_errno=True)  # the already-loaded libc: nothing is opened


class ImportRefused(ImportError):
    """An import was attempted after entering a container."""


class _RefuseImports:
    """The only meta path finder left: nothing is loaded from the container's files."""

    attempts: list[str] = []

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        cls.attempts.append(name)
        raise ImportRefused(f"import of {name!r} refused inside a container")


def forbid_imports() -> frozenset[str]:
    """Make every import not already done fail; the names ``sys.modules`` holds now."""
    sys.meta_path[:] = [_RefuseImports]  # type: ignore[list-item]
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()
    return frozenset(sys.modules)


def check_no_new_modules(before: frozenset[str]) -> None:
    """``ImportRefused`` if any module appeared (or an import was tried) since ``before``."""
    new = sorted(set(sys.modules) - before)
    tried = _RefuseImports.attempts
    if new or tried:
        raise ImportRefused(f"modules loaded inside the container: {new or tried}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_filter(code: bytes, flags: int = 0) -> None:
    """Install a BPF program (``struct sock_filter[]``) on the calling thread."""
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if flags:
        rc = _self.syscall(_SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    else:
        rc = _self.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")


class Confinement:
    """What a helper drops to: built on the host (it reads ``cap_last_cap`` there), applied
    inside the container without opening anything.  (A plain class: ``dataclasses`` costs
    the exec helper ~10 ms of imports.)"""

    def __init__(self, cap_mask: int, seccomp_code: bytes | None, seccomp_flags: int = 0,
                 last_cap: int = -1) -> None:
        self.cap_mask = cap_mask
        self.seccomp_code = seccomp_code  # None: no filter (an unconfined container)
        self.seccomp_flags = seccomp_flags
        self.last_cap = last_cap

    @classmethod
    def of(cls, cap_mask: int, seccomp_code: bytes | None,
           seccomp_flags: int = 0) -> Confinement:
        return cls(cap_mask, seccomp_code, seccomp_flags, _libc.last_cap())

    def apply(self) -> None:
        """Bounding set, then effective/permitted (inheritable and ambient empty), then
        no_new_privs, then the filter.  We stay uid 0, like the container's root."""
        for cap in range(self.last_cap + 1):
            if not self.cap_mask & (1 << cap):
                _libc.prctl(_libc.PR_CAPBSET_DROP, cap)
        _libc.capset(self.cap_mask, self.cap_mask, 0)
        _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
        if self.seccomp_code is not None:
            load_filter(self.seccomp_code, self.seccomp_flags)


def close_fds_except(keep: Sequence[int]) -> None:
    """Close every descriptor from 3 up but ``keep`` (close_range under the hood)."""
    low = 3
    for fd in sorted(set(k for k in keep if k >= 3)):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


LC_ALL = 6  # glibc's number


def plain_locale() -> None:
    """The "C" locale for libc, set while the host's files are still ours: a locale's
    character set can make glibc load conversion modules (gconv) later, by path."""
    _self.setlocale.restype = ctypes.c_char_p
    _self.setlocale(LC_ALL, b"C")


def go_non_dumpable() -> None:
    """No other process may open our ``/proc/<pid>/{exe,environ,fd,mem}`` or ptrace us
    (without CAP_SYS_PTRACE), before we share any namespace with a container."""
    _libc.prctl(_libc.PR_SET_DUMPABLE, 0)
