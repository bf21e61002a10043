"""Damaged image records and a damaged tag index: removed, rebuilt from what is on disk.

An image record is a cache of its config blob (its id is that blob's digest) plus its
tags and registry digests; the tag index (``repositories.json``) is the one source of
truth for tags, and every record keeps a copy of its own.  So a lost record is rebuilt
from its blob (only its registry digests are lost), a lost index from the records' copies
— and ``rmi -f`` removes an image whose record cannot be read at all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ImageError, RecordError
from ..models import ImageRecord
from ..records import locked, write_record
from .digests import sha256_bytes
from .imageconfig import record_from_config
from .repositories import Repositories, RepositoryIndex

if TYPE_CHECKING:
    from pathlib import Path

    from .store import ImageStore

_HEX64 = re.compile(r"[0-9a-f]{64}")


class DamagedImage(ImageError):
    """An image whose record cannot be read (``rmi -f`` removes it)."""

    def __init__(self, image_id: str, error: RecordError) -> None:
        short = image_id.removeprefix("sha256:")[:12]
        super().__init__(f"image {short} is damaged: {error} (`tuibox system check --repair` "
                         f"rebuilds it if it can, `tuibox rmi -f {short}` removes it)")
        self.image_id = image_id
        self.error = error


@dataclass
class ImageProblem:
    kind: str  # "image", "tags" or "layer"
    item: str
    detail: str
    fix: str
    repaired: bool = False


_REF_RE = re.compile(r'"([^"\\\s]{1,255})"\s*:\s*"(sha256:[0-9a-f]{64})"')
_TAGS_RE = re.compile(r'"repo_tags"\s*:\s*\[([^\]]*)')
_STRING_RE = re.compile(r'"([^"\\\s]{1,255})"')


def known_refs(store: ImageStore) -> dict[str, str]:
    """The tag index, or what can still be read from a damaged one: each complete
    ``"name:tag": "sha256:…"`` pair (a torn write keeps every entry before the tear)."""
    try:
        return store.repositories.read()
    except ImageError:
        pass
    try:
        raw = store.repositories.path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return {}
    return {ref: image_id for ref, image_id in _REF_RE.findall(raw) if _is_ref(ref)}


def _is_ref(text: str) -> bool:
    from ..errors import InvalidArgument
    from .reference import parse_reference

    try:
        return parse_reference(text).familiar() == text
    except InvalidArgument:
        return False


def _salvaged_tags(path: Path) -> list[str]:
    """The tags a damaged record still lists (its ``repo_tags``, if that much reads)."""
    try:
        raw = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    found = _TAGS_RE.search(raw)
    return [t for t in _STRING_RE.findall(found.group(1)) if _is_ref(t)] if found else []


def _config_record(store: ImageStore, image_id: str) -> ImageRecord | None:
    """The record its config blob gives, if the blob is there, intact and its layers too."""
    try:
        raw = store.blobs.path(image_id).read_bytes()
    except OSError:
        return None
    if sha256_bytes(raw) != image_id:
        return None
    try:
        record = record_from_config(raw, image_id)
    except (ImageError, ValueError):
        return None
    if not all(store.layer_store.exists(c) for c in record.chain_ids):
        return None
    return record


def remove_damaged(store: ImageStore, image_id: str,
                   containers_using: Callable[[str], list[str]] | None) -> list[str]:
    """``rmi -f`` of an image whose record cannot be read; the caller holds the store's
    lock exclusively.  While containers use it only its tags go (its layers are theirs)."""
    lines: list[str] = []
    with contextlib.suppress(ImageError):  # a damaged index has no tags of it to drop
        with store.repositories.update() as refs:
            tags = sorted(k for k, v in refs.items() if v == image_id)
            for key in tags:
                del refs[key]
        lines += [f"Untagged: {key}" for key in tags]
    if containers_using and containers_using(image_id):
        return lines
    from_blob = _config_record(store, image_id)
    chains = list(reversed(from_blob.chain_ids)) if from_blob else []
    with contextlib.suppress(FileNotFoundError):
        store._record_path(image_id).unlink()
    lines.append(f"Deleted: {image_id}")
    deleted = store._delete_unreferenced(chains, [image_id])
    return lines + [f"Deleted: {chain_id}" for chain_id in deleted]


def rebuild_index(store: ImageStore, records: list[ImageRecord]) -> dict[str, str]:
    """Write ``repositories.json`` anew from what the damaged one still holds and the
    records' copies of their tags (a tag on two records goes to the newer image, the one
    a later pull or tag moved it to)."""
    refs: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.created, r.id)):
        for tag in record.repo_tags:
            refs[tag] = record.id
    present = {r.id for r in records}
    refs.update({k: v for k, v in known_refs(store).items() if v in present})
    with locked(store.repositories.path):
        write_record(store.repositories.path, Repositories(refs=dict(sorted(refs.items()))))
    return refs


def check_images(store: ImageStore, *, repair: bool, layers_in_use: set[str] | None,
                 containers_using: Callable[[str], list[str]]) -> list[ImageProblem]:
    """Every damaged image record, the tag index and layers no image or container uses.

    ``layers_in_use``: the layers (chain id hex) every container's overlay names (None
    when some container's config cannot be read: then no layer is collected)."""
    problems: list[ImageProblem] = []
    if not store.paths.images.is_dir():
        return problems
    store._ensure_dirs()
    with locked(store._lock, shared=not repair):
        readable: list[ImageRecord] = []
        damaged: list[tuple[Path, RecordError]] = []
        for path in sorted(store._records.glob("*.json")):
            try:
                readable.append(store._read_record(path))
            except RecordError as exc:
                damaged.append((path, exc))
        for path, error in damaged:
            problem = _damaged_record(store, path, error, repair, containers_using)
            if problem.repaired and problem.fix.startswith("rebuilt"):
                with contextlib.suppress(RecordError):
                    readable.append(store._read_record(path))
            problems.append(problem)
        problems += _check_index(store, readable, repair)
        for record in readable:
            missing = [c for c in record.chain_ids if not store.layer_store.exists(c)]
            if missing:
                short = record.id.removeprefix("sha256:")[:12]
                problems.append(ImageProblem(
                    "image", short, f"its layer {missing[0]} is missing",
                    f"`tuibox rmi -f {short}`, then load or pull it again"))
        if layers_in_use is not None and not damaged:
            problems += _orphan_layers(store, readable, layers_in_use, repair)
    return problems


