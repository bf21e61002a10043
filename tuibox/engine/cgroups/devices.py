"""Which devices a container may use: the rule model, Docker's list, the cgroup v1 writes.

A container holds CAP_MKNOD, so it can make a node for any device; the devices cgroup is
what stops it from *opening* one.  Every container gets an allow list (runc's effective
list for a Docker container): any char or block node may be made (``m``), and only the
harmless devices may be read or written.  ``--device`` and ``--device-cgroup-rule`` add
to it; ``--privileged`` allows everything.

cgroup v1 has the kernel files for this (``devices.deny``, ``devices.allow``,
``devices.list``); cgroup v2 has no file at all, so ``bpf_devices`` compiles the same
policy into a BPF program.  Both are built from one ``DevicePolicy``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SetupError

if TYPE_CHECKING:
    from ..models import SecurityConfig
    from ..runtime.devnodes import DeviceNode

WILDCARD = -1
ACCESS_ORDER = "rwm"  # the kernel prints access in this order


@dataclass(frozen=True, order=True)
class DeviceRule:
    """One allow rule, ``c 1:3 rwm``: kind ``a`` (any), ``b`` or ``c``; -1 is ``*``."""

    kind: str
    major: int = WILDCARD
    minor: int = WILDCARD
    access: str = "rwm"

    @classmethod
    def parse(cls, text: str) -> DeviceRule:
        """Docker's syntax (checked at create by ``security.parse_cgroup_rule``)."""
        try:
            kind, numbers, access = text.split()
            major, minor = numbers.split(":")
            rule = cls(kind, _number(major), _number(minor), _ordered(access))
        except ValueError:
            raise ValueError(f"invalid device cgroup rule {text!r}") from None
        if kind not in "abc" or len(kind) != 1 or not rule.access:
            raise ValueError(f"invalid device cgroup rule {text!r}")
        return rule

    def __str__(self) -> str:
        return f"{self.kind} {_star(self.major)}:{_star(self.minor)} {self.access}"

    @property
    def key(self) -> tuple[int, int, str]:
        return self.major, self.minor, self.kind


def _number(text: str) -> int:
    return WILDCARD if text == "*" else int(text)


def _star(number: int) -> str:
    return "*" if number == WILDCARD else str(number)


def _ordered(access: str) -> str:
    if set(access) - set(ACCESS_ORDER):
        raise ValueError(access)
    return "".join(ch for ch in ACCESS_ORDER if ch in access)


# runc's effective list for a Docker container (Docker's spec rules plus runc's own
# AllowedDevices, normalised).  10:200 (/dev/net/tun) is in it, as in Docker: a tun
# device is useless without CAP_NET_ADMIN, which a default container lacks.
DEFAULT_RULES = tuple(DeviceRule.parse(r) for r in (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",  # null zero full
    "c 1:8 rwm", "c 1:9 rwm",  # random urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",  # tty console ptmx
    "c 10:200 rwm",  # net/tun
    "c 136:* rwm",  # pts/N
))


@dataclass(frozen=True)
class DevicePolicy:
    """What a container may do with devices: everything, or only ``rules`` (b/c kinds,
    one per device, access merged, in runc's order) and nothing else."""

    allow_all: bool
    rules: tuple[DeviceRule, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[DeviceRule]) -> DevicePolicy:
        merged: dict[tuple[int, int, str], str] = {}
        for rule in rules:
            if rule.kind == "a" and (rule.major, rule.minor, rule.access) == (-1, -1, "rwm"):
                return cls(allow_all=True)
            # "a 1:3 r" means both kinds; v1 would read any "a" line as allow-all.
            for kind in ("b", "c") if rule.kind == "a" else (rule.kind,):
                key = (rule.major, rule.minor, kind)
                merged[key] = _ordered(merged.get(key, "") + rule.access)
        return cls(False, tuple(DeviceRule(kind, major, minor, access)
                                for (major, minor, kind), access in sorted(merged.items())))

    @classmethod
    def from_list(cls, text: str) -> DevicePolicy:
        """Parse a v1 ``devices.list`` (``a *:* rwm`` is printed for allow-all mode)."""
        return cls.of(DeviceRule.parse(line) for line in text.splitlines() if line.strip())

    def lines(self) -> list[str]:
        return ["a *:* rwm"] if self.allow_all else [str(r) for r in self.rules]


def policy_for(security: SecurityConfig | None, nodes: Sequence[DeviceNode]) -> DevicePolicy:
    """Docker's list plus each ``--device`` node and ``--device-cgroup-rule``; all for
    ``--privileged``.  ``nodes`` carry the host's numbers as of this start."""
    if security is not None and security.privileged:
        return DevicePolicy(allow_all=True)
    rules = list(DEFAULT_RULES)
    rules += [DeviceRule(n.kind, n.major, n.minor, _ordered(n.permissions)) for n in nodes]
    if security is not None:
        rules += [DeviceRule.parse(r) for r in security.device_cgroup_rules]
    return DevicePolicy.of(rules)


# ---------------------------------------------------------------------- cgroup v1


def apply_v1(cgroup: Path, policy: DevicePolicy) -> None:
    """Bring ``cgroup``'s devices files to ``policy`` with the fewest writes, then read
    ``devices.list`` back and insist it matches (runc's emulator, in short).

    A cgroup in allow-all mode (fresh ones inherit it) is first switched to deny-all; an
    existing allow list is only edited, so a running container never loses /dev/null
    for a moment.
    """
    current = DevicePolicy.from_list(_read_list(cgroup))
    if policy.allow_all:
        if not current.allow_all:
            _write(cgroup, "devices.allow", "a")
    else:
        if current.allow_all:
            _write(cgroup, "devices.deny", "a")
            current = DevicePolicy(allow_all=False)
        had = {r.key: r.access for r in current.rules}
        wanted = {r.key: r.access for r in policy.rules}
        for rule in current.rules:
            lost = _ordered("".join(set(rule.access) - set(wanted.get(rule.key, ""))))
            if lost:
                _write(cgroup, "devices.deny", str(DeviceRule(rule.kind, rule.major,
                                                              rule.minor, lost)))
        for rule in policy.rules:
            gained = _ordered("".join(set(rule.access) - set(had.get(rule.key, ""))))
            if gained:
                _write(cgroup, "devices.allow", str(DeviceRule(rule.kind, rule.major,
                                                               rule.minor, gained)))
    after = DevicePolicy.from_list(_read_list(cgroup))
    if after != policy:
        raise SetupError("devices cgroup", f"{cgroup}/devices.list shows {after.lines()} "
                         f"instead of {policy.lines()}", errno=errno.EIO)


def _read_list(cgroup: Path) -> str:
    try:
        return (cgroup / "devices.list").read_text()
    except OSError as exc:
        raise SetupError("devices cgroup", f"cannot read {cgroup}/devices.list: "
                         f"{exc.strerror}", errno=exc.errno or 0) from None


def _write(cgroup: Path, name: str, line: str) -> None:
    try:
        fd = os.open(cgroup / name, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SetupError("devices cgroup", f"writing {line!r} to {cgroup}/{name} failed: "
                         f"{exc.strerror}", errno=exc.errno or 0) from None
