"""``import --change`` instructions, in Dockerfile syntax, applied to an image config."""

from __future__ import annotations

import json
import posixpath
import re
import shlex

from ..errors import InvalidArgument
from ..models import ImageConfig

_INSTRUCTION_RE = re.compile(r"\s*(\S+)\s*(.*?)\s*", re.DOTALL)
_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.IGNORECASE)
_SIGNAL_RE = re.compile(r"\d+|(?:SIG)?[A-Z][A-Z0-9]*(?:[+-]\d+)?")
SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "LABEL", "STOPSIGNAL", "EXPOSE",
             "VOLUME")


def _json_array(rest: str) -> list[str] | None:
    """The exec form, if ``rest`` is a JSON array of strings (Docker falls back to shell)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _command(rest: str, keyword: str) -> list[str]:
    exec_form = _json_array(rest)
    if exec_form is not None:
        return exec_form
    if not rest:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, keyword: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` pairs, or the legacy one-pair ``k value with spaces`` form."""
    if not rest:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    first = rest.split(None, 1)[0]
    if "=" not in first:
        parts = rest.split(None, 1)
        if len(parts) != 2:
            raise InvalidArgument(f"{keyword} must have two arguments: {rest!r}")
        return [(parts[0], parts[1])]
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"{keyword} {rest!r}: {exc}") from exc
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{keyword} expects key=value, got {word!r}")
        pairs.append((key, value))
    return pairs


def _ports(rest: str) -> dict[str, dict[str, object]]:
    ports: dict[str, dict[str, object]] = {}
    for word in rest.split():
        m = _PORT_RE.fullmatch(word)
        if not m:
            raise InvalidArgument(f"EXPOSE: invalid port {word!r}")
        start = int(m.group(1))
        end = int(m.group(2) or start)
        proto = (m.group(3) or "tcp").lower()
        if not 0 < start <= end <= 65535:
            raise InvalidArgument(f"EXPOSE: invalid port range {word!r}")
        for port in range(start, end + 1):
            ports[f"{port}/{proto}"] = {}
    if not ports:
        raise InvalidArgument("EXPOSE requires at least one argument")
    return ports


def _apply(config: ImageConfig, change: str) -> None:
    m = _INSTRUCTION_RE.fullmatch(change)
    if not m or not change.strip():
        raise InvalidArgument(f"empty change instruction: {change!r}")
    keyword, rest = m.group(1).upper(), m.group(2)
    if keyword == "CMD":
        config.Cmd = _command(rest, keyword)
    elif keyword == "ENTRYPOINT":
        config.Entrypoint = _command(rest, keyword)
    elif keyword == "ENV":
        env = list(config.Env)
        for key, value in _pairs(rest, keyword):
            env = [e for e in env if e.partition("=")[0] != key]
            env.append(f"{key}={value}")
        config.Env = env
    elif keyword == "LABEL":
        labels = dict(config.Labels or {})
        labels.update(_pairs(rest, keyword))
        config.Labels = labels
    elif keyword == "WORKDIR":
        if not rest:
            raise InvalidArgument("WORKDIR requires exactly one argument")
        # A relative WORKDIR is relative to the previous one, as in a Dockerfile.
        config.WorkingDir = posixpath.normpath(posixpath.join(config.WorkingDir or "/", rest))
    elif keyword == "USER":
        if not rest:
            raise InvalidArgument("USER requires exactly one argument")
        config.User = rest
    elif keyword == "STOPSIGNAL":
        if not _SIGNAL_RE.fullmatch(rest):
            raise InvalidArgument(f"STOPSIGNAL: invalid signal {rest!r}")
        config.StopSignal = rest
    elif keyword == "EXPOSE":
        config.ExposedPorts = {**(config.ExposedPorts or {}), **_ports(rest)}
    elif keyword == "VOLUME":
        paths = _json_array(rest)
        if paths is None:
            paths = rest.split()
        if not paths:
            raise InvalidArgument("VOLUME requires at least one argument")
        config.Volumes = {**(config.Volumes or {}), **{p: {} for p in paths}}
    else:
        raise InvalidArgument(
            f"{m.group(1)} is not a supported change instruction "
            f"(supported: {', '.join(SUPPORTED)})"
        )


def apply_changes(config: ImageConfig, changes: list[str]) -> ImageConfig:
    """A copy of ``config`` with each instruction applied in order."""
    out = config.model_copy(deep=True)
    for change in changes:
        _apply(out, change)
    return out
