"""``--userns=auto``: which host ids a container's user namespace maps onto.

Podman's convention: the pool is the subordinate ids of one user (``containers`` unless
``<root>/daemon.json`` names another as ``"userns-user"``) in ``/etc/subuid`` and
``/etc/subgid``; a container's uids and gids use the same host numbers, so the pool is
the ids both files grant.  Each container gets one contiguous range, first fit, never
intersecting a range another container of this root holds.  The range is recorded in the
container's config (``security.id_range``) while a lock is held, so two concurrent
creates cannot take the same ids; removing the container gives them back.

Size: 65536 unless ``--userns=auto:size=N`` — Docker's userns-remap size, which maps
every id an image can name in a 16-bit ``/etc/passwd``, ``nobody`` (65534) included,
without reading the image's layers at create (Podman's rule, highest id found + 1).
"""

from __future__ import annotations

import contextlib
import os
import pwd
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidArgument
from .models import IdRange
from .records import locked

if TYPE_CHECKING:
    from .containers import ContainerStore

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
DEFAULT_SIZE = 65536
MAX_ID = 0xFFFFFFFF  # (uid_t)-1 is "no id": a mapping must end below it
LOCK_NAME = "userns"  # <root>/userns.lock

Interval = tuple[int, int]  # (first id, one past the last)


def parse_userns(value: str) -> tuple[str, int]:
    """``host``, ``auto`` or ``auto:size=N`` → (mode, size); InvalidArgument otherwise."""
    mode, _, options = value.partition(":")
    if mode == "host" and not options:
        return "host", 0
    if mode != "auto":
        raise InvalidArgument(f"invalid --userns {value!r}: tuibox knows host, auto and "
                              f"auto:size=N")
    size = DEFAULT_SIZE
    for option in filter(None, options.split(",")):
        key, _, number = option.partition("=")
        if key != "size" or not number.isdigit() or not 0 < int(number) < MAX_ID:
            raise InvalidArgument(f"invalid --userns option {option!r}: tuibox knows "
                                  f"size=N (1 or more ids)")
        size = int(number)
    return "auto", size


def subordinate_ids(path: Path, user: str) -> list[Interval]:
    """The ranges ``path`` (subuid/subgid format, ``name:start:count``) grants ``user``."""
    names = {user}
    with contextlib.suppress(KeyError):
        names.add(str(pwd.getpwnam(user).pw_uid))  # the host's own passwd, never an image's
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    found = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in names:
            continue
        if not (fields[1].isdigit() and fields[2].isdigit()):
            continue
        # Never host root: a range starting at 0 would make the container's root the host's.
        start, end = max(int(fields[1]), 1), min(int(fields[1]) + int(fields[2]), MAX_ID)
        if start < end:
            found.append((start, end))
    return found


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The ids in both lists of intervals, as sorted intervals."""
    out = [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b]
    return sorted((s, e) for s, e in out if s < e)


def first_fit(pool: list[Interval], used: list[Interval], size: int) -> int | None:
    """The lowest start of ``size`` ids inside one pool interval that intersects no used
    interval (a real intersection test: a small range inside the window counts too)."""
    for start, end in sorted(pool):
        candidate = start
        while candidate + size <= end:
            clashes = [u for u in used if u[0] < candidate + size and candidate < u[1]]
            if not clashes:
                return candidate
            candidate = max(u[1] for u in clashes)
    return None


def pool_for(user: str, *, root: Path, subuid: Path = SUBUID,
             subgid: Path = SUBGID) -> list[Interval]:
    """The ids ``user`` has in both files; a clear error naming the line to add."""
    uids, gids = subordinate_ids(subuid, user), subordinate_ids(subgid, user)
    for path, ranges in ((subuid, uids), (subgid, gids)):
        if not ranges:
            raise InvalidArgument(
                f'--userns=auto needs subordinate ids of user "{user}" in {path}: add a '
                f'line such as "{user}:2147483647:2147483648" to /etc/subuid and '
                f'/etc/subgid, or name another user as "userns-user" in '
                f"{root / 'daemon.json'}")
    pool = intersect(uids, gids)
    if not pool:
        raise InvalidArgument(f'--userns=auto: the ids of "{user}" in {subuid} and {subgid} '
                              f"do not overlap; give the user the same range in both")
    return pool


def allocate(pool: list[Interval], used: Iterable[IdRange], size: int, *,
             user: str) -> IdRange:
    """First fit of ``size`` ids in ``pool`` beside the ``used`` ranges."""
    taken = [(r.start, r.start + r.size) for r in used]
    start = first_fit(pool, taken, size)
    if start is None:
        total = sum(e - s for s, e in pool)
        raise InvalidArgument(
            f'--userns=auto: no {size} free ids left in the {total} subordinate ids of '
            f'"{user}" ({len(taken)} containers hold ranges); remove containers, ask for '
            f"fewer with --userns=auto:size=N, or grant more in /etc/subuid and /etc/subgid")
    return IdRange(start=start, size=size)


def claim(held: contextlib.ExitStack, *, root: Path, store: ContainerStore,
          userns: str | None, user: str) -> IdRange:
    """A range for a container being created; ``held`` keeps the allocation lock until
    the caller has written the config that records it (closing ``held`` releases it)."""
    _, size = parse_userns(userns or "auto")  # None: the root's default said auto
    pool = pool_for(user, root=root)
    held.enter_context(locked(root / LOCK_NAME))
    used = [c.config.security.id_range for c in store.list()[0]
            if c.config.security.id_range is not None]
    return allocate(pool, used, size, user=user)


def give_to_root(directories: Iterable[Path], ids: IdRange) -> None:
    """The container's upper and work dirs belong to its root (host id ``ids.start``):
    overlay stores what the container writes with the writer's host ids."""
    for d in directories:
        os.chown(d, ids.start, ids.start)
