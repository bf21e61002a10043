"""``pull``: from a registry into the local store, exactly as ``load`` would put it.

Order of work: resolve the reference to one image manifest (HEAD, then GET by digest,
platform chosen from an index); fetch and verify the config; then per layer, in a
bounded thread pool: skip it if its ChainID is unpacked already, else download the blob
(resumable, digest-verified) and unpack it (DiffID-verified).  Only when every layer
is in place is the image record written — a failed pull leaves no half image, only
the partial downloads it can resume from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass

from ...errors import ImageError
from ...models import ImageRecord
from ..digests import sha256_bytes
from ..imageconfig import record_from_config
from ..reference import Reference, parse_reference
from ..store import ImageStore, StoreTransaction
from .client import RegistryClient
from .download import Cancelled, fetch_blob, partial_path, sweep_partials
from .manifests import Descriptor, ImageManifest, resolve
from .platforms import Platform, host_platform, parse_platform
from .progress import ProgressCallback, ProgressEvent, Status, emit, short
from .session import open_client, repo_scope

MAX_CONCURRENT_DOWNLOADS = 3  # Docker's default (--max-concurrent-downloads)
MAX_CONFIG_BYTES = 8 << 20


@dataclass(frozen=True)
class _Layer:
    index: int
    desc: Descriptor
    diff_id: str
    chain_id: str
    parent: str | None


def _fetch_config(client: RegistryClient, repo: str, desc: Descriptor, scope: str) -> bytes:
    if desc.size > MAX_CONFIG_BYTES:
        raise ImageError(f"{repo}: image config of {desc.size} bytes is implausibly large")
    resp = client.request("GET", f"/v2/{repo}/blobs/{desc.digest}", scope=scope,
                          headers={"Accept": f"{desc.media_type}, */*"})
    with closing(resp):
        raw = resp.read()
    if sha256_bytes(raw) != desc.digest or len(raw) != desc.size:
        raise ImageError(f"{repo}: config blob does not match its digest {desc.digest}")
    return raw


class _Puller:
    def __init__(self, store: ImageStore, client: RegistryClient, ref: Reference,
                 progress: ProgressCallback | None, workers: int) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.scope = repo_scope(ref, "pull")
        self.progress = progress
        self.workers = max(1, workers)
        self.stop = threading.Event()

    def _event(self, layer: str, status: str, current: int = 0, total: int = 0) -> None:
        emit(self.progress, ProgressEvent(short(layer), status, current, total))

    def _layer(self, tx: StoreTransaction, layer: _Layer) -> None:
        """Download (unless the blob is stored) and unpack one layer."""
        digest = layer.desc.digest
        blobs = self.store.blobs
        stored = blobs.exists(digest)
        part = partial_path(self.store.paths.tmp, digest)
        if not stored:
            def progress(done: int, total: int, resumed: bool) -> None:
                self._event(digest, Status.DOWNLOADING, done, total)

            fetch_blob(self.client, self.ref.path, digest, layer.desc.size, part,
                       scope=self.scope, progress=progress, stop=self.stop)
            self._event(digest, Status.VERIFYING)
            self._event(digest, Status.DOWNLOAD_COMPLETE)
        if self.stop.is_set():
            raise Cancelled
        self._event(digest, Status.EXTRACTING, 0, layer.desc.size)
        # Unpacked straight from the partial file; it joins the blob store only when the
        # whole image succeeds, so a failed pull keeps it for the next try.
        tx.add_layer(chain_id=layer.chain_id, parent=layer.parent, diff_id=layer.diff_id,
                     blob_path=blobs.path(digest) if stored else part,
                     blob_digest=digest, blob_size=layer.desc.size)
        self._event(digest, Status.PULL_COMPLETE)

    def _layers(self, tx: StoreTransaction, layers: list[_Layer]) -> None:
        todo = [layer for layer in layers if not self.store.layer_store.exists(layer.chain_id)]
        for layer in layers:
            status = Status.PULLING_FS_LAYER if layer in todo else Status.ALREADY_EXISTS
            self._event(layer.desc.digest, status)
        # One blob used at two depths is fetched once; the second waits on the flock.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pull") as pool:
            futures: list[Future[None]] = [pool.submit(self._layer, tx, layer)
                                           for layer in todo]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self.stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                errors = [f.exception() for f in futures if not f.cancelled()]
                # The first real error, not a sibling's "cancelled".
                first = next((e for e in errors if e is not None
                              and not isinstance(e, Cancelled)), failed[0].exception())
                assert first is not None
                raise first
        for layer in todo:
            part = partial_path(self.store.paths.tmp, layer.desc.digest)
            if part.exists():
                tx.adopt_blob(part, layer.desc.digest)

    def pull(self, platform: Platform | None) -> ImageRecord:
        ref = self.ref
        emit(self.progress, ProgressEvent("", Status.PULLING_FROM,
                                          detail=f"{ref.tag or ref.digest}: Pulling from "
                                                 f"{ref.path}"))
        resolved = resolve(self.client, ref.path, tag=ref.tag, digest=ref.digest,
                           platform=platform or host_platform(), scope=self.scope)
        manifest = resolved.manifest
        config = _fetch_config(self.client, ref.path, manifest.config, self.scope)
        record = record_from_config(config, manifest.config.digest)
        _check_platform(record, platform, ref)
        layers = _plan(manifest, record)
        sweep_partials(self.store.paths.tmp)
        refs = [ref.familiar()] if ref.digest is None else []
        with self.store.transaction() as tx:
            self._layers(tx, layers)
            committed = tx.commit(config, refs=refs,
                                  repo_digests=[f"{ref.familiar_name}@{resolved.digest}"])
        emit(self.progress, ProgressEvent("", Status.DIGEST, detail=resolved.digest))
        return committed


def _check_platform(record: ImageRecord, platform: Platform | None, ref: Reference) -> None:
    if platform is None:
        return
    if record.os != platform.os or record.architecture != platform.architecture:
        raise ImageError(
            f"image {ref.familiar()} is {record.os}/{record.architecture}, which does not "
            f"match the requested platform {platform}")


def _plan(manifest: ImageManifest, record: ImageRecord) -> list[_Layer]:
    if len(manifest.layers) != len(record.diff_ids):
        raise ImageError(
            f"manifest {manifest.digest} lists {len(manifest.layers)} layers but its config "
            f"has {len(record.diff_ids)} diff_ids")
    return [_Layer(index=i, desc=desc, diff_id=diff_id, chain_id=chain_id,
                   parent=record.chain_ids[i - 1] if i else None)
            for i, (desc, diff_id, chain_id)
            in enumerate(zip(manifest.layers, record.diff_ids, record.chain_ids, strict=True))]


def pull(store: ImageStore, reference: str, *, platform: str | Platform | None = None,
         progress: ProgressCallback | None = None, insecure: Iterable[str] = (),
         workers: int = MAX_CONCURRENT_DOWNLOADS,
         client: RegistryClient | None = None) -> ImageRecord:
    """Pull ``reference`` (Docker's normalisation: ``busybox`` → docker.io/library/…)."""
    ref = parse_reference(reference)
    want = parse_platform(platform) if isinstance(platform, str) else platform
    owned = client is None
    client = client or open_client(store.paths, ref.domain, insecure=insecure)
    try:
        record = _Puller(store, client, ref, progress, workers).pull(want)
    finally:
        if owned:
            client.close()
    status = f"Downloaded newer image for {ref.familiar()}"
    emit(progress, ProgressEvent("", Status.DONE, detail=status))
    return record
