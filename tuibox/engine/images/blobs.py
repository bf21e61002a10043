"""Content-addressed blobs (``images/blobs/sha256/<hex>``), verified before they land.

A blob is written to a temp file under the state root's ``tmp`` and renamed into place
only once its sha256 matches, so a blob path always holds exactly its digest's content;
two writers of the same blob write identical bytes, so the race is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import ImageError
from .digests import CHUNK, Readable, check_digest, hex_of


class BlobStore:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root  # .../images/blobs/sha256
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        return self.root / hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_stream(self, stream: Readable, expected: str | None = None,
                   *, what: str = "blob") -> tuple[str, int]:
        """Store ``stream``; returns (digest, size).  A digest mismatch is an ``ImageError``."""
        if expected is not None:
            check_digest(expected, f"{what} digest")
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise ImageError(f"{what} digest mismatch: expected {expected}, got {digest}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return digest, size

    def put_bytes(self, data: bytes, expected: str | None = None,
                  *, what: str = "blob") -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected is not None and check_digest(expected, f"{what} digest") != digest:
            raise ImageError(f"{what} digest mismatch: expected {expected}, got {digest}")
        if not self.exists(digest):
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.chmod(tmp_name, 0o644)
                os.replace(tmp_name, self.path(digest))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)
                raise
        return digest

    def adopt(self, path: Path, digest: str) -> None:
        """Move ``path`` (a file under ``tmp`` whose sha256 the caller computed) into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o644)
        os.replace(path, self.path(digest))

    def read_bytes(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store") from None

    def delete(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True
