"""Atomic, locked reads and writes of pydantic records.

Writers take an ``flock`` on a sibling ``.lock`` file, write a temp file and ``os.replace``
it, so readers never see half a record and need no lock at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .diskfull import is_disk_full, no_space
from .errors import RecordError

M = TypeVar("M", bound=BaseModel)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step (temp file + fsync-free rename).

    A full disk raises ``NoSpace`` (an ``OSError`` too) and leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_NOFOLLOW: a symlink planted at the temp name is refused, never written through.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
        try:
            os.fchmod(fd, mode)  # exactly ``mode``: not the umask's, not a stale temp file's
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        # A torn temp file would only hold on to the space a full disk lacks.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise no_space(exc, path) from exc
        raise


def write_record(path: Path, record: BaseModel, *, mode: int = 0o600) -> None:
    """Records are the engine's alone (a container's config holds its environment)."""
    write_atomic(path, record.model_dump_json(indent=2).encode(), mode=mode)


def read_record(path: Path, model: type[M]) -> M:
    """Read and validate one record; a missing or corrupt file is a ``RecordError``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise RecordError(str(path), "missing") from exc
    except OSError as exc:
        raise RecordError(str(path), exc.strerror or str(exc)) from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        raise RecordError(str(path), f"{where}: {first.get('msg', 'invalid')}") from exc


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``<path>.lock`` for the duration of the block."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError as exc:  # its directory is gone: a container removed meanwhile
        raise RecordError(str(path), "missing") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
