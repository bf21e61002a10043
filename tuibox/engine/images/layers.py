"""Unpacked layers, one directory per ChainID, shared by every image that has them.

``layers/<chain-hex>/`` holds ``diff/`` (the unpacked tree), ``size`` (bytes, for
``docker images``) and ``layer.json`` (which blob it came from, so ``save`` can ship it).
A layer is assembled in a temp dir under the state root's ``tmp`` and renamed into place
in one step: a layer dir that exists is complete, and concurrent creators of the same
layer simply lose the rename race and discard their copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ImageError, RecordError
from ..models import SCHEMA_VERSION, Record
from ..records import read_record, write_record
from .compression import detect_file, open_uncompressed
from .digests import hex_of
from .unpack import unpack_layer


class LayerMeta(Record):
    """``layers/<chain-hex>/layer.json``."""

    schema_version: int = SCHEMA_VERSION
    chain_id: str
    diff_id: str
    parent: str | None = None
    blob: str  # digest of the (possibly compressed) blob this layer was unpacked from
    blob_size: int = 0
    compression: str = "none"
    size: int = 0


class LayerStore:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def dir(self, chain_id: str) -> Path:
        return self.root / hex_of(chain_id)

    def diff_dir(self, chain_id: str) -> Path:
        return self.dir(chain_id) / "diff"

    def exists(self, chain_id: str) -> bool:
        return (self.dir(chain_id) / "layer.json").is_file()

    def meta(self, chain_id: str) -> LayerMeta:
        try:
            return read_record(self.dir(chain_id) / "layer.json", LayerMeta)
        except RecordError as exc:
            raise ImageError(f"layer {chain_id} is missing or damaged: {exc}") from exc

    def size(self, chain_id: str) -> int:
        try:
            return int((self.dir(chain_id) / "size").read_text())
        except (OSError, ValueError):
            return self.meta(chain_id).size

    def chain_hexes(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def create(self, *, chain_id: str, parent: str | None, diff_id: str,
               blob_path: Path, blob_digest: str, blob_size: int) -> bool:
        """Unpack ``blob_path`` as ``chain_id``, verifying its DiffID.

        Returns True if this call created the layer, False if it already existed (or a
        concurrent creator finished first).  On any failure nothing is left behind.
        """
        if self.exists(chain_id):
            return False
        work = Path(tempfile.mkdtemp(prefix="layer-", dir=self.tmp))
        try:
            diff = work / "diff"
            diff.mkdir(mode=0o755)
            with open_uncompressed(blob_path) as stream:
                result = unpack_layer(stream, diff)
            if result.diff_id != diff_id:
                raise ImageError(
                    f"layer {blob_digest} does not match its config: diff_id is "
                    f"{result.diff_id}, config says {diff_id}"
                )
            meta = LayerMeta(chain_id=chain_id, diff_id=diff_id, parent=parent,
                             blob=blob_digest, blob_size=blob_size,
                             compression=detect_file(blob_path).value, size=result.size)
            (work / "size").write_text(f"{result.size}\n")
            write_record(work / "layer.json", meta)
            os.chmod(work, 0o700)  # diff/ inside keeps the image root's own mode
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, self.dir(chain_id))
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.exists(chain_id):
                    return False
                raise
            return True
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    def remove(self, chain_id: str) -> bool:
        """Delete a layer; it disappears in one rename, the slow rmtree happens aside."""
        src = self.dir(chain_id)
        if not src.exists():
            return False
        aside = Path(tempfile.mkdtemp(prefix="rm-layer-", dir=self.tmp))
        try:
            os.rename(src, aside / "layer")
        except FileNotFoundError:
            return False
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(aside)
        return True
