"""Resolve a Docker ``--user`` against the container's own /etc/passwd and /etc/group."""

from __future__ import annotations

import os
from typing import NamedTuple


class ResolvedUser(NamedTuple):
    """(A NamedTuple, not a dataclass: ``exec``'s helper imports this, and dataclasses
    and pathlib would cost it ~15 ms of imports.)"""

    uid: int
    gid: int
    home: str = "/"
    groups: list[int] = []  # never mutated


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(spec: str, root: str | os.PathLike[str] = "/") -> ResolvedUser:
    """``user``, ``uid``, ``user:group`` or ``uid:gid``; raises ``LookupError`` if unknown."""
    passwd = _entries(os.path.join(root, "etc/passwd"))
    groups = _entries(os.path.join(root, "etc/group"))
    user_part, _, group_part = (spec or "0").partition(":")

    uid: int | None = None
    gid: int | None = None
    home = "/"
    name = ""
    for entry in passwd:
        if len(entry) < 6:
            continue
        if entry[0] == user_part or (user_part.isdigit() and entry[2] == user_part):
            uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
            break
    if uid is None:
        if not user_part.isdigit():
            raise LookupError(
                f"unable to find user {user_part}: no matching entries in passwd file")
        uid, gid = int(user_part), 0 if not group_part else None

    extra: list[int] = []
    if group_part:
        gid = None
        for entry in groups:
            if len(entry) >= 3 and (entry[0] == group_part
                                    or (group_part.isdigit() and entry[2] == group_part)):
                gid = int(entry[2])
                break
        if gid is None:
            if not group_part.isdigit():
                raise LookupError(
                    f"unable to find group {group_part}: no matching entries in group file")
            gid = int(group_part)
    elif name:
        # No group given: add the user's supplementary groups, as Docker does.
        for entry in groups:
            if len(entry) >= 4 and name in entry[3].split(","):
                extra.append(int(entry[2]))
    assert gid is not None
    return ResolvedUser(uid=uid, gid=gid, home=home, groups=extra)
