"""Waking a log follower when its directory changes (inotify), else by polling."""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path
from typing import Final

from . import _libc

# Appends (MODIFY), rotation (CREATE/MOVED_TO of the replacement) and removal.
_MASK: Final = (
    _libc.IN_MODIFY
    | _libc.IN_CREATE
    | _libc.IN_MOVED_TO
    | _libc.IN_MOVED_FROM
    | _libc.IN_DELETE
    | _libc.IN_ATTRIB
    | _libc.IN_CLOSE_WRITE
)


class DirWatch:
    """``wait`` returns as soon as something in ``directory`` changed, or after ``timeout``.

    Created before the first read, so a change made while the caller reads is still queued.
    Without inotify (or if the directory is missing) it just sleeps: polling.
    """

    def __init__(self, directory: Path) -> None:
        self._fd = -1
        try:
            fd = _libc.inotify_init()
        except OSError:
            return
        try:
            _libc.inotify_add_watch(fd, str(directory), _MASK)
        except OSError:
            os.close(fd)
            return
        self._fd = fd

    def wait(self, timeout: float) -> None:
        if self._fd < 0:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            # The events only say "look again"; drain them so the next wait blocks.
            with contextlib.suppress(BlockingIOError):
                while os.read(self._fd, 65536):
                    pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
