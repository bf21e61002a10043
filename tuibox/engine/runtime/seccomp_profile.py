"""Docker's seccomp profile format: parsed, checked, and resolved for one container.

The same JSON Docker reads for ``--security-opt seccomp=PROFILE.json`` (moby's
``types.Seccomp``): ``defaultAction``/``defaultErrnoRet``, ``architectures`` or
``archMap``, ``syscalls[{names, action, errnoRet, args, includes, excludes}]``, ``flags``.
``parse`` checks a profile once (at ``create``: a bad one is a one-line error there);
``resolve`` then does what the Docker daemon does when it writes the OCI spec: it keeps
the rules whose ``includes`` (capabilities, architectures, kernel version) hold and whose
``excludes`` do not, for this container's capability set, on this host.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from typing import Any

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
          "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
          "SCMP_ARCH_LOONGARCH64")
# uname -m → (Go's GOARCH, which ``includes.arches`` names; the profile's native arch).
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "i686": ("386", "SCMP_ARCH_X86"), "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"), "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}
_KERNEL = re.compile(r"^(\d+)\.(\d+)")


class ProfileError(ValueError):
    """A seccomp profile that is not valid Docker JSON (the message is one line)."""


@dataclass(frozen=True)
class Arg:
    index: int
    value: int
    value_two: int
    op: str


@dataclass(frozen=True)
class _Filter:
    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None = None  # errnoRet: the errno of ERRNO, the message of TRACE
    args: tuple[Arg, ...] = ()
    includes: _Filter = _Filter()
    excludes: _Filter = _Filter()


@dataclass(frozen=True)
class Profile:
    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    arch_map: tuple[tuple[str, tuple[str, ...]], ...]
    rules: tuple[Rule, ...]
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolved:
    """What the daemon would put in the OCI spec: the rules that apply to this container."""

    default_action: str
    default_errno: int | None
    arches: tuple[str, ...]  # SCMP_ARCH_* names besides the native one
    rules: tuple[Rule, ...]
    flags: tuple[str, ...]


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProfileError(f"{where}{key}: wrong type ({type(value).__name__})")
    return value


def _uint(obj: dict[str, Any], key: str, where: str, limit: int) -> int | None:
    value = _get(obj, key, int, where)
    if value is not None and not 0 <= value < limit:
        raise ProfileError(f"{where}{key}: {value} is out of range")
    return value  # type: ignore[no-any-return]


def _names(obj: dict[str, Any], key: str, where: str, allowed: tuple[str, ...] = ()
           ) -> tuple[str, ...]:
    values = _get(obj, key, list, where, [])
    for v in values:
        if not isinstance(v, str):
            raise ProfileError(f"{where}{key}: every entry must be a string")
        if allowed and v not in allowed:
            raise ProfileError(f"{where}{key}: unknown value {v!r}")
    return tuple(values)


def _kernel(text: str, where: str) -> tuple[int, int]:
    m = _KERNEL.match(text)
    if not m:
        raise ProfileError(f"{where}minKernel: invalid kernel version {text!r}")
    return int(m.group(1)), int(m.group(2))


def _filter(obj: Any, where: str) -> _Filter:
    if obj is None:
        return _Filter()
    if not isinstance(obj, dict):
        raise ProfileError(f"{where}: must be an object")
    where += "."
    min_kernel = _get(obj, "minKernel", str, where)
    return _Filter(caps=_names(obj, "caps", where), arches=_names(obj, "arches", where),
                   min_kernel=_kernel(min_kernel, where) if min_kernel else None)


def _action(obj: dict[str, Any], key: str, where: str) -> str:
    action = _get(obj, key, str, where)
    if not action:
        raise ProfileError(f"{where}{key} is missing")
    if action == "SCMP_ACT_NOTIFY":
        raise ProfileError(f"{where}{key}: SCMP_ACT_NOTIFY needs a listener, which tuibox "
                           f"does not offer")
    if action not in ACTIONS:
        raise ProfileError(f"{where}{key}: unknown action {action!r}")
    return action  # type: ignore[no-any-return]


def _errno(obj: dict[str, Any], key: str, action: str, where: str) -> int | None:
    value = _uint(obj, key, where, 1 << 16)
    if value is not None and action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        raise ProfileError(f"{where}{key} is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    return value


def _arg(obj: Any, where: str) -> Arg:
    if not isinstance(obj, dict):
        raise ProfileError(f"{where}: must be an object")
    where += "."
    index = _uint(obj, "index", where, 6)
    op = _get(obj, "op", str, where)
    if op not in OPERATORS:
        raise ProfileError(f"{where}op: unknown operator {op!r}")
    return Arg(index=index or 0, value=_uint(obj, "value", where, 1 << 64) or 0,
               value_two=_uint(obj, "valueTwo", where, 1 << 64) or 0, op=op)


def _rule(obj: Any, where: str) -> Rule:
    if not isinstance(obj, dict):
        raise ProfileError(f"{where}: must be an object")
    where += "."
    names = _names(obj, "names", where)
    name = _get(obj, "name", str, where)
    if name and names:
        raise ProfileError(f"{where}: syscall name and names cannot both be specified")
    if name:
        names = (name,)
    if not names:
        raise ProfileError(f"{where}names: no syscall named")
    action = _action(obj, "action", where)
    args = _get(obj, "args", list, where, [])
    return Rule(names=names, action=action, errno=_errno(obj, "errnoRet", action, where),
                args=tuple(_arg(a, f"{where}args[{i}]") for i, a in enumerate(args)),
                includes=_filter(obj.get("includes"), f"{where}includes"),
                excludes=_filter(obj.get("excludes"), f"{where}excludes"))


def parse(text: str) -> Profile:
    """A Docker JSON profile, checked; ``ProfileError`` says what is wrong, in one line."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ProfileError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProfileError("must be a JSON object")
    default = _action(obj, "defaultAction", "")
    architectures = _names(obj, "architectures", "", ARCHES)
    arch_map = []
    for i, entry in enumerate(_get(obj, "archMap", list, "", [])):
        where = f"archMap[{i}]."
        if not isinstance(entry, dict):
            raise ProfileError(f"{where}: must be an object")
        main = _get(entry, "architecture", str, where)
        if main not in ARCHES:
            raise ProfileError(f"{where}architecture: unknown value {main!r}")
        arch_map.append((main, _names(entry, "subArchitectures", where, ARCHES)))
    if architectures and arch_map:
        raise ProfileError("'architectures' and 'archMap' cannot both be specified")
    syscalls = _get(obj, "syscalls", list, "", [])
    return Profile(default_action=default,
                   default_errno=_errno(obj, "defaultErrnoRet", default, ""),
                   architectures=architectures, arch_map=tuple(arch_map),
                   rules=tuple(_rule(r, f"syscalls[{i}]") for i, r in enumerate(syscalls)),
                   flags=_names(obj, "flags", "", FLAGS))


