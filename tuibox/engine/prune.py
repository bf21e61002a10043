"""``system prune``: Docker's order and rules, over the per-kind prunes tuibox has.

Stopped containers first (so their images and networks become unused), then networks
no container uses, then (``volumes``) anonymous volumes no container mounts, then
images: dangling ones (no tag) or, with ``all_images``, every image no container uses.
There is no build cache to prune.  Each kind reports what went and the bytes it freed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .diskusage import layer_sizes, tree_size
from .errors import TuiboxError

if TYPE_CHECKING:
    from .engine import Engine


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)  # full ids
    networks: list[str] = field(default_factory=list)  # names
    volumes: list[str] = field(default_factory=list)  # names
    images: list[str] = field(default_factory=list)  # "untagged: REF" / "deleted: ID"
    reclaimed: int = 0  # bytes


def system_prune(engine: Engine, *, all_images: bool = False,
                 volumes: bool = False) -> PruneReport:
    report = PruneReport()
    stopped = {c.id: tree_size(engine.containers.dir(c.id) / "upper")
               for c in engine.list(all=True) if not c.state.running}
    report.containers = engine.prune()
    report.reclaimed += sum(stopped.get(cid, 0) for cid in report.containers)
    report.networks = engine.network_prune()
    if volumes:
        before = {v.name: tree_size(engine.volumes.data(v.name))
                  for v in engine.volumes.list() if v.anonymous}
        report.volumes = engine.volumes.prune(users=engine.volume_users)
        report.reclaimed += sum(before.get(name, 0) for name in report.volumes)
    _prune_images(engine, report, all_images=all_images)
    return report


def _prune_images(engine: Engine, report: PruneReport, *, all_images: bool) -> None:
    images = engine.images.list()
    used = {c.config.image_id for c in engine.list(all=True)}
    sizes = layer_sizes(engine, images)
    for image in images:
        if image.id in used or (image.repo_tags and not all_images):
            continue
        try:
            # force: an unused image with several tags goes with all of them (Docker's
            # prune); one a container uses is never touched (it was skipped above, and
            # remove() checks again under the store's lock).
            lines = engine.images.remove(image.id, force=True,
                                         containers_using=engine.containers_using)
        except TuiboxError:  # removed or taken into use meanwhile: not ours to report
            continue
        for line in lines:
            kind, _, what = line.partition(": ")
            report.images.append(f"{kind.lower()}: {what}")
            if kind == "Deleted":
                with contextlib.suppress(KeyError):
                    report.reclaimed += sizes[what]
