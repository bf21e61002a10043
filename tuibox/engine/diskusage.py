"""``system df``: what a root's images, containers and volumes take on disk, and how much
of it a prune would give back (Docker's ``/system/df``).

Sizes are apparent sizes (``st_size``), a file with several links counted once, as
Docker's ``directory.Size`` does.  An image's layers may be shared with other images:
each layer counts once in the total, and an image's *unique* size is what only it uses.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Engine
    from .models import Container, ImageRecord, VolumeRecord


def tree_size(path: Path) -> int:
    """Bytes under ``path`` (not following symlinks); 0 if it is not there."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:  # gone meanwhile, or not a directory
            continue
        with entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                        continue
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


@dataclass
class ImageUsage:
    image: ImageRecord
    size: int  # all its layers
    shared: int  # of which layers other images use too
    containers: int  # containers made from it, in any state

    @property
    def unique(self) -> int:
        return self.size - self.shared


@dataclass
class ContainerUsage:
    container: Container
    size: int  # its writable layer

    @property
    def active(self) -> bool:  # Docker's: running, paused or restarting
        return self.container.state.running


@dataclass
class VolumeUsage:
    volume: VolumeRecord
    links: int  # containers that mount it
    size: int


@dataclass
class DiskUsage:
    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)
    layers_size: int = 0  # every stored layer once
    images_reclaimable: int = 0  # layers no image in use needs


def layer_sizes(engine: Engine, images: list[ImageRecord]) -> dict[str, int]:
    """chain id → bytes, for every layer these images use."""
    sizes: dict[str, int] = {}
    for image in images:
        for chain_id in image.chain_ids:
            if chain_id not in sizes:
                try:
                    sizes[chain_id] = engine.images.layer_store.size(chain_id)
                except Exception:  # a damaged layer: it still shows, at 0
                    sizes[chain_id] = 0
    return sizes


def disk_usage(engine: Engine) -> DiskUsage:
    containers = engine.list(all=True)
    images = engine.images.list()
    users = Counter(c.config.image_id for c in containers)
    sizes = layer_sizes(engine, images)
    layer_users = Counter(chain for image in images for chain in set(image.chain_ids))
    usage = DiskUsage(layers_size=sum(sizes.values()))
    in_use: set[str] = set()
    for image in images:
        chains = set(image.chain_ids)
        usage.images.append(ImageUsage(
            image=image, size=sum(sizes[c] for c in chains),
            shared=sum(sizes[c] for c in chains if layer_users[c] > 1),
            containers=users[image.id]))
        if users[image.id]:
            in_use |= chains
    usage.images_reclaimable = usage.layers_size - sum(sizes[c] for c in in_use)
    for c in containers:
        usage.containers.append(ContainerUsage(
            container=c, size=tree_size(engine.containers.dir(c.id) / "upper")))
    mounted = Counter(m.source for c in containers for m in c.config.mounts
                      if m.type == "volume")
    for volume in engine.volumes.list():
        usage.volumes.append(VolumeUsage(volume=volume, links=mounted[volume.name],
                                         size=tree_size(engine.volumes.data(volume.name))))
    return usage
