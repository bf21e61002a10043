"""``-v``, ``--mount``, ``--tmpfs`` and image VOLUMEs → the container's ``Mount`` list."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .errors import InvalidArgument
from .models import ImageConfig, Mount, RunOptions
from .volumes import VolumeStore, copy_up

TMPFS_DEFAULT = ""  # Docker: rw,noexec,nosuid,nodev (flags), no size cap


def _target(path: str, spec: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount config for {spec!r}: the container path must be "
                              f"absolute")
    clean = posixpath.normpath(path)
    if clean == "/":
        raise InvalidArgument(f"invalid mount config for {spec!r}: cannot mount over /")
    return clean


def parse_volume(spec: str) -> Mount:
    """docker's ``-v``: ``/host:/ctr[:ro]``, ``name:/ctr[:ro]`` or ``/ctr``."""
    parts = spec.split(":")
    mode = ""
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) == 1:
        return Mount(type="volume", target=_target(parts[0], spec), anonymous=True)
    if len(parts) != 2 or not parts[0]:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    options = set(filter(None, mode.split(",")))
    unknown = options - {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate"}
    if unknown or {"ro", "rw"} <= options:
        raise InvalidArgument(f"invalid mode: {mode!r} in volume specification {spec!r}")
    source, target = parts
    if source.startswith("."):
        # The command line made the caller's ./x absolute; here it could only mean the
        # engine's own working directory.  Docker's daemon takes it for a volume name.
        raise InvalidArgument(
            f'create {source}: "{source}" includes invalid characters for a local volume '
            f'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
            f"a host directory, use absolute path")
    if source.startswith("/"):
        return Mount(type="bind", source=posixpath.normpath(source),
                     target=_target(target, spec), read_only="ro" in options)
    return Mount(type="volume", source=source, target=_target(target, spec),
                 read_only="ro" in options)


def parse_mount(spec: str) -> Mount:
    """docker's ``--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]``."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro") and not sep:
            value = "true"
        fields[key] = value
    kind = fields.pop("type", "volume")
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    ro = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("1", "true")
    if not target:
        raise InvalidArgument(f"invalid --mount {spec!r}: target is required")
    if kind == "bind":
        if not source:
            raise InvalidArgument(f"invalid --mount {spec!r}: source is required for a bind")
        if not source.startswith("/"):  # never resolved against the engine's cwd
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount "
                                  f"path: '{source}' mount path must be absolute")
        if not os.path.exists(source):
            # Unlike -v, --mount never creates a missing host path (Docker's rule).
            raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path "
                                  f"does not exist: {source}")
        return Mount(type="bind", source=posixpath.normpath(source),
                     target=_target(target, spec), read_only=ro)
    if kind == "volume":
        return Mount(type="volume", source=source, target=_target(target, spec),
                     read_only=ro, anonymous=not source)
    if kind == "tmpfs":
        opts = []
        if "tmpfs-size" in fields:
            opts.append(f"size={fields.pop('tmpfs-size')}")
        if "tmpfs-mode" in fields:
            opts.append(f"mode={fields.pop('tmpfs-mode')}")
        return Mount(type="tmpfs", target=_target(target, spec), options=",".join(opts))
    raise InvalidArgument(f"invalid --mount {spec!r}: unknown type {kind!r}")


def parse_tmpfs(spec: str) -> Mount:
    target, _, options = spec.partition(":")
    return Mount(type="tmpfs", target=_target(target, spec), options=options)


def mounts_for(opts: RunOptions, image: ImageConfig) -> list[Mount]:
    mounts = ([parse_volume(v) for v in opts.volumes] + [parse_mount(m) for m in opts.mounts]
              + [parse_tmpfs(t) for t in opts.tmpfs])
    seen = set()
    for m in mounts:
        if m.target in seen:
            raise InvalidArgument(f"duplicate mount point: {m.target}")
        seen.add(m.target)
    for path in (image.Volumes or {}):  # image VOLUMEs become anonymous volumes
        target = posixpath.normpath(path)
        if target not in seen:
            mounts.append(Mount(type="volume", target=target, anonymous=True))
            seen.add(target)
    return mounts


def materialize(mounts: list[Mount], volumes: VolumeStore,
                layer_dirs: list[Path]) -> list[Mount]:
    """Create what the mounts need on the host: bind dirs for ``-v``, volumes by name (a
    new volume gets the image's content at its mount point, as in Docker)."""
    result = []
    for m in mounts:
        if m.type == "bind" and not os.path.exists(m.source):
            os.makedirs(m.source, exist_ok=True)  # -v creates a missing host path
        if m.type == "volume":
            fresh = not m.source or not (volumes.paths.volumes / m.source).exists()
            record = volumes.create(m.source or None, anonymous=m.anonymous)
            if fresh:
                copy_up(layer_dirs, m.target, volumes.data(record.name))
            m = m.model_copy(update={"source": record.name})
        result.append(m)
    return result
