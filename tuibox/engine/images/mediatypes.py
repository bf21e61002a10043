"""OCI and Docker media types, and the canonical manifest the store keeps per image."""

from __future__ import annotations

import json

from .compression import Compression

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"  # marks attestation manifests

_LAYER_SUFFIX = {Compression.NONE: "", Compression.GZIP: "+gzip", Compression.ZSTD: "+zstd"}


def oci_layer_type(compression: Compression) -> str:
    return OCI_LAYER + _LAYER_SUFFIX[compression]


def descriptor(media_type: str, digest: str, size: int,
               annotations: dict[str, str] | None = None) -> dict[str, object]:
    desc: dict[str, object] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        desc["annotations"] = annotations
    return desc


def canonical_manifest(config_digest: str, config_size: int,
                       layers: list[tuple[str, int, Compression]]) -> bytes:
    """The OCI manifest for a stored image, byte-for-byte deterministic.

    Being a pure function of the config and the layers' blobs lets the store find (and
    delete) an image's manifest blob without recording its digest anywhere else.
    """
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config_digest, config_size),
        "layers": [descriptor(oci_layer_type(c), d, s) for d, s, c in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
