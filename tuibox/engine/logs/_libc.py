"""The few libc calls the stdlib lacks: hole punching and inotify."""

from __future__ import annotations

import ctypes
import os
from typing import Final

FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02

IN_NONBLOCK: Final = os.O_NONBLOCK
IN_CLOEXEC: Final = os.O_CLOEXEC
IN_MODIFY: Final = 0x002
IN_ATTRIB: Final = 0x004
IN_CLOSE_WRITE: Final = 0x008
IN_MOVED_FROM: Final = 0x040
IN_MOVED_TO: Final = 0x080
IN_CREATE: Final = 0x100
IN_DELETE: Final = 0x200

_libc = ctypes.CDLL(None, use_errno=True)

# name: (restype, argtypes)
_SIGNATURES: Final = {
    "fallocate": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
    "inotify_init1": (ctypes.c_int, [ctypes.c_int]),
    "inotify_add_watch": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _fn = getattr(_libc, _name)
    _fn.restype, _fn.argtypes = _res, _args


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free ``[offset, offset+length)`` of a file without changing its size or offsets."""
    _check(
        _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length), "fallocate"
    )


def inotify_init() -> int:
    return _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), mask), "inotify_add_watch")
