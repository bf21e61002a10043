"""Tighten a state root an older tuibox made: nothing in it is another user's business.

Older roots were 0711 with 0755 dirs inside, so any local user could write into image
layers and running containers' upper dirs and read every ``config.json`` (its environment
holds secrets).  New files get their modes where they are made (``StatePaths.ensure``,
``write_record``, the stores); this pass fixes what an older tuibox left, once per
supervisor start.  It only ever takes permission bits away, never follows a symlink and
never descends into a layer's, container's or volume's own files (their modes are the
image's and the container's; the private dirs above them are what keeps users out).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from .paths import PRIVATE_DIR, StatePaths

PRIVATE_FILE = 0o600
LOG_FILE = 0o640  # Docker's mode for a daemon's and a container's log
TOP_DIRS = ("images", "layers", "containers", "names", "tmp", "volumes", "networks")
# A container's records (config.json holds its environment).  Its json logs were always
# 0640; hosts, hostname and resolv.conf stay 0644: they are bind-mounted, and a non-root
# container user must read them.
CONTAINER_RECORDS = ("config.json", "state.json")


def _limit(path: Path, mode: int, is_kind: Callable[[int], bool]) -> bool:
    """Take away the bits of ``path``'s mode that ``mode`` lacks; True if it changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not is_kind(st.st_mode):  # a symlink (or anything unexpected) is left alone
        return False
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode == 0:
        return False
    os.chmod(path, current & mode)
    return True


def _entries(directory: Path) -> list[Path]:
    try:
        return [directory / name for name in os.listdir(directory)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def tighten(paths: StatePaths) -> int:
    """Make the root private; returns how many paths had to change."""
    d, f = stat.S_ISDIR, stat.S_ISREG
    changed = int(_limit(paths.root, PRIVATE_DIR, d))
    changed += sum(_limit(paths.root / name, PRIVATE_DIR, d) for name in TOP_DIRS)
    changed += _limit(paths.events, PRIVATE_FILE, f)
    changed += _limit(paths.root / "auth.json", PRIVATE_FILE, f)
    changed += _limit(paths.supervisor_log, LOG_FILE, f)
    for cdir in _entries(paths.containers):
        if not _limit(cdir, PRIVATE_DIR, d):
            continue  # private already: made by a tuibox that writes its records 0600
        changed += 1
        changed += sum(_limit(cdir / name, PRIVATE_FILE, f) for name in CONTAINER_RECORDS)
    for parent in (paths.layers, paths.volumes):
        changed += sum(_limit(p, PRIVATE_DIR, d) for p in _entries(parent))
    return changed
