"""A full disk (or quota) as the engine reports it: ``NoSpace``, never a raw ``OSError``.

Writes deep down (a blob, a record, a layer file) fail with ``ENOSPC``/``EDQUOT``; the
engine's entry points translate that here, at the boundary, into ``NoSpace`` — one line
naming the path and how to make room — with the original error as its cause.  Buffered
writes fail without a file name, so each entry point names the place it writes to.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from .errors import NoSpace, SetupError, TuiboxError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

P = ParamSpec("P")
R = TypeVar("R")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def no_space(exc: OSError, where: Path | str) -> NoSpace:
    """``exc`` (ENOSPC/EDQUOT) as ``NoSpace``, naming its file or else ``where``."""
    if isinstance(exc, NoSpace):
        return exc
    return NoSpace(str(exc.filename or where), errno=exc.errno or errno.ENOSPC)


def os_error(exc: OSError, where: Path | str) -> TuiboxError:
    """Any ``OSError`` as a one-line ``TuiboxError`` (``NoSpace`` for a full disk)."""
    if isinstance(exc, TuiboxError):
        return exc
    if is_disk_full(exc):
        return no_space(exc, where)
    return TuiboxError(f"{exc.strerror or exc}: {exc.filename or where}")


def reports_no_space(where: Callable[..., Path | str]) -> Callable[[Callable[P, R]],
                                                                   Callable[P, R]]:
    """Decorate an entry point: ENOSPC/EDQUOT inside it leaves as ``NoSpace``.

    ``where(*args, **kwargs)`` names the place written to, for errors that carry no file
    name.  What the operation made before it failed is its own to undo (it already does
    that for any exception)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                if not is_disk_full(exc) or isinstance(exc, NoSpace):
                    raise
                raise no_space(exc, where(*args, **kwargs)) from exc

        return wrapper

    return decorate


def state_root(self: object, *_args: object, **_kwargs: object) -> Path:
    """``where`` for methods of objects that carry ``paths`` (a ``StatePaths``)."""
    root: Path = self.paths.root  # type: ignore[attr-defined]
    return root


def start_failure(exc: TuiboxError | OSError, where: Path) -> SetupError:
    """What a failed container start reports: a ``SetupError`` naming the step.

    Errors that are not already one come from the network set-up, or (an ``OSError``)
    from writing the container's files: ``hosts``, ``resolv.conf``, its seccomp filter."""
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, OSError):
        return SetupError("container files", os_error(exc, where).message,
                          errno=exc.errno or 0)
    return SetupError("network", exc.message)


def free_bytes(path: Path | str) -> int:
    """Bytes still free on ``path``'s filesystem for root, who runs tuibox (ext4's blocks
    reserved for root count: a disk at 95 % must not stop anyone's logs)."""
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize
