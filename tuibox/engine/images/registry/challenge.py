"""``WWW-Authenticate`` challenges (RFC 7235 / RFC 6750 quoted parameters).

Registries answer ``401`` with ``Bearer realm="…",service="…",scope="…"`` (token auth)
or ``Basic realm="…"`` (htpasswd).  Only the first challenge we understand matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# scheme, then comma-separated key=value pairs; values are tokens or quoted strings
# (with backslash escapes).  A scope like "repository:a/b:pull,push" is quoted, so the
# comma inside it never splits a pair.
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')
_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one header value, in order."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if not m or not m.group(1):
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM_RE.match(header, pos)
            if not p:
                break
            # A bare word followed by a space and no '=' starts the next challenge.
            params[p.group(1).lower()] = _unquote(p.group(2))
            pos = p.end()
        challenges.append(Challenge(scheme=scheme, params=params))
        if pos < len(header) and header[pos] == ",":
            pos += 1
    return challenges


def pick_challenge(headers: list[str]) -> Challenge | None:
    """The first Bearer or Basic challenge among the ``WWW-Authenticate`` values."""
    for value in headers:
        for challenge in parse_challenges(value):
            if challenge.scheme in ("bearer", "basic"):
                return challenge
    return None
