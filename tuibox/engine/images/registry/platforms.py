"""Platforms (``os/arch[/variant]``) and choosing one manifest from an index.

containerd's matcher, reduced to what Linux hosts need: the OS must be equal, the
architecture equal, and the variant equal after normalisation (arm64 without a variant
is v8; 32-bit arm defaults to v7 and also runs v6 and v5 images).
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidArgument
from ..imageconfig import host_architecture


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normalise(arch: str, variant: str) -> tuple[str, str]:
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
            "armel": "arm", "i386": "386"}.get(arch, arch)
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    if arch == "arm" and variant == "":
        variant = "v7"
    if arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = "v" + variant
    return arch, variant


def parse_platform(text: str) -> Platform:
    """``linux/arm64``, ``linux/arm/v6``, ``amd64`` (os defaults to linux)."""
    parts = [p.strip().lower() for p in text.split("/")]
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    arch, variant = _normalise(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(parts[0], arch, variant)


def host_platform() -> Platform:
    arch = host_architecture()
    variant = ""
    if arch == "arm":
        variant = "v6" if _platform.machine().startswith("armv6") else "v7"
    arch, variant = _normalise(arch, variant)
    return Platform("linux", arch, variant)


def _compatible_variants(want: Platform) -> list[str]:
    if want.architecture == "arm" and want.variant.startswith("v"):
        # A v7 CPU runs v6 and v5 binaries; prefer the closest.
        top = int(want.variant[1:]) if want.variant[1:].isdigit() else 7
        return [f"v{n}" for n in range(top, 4, -1)]
    return [want.variant]


def platform_of(desc: dict[str, Any]) -> Platform | None:
    raw = desc.get("platform")
    if not isinstance(raw, dict):
        return None
    arch, variant = _normalise(str(raw.get("architecture", "")), str(raw.get("variant", "")))
    return Platform(str(raw.get("os", "")), arch, variant)


def matches(desc: dict[str, Any], want: Platform) -> int | None:
    """How well an index entry fits ``want``: a rank (0 best) or None if it does not."""
    got = platform_of(desc)
    if got is None or got.os != want.os or got.architecture != want.architecture:
        return None
    variants = _compatible_variants(want)
    if got.variant in variants:
        return variants.index(got.variant)
    return None