def _damaged_record(store: ImageStore, path: Path, error: RecordError, repair: bool,
                    containers_using: Callable[[str], list[str]]) -> ImageProblem:
    short = path.stem[:12]
    if not _HEX64.fullmatch(path.stem):
        if repair:
            path.unlink(missing_ok=True)
        return ImageProblem("image", path.name, f"a stray file among the image records: "
                            f"{error.detail}", "deleted" if repair else
                            "`tuibox system check --repair` deletes it", repair)
    image_id = f"sha256:{path.stem}"
    record = _config_record(store, image_id)
    users = containers_using(image_id)
    if record is not None:
        if not repair:
            return ImageProblem("image", short, str(error),
                                "`tuibox system check --repair` rebuilds it from its config")
        tags = RepositoryIndex.tags_by_image(known_refs(store)).get(image_id, [])
        record.repo_tags = sorted({*tags, *_salvaged_tags(path)})
        record.size = sum(store.layer_store.size(c) for c in record.chain_ids)
        with locked(store.repositories.path):
            write_record(path, record)
        return ImageProblem("image", short, str(error),
                            "rebuilt from its config (its registry digests are lost)", True)
    if users:
        return ImageProblem("image", short, str(error),
                            f"its config is gone too and container(s) {', '.join(users)} "
                            f"use it: remove them, then `tuibox rmi -f {short}`")
    if not repair:
        return ImageProblem("image", short, str(error),
                            f"its config is gone too: `tuibox rmi -f {short}` (or --repair) "
                            f"removes it")
    remove_damaged(store, image_id, None)
    return ImageProblem("image", short, str(error), "removed (its config is gone too)", True)


def _check_index(store: ImageStore, readable: list[ImageRecord],
                 repair: bool) -> list[ImageProblem]:
    where = str(store.repositories.path)
    try:
        refs = store.repositories.read()
    except ImageError as exc:
        if not repair:
            return [ImageProblem("tags", where, str(exc), "`tuibox system check --repair` "
                                 "rebuilds it from the image records")]
        refs = rebuild_index(store, readable)
        with store.repositories.update() as current:  # the records' copies follow it
            store._sync_tags(current, {r.id for r in readable})
        return [ImageProblem("tags", where, str(exc),
                             f"rebuilt from the image records ({len(refs)} tags)", True)]
    problems: list[ImageProblem] = []
    present = {r.id for r in readable} | {
        f"sha256:{p.stem}" for p in store._records.glob("*.json")}
    orphans = sorted(k for k, v in refs.items() if v not in present)
    for key in orphans:
        problems.append(ImageProblem(
            "tags", key, f"names image {refs[key]}, which is not in the store",
            "dropped" if repair else "`tuibox system check --repair` drops it", repair))
    if repair and orphans:
        with store.repositories.update() as current:
            for key in orphans:
                if current.get(key) == refs[key]:
                    del current[key]
        refs = store.repositories.read()
    tags = RepositoryIndex.tags_by_image(refs)
    stale = [r for r in readable if r.repo_tags != tags.get(r.id, [])]
    for record in stale:
        problems.append(ImageProblem(
            "tags", record.id.removeprefix("sha256:")[:12],
            f"its record says {record.repo_tags or 'no tags'}, the index "
            f"{tags.get(record.id) or 'none'}",
            "record updated from the index" if repair else
            "`tuibox system check --repair` updates the record", repair))
    if repair and stale:
        with store.repositories.update() as current:
            store._sync_tags(current, {r.id for r in stale})
    return problems


def _orphan_layers(store: ImageStore, readable: list[ImageRecord], in_use: set[str],
                   repair: bool) -> list[ImageProblem]:
    """Layers no image record and no container names (a crash between unpacking and
    committing); only ever looked for while every record reads."""
    if not store.layer_store.root.is_dir():
        return []
    wanted = {c.removeprefix("sha256:") for r in readable for c in r.chain_ids}
    problems = []
    for chain_hex in store.layer_store.chain_hexes():
        if chain_hex in wanted or chain_hex in in_use or not _HEX64.fullmatch(chain_hex):
            continue
        if repair:
            store.layer_store.remove(f"sha256:{chain_hex}")
        problems.append(ImageProblem(
            "layer", chain_hex[:12], "no image or container uses it",
            "deleted" if repair else "`tuibox system check --repair` deletes it", repair))
    return problems
