"""Seccomp for containers: a Docker-format profile compiled to BPF through libseccomp.

The default is Docker's own profile (``seccomp_default.json``, moby/profiles v0.2.3): an
allow list with EPERM for everything else, argument filters for ``socket`` (no AF_ALG,
AF_VSOCK), ``personality`` (5 values) and ``clone`` (no namespace flags), ``clone3`` →
ENOSYS, and rules that open up only with a capability (``mount`` with CAP_SYS_ADMIN …).
A user's ``--security-opt seccomp=PROFILE.json`` goes through the same compiler.

As runc does, syscall names libseccomp does not know are skipped (but the few newer than
this libseccomp, whose numbers are fixed by the kernel's unified table, are still
honoured), and a stub in front of libseccomp's program answers ENOSYS for syscall
numbers newer than any the profile names, so a new libc's fallbacks work instead of
failing with EPERM.

Compiling Docker's profile for x86_64, x86 and x32 takes ~50 ms; the supervisor does it
once per (profile, capability set), keeps the bytes for ``exec`` in the container's
directory, and each start only hands them to the kernel (``load``, ~1 ms: the kernel runs
the filter once per syscall number to cache the constant answers).  Unlike runc 1.2 no
SPEC_ALLOW flag is set: the kernel's own speculative-store-bypass policy stays in force.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError
from . import capabilities
from .seccomp_profile import ProfileError, Resolved, Rule, parse, resolve

DEFAULT_PROFILE = (Path(__file__).with_name("seccomp_default.json")).read_text()

_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
            "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
            "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
              "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 0,  # one thread loads it: nothing to sync
          "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
SCMP_ACT_ALLOW = _ACTIONS["SCMP_ACT_ALLOW"]
SCMP_FLTATR_CTL_OPTIMIZE = 8
ENOSYS_ACTION = _ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS

# Syscalls newer than some libseccomp releases (2.5.4 stops at futex_wake, 454).  Since
# Linux 5.1 every architecture numbers new syscalls alike; x32 adds its bit.
_UNIFIED = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435,
    "close_range": 436, "openat2": 437, "pidfd_getfd": 438, "faccessat2": 439,
    "process_madvise": 440, "epoll_pwait2": 441, "mount_setattr": 442, "quotactl_fd": 443,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
    "memfd_secret": 447, "process_mrelease": 448, "futex_waitv": 449,
    "set_mempolicy_home_node": 450, "cachestat": 451, "fchmodat2": 452,
    "map_shadow_stack": 453, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
    "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "lsm_set_self_attr": 460,
    "lsm_list_modules": 461, "mseal": 462, "setxattrat": 463, "getxattrat": 464,
    "listxattrat": 465, "removexattrat": 466, "open_tree_attr": 467, "file_getattr": 468,
    "file_setattr": 469,
}
_X86_64_ONLY = {"uretprobe": 335}
AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
_SCMP_ARCH_X32 = 0x4000003E  # libseccomp's token; the kernel reports x32 as x86_64


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@functools.cache
def _lib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    lib = ctypes.CDLL(name, use_errno=True)
    for fn, args, res in (
            ("seccomp_init", [ctypes.c_uint32], ctypes.c_void_p),
            ("seccomp_release", [ctypes.c_void_p], None),
            ("seccomp_arch_native", [], ctypes.c_uint32),
            ("seccomp_arch_resolve_name", [ctypes.c_char_p], ctypes.c_uint32),
            ("seccomp_arch_add", [ctypes.c_void_p, ctypes.c_uint32], ctypes.c_int),
            ("seccomp_attr_set", [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32], ctypes.c_int),
            ("seccomp_syscall_resolve_name", [ctypes.c_char_p], ctypes.c_int),
            ("seccomp_syscall_resolve_name_arch", [ctypes.c_uint32, ctypes.c_char_p],
             ctypes.c_int),
            ("seccomp_rule_add_array", [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                        ctypes.c_uint, ctypes.POINTER(_ArgCmp)], ctypes.c_int),
            ("seccomp_export_bpf", [ctypes.c_void_p, ctypes.c_int], ctypes.c_int)):
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = res
    return lib


def available() -> bool:
    return _lib() is not None


@dataclass(frozen=True)
class Program:
    """A compiled filter: ``struct sock_filter[]`` and the seccomp(2) flags to load it with."""

    code: bytes
    flags: int = 0


def _action(name: str, errno_ret: int | None) -> int:
    code = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        code |= errno.EPERM if errno_ret is None else errno_ret  # runc's default: EPERM
    return code


def _fail(rc: int, what: str) -> OSError:
    return OSError(-rc, f"seccomp: {what}: {os.strerror(-rc)}")


def _add_rule(lib: ctypes.CDLL, ctx: int, action: int, nr: int, rule: Rule, name: str) -> None:
    conds = [_ArgCmp(a.index, _OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
    array = (_ArgCmp * max(1, len(conds)))(*conds)
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), array)
    if rc == -errno.EDOM:
        return  # a pseudo syscall that none of the filter's architectures has
    if rc < 0:
        raise _fail(rc, f"rule for {name}")


def _number(lib: ctypes.CDLL, token: int, name: str) -> int | None:
    """``name``'s number on one architecture (x32 with its bit), None if unknown there."""
    nr = lib.seccomp_syscall_resolve_name_arch(token, name.encode())
    if nr >= 0:
        return int(nr)
    known = _UNIFIED.get(name)
    if known is None and token in (AUDIT_ARCH_X86_64, _SCMP_ARCH_X32):
        known = _X86_64_ONLY.get(name)
    if known is None or nr != -1:  # -1: unknown to libseccomp; below: a pseudo number
        return None
    return known | X32_BIT if token == _SCMP_ARCH_X32 else known


