"""Layer compression, detected from magic bytes (media types in archives are unreliable).

gzip is in the standard library.  zstd is not (before Python 3.14): we use the
``zstandard`` package if it is installed, else the ``zstd`` command, else refuse clearly.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import importlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from ..errors import ImageError
from .digests import Readable


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC: list[tuple[bytes, Compression]] = [
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
]


def detect(head: bytes) -> Compression:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def detect_file(path: Path) -> Compression:
    with path.open("rb") as f:
        return detect(f.read(8))


def _zstandard_module() -> Any:
    """The optional ``zstandard`` package, imported lazily so its absence is not fatal."""
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


@contextlib.contextmanager
def _zstd_command(path: Path, binary: str) -> Iterator[Readable]:
    proc = subprocess.Popen(
        [binary, "-dcq", "--", str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    finished = False
    try:
        yield proc.stdout
        finished = True
    finally:
        if not finished:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    # Only judge the exit status when the reader consumed everything it wanted.
    if rc != 0:
        raise ImageError(f"zstd could not decompress {path.name}: {err or f'exit status {rc}'}")


@contextlib.contextmanager
def open_uncompressed(path: Path) -> Iterator[Readable]:
    """Yield a stream of ``path``'s uncompressed bytes, whatever its compression."""
    kind = detect_file(path)
    with path.open("rb") as raw:
        if kind is Compression.NONE:
            yield raw
        elif kind is Compression.GZIP:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        elif kind is Compression.ZSTD:
            module = _zstandard_module()
            binary = shutil.which("zstd")
            if module is not None:
                with module.ZstdDecompressor().stream_reader(raw) as zr:
                    yield cast(Readable, zr)
            elif binary is not None:
                with _zstd_command(path, binary) as zr:
                    yield zr
            else:
                raise ImageError(
                    f"{path.name} is a zstd-compressed layer, but no zstd decompressor is "
                    "available: install the 'zstandard' Python package or the 'zstd' command"
                )
        else:
            raise ImageError(
                f"{path.name} is {kind.value}-compressed; only gzip, zstd and uncompressed "
                "layers are supported"
            )
