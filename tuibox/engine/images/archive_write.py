"""Write images as a ``docker save`` archive or an OCI image-layout tarball.

Entries get mtime 0 and root ownership so saving the same images twice gives the same
bytes.  The output appears under its final name only when complete, and only where a
regular file may be written (``hostfiles``: never through a symlink, FIFO or device).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..hostfiles import atomic_output
from .compression import Compression, open_uncompressed
from .digests import CHUNK, hex_of, sha256_bytes
from .mediatypes import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    descriptor,
)
from .reference import parse_reference


@dataclass
class SavedLayer:
    diff_id: str
    blob_path: Path
    blob_digest: str
    compression: Compression


@dataclass
class SavedImage:
    image_id: str
    config_path: Path
    manifest: bytes  # the store's canonical OCI manifest
    layers: list[SavedLayer]
    tags: list[str]  # familiar refs to record for this image (may be empty)


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    return info


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_file(tf: tarfile.TarFile, name: str, path: Path) -> None:
    with path.open("rb") as f:
        tf.addfile(_info(name, os.fstat(f.fileno()).st_size), f)


def _plain_layer(layer: SavedLayer, work: Path) -> Path:
    """The layer as an uncompressed tar: docker-archive consumers expect ``layer.tar``."""
    if layer.compression is Compression.NONE:
        return layer.blob_path
    plain = work / f"{hex_of(layer.diff_id)}.tar"
    with open_uncompressed(layer.blob_path) as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    return plain


def _write_docker(tf: tarfile.TarFile, images: list[SavedImage], work: Path) -> None:
    manifest: list[dict[str, object]] = []
    written: set[str] = set()
    for image in images:
        config_name = f"{hex_of(image.image_id)}.json"
        if config_name not in written:
            _add_file(tf, config_name, image.config_path)
            written.add(config_name)
        layer_names: list[str] = []
        for layer in image.layers:
            name = f"{hex_of(layer.diff_id)}.tar"
            if name not in written:
                plain = _plain_layer(layer, work)
                _add_file(tf, name, plain)
                if plain != layer.blob_path:
                    plain.unlink()
                written.add(name)
            layer_names.append(name)
        manifest.append({"Config": config_name, "RepoTags": image.tags or None,
                         "Layers": layer_names})
    _add_bytes(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())


def _write_oci(tf: tarfile.TarFile, images: list[SavedImage]) -> None:
    tf.addfile(_info("blobs", directory=True))
    tf.addfile(_info("blobs/sha256", directory=True))
    written: set[str] = set()

    def blob(digest: str, path: Path | None = None, data: bytes | None = None) -> None:
        if digest in written:
            return
        written.add(digest)
        name = f"blobs/sha256/{hex_of(digest)}"
        if data is not None:
            _add_bytes(tf, name, data)
        elif path is not None:
            _add_file(tf, name, path)

    descriptors: list[dict[str, object]] = []
    for image in images:
        blob(image.image_id, path=image.config_path)
        for layer in image.layers:
            blob(layer.blob_digest, path=layer.blob_path)
        manifest_digest = sha256_bytes(image.manifest)
        blob(manifest_digest, data=image.manifest)
        tags: list[str | None] = [*image.tags] or [None]  # untagged: one bare entry
        for tag in tags:
            annotations: dict[str, str] = {}
            if tag is not None:
                # ref.name as skopeo writes it (so `oci-archive:x.tar:busybox:latest`
                # finds it) plus containerd's full name (what Docker 25+ reads).
                annotations[ANNOTATION_REF_NAME] = tag
                annotations[ANNOTATION_CONTAINERD_NAME] = str(parse_reference(tag))
            descriptors.append(descriptor(OCI_MANIFEST, manifest_digest, len(image.manifest),
                                          annotations))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
    _add_bytes(tf, "oci-layout",
               json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())


def write_archive(out: Path, images: list[SavedImage], fmt: Literal["docker", "oci"],
                  work: Path) -> None:
    with atomic_output(out) as dest, \
            tarfile.open(fileobj=dest, mode="w", format=tarfile.PAX_FORMAT) as tf:
        if fmt == "docker":
            _write_docker(tf, images, work)
        else:
            _write_oci(tf, images)
