"""cgroup v2 device control: one BPF_PROG_TYPE_CGROUP_DEVICE program per container cgroup.

cgroup v2 has no devices files: without a program attached, a container may open every
device node it can make.  So a failure anywhere here is fatal to the start.

The program is the one runc and crun generate (instruction for instruction): load the
request into registers, then one block per allow rule that jumps to the next block on a
mismatch and returns 1 on a match; the last instruction returns 0 (deny).  It is
attached with ``BPF_F_ALLOW_MULTI`` (a parent's program keeps applying too) and replaces
whatever was attached before, so ``update`` and restarts never pile programs up
(runc issue 2366); ``BPF_PROG_QUERY`` then has to show exactly the new one.  Attached
programs belong to the cgroup: removing the cgroup releases them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import resource
import struct
from pathlib import Path

from ..errors import SetupError
from .devices import WILDCARD, DevicePolicy

SYS_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
ATTR_SIZE = 144  # sizeof(union bpf_attr) on 6.x headers; the kernel zero-fills the rest

# bpf(2) commands (uapi linux/bpf.h)
PROG_LOAD, PROG_ATTACH, PROG_DETACH = 5, 8, 9
PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, PROG_QUERY = 11, 13, 15, 16
PROG_TYPE_CGROUP_DEVICE = 15
ATTACH_CGROUP_DEVICE = 6
F_ALLOW_MULTI, F_REPLACE = 0x2, 0x4

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = access << 16 | type
DEV_BLOCK, DEV_CHAR = 1, 2
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}

# opcodes (8-byte instructions: opcode, dst | src << 4, s16 offset, s32 imm)
LDX_W = 0x61  # dst = *(u32 *)(src + off)
AND32_K, RSH32_K, MOV32_X = 0x54, 0x74, 0xBC
MOV64_K = 0xB7
JNE_K, JNE_X = 0x55, 0x5D  # offsets count from the next instruction
EXIT = 0x95

PROG_NAME = b"tuibox_devices"
LICENSE = b"Apache"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


# ------------------------------------------------------------------ the program


def program(policy: DevicePolicy) -> bytes:
    """The instructions for ``policy`` (R1 = ctx; R2 type, R3 access, R4 major, R5 minor)."""
    if policy.allow_all:
        return _insn(MOV64_K, 0, imm=1) + _insn(EXIT)
    code = [
        _insn(LDX_W, 2, 1, 0), _insn(AND32_K, 2, imm=0xFFFF),
        _insn(LDX_W, 3, 1, 0), _insn(RSH32_K, 3, imm=16),
        _insn(LDX_W, 4, 1, 4), _insn(LDX_W, 5, 1, 8),
    ]
    for rule in policy.rules:
        # Each test jumps past the rest of this block: build the tests, then the offsets.
        tests: list[tuple[int, int, int, int]] = [
            (JNE_K, 2, 0, DEV_CHAR if rule.kind == "c" else DEV_BLOCK)]
        bits = sum(ACCESS_BITS[ch] for ch in rule.access)
        if bits != 7:  # every requested bit must be granted: (access & bits) == access
            tests += [(MOV32_X, 1, 3, 0), (AND32_K, 1, 0, bits), (JNE_X, 1, 3, 0)]
        if rule.major != WILDCARD:
            tests.append((JNE_K, 4, 0, rule.major))
        if rule.minor != WILDCARD:
            tests.append((JNE_K, 5, 0, rule.minor))
        size = len(tests) + 2
        for i, (op, dst, src, imm) in enumerate(tests):
            off = size - i - 1 if op in (JNE_K, JNE_X) else 0
            code.append(_insn(op, dst, src, off, imm))
        code += [_insn(MOV64_K, 0, imm=1), _insn(EXIT)]
    code += [_insn(MOV64_K, 0, imm=0), _insn(EXIT)]
    return b"".join(code)


# ------------------------------------------------------------------ bpf(2)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    result = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), attr,
                           ctypes.c_uint(ATTR_SIZE))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def _attr(fmt: str, *values: int | bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(struct.pack(fmt, *values), ATTR_SIZE)


def load(code: bytes) -> int:
    """Load ``code`` as a device program; its fd.  A refusal carries the verifier's log."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(LICENSE)

    def attempt(log: ctypes.Array[ctypes.c_char] | None) -> int:
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
        # prog_flags, prog_name
        return _bpf(PROG_LOAD, _attr(
            "<IIQQIIQII16s", PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
            ctypes.addressof(insns), ctypes.addressof(lic), 1 if log else 0,
            len(log) if log else 0, ctypes.addressof(log) if log else 0, 0, 0, PROG_NAME))

    try:
        try:
            return attempt(None)
        except OSError as exc:
            # EPERM (not the verifier's EACCES): before Linux 5.11 programs were charged
            # to RLIMIT_MEMLOCK (runc issue 2167).
            if exc.errno != errno.EPERM:
                raise
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_MEMLOCK,
                                   (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            return attempt(None)
    except OSError as exc:
        log = ctypes.create_string_buffer(1 << 16)
        with contextlib.suppress(OSError):
            os.close(attempt(log))  # only to get the verifier's reason
        # The reason is the last line before the verifier's "processed N insns" summary.
        reason = [line for line in log.value.decode(errors="replace").splitlines()
                  if line.strip() and not line.startswith("processed ")]
        raise SetupError("device program load", f"bpf(BPF_PROG_LOAD) failed: {exc.strerror}"
                         + (f" ({reason[-1]})" if reason else ""),
                         errno=exc.errno or 0) from None


def prog_id(fd: int) -> int:
    """The kernel's id of the program behind ``fd`` (bpf_prog_info: type, id)."""
    info = ctypes.create_string_buffer(8)
    _bpf(OBJ_GET_INFO_BY_FD, _attr("<IIQ", fd, len(info), ctypes.addressof(info)))
    return int(struct.unpack_from("<II", info.raw)[1])


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup itself (not its parents)."""
    count = 64
    while True:
        ids = (ctypes.c_uint32 * count)()
        # target_fd, attach_type, query_flags, attach_flags (out), prog_ids, prog_cnt
        attr = _attr("<IIIIQI", cgroup_fd, ATTACH_CGROUP_DEVICE, 0, 0,
                     ctypes.addressof(ids), count)
        try:
            _bpf(PROG_QUERY, attr)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            count = struct.unpack_from("<I", attr.raw, 24)[0] + 8
            continue
        return list(ids[:struct.unpack_from("<I", attr.raw, 24)[0]])


def fd_by_id(prog: int) -> int:
    return _bpf(PROG_GET_FD_BY_ID, _attr("<I", prog))


def exists(prog: int) -> bool:
    """Whether the kernel still holds program ``prog`` (a released one has no fd)."""
    try:
        os.close(fd_by_id(prog))
    except FileNotFoundError:
        return False
    return True


def attach(cgroup_fd: int, fd: int, flags: int, replace_fd: int = 0) -> None:
    _bpf(PROG_ATTACH, _attr("<IIIII", cgroup_fd, fd, ATTACH_CGROUP_DEVICE, flags, replace_fd))


def detach(cgroup_fd: int, fd: int) -> None:
    _bpf(PROG_DETACH, _attr("<III", cgroup_fd, fd, ATTACH_CGROUP_DEVICE))


# ------------------------------------------------------------------ install


def install(cgroup: Path, policy: DevicePolicy) -> int:
    """Put ``policy`` on ``cgroup`` as its only device program; the program's id.

    With one old program, ``BPF_F_REPLACE`` swaps it atomically; otherwise the new one
    is attached first and the old ones detached after, so the cgroup is never without a
    filter (while both apply, the stricter wins).
    """
    fd = load(program(policy))
    held: list[int] = []
    try:
        new_id = prog_id(fd)
        try:
            cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SetupError("device program attach", f"cannot open {cgroup}: "
                             f"{exc.strerror}", errno=exc.errno or 0) from None
        held.append(cgroup_fd)
        step = "query"
        try:
            old = []
            for prog in attached(cgroup_fd):
                with contextlib.suppress(FileNotFoundError):  # detached meanwhile
                    old.append(fd_by_id(prog))
            held += old
            step = "attach"
            replaced = False
            if len(old) == 1:
                try:
                    attach(cgroup_fd, fd, F_ALLOW_MULTI | F_REPLACE, old[0])
                    replaced = True
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: a kernel before 5.6
                        raise
            if not replaced:
                attach(cgroup_fd, fd, F_ALLOW_MULTI)
                step = "detach"
                for prog_fd in old:
                    with contextlib.suppress(FileNotFoundError):
                        detach(cgroup_fd, prog_fd)
            step = "query"
            now = attached(cgroup_fd)
        except OSError as exc:
            raise SetupError("device program attach", f"BPF {step} on {cgroup} failed: "
                             f"{exc.strerror}", errno=exc.errno or 0) from None
        if now != [new_id]:
            raise SetupError("device program check", f"{cgroup} has device programs {now}, "
                             f"expected only {new_id}", errno=errno.EEXIST)
        return new_id
    except OSError as exc:  # prog_id
        raise SetupError("device program load", f"bpf: {exc.strerror}",
                         errno=exc.errno or 0) from None
    finally:
        for held_fd in (fd, *held):
            os.close(held_fd)
