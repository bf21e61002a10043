"""``push``: an image from the local store to a registry.

Per blob: ``HEAD`` to skip what the registry has, else ``POST`` an upload session and
send the bytes in one ``PUT`` (monolithic) or as ``PATCH`` chunks closed by a ``PUT``
(blobs larger than ``chunk_size``).  Then the manifest, which is the store's canonical
OCI manifest: layers go up exactly as they are stored (compressed as they came), so a
pulled image pushed back keeps its config and layer digests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from ...errors import ImageError, InvalidArgument, RegistryError
from ..digests import CHUNK, sha256_bytes
from ..mediatypes import OCI_MANIFEST
from ..reference import parse_reference
from ..store import ImageStore
from .client import RegistryClient
from .progress import ProgressCallback, ProgressEvent, Status, emit, short
from .session import open_client, repo_scope

MAX_CONCURRENT_UPLOADS = 3
DEFAULT_CHUNK_SIZE = 64 << 20  # larger blobs go up in chunks of this size


@dataclass(frozen=True)
class _Blob:
    digest: str
    path: Path
    size: int
    is_layer: bool


def _read_range(path: Path, start: int, length: int,
                on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise ImageError(f"{path} is shorter than the store says")
            left -= len(chunk)
            on_bytes(len(chunk))
            yield chunk


class _Pusher:
    def __init__(self, client: RegistryClient, repo: str, scope: str,
                 progress: ProgressCallback | None, chunk_size: int) -> None:
        self.client = client
        self.repo = repo
        self.scope = scope
        self.progress = progress
        self.chunk_size = chunk_size

    def _event(self, blob: _Blob, status: str, current: int = 0) -> None:
        if blob.is_layer:
            emit(self.progress, ProgressEvent(short(blob.digest), status, current, blob.size))

    def _location(self, resp: httpx.Response) -> str:
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{self.client.host}: upload answer has no Location")
        return str(httpx.URL(self.client.base).join(location))

    def _body(self, blob: _Blob, start: int, length: int,
              sent: list[int]) -> Callable[[], Iterator[bytes]]:
        def factory() -> Iterator[bytes]:
            base = sent[0]

            def on_bytes(n: int) -> None:
                sent[0] += n
                self._event(blob, Status.PUSHING, sent[0])

            sent[0] = base
            return _read_range(blob.path, start, length, on_bytes)
        return factory

    def blob(self, blob: _Blob) -> None:
        resp = self.client.request("HEAD", f"/v2/{self.repo}/blobs/{blob.digest}",
                                   scope=self.scope, expect=(200, 404))
        resp.close()
        if resp.status_code == 200:
            self._event(blob, Status.LAYER_EXISTS)
            return
        resp = self.client.request("POST", f"/v2/{self.repo}/blobs/uploads/",
                                   scope=self.scope, expect=(202,))
        resp.close()
        location = self._location(resp)
        octets = {"Content-Type": "application/octet-stream"}
        sent = [0]
        offset = 0
        if blob.size > self.chunk_size:
            while offset < blob.size:
                length = min(self.chunk_size, blob.size - offset)
                headers = {**octets, "Content-Length": str(length),
                           "Content-Range": f"{offset}-{offset + length - 1}"}
                resp = self.client.request("PATCH", location, scope=self.scope,
                                           headers=headers, expect=(202,),
                                           content=self._body(blob, offset, length, sent))
                resp.close()
                location = self._location(resp)
                offset += length
        length = blob.size - offset
        url = str(httpx.URL(location).copy_merge_params({"digest": blob.digest}))
        resp = self.client.request("PUT", url, scope=self.scope,
                                   headers={**octets, "Content-Length": str(length)},
                                   content=self._body(blob, offset, length, sent),
                                   expect=(201,))
        resp.close()
        self._event(blob, Status.PUSHED)


def push(store: ImageStore, reference: str, *, progress: ProgressCallback | None = None,
         insecure: Iterable[str] = (), chunk_size: int = DEFAULT_CHUNK_SIZE,
         workers: int = MAX_CONCURRENT_UPLOADS, client: RegistryClient | None = None) -> str:
    """Push the local image named ``reference`` to its registry; returns the manifest digest."""
    ref = parse_reference(reference)
    if ref.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference: {reference}")
    assert ref.tag is not None
    record = store.resolve(ref.familiar())
    blobs: list[_Blob] = []
    for chain_id in record.chain_ids:
        meta = store.layer_store.meta(chain_id)
        blobs.append(_Blob(meta.blob, store.blobs.path(meta.blob), meta.blob_size, True))
    config_path = store.blobs.path(record.id)
    blobs.append(_Blob(record.id, config_path, config_path.stat().st_size, False))
    manifest = store.manifest_bytes(record)
    owned = client is None
    client = client or open_client(store.paths, ref.domain, insecure=insecure)
    try:
        emit(progress, ProgressEvent("", Status.PREPARING,
                                     detail=f"The push refers to repository [{ref.name}]"))
        pusher = _Pusher(client, ref.path, repo_scope(ref, "pull", "push"), progress,
                         max(1, chunk_size))
        unique = list({b.digest: b for b in blobs}.values())
        for blob in unique:
            pusher._event(blob, Status.PREPARING)
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="push") as pool:
            for future in [pool.submit(pusher.blob, b) for b in unique]:
                future.result()
        resp = client.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}",
                              scope=pusher.scope, headers={"Content-Type": OCI_MANIFEST},
                              content=lambda: manifest, expect=(201,))
        resp.close()
    finally:
        if owned:
            client.close()
    digest = sha256_bytes(manifest)
    emit(progress, ProgressEvent("", Status.DIGEST,
                                 detail=f"{ref.tag}: digest: {digest} size: {len(manifest)}"))
    return digest
