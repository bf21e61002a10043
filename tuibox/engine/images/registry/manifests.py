"""Resolving a reference to one image manifest: HEAD the tag, GET by digest, verify,
and descend through indexes (manifest lists) to the entry for the wanted platform.

Docker Hub counts manifest GETs (not HEADs) against its rate limit, so a tag is
resolved with HEAD and only the content is fetched, by digest.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from ...errors import ImageError, RegistryError
from ..digests import check_digest, sha256_bytes
from ..imageconfig import json_object
from ..mediatypes import (
    ANNOTATION_REFERENCE_TYPE,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .client import RegistryClient
from .platforms import Platform, matches

SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
})
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])
MAX_MANIFEST_BYTES = 4 << 20  # the distribution registry's own limit
_MAX_DEPTH = 4


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, what: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise ImageError(f"{what} is not a descriptor object")
        size = raw.get("size")
        if not isinstance(size, int) or size < 0:
            raise ImageError(f"{what} has no valid size")
        annotations = raw.get("annotations") or {}
        return cls(media_type=str(raw.get("mediaType", "")),
                   digest=check_digest(raw.get("digest", ""), f"{what} digest"), size=size,
                   annotations=dict(annotations) if isinstance(annotations, dict) else {})


@dataclass(frozen=True)
class ImageManifest:
    digest: str  # of the image manifest itself
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


@dataclass(frozen=True)
class Resolved:
    digest: str  # what the reference names: an index or an image manifest
    manifest: ImageManifest


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _refuse_schema1(media_type: str, repo: str) -> None:
    if media_type in SCHEMA1_TYPES:
        raise ImageError(
            f"{repo}: the registry only has a Docker schema 1 manifest for this image; "
            "schema 1 is deprecated and not supported - push the image again with a "
            "current client (schema 2 or OCI)")


def head_digest(client: RegistryClient, repo: str, tag: str, scope: str) -> str | None:
    """The digest a tag points at, from a HEAD; None if the registry does not say."""
    resp = client.request("HEAD", f"/v2/{repo}/manifests/{tag}", scope=scope,
                          headers={"Accept": ACCEPT}, expect=(200, 404, 405))
    with closing(resp):
        if resp.status_code == 404:
            raise RegistryError(f"manifest for {repo}:{tag} not found: manifest unknown")
        _refuse_schema1(_media_type(resp.headers.get("content-type")), repo)
        digest = resp.headers.get("docker-content-digest")
    return digest if resp.status_code == 200 and digest else None


def fetch(client: RegistryClient, repo: str, ref: str, scope: str,
          digest: str | None) -> tuple[str, str, bytes]:
    """GET a manifest by tag or digest; returns (digest, media type, body), verified."""
    resp = client.request("GET", f"/v2/{repo}/manifests/{ref}", scope=scope,
                          headers={"Accept": ACCEPT}, expect=(200, 404))
    with closing(resp):
        if resp.status_code == 404:
            raise RegistryError(f"manifest for {repo}:{ref} not found: manifest unknown"
                                if digest is None else
                                f"manifest for {repo}@{ref} not found: manifest unknown")
        body = resp.read()
        media_type = _media_type(resp.headers.get("content-type"))
        header_digest = resp.headers.get("docker-content-digest")
    if len(body) > MAX_MANIFEST_BYTES:
        raise ImageError(f"{repo}: manifest {ref} is larger than 4 MiB")
    actual = sha256_bytes(body)
    # By digest the content must match it; by tag, the digest header if sent.
    want = digest or header_digest
    if want is not None and want.startswith("sha256:") and actual != want:
        raise ImageError(f"{repo}: manifest digest mismatch: expected {want}, got {actual}")
    _refuse_schema1(media_type, repo)
    return actual, media_type, body


def _parse(body: bytes, media_type: str, repo: str, digest: str) -> tuple[str, dict[str, Any]]:
    doc = json_object(body, f"{repo}: manifest {digest}")
    if doc.get("schemaVersion") == 1:
        _refuse_schema1(next(iter(SCHEMA1_TYPES)), repo)
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared and media_type in MANIFEST_TYPES | INDEX_TYPES \
            and declared != media_type:
        raise ImageError(f"{repo}: manifest {digest} says it is {declared} but was served "
                         f"as {media_type}")
    kind = declared if isinstance(declared, str) and declared else media_type
    if kind not in MANIFEST_TYPES | INDEX_TYPES:
        # Some registries serve OCI content as application/json without a mediaType.
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else kind
    return kind, doc


def _choose(doc: dict[str, Any], want: Platform, repo: str) -> Descriptor:
    best: tuple[int, int, Descriptor] | None = None
    for n, raw in enumerate(doc.get("manifests") or []):
        if not isinstance(raw, dict):
            continue
        annotations = raw.get("annotations") or {}
        # Attestations (provenance, SBOM) ride along as "unknown/unknown" entries.
        if isinstance(annotations, dict) and ANNOTATION_REFERENCE_TYPE in annotations:
            continue
        media_type = raw.get("mediaType")
        if media_type is not None and media_type not in MANIFEST_TYPES | INDEX_TYPES:
            continue  # an unknown kind of entry is not ours to judge
        rank = matches(raw, want)
        if rank is not None and (best is None or (rank, n) < best[:2]):
            best = (rank, n, Descriptor.parse(raw, "index entry"))
    if best is None:
        raise ImageError(
            f"{repo}: no matching manifest for {want} in the manifest list entries")
    return best[2]


def resolve(client: RegistryClient, repo: str, *, tag: str | None, digest: str | None,
            platform: Platform, scope: str) -> Resolved:
    """The image manifest ``repo:tag`` / ``repo@digest`` names for ``platform``."""
    top = digest
    if top is None:
        assert tag is not None
        top = head_digest(client, repo, tag, scope)
    if top is not None:
        actual, media_type, body = fetch(client, repo, top, scope, top)
    else:
        assert tag is not None
        actual, media_type, body = fetch(client, repo, tag, scope, None)
    requested = actual
    for _ in range(_MAX_DEPTH):
        kind, doc = _parse(body, media_type, repo, actual)
        if kind in INDEX_TYPES:
            entry = _choose(doc, platform, repo)
            actual, media_type, body = fetch(client, repo, entry.digest, scope, entry.digest)
            continue
        if kind not in MANIFEST_TYPES:
            raise ImageError(f"{repo}: unsupported manifest type {kind or 'unknown'!r}")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ImageError(f"{repo}: manifest {actual} has no layers list")
        manifest = ImageManifest(
            digest=actual, media_type=kind,
            config=Descriptor.parse(doc.get("config"), "config descriptor"),
            layers=[Descriptor.parse(d, f"layer {i}") for i, d in enumerate(layers)])
        return Resolved(digest=requested, manifest=manifest)
    raise ImageError(f"{repo}: manifest indexes nested too deeply")
