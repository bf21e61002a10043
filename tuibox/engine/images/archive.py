"""Read-only random access to the members of an image archive (the outer tarball).

Nothing is extracted to disk: members are looked up by normalised name and streamed,
so hostile member names cannot write anywhere.  In-archive symlinks and hard links
(``docker save`` links duplicate layers) are followed by name, inside the archive only.
A compressed archive is first decompressed to a temp file, because seeking inside a
compressed stream would re-read it from the start for every member.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import IO, Any

from ..errors import ImageError
from .compression import Compression, detect_file, open_uncompressed
from .digests import CHUNK

MAX_JSON_BYTES = 16 << 20  # manifests and configs are small; refuse to buffer a huge one
_MAX_LINK_HOPS = 16


def _normalise(name: str) -> str:
    norm = posixpath.normpath("/" + name).lstrip("/")
    return norm if norm != "." else ""


class ArchiveReader:
    def __init__(self, path: Path, work: Path) -> None:
        self.path = path
        try:
            if detect_file(path) is not Compression.NONE:
                plain = work / "archive.tar"
                with open_uncompressed(path) as src, plain.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                path = plain
            # Kept open for the reader's lifetime; closed by close() / __exit__.
            self._tf = tarfile.open(path, mode="r:", errors="surrogateescape")  # noqa: SIM115
        except FileNotFoundError:
            raise ImageError(f"{self.path}: no such file") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageError(f"{self.path} is not a readable tar archive: {exc}") from exc
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in self._tf.getmembers():
            self._members[_normalise(member.name)] = member

    def close(self) -> None:
        self._tf.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        key = _normalise(name)
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(key)
            if member is None:
                return None
            if member.issym():
                key = _normalise(posixpath.join(posixpath.dirname(key), member.linkname))
            elif member.islnk():
                key = _normalise(member.linkname)
            else:
                return member if member.isreg() else None
        raise ImageError(f"{self.path}: too many levels of links at {name!r}")

    def has(self, name: str) -> bool:
        return self._resolve(name) is not None

    def size(self, name: str) -> int:
        member = self._resolve(name)
        if member is None:
            raise ImageError(f"{self.path}: archive has no file {name!r}")
        return member.size

    def open(self, name: str) -> IO[bytes]:
        member = self._resolve(name)
        f = self._tf.extractfile(member) if member is not None else None
        if f is None:
            raise ImageError(f"{self.path}: archive has no file {name!r}")
        return f

    def read_bytes(self, name: str) -> bytes:
        if self.size(name) > MAX_JSON_BYTES:
            raise ImageError(f"{self.path}: {name!r} is too large to be a manifest or config")
        with self.open(name) as f:
            return f.read()

    def read_json(self, name: str) -> Any:
        raw = self.read_bytes(name)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImageError(f"{self.path}: {name!r} is not valid JSON: {exc}") from exc