def host() -> tuple[str, str, tuple[int, int]]:
    """(GOARCH, the native SCMP_ARCH_*, the kernel's major.minor) of this machine."""
    goarch, native = _MACHINES.get(platform.machine(), ("", ""))
    m = _KERNEL.match(os.uname().release)
    return goarch, native, (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _applies(rule: Rule, caps: frozenset[str], goarch: str, kernel: tuple[int, int]) -> bool:
    inc, exc = rule.includes, rule.excludes
    if goarch in exc.arches or any(c in caps for c in exc.caps):
        return False
    if exc.min_kernel is not None and kernel >= exc.min_kernel:
        return False
    if inc.arches and goarch not in inc.arches:
        return False
    if not all(c in caps for c in inc.caps):
        return False
    return inc.min_kernel is None or kernel >= inc.min_kernel


def resolve(profile: Profile, caps: frozenset[str]) -> Resolved:
    """Docker's ``setupSeccomp``: the rules whose includes hold for ``caps`` (the
    container's capability set) on this host, the architectures for the native one."""
    goarch, native, kernel = host()
    arches = list(profile.architectures)
    for main, subs in profile.arch_map:
        if main == native:
            arches += [main, *subs]
    rules = tuple(r for r in profile.rules if _applies(r, caps, goarch, kernel))
    return Resolved(default_action=profile.default_action,
                    default_errno=profile.default_errno,
                    arches=tuple(a for a in dict.fromkeys(arches) if a != native),
                    rules=rules, flags=profile.flags)
