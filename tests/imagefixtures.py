"""Image fixtures shared by the test-suite: a busybox rootfs and archives built from it.

The archives are made with tuibox's own ``import`` and ``save``, so the tests depend on
nothing but Debian's busybox-static (``/bin/busybox``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tuibox.engine.images import ImageStore
from tuibox.engine.images.hostrootfs import BUSYBOX, GROUP, PASSWD, busybox_rootfs
from tuibox.engine.paths import StatePaths

__all__ = ["BUSYBOX", "GROUP", "PASSWD", "busybox_rootfs"]


def build_busybox_archives(tmp: Path) -> tuple[Path, Path]:
    """(docker-archive tar, OCI-layout tar) of ``busybox:latest``, made by tuibox itself."""
    work = tmp / "busybox-archives"
    work.mkdir(parents=True, exist_ok=True)
    rootfs = busybox_rootfs(work / "rootfs")
    paths = StatePaths(work / "store")
    paths.ensure()
    store = ImageStore(paths)
    store.import_image(rootfs, ref="busybox:latest", changes=['CMD ["sh"]'])
    docker_tar = work / "busybox-docker.tar"
    oci_tar = work / "busybox-oci.tar"
    store.save(["busybox:latest"], docker_tar, fmt="docker")
    store.save(["busybox:latest"], oci_tar, fmt="oci")
    return docker_tar, oci_tar


# ---------------------------------------------------------------------------------------
# hand-made archives, for layers tuibox itself would never produce


@dataclass
class TarEntry:
    """One member of a hand-built layer tar."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def layer_tar(entries: list[TarEntry]) -> bytes:
    """An uncompressed layer tar (PAX format) holding ``entries`` in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = dict(e.pax)
            info.size = len(e.data) if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tf.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(diff_ids: list[str], *, cmd: list[str] | None = None,
                 created: str = "2024-01-02T03:04:05.123456789Z") -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Cmd": cmd or ["sh"], "Env": None, "Labels": None},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()


def write_docker_archive(dest: Path, images: list[tuple[list[bytes], list[str]]], *,
                         diff_ids: list[list[str]] | None = None,
                         cmds: list[list[str]] | None = None) -> list[str]:
    """A ``docker save`` style archive; ``images`` is [(layer blobs, repo tags)].

    Layer blobs may be compressed; their DiffIDs are computed from the uncompressed
    bytes unless ``diff_ids`` overrides them (to test verification).  Returns image ids.
    """
    ids: list[str] = []
    with tarfile.open(dest, "w") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        written: set[str] = set()
        manifest = []
        for n, (blobs, tags) in enumerate(images):
            diffs = diff_ids[n] if diff_ids else [sha256(_uncompressed(b)) for b in blobs]
            config = image_config(diffs, cmd=cmds[n] if cmds else [f"image-{n}"])
            config_name = sha256(config)[7:] + ".json"
            add(config_name, config)
            layer_names = []
            for blob in blobs:
                name = sha256(blob)[7:] + "/layer.tar"
                if name not in written:
                    add(name, blob)
                    written.add(name)
                layer_names.append(name)
            manifest.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
            ids.append(sha256(config))
        add("manifest.json", json.dumps(manifest).encode())
    return ids


def _uncompressed(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-dcq"], input=blob, check=True,
                              capture_output=True).stdout
    return blob


def state_leftovers(root: Path) -> dict[str, list[str]]:
    """What a store holds on disk, to assert that a failed operation left nothing."""
    def names(p: Path) -> list[str]:
        return sorted(x.name for x in p.iterdir()) if p.is_dir() else []

    return {
        "tmp": names(root / "tmp"),
        "layers": names(root / "layers"),
        "records": names(root / "images" / "images"),
        "blobs": names(root / "images" / "blobs" / "sha256"),
    }