def _tokens(lib: ctypes.CDLL, spec: Resolved) -> list[int]:
    """libseccomp's tokens for the native architecture and the profile's others."""
    tokens = [int(lib.seccomp_arch_native())]
    for arch in spec.arches:
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token:  # else an architecture this libseccomp does not know
            tokens.append(int(token))
    return list(dict.fromkeys(tokens))


def _build(lib: ctypes.CDLL, spec: Resolved, tokens: list[int]
           ) -> tuple[bytes, list[tuple[int, int, int]]]:
    """libseccomp's program, and (arch token, nr, action) for what only the stub can do."""
    default = _action(spec.default_action, spec.default_errno)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError(errno.EINVAL, "seccomp: seccomp_init failed")
    fd = os.memfd_create("tuibox-seccomp", os.MFD_CLOEXEC)
    extras: list[tuple[int, int, int]] = []
    try:
        # A binary search over syscall numbers instead of ~400 tests in a row: the kernel
        # runs the filter for every syscall of every architecture when it is loaded (to
        # cache the constant answers), which this makes ~0.5 ms cheaper per start.
        # libseccomp < 2.5 lacks the attribute: then the plain chain it is.
        lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for token in tokens[1:]:
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -errno.EEXIST:
                raise _fail(rc, f"architecture {token:#x}")
        for rule in spec.rules:
            action = _action(rule.action, rule.errno)
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default (runc skips it)
            for name in rule.names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr != -1:
                    _add_rule(lib, ctx, action, nr, rule, name)
                elif not rule.args:  # newer than libseccomp: the stub matches its number
                    for token in tokens:
                        if (number := _number(lib, token, name)) is not None:
                            extras.append((token, number, action))
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise _fail(rc, "export")
        return os.pread(fd, os.fstat(fd).st_size, 0), extras
    finally:
        os.close(fd)
        lib.seccomp_release(ctx)


# --- the stub in front of libseccomp's program (classic BPF, struct sock_filter) --------
_LD_ABS, _JA, _JEQ, _JGT, _JSET, _RET = 0x20, 0x05, 0x15, 0x25, 0x45, 0x06
_Insn = tuple[int, int, str]  # (opcode, k, jump target's label or ""); opcode -1: a label


def _stub(lib: ctypes.CDLL, spec: Resolved, extras: list[tuple[int, int, int]],
          tokens: list[int]) -> bytes:
    """Per architecture: the extras' own actions, then ENOSYS above the newest syscall the
    profile names (runc's patchbpf; not when the default allows or is ENOSYS already),
    then on into libseccomp's program, which starts by checking the architecture again."""
    enosys = spec.default_action != "SCMP_ACT_ALLOW" and not (
        spec.default_action == "SCMP_ACT_ERRNO" and spec.default_errno == errno.ENOSYS)
    names = {n for r in spec.rules for n in r.names}
    # audit arch → {x32?: (newest nr or None, [(nr, action)])}; x32 shares x86_64's arch.
    arches: dict[int, dict[bool, tuple[int | None, list[tuple[int, int]]]]] = {}
    for token in tokens:
        x32 = token == _SCMP_ARCH_X32
        numbers = [n for n in (_number(lib, token, name) for name in names) if n is not None]
        mine = dict((nr, act) for t, nr, act in extras if t == token)
        arches.setdefault(AUDIT_ARCH_X86_64 if x32 else token, {})[x32] = (
            max(numbers) if numbers and enosys else None, list(mine.items()))
    prog: list[_Insn] = [(_LD_ABS, 4, "")]
    prog += [(_JEQ, audit, f"arch{audit}") for audit in arches]
    prog.append((_JA, 0, "filter"))
    returns: dict[int, str] = {}
    for audit, modes in arches.items():
        prog += [(-1, 0, f"arch{audit}"), (_LD_ABS, 0, "")]
        if audit == AUDIT_ARCH_X86_64:  # x32 calls carry bit 30 in the number
            prog.append((_JSET, X32_BIT, "x32" if True in modes else "filter"))
        for x32, (newest, own) in sorted(modes.items()):
            if x32:
                prog.append((-1, 0, "x32"))
            prog += [(_JEQ, nr, returns.setdefault(act, f"ret{act}")) for nr, act in own]
            if newest is not None:
                prog.append((_JGT, newest, returns.setdefault(ENOSYS_ACTION, "enosys")))
            prog.append((_JA, 0, "filter"))
    for act, label in returns.items():
        prog += [(-1, 0, label), (_RET, act, "")]
    return _assemble(prog)


