"""Docker's rules for turning an image config plus the user's flags into a process."""

from __future__ import annotations

import resource

from ..errors import InvalidArgument
from ..models import ImageConfig, ProcessSpec, RestartPolicy, RunOptions, Ulimit
from .init import RLIMITS

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def merge_env(*layers: list[str]) -> list[str]:
    """Later entries override earlier ones by name; order of first appearance is kept."""
    merged: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key = entry.split("=", 1)[0]
            merged[key] = entry
    return list(merged.values())


def build_process(image: ImageConfig, opts: RunOptions, hostname: str) -> ProcessSpec:
    if opts.entrypoint is not None:
        # --entrypoint replaces the image's and clears its Cmd; "" resets it entirely.
        entrypoint = [e for e in opts.entrypoint if e] if opts.entrypoint != [""] else []
        cmd = opts.command
    else:
        entrypoint = list(image.Entrypoint or [])
        cmd = opts.command or list(image.Cmd or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("no command specified")
    base = [DEFAULT_PATH, f"HOSTNAME={hostname}"] + (["TERM=xterm"] if opts.tty else [])
    env = merge_env(base, image.Env, opts.env)
    return ProcessSpec(args=args, env=env, cwd=opts.workdir or image.WorkingDir or "/",
                       user=opts.user if opts.user is not None else image.User,
                       tty=opts.tty, open_stdin=opts.interactive)


def parse_restart(value: str) -> RestartPolicy:
    name, _, count = value.partition(":")
    if name not in ("no", "on-failure", "always", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy: {value}")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise InvalidArgument(f"invalid restart policy: {value}") from None
    if retries < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    return RestartPolicy(name=name, maximum_retry_count=retries)  # type: ignore[arg-type]


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
          "g": 1000**3, "gb": 1000**3}


def parse_decimal_size(value: str) -> int:
    """Docker's ``units.FromHumanSize``: decimal units (``10m`` = 10,000,000 bytes)."""
    text = value.strip().lower()
    num = text.rstrip("kmgb")
    unit = text[len(num):]
    try:
        size = float(num)
    except ValueError:
        raise InvalidArgument(f"invalid size: '{value}'") from None
    if unit not in _UNITS or size < 0:
        raise InvalidArgument(f"invalid size: '{value}'")
    return int(size * _UNITS[unit])


def parse_ulimit(value: str, *, can_raise: bool) -> Ulimit:
    """``name=soft[:hard]``; a hard limit above the engine's own needs CAP_SYS_RESOURCE."""
    name, sep, limits = value.partition("=")
    if not sep or name not in RLIMITS:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    soft_s, _, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if hard_s else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {value}") from None
    if soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: "
                              f"{soft} > {hard}")
    _, our_hard = resource.getrlimit(RLIMITS[name])
    if not can_raise and our_hard != resource.RLIM_INFINITY and hard > our_hard:
        raise InvalidArgument(
            f"ulimit {name}: hard limit {hard} is above the engine's own hard limit "
            f"{our_hard}, and raising it needs CAP_SYS_RESOURCE, which this host does not "
            f"grant; ask for at most {name}={min(soft, our_hard)}:{our_hard}")
    return Ulimit(name=name, soft=soft, hard=hard)
