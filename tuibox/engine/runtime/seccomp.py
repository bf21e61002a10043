"""A seccomp filter for containers, through libseccomp (ctypes).

Docker's default profile is an allowlist of ~360 syscalls.  This one takes the other
side of the same line: everything is allowed except what Docker's profile refuses to a
container without extra capabilities — kernel keyrings, module and kexec loading, BPF,
perf, userfaultfd, io_uring, new namespaces (``unshare``/``setns``/``clone`` with
namespace flags), mounts, time, swap, reboot, raw I/O ports, handle-based opens, vsock
sockets.  ``clone3`` answers ENOSYS so libc falls back to ``clone``, whose flags we can
check.  Loaded last, after ``no_new_privs``, just before ``execve``.

libseccomp compiles the rules into a BPF program once per process (``compiled()``,
which the supervisor calls before it forks anything); each container then only hands
those bytes to the kernel: compiling them per start cost ~3 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


# Refused with EPERM, as Docker's default profile refuses them without CAP_SYS_ADMIN etc.
BLOCKED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "get_mempolicy", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
    "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "syslog", "umount", "umount2",
    "unshare", "uselib", "userfaultfd", "vm86", "vm86old", "adjtimex",
)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000)
AF_VSOCK = 40


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@functools.cache
def _lib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    return lib


def available() -> bool:
    return _lib() is not None


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str,
          conditions: list[tuple[int, int, int, int]] | None = None) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return  # not a syscall on this architecture
    conds = conditions or []
    array = (_ArgCmp * max(1, len(conds)))(*[_ArgCmp(*c) for c in conds])
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), array)
    if rc < 0:
        raise OSError(-rc, f"seccomp rule for {name}: {errno.errorcode.get(-rc, rc)}")


@functools.cache
def compiled() -> bytes:
    """The default filter as a BPF program (struct sock_filter[]), built once."""
    lib = _lib()
    if lib is None:
        raise OSError(errno.ENOSYS, "libseccomp is not installed (Debian: libseccomp2)")
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    fd = os.memfd_create("tuibox-seccomp", os.MFD_CLOEXEC)
    try:
        eperm = _errno_action(errno.EPERM)
        for name in BLOCKED:
            _rule(lib, ctx, eperm, name)
        _rule(lib, ctx, _errno_action(errno.ENOSYS), "clone3")
        for flag in NAMESPACE_FLAGS:  # clone with any namespace flag
            _rule(lib, ctx, eperm, "clone", [(0, SCMP_CMP_MASKED_EQ, flag, flag)])
        _rule(lib, ctx, _errno_action(errno.EAFNOSUPPORT), "socket",
              [(0, SCMP_CMP_EQ, AF_VSOCK, 0)])
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise OSError(-rc, f"seccomp_export_bpf: {errno.errorcode.get(-rc, rc)}")
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
        lib.seccomp_release(ctx)


def prepare() -> None:
    """Compile the filter now (a no-op after the first time); OSError if it cannot be."""
    compiled()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def load_default_filter() -> None:
    """Install the filter on the calling thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    program = compiled()
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")