def _assemble(prog: list[_Insn]) -> bytes:
    labels: dict[str, int] = {}
    code: list[_Insn] = []
    for insn in prog:
        if insn[0] == -1:
            labels[insn[2]] = len(code)
        else:
            code.append(insn)
    labels["filter"] = len(code)
    out = []
    for pc, (op, k, target) in enumerate(code):
        jump = labels[target] - pc - 1 if target else 0
        if op == _JA:
            out.append(struct.pack("=HBBI", op, 0, 0, jump))
        elif target:
            if not 0 <= jump <= 255:
                raise OSError(errno.E2BIG, "seccomp: stub jump out of range")
            out.append(struct.pack("=HBBI", op, jump, 0, k))
        else:
            out.append(struct.pack("=HBBI", op, 0, 0, k))
    return b"".join(out)


@functools.lru_cache(maxsize=32)
def compile_profile(text: str, caps: int) -> Program:
    """``text`` (Docker JSON) for a container with capabilities ``caps``, as BPF.

    Cached: the supervisor compiles each (profile, capability set) once.  ``OSError`` if
    libseccomp is missing or refuses a rule, ``ProfileError`` for a malformed profile."""
    lib = _lib()
    if lib is None:
        raise OSError(errno.ENOSYS, "libseccomp is not installed (Debian: libseccomp2)")
    spec = resolve(parse(text), frozenset(capabilities.names_of(caps)))
    tokens = _tokens(lib, spec)
    program, extras = _build(lib, spec, tokens)
    code = _stub(lib, spec, extras, tokens) + program
    if len(code) // 8 > 4096:  # BPF_MAXINSNS
        raise OSError(errno.E2BIG, f"seccomp: the filter has {len(code) // 8} instructions, "
                                   f"more than the kernel's 4096")
    flags = 0
    for flag in spec.flags:
        flags |= _FLAGS[flag]
    return Program(code=code, flags=flags)


def program_for(profile: str, caps: int, *, privileged: bool) -> Program | None:
    """The container's filter: None when unconfined, or privileged without a profile of
    its own (Docker: ``--privileged`` drops the default filter, not a user's).
    ``SetupError`` if it cannot be built (no libseccomp, a rule libseccomp refuses)."""
    if profile == "unconfined" or (privileged and profile == "default"):
        return None
    try:
        return compile_profile(DEFAULT_PROFILE if profile == "default" else profile, caps)
    except (OSError, ProfileError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SetupError("seccomp", detail) from None


PROGRAM_FILE = "seccomp.bpf"  # in the container's directory: what ``exec`` loads


def save(program: Program | None, directory: Path) -> None:
    """Keep the container's compiled filter for ``exec`` (an empty file: no filter)."""
    data = b"" if program is None else struct.pack("=I", program.flags) + program.code
    tmp = directory / f".{PROGRAM_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, directory / PROGRAM_FILE)


def saved(directory: Path) -> Program | None:
    """The filter ``save`` kept; ``OSError`` if there is none (started by an older tuibox)."""
    data = (directory / PROGRAM_FILE).read_bytes()
    if not data:
        return None
    if len(data) < 12 or (len(data) - 4) % 8:
        raise OSError(errno.EINVAL, f"{directory / PROGRAM_FILE}: not a filter")
    return Program(code=data[4:], flags=struct.unpack_from("=I", data)[0])


def check(profile: str, caps: int) -> None:
    """Parse and compile a user's profile now (at create), so a start cannot fail on it;
    ``ProfileError`` with one line saying what is wrong."""
    if profile in ("default", "unconfined"):
        return
    parse(profile)
    if available():
        try:
            compile_profile(profile, caps)
        except OSError as exc:
            raise ProfileError(exc.strerror or str(exc)) from None


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2  # prctl's mode
SECCOMP_SET_MODE_FILTER = 1  # seccomp(2)'s operation, needed to pass flags
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine, -1)


def load(program: Program) -> None:
    """Install ``program`` on the calling thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    buf = ctypes.create_string_buffer(program.code, len(program.code))
    fprog = _SockFprog(len(program.code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if program.flags:
        rc = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, program.flags,
                          ctypes.byref(fprog))
    else:
        rc = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")


def compiled() -> bytes:
    """Docker's default profile for Docker's default capabilities, as BPF code."""
    return compile_profile(DEFAULT_PROFILE, capabilities.DEFAULT_MASK).code

