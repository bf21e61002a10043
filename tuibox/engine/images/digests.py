"""sha256 digests: validation, ChainIDs and a reader that hashes what passes through it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from ..errors import ImageError

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def check_digest(digest: str, what: str = "digest") -> str:
    """Return ``digest`` if it is ``sha256:<64 hex>``; anything else is a broken image."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ImageError(f"invalid {what} {digest!r}: expected sha256:<64 hex digits>")
    return digest


def hex_of(digest: str) -> str:
    return check_digest(digest)[len("sha256:"):]


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        check_digest(diff_id, "diff_id")
        out.append(diff_id if not out else sha256_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


class HashingReader:
    """Wraps a stream, hashing and counting every byte read (a tarfile ``fileobj``).

    Streaming through this lets the DiffID be computed during extraction instead of
    reading a layer twice or holding it in memory.
    """

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        """Read to EOF: tar readers stop at the end marker, but the digest covers it all."""
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    # The rest of the file protocol tarfile's type stubs ask for; never used for reading.
    def tell(self) -> int:
        return self.count

    def seek(self, pos: int, /) -> int:
        raise OSError("HashingReader is not seekable")

    def write(self, b: bytes, /) -> int:
        raise OSError("HashingReader is read-only")

    def close(self) -> None:
        pass
