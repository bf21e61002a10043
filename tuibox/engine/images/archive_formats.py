"""What an image archive contains: its images, their config/layer members and names.

Two layouts are understood: ``docker save`` (``manifest.json``; Docker 25+ archives
also carry an OCI layout, and ``manifest.json`` is preferred there because it holds the
tags in familiar form) and OCI image layout (``oci-layout`` + ``index.json`` + blobs).
Nothing here touches the store; it only describes what to load and which digests the
archive promises, so the loader can verify them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageError, InvalidArgument
from .archive import ArchiveReader
from .digests import check_digest, sha256_bytes
from .imageconfig import host_architecture
from .mediatypes import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    ANNOTATION_REFERENCE_TYPE,
    INDEX_TYPES,
    MANIFEST_TYPES,
)
from .reference import parse_reference

_BLOB_PATH_RE = re.compile(r"(?:\./)?blobs/sha256/([0-9a-f]{64})")
_MAX_INDEX_DEPTH = 4


@dataclass
class LayerSource:
    member: str  # name inside the archive
    digest: str | None = None  # the blob digest the archive promises, if it names one


@dataclass
class ArchivedImage:
    config_member: str
    config_digest: str | None
    layers: list[LayerSource]
    refs: list[str] = field(default_factory=list)  # familiar form, e.g. "busybox:latest"


def _familiar(text: str, where: str) -> str:
    try:
        ref = parse_reference(text)
    except InvalidArgument as exc:
        raise ImageError(f"{where}: invalid image name {text!r}: {exc}") from exc
    return ref.familiar()


def _digest_in_path(member: str) -> str | None:
    m = _BLOB_PATH_RE.fullmatch(member)
    return f"sha256:{m.group(1)}" if m else None


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"manifest.json: {what} must be a list of strings")
    return value


def read_docker_archive(reader: ArchiveReader) -> list[ArchivedImage]:
    doc = reader.read_json("manifest.json")
    if not isinstance(doc, list):
        raise ImageError("manifest.json is not a list of images")
    images: list[ArchivedImage] = []
    for entry in doc:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ImageError("manifest.json: an entry has no Config")
        config = entry["Config"]
        layers = _str_list(entry.get("Layers"), "Layers")
        tags = _str_list(entry.get("RepoTags"), "RepoTags")
        images.append(ArchivedImage(
            config_member=config,
            config_digest=_digest_in_path(config),
            layers=[LayerSource(member=m, digest=_digest_in_path(m)) for m in layers],
            refs=[_familiar(t, "manifest.json") for t in tags],
        ))
    return images


def _read_blob_json(reader: ArchiveReader, desc: dict[str, Any], what: str) -> Any:
    """A small blob named by a descriptor, verified against its digest and size."""
    digest = check_digest(desc.get("digest", ""), f"{what} digest")
    member = f"blobs/sha256/{digest[len('sha256:'):]}"
    raw = reader.read_bytes(member)
    if sha256_bytes(raw) != digest:
        raise ImageError(f"{what} {digest} does not match its digest")
    size = desc.get("size")
    if isinstance(size, int) and size != len(raw):
        raise ImageError(f"{what} {digest} has size {len(raw)}, descriptor says {size}")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} {digest} is not valid JSON: {exc}") from exc


def _refs_from_annotations(desc: dict[str, Any]) -> list[str]:
    annotations = desc.get("annotations") or {}
    if not isinstance(annotations, dict):
        return []
    name = annotations.get(ANNOTATION_CONTAINERD_NAME)
    if isinstance(name, str) and name:
        return [_familiar(name, "index.json")]
    ref_name = annotations.get(ANNOTATION_REF_NAME)
    # ref.name is often a bare tag ("latest", per the OCI spec's examples) naming no
    # repository; only a full reference (skopeo writes "busybox:latest") names an image.
    if isinstance(ref_name, str) and any(c in ref_name for c in ":/@"):
        return [_familiar(ref_name, "index.json")]
    return []


def _platform_matches(desc: dict[str, Any]) -> bool:
    platform = desc.get("platform")
    if not isinstance(platform, dict):
        return False
    return platform.get("os") == "linux" and platform.get("architecture") == host_architecture()


def _pick_manifest(reader: ArchiveReader, desc: dict[str, Any], depth: int = 0) -> Any:
    """Follow indexes down to the image manifest for this host's platform."""
    media_type = desc.get("mediaType")
    if media_type in MANIFEST_TYPES:
        return _read_blob_json(reader, desc, "manifest")
    if media_type not in INDEX_TYPES:
        raise ImageError(f"index.json: unsupported media type {media_type!r}")
    if depth >= _MAX_INDEX_DEPTH:
        raise ImageError("index.json: indexes nested too deeply")
    index = _read_blob_json(reader, desc, "index")
    entries = [
        d for d in (index.get("manifests") or []) if isinstance(d, dict)
        and ANNOTATION_REFERENCE_TYPE not in (d.get("annotations") or {})
    ]
    chosen = [d for d in entries if _platform_matches(d)]
    if not chosen and len(entries) == 1 and "platform" not in entries[0]:
        chosen = entries  # a single-entry index without platforms is unambiguous
    if not chosen:
        raise ImageError(f"the archive has no image for linux/{host_architecture()}")
    return _pick_manifest(reader, chosen[0], depth + 1)


def read_oci_layout(reader: ArchiveReader) -> list[ArchivedImage]:
    layout = reader.read_json("oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise ImageError("oci-layout has no imageLayoutVersion")
    index = reader.read_json("index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list):
        raise ImageError("index.json has no manifests")
    images: list[ArchivedImage] = []
    for desc in descs:
        if not isinstance(desc, dict):
            raise ImageError("index.json: a manifest descriptor is not an object")
        manifest = _pick_manifest(reader, desc)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise ImageError("manifest has no config descriptor")
        config_digest = check_digest(manifest["config"].get("digest", ""), "config digest")
        layers: list[LayerSource] = []
        for layer in manifest.get("layers") or []:
            digest = check_digest(layer.get("digest", "") if isinstance(layer, dict) else "",
                                  "layer digest")
            layers.append(LayerSource(member=f"blobs/sha256/{digest[7:]}", digest=digest))
        images.append(ArchivedImage(
            config_member=f"blobs/sha256/{config_digest[7:]}",
            config_digest=config_digest,
            layers=layers,
            refs=_refs_from_annotations(desc),
        ))
    return images


def read_archive(reader: ArchiveReader) -> list[ArchivedImage]:
    if reader.has("manifest.json"):
        return read_docker_archive(reader)
    if reader.has("oci-layout") and reader.has("index.json"):
        return read_oci_layout(reader)
    raise ImageError(
        f"{reader.path} is neither a docker-archive (no manifest.json) nor an OCI image "
        "layout (no oci-layout/index.json)"
    )
