"""The local image store: load, save, import, list, resolve, tag and remove images.

Locking: every operation that adds to the store holds ``images/store.lock`` *shared*
for its whole duration; removal (and clean-up after a failed load) holds it
*exclusive*.  So nothing is ever deleted while another operation may be about to
reference it, and adders run concurrently.  Tags change only under the lock of
``repositories.json``.

Atomicity: blobs and layers are verified in temp space and renamed into place; an
image becomes visible when its record is written, after all its layers exist.  If an
operation fails, whatever it created that no image references is deleted again.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..diskfull import reports_no_space, state_root
from ..errors import Conflict, ImageError, ImageNotFound, InvalidArgument, RecordError
from ..models import ImageConfig, ImageRecord
from ..paths import StatePaths
from ..records import locked, read_record, write_record
from .archive import ArchiveReader
from .archive_formats import ArchivedImage, read_archive
from .archive_write import SavedImage, SavedLayer, write_archive
from .blobs import BlobStore
from .changes import apply_changes
from .compression import Compression
from .digests import hex_of, sha256_bytes, sha256_file
from .imageconfig import new_config, record_from_config
from .layers import LayerStore
from .mediatypes import canonical_manifest
from .reference import Reference, parse_reference
from .repair import DamagedImage
from .repositories import RepositoryIndex
from .rootfs_tar import write_rootfs_tar

_HEX_PREFIX_RE = re.compile(r"[0-9a-f]{4,64}")
MIN_PREFIX = 4


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


@dataclass
class _Created:
    """What one operation added, so a failure can take it back."""

    blobs: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)


@dataclass
class _Prepared:
    config: bytes
    record: ImageRecord
    refs: list[str]
    repo_digests: list[str] = field(default_factory=list)  # "busybox@sha256:…" (pull)


class StoreTransaction:
    """Adds blobs and layers, then commits images; see ``ImageStore.transaction``.

    Safe to use from several threads at once (a pull unpacks layers in parallel).
    """

    def __init__(self, store: ImageStore, created: _Created) -> None:
        self._store = store
        self._created = created

    def adopt_blob(self, path: Path, digest: str) -> None:
        """Move ``path`` (under the store's tmp, already verified as ``digest``) in."""
        if self._store.blobs.exists(digest):
            path.unlink()
            return
        self._created.blobs.add(digest)
        self._store.blobs.adopt(path, digest)

    def add_layer(self, *, chain_id: str, parent: str | None, diff_id: str,
                  blob_path: Path, blob_digest: str, blob_size: int) -> bool:
        """Unpack ``blob_path`` as ``chain_id``, verifying its DiffID (see LayerStore)."""
        made = self._store.layer_store.create(
            chain_id=chain_id, parent=parent, diff_id=diff_id, blob_path=blob_path,
            blob_digest=blob_digest, blob_size=blob_size)
        if made:
            self._created.layers.add(chain_id)
        return made

    def commit(self, config: bytes, *, refs: list[str],
               repo_digests: list[str]) -> ImageRecord:
        """Make the image whose config is ``config`` visible (all its layers must exist)."""
        record = record_from_config(config, sha256_bytes(config))
        for chain_id in record.chain_ids:
            if not self._store.layer_store.exists(chain_id):
                raise ImageError(f"layer {chain_id} was not unpacked")
        (committed,) = self._store._commit(
            [_Prepared(config, record, refs, repo_digests)], self._created)
        return committed


class ImageStore:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.blobs = BlobStore(paths.images / "blobs" / "sha256", paths.tmp)
        self.layer_store = LayerStore(paths.layers, paths.tmp)
        self.repositories = RepositoryIndex(paths.images / "repositories.json")
        self._records = paths.images / "images"
        self._lock = paths.images / "store"

    # -- plumbing -----------------------------------------------------------------------

    def _ensure_dirs(self) -> None:
        for d in (self.blobs.root, self._records, self.paths.layers, self.paths.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def _record_path(self, image_id: str) -> Path:
        return self._records / f"{hex_of(image_id)}.json"

    @contextlib.contextmanager
    def _adding(self) -> Iterator[_Created]:
        self._ensure_dirs()
        created = _Created()
        try:
            with locked(self._lock, shared=True):
                yield created
        except BaseException:
            # The shared lock is released first: clean-up needs it exclusively.
            self._discard(created)
            raise

    @contextlib.contextmanager
    def _work_dir(self, prefix: str) -> Iterator[Path]:
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=self.paths.tmp))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _read_record(self, path: Path) -> ImageRecord:
        record = read_record(path, ImageRecord)
        if path.name != f"{record.id.removeprefix('sha256:')}.json":
            raise RecordError(str(path), f"record is for image {record.id}")
        return record

    def _manifest(self, record: ImageRecord) -> bytes:
        layers = []
        for chain_id in record.chain_ids:
            meta = self.layer_store.meta(chain_id)
            layers.append((meta.blob, meta.blob_size, Compression(meta.compression)))
        config_size = self.blobs.path(record.id).stat().st_size
        return canonical_manifest(record.id, config_size, layers)

    def _manifest_digest(self, record: ImageRecord) -> str | None:
        """The digest of the image's manifest blob; None if a damaged image has none."""
        try:
            return sha256_bytes(self._manifest(record))
        except (ImageError, OSError):
            return None

    def _references(self) -> tuple[set[str], set[str]] | None:
        """Chains and blobs the stored images use; None if some record is unreadable.

        Deleting is only safe when every image is known, so callers keep everything
        when a record cannot be read.
        """
        chains: set[str] = set()
        blobs: set[str] = set()
        for path in self._records.glob("*.json"):
            try:
                record = self._read_record(path)
            except RecordError:
                return None
            blobs.add(record.id)
            chains.update(record.chain_ids)
            manifest = self._manifest_digest(record)
            if manifest is not None:
                blobs.add(manifest)
        for chain_id in chains:
            with contextlib.suppress(ImageError):
                blobs.add(self.layer_store.meta(chain_id).blob)
        return chains, blobs

    def _delete_unreferenced(self, chains: list[str], blobs: list[str]) -> list[str]:
        """Delete the given chains/blobs that no image uses; returns deleted chain ids."""
        refs = self._references()
        if refs is None:
            return []
        live_chains, live_blobs = refs
        blobs = list(blobs)
        deleted: list[str] = []
        for chain_id in chains:
            if chain_id in live_chains or not self.layer_store.exists(chain_id):
                continue
            with contextlib.suppress(ImageError):
                blob = self.layer_store.meta(chain_id).blob
                if blob not in live_blobs:
                    blobs.append(blob)
            if self.layer_store.remove(chain_id):
                deleted.append(chain_id)
        for digest in blobs:
            if digest not in live_blobs:
                self.blobs.delete(digest)
        return deleted

    def _discard(self, created: _Created) -> None:
        if not (created.blobs or created.layers or created.records):
            return
        with locked(self._lock):
            if created.records:
                # A tag written just before the failure must not point at a ghost.
                with self.repositories.update() as refs:
                    for key in [k for k, v in refs.items() if v in created.records]:
                        del refs[key]
            for image_id in created.records:
                with contextlib.suppress(FileNotFoundError):
                    self._record_path(image_id).unlink()
            self._delete_unreferenced(sorted(created.layers), sorted(created.blobs))

    def _put_blob_bytes(self, data: bytes, created: _Created) -> str:
        digest = sha256_bytes(data)
        if not self.blobs.exists(digest):
            created.blobs.add(digest)
        return self.blobs.put_bytes(data)

    def _sync_tags(self, refs: dict[str, str], image_ids: set[str]) -> None:
        """Copy the tags of ``image_ids`` into their records (the index is authoritative)."""
        tags = RepositoryIndex.tags_by_image(refs)
        for image_id in image_ids:
            path = self._record_path(image_id)
            try:
                record = self._read_record(path)
            except RecordError:
                continue
            wanted = tags.get(image_id, [])
            if record.repo_tags != wanted:
                record.repo_tags = wanted
                write_record(path, record)

    def _commit(self, prepared: list[_Prepared], created: _Created) -> list[ImageRecord]:
        """Make prepared images visible: config and manifest blobs, records, then tags."""
        for item in prepared:
            self._put_blob_bytes(item.config, created)
            self._put_blob_bytes(self._manifest(item.record), created)
            item.record.size = sum(self.layer_store.size(c) for c in item.record.chain_ids)
        # Records are written under the tag index's lock too: every record writer holds
        # it, so two loads of the same image never race on the same record file.
        with self.repositories.update() as refs:
            touched: set[str] = set()
            for item in prepared:
                record = item.record
                path = self._record_path(record.id)
                try:
                    record.repo_digests = self._read_record(path).repo_digests
                except RecordError:
                    created.records.add(record.id)
                record.repo_digests += [d for d in item.repo_digests
                                        if d not in record.repo_digests]
                write_record(path, record)
                touched.add(record.id)
                for ref in item.refs:
                    if ref in refs:
                        touched.add(refs[ref])  # the tag moves away from an older image
                    refs[ref] = record.id
            self._sync_tags(refs, touched)
            tags = RepositoryIndex.tags_by_image(refs)
        records = [item.record for item in prepared]
        for record in records:
            record.repo_tags = tags.get(record.id, [])
        return records

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """Add to the store piecewise (a pull); on failure, what it added is removed."""
        with self._adding() as created:
            yield StoreTransaction(self, created)

    def manifest_bytes(self, record: ImageRecord) -> bytes:
        """The image's canonical OCI manifest (what ``save`` writes and ``push`` sends)."""
        return self._manifest(record)

    # -- load ---------------------------------------------------------------------------

    def _prepare_archived(self, reader: ArchiveReader, image: ArchivedImage,
                          created: _Created) -> _Prepared:
        config = reader.read_bytes(image.config_member)
        image_id = sha256_bytes(config)
        if image.config_digest is not None and image.config_digest != image_id:
            raise ImageError(
                f"config {image.config_member} does not match its digest {image.config_digest}"
            )
        record = record_from_config(config, image_id)
        if len(image.layers) != len(record.diff_ids):
            raise ImageError(
                f"image {short_id(image_id)} lists {len(image.layers)} layers but its config "
                f"has {len(record.diff_ids)} diff_ids"
            )
        parent: str | None = None
        for source, diff_id, chain_id in zip(image.layers, record.diff_ids, record.chain_ids,
                                             strict=True):
            # A layer already in the store was verified when it was unpacked.
            if not self.layer_store.exists(chain_id):
                existed = source.digest is not None and self.blobs.exists(source.digest)
                with reader.open(source.member) as stream:
                    digest, size = self.blobs.put_stream(stream, source.digest,
                                                         what=f"layer {source.member}")
                if not existed:
                    created.blobs.add(digest)
                if self.layer_store.create(chain_id=chain_id, parent=parent, diff_id=diff_id,
                                           blob_path=self.blobs.path(digest),
                                           blob_digest=digest, blob_size=size):
                    created.layers.add(chain_id)
            parent = chain_id
        return _Prepared(config=config, record=record, refs=list(image.refs))

    @reports_no_space(state_root)
    def load(self, path: Path) -> list[str]:
        """Load a docker-archive or OCI-layout tarball; returns the refs (or ids) loaded."""
        with (self._adding() as created, self._work_dir("load-") as work,
              ArchiveReader(path, work) as reader):
            archived = read_archive(reader)
            if not archived:
                raise ImageError(f"{path} contains no images")
            # Everything is verified and unpacked before any image becomes visible.
            prepared = [self._prepare_archived(reader, image, created) for image in archived]
            self._commit(prepared, created)
        loaded: list[str] = []
        for item in prepared:
            for name in item.refs or [item.record.id]:
                if name not in loaded:
                    loaded.append(name)
        return loaded

    # -- import -------------------------------------------------------------------------

    @reports_no_space(state_root)
    def import_image(self, source: Path, *, ref: str | None = None,
                     changes: list[str] | None = None) -> ImageRecord:
        """Make a one-layer image from a rootfs directory or tarball (``docker import``)."""
        refs = [self._tag_key(parse_reference(ref))] if ref else []
        config = apply_changes(ImageConfig(), changes or [])
        with self._adding() as created, self._work_dir("import-") as work:
            layer_tar = work / "layer.tar"
            write_rootfs_tar(source, layer_tar)
            diff_id = sha256_file(layer_tar)
            size = layer_tar.stat().st_size
            if not self.blobs.exists(diff_id):
                created.blobs.add(diff_id)
            # An uncompressed layer is its own blob: its digest is the DiffID.
            self.blobs.adopt(layer_tar, diff_id)
            if self.layer_store.create(chain_id=diff_id, parent=None, diff_id=diff_id,
                                       blob_path=self.blobs.path(diff_id),
                                       blob_digest=diff_id, blob_size=size):
                created.layers.add(diff_id)
            raw = new_config(diff_ids=[diff_id], config=config,
                             created=datetime.now(UTC), comment=f"Imported from {source}")
            record = record_from_config(raw, sha256_bytes(raw))
            (committed,) = self._commit([_Prepared(raw, record, refs)], created)
        return committed

    # -- queries ------------------------------------------------------------------------

    def list_with_errors(self) -> tuple[list[ImageRecord], list[str]]:
        """All images (newest first) and a message for each record that cannot be read."""
        errors: list[str] = []
        tags: dict[str, list[str]] | None
        try:
            tags = RepositoryIndex.tags_by_image(self.repositories.read())
        except ImageError as exc:
            errors.append(str(exc))
            tags = None  # fall back to the copies in the records
        records: list[ImageRecord] = []
        if self._records.is_dir():
            for path in sorted(self._records.glob("*.json")):
                try:
                    record = self._read_record(path)
                except RecordError as exc:
                    errors.append(str(exc))
                    continue
                if tags is not None:
                    record.repo_tags = tags.get(record.id, [])
                records.append(record)
        records.sort(key=lambda r: (r.created, r.id), reverse=True)
        return records, errors

    def _by_id(self, image_id: str, refs: dict[str, str]) -> ImageRecord:
        try:
            record = self._read_record(self._record_path(image_id))
        except RecordError as exc:
            if exc.detail == "missing":
                raise ImageNotFound(f"No such image: {image_id}") from exc
            raise DamagedImage(image_id, exc) from exc
        record.repo_tags = RepositoryIndex.tags_by_image(refs).get(record.id, [])
        return record

    @staticmethod
    def _tag_key(ref: Reference) -> str:
        if ref.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref}")
        return ref.familiar()

    def _lookup(self, text: str) -> tuple[ImageRecord, str | None]:
        """Resolve ``text``; also returns the repositories key when it matched by name."""
        text = text.strip()
        if not text:
            raise InvalidArgument("an image name or id is required")
        refs = self.repositories.read()
        hex_part = text.removeprefix("sha256:")
        if text.startswith("sha256:") and not _HEX_PREFIX_RE.fullmatch(hex_part):
            raise ImageNotFound(f"No such image: {text}")
        ref: Reference | None = None
        parse_error: InvalidArgument | None = None
        if not text.startswith("sha256:"):
            try:
                ref = parse_reference(text)
            except InvalidArgument as exc:
                parse_error = exc
        # A name in the store wins over an id prefix that happens to look the same.
        if ref is not None:
            key = ref.familiar()
            if key in refs:
                return self._by_id(refs[key], refs), key
            if ref.digest is not None:
                # A pulled image remembers its registry digest as name@digest.
                pinned = f"{ref.familiar_name}@{ref.digest}"
                for record in self.list():
                    if pinned in record.repo_digests:
                        return record, None
        if _HEX_PREFIX_RE.fullmatch(hex_part):
            matches = sorted(
                p.stem for p in self._records.glob(f"{hex_part}*.json")
            ) if self._records.is_dir() else []
            if len(matches) > 1:
                raise ImageNotFound(
                    f"No such image: {text} (the id prefix is ambiguous: "
                    f"{len(matches)} images match)"
                )
            if matches:
                return self._by_id(f"sha256:{matches[0]}", refs), None
        if ref is None:
            if parse_error is not None:
                raise parse_error
            raise ImageNotFound(f"No such image: {text}")
        raise ImageNotFound(f"No such image: {ref.familiar()}")

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by name (any spelling), full id, or unique id prefix (≥ 4 hex)."""
        return self._lookup(ref_or_id)[0]

    def layer_dirs(self, image: ImageRecord | str) -> list[Path]:
        """The image's unpacked layer ``diff`` dirs, bottom to top (overlay lowers)."""
        record = self.resolve(image) if isinstance(image, str) else image
        dirs: list[Path] = []
        for chain_id in record.chain_ids:
            if not self.layer_store.exists(chain_id):
                raise ImageError(
                    f"image {short_id(record.id)} is missing its layer {chain_id}; "
                    "remove and load it again"
                )
            dirs.append(self.layer_store.diff_dir(chain_id))
        return dirs

    # -- tags and removal ---------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        """Point ``target`` at the image ``source`` names (moving it from any other)."""
        key = self._tag_key(parse_reference(target))
        with self._adding():
            image = self.resolve(source)
            with self.repositories.update() as refs:
                touched = {image.id}
                if key in refs:
                    touched.add(refs[key])
                refs[key] = image.id
                self._sync_tags(refs, touched)

    def _untag(self, keys: list[str]) -> list[str]:
        with self.repositories.update() as refs:
            touched = {refs[k] for k in keys if k in refs}
            for key in keys:
                refs.pop(key, None)
            self._sync_tags(refs, touched)
        return [f"Untagged: {key}" for key in keys]

    def _delete_image(self, record: ImageRecord) -> list[str]:
        manifest = self._manifest_digest(record)
        self._record_path(record.id).unlink()
        lines = [f"Deleted: {record.id}"]
        blobs = [record.id] if manifest is None else [record.id, manifest]
        deleted = self._delete_unreferenced(list(reversed(record.chain_ids)), blobs)
        lines.extend(f"Deleted: {chain_id}" for chain_id in deleted)
        return lines

    def remove(self, ref: str, *, force: bool = False,
               containers_using: Callable[[str], list[str]] | None = None) -> list[str]:
        """``docker rmi``: untag, and delete the image once nothing names or uses it.

        Removing one of several tags only untags.  While containers use the image,
        removing its last name (or its id) is a ``Conflict`` unless ``force``; forced,
        the image is untagged but kept (dangling), because the containers' overlays
        still use its layers.
        """
        self._ensure_dirs()
        with locked(self._lock):
            try:
                record, key = self._lookup(ref)
            except DamagedImage as exc:  # its record cannot be read: -f still removes it
                if not force:
                    raise
                from .repair import remove_damaged

                return remove_damaged(self, exc.image_id, containers_using)
            refs = self.repositories.read()
            tags = sorted(k for k, v in refs.items() if v == record.id)
            users = containers_using(record.id) if containers_using else []
            short = short_id(record.id)
            if key is not None and len(tags) > 1:
                return self._untag([key])
            if key is None and len(tags) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {short} (must be forced) - image is "
                    f"referenced in multiple repositories ({', '.join(tags)})"
                )
            if users and not force:
                raise Conflict(
                    f"conflict: unable to remove {key or short} (must be forced) - image "
                    f"{short} is being used by container(s) {', '.join(users)}"
                )
            lines = self._untag(tags)
            if users:
                return lines
            return lines + self._delete_image(record)

    # -- save ---------------------------------------------------------------------------

    @reports_no_space(lambda _self, _refs, out, **_kw: out)
    def save(self, refs: list[str], out: Path, *,
             fmt: Literal["docker", "oci"] = "docker") -> None:
        """Write the named images to ``out`` as a docker-archive or OCI-layout tarball."""
        if fmt not in ("docker", "oci"):
            raise InvalidArgument(f"unknown archive format {fmt!r} (use docker or oci)")
        if not refs:
            raise InvalidArgument("save needs at least one image")
        self._ensure_dirs()
        with locked(self._lock, shared=True), self._work_dir("save-") as work:
            by_id: dict[str, SavedImage] = {}
            for text in refs:
                record, key = self._lookup(text)
                item = by_id.get(record.id)
                if item is None:
                    item = by_id[record.id] = self._saved(record)
                if key is not None and "@" not in key and key not in item.tags:
                    item.tags.append(key)
            write_archive(out, list(by_id.values()), fmt, work)

    def _saved(self, record: ImageRecord) -> SavedImage:
        layers: list[SavedLayer] = []
        for diff_id, chain_id in zip(record.diff_ids, record.chain_ids, strict=True):
            meta = self.layer_store.meta(chain_id)
            path = self.blobs.path(meta.blob)
            if not path.is_file():
                raise ImageError(f"layer blob {meta.blob} of {short_id(record.id)} is missing")
            layers.append(SavedLayer(diff_id=diff_id, blob_path=path, blob_digest=meta.blob,
                                     compression=Compression(meta.compression)))
        return SavedImage(image_id=record.id, config_path=self.blobs.path(record.id),
                          manifest=self._manifest(record), layers=layers, tags=[])

    # Last in the class body: once defined, `list` would shadow the builtin in the
    # annotations of any method after it.
    def list(self) -> list[ImageRecord]:
        """All readable images, newest first (unreadable records are skipped)."""
        return self.list_with_errors()[0]
