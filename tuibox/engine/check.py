"""``tuibox system check [--repair]``: every record of a state root that cannot be read,
and every index entry that points nowhere; with ``repair``, what can be rebuilt from what
is on disk is rebuilt and what nothing owns any more is deleted.

Rebuilt: the tag index from the image records, an image record from its config blob, the
names index from the containers' configs, a container's lost state (as dead), a volume's
lost record (from its directory), the built-in network's record (made again on first
use).  Deleted: names, tags and network addresses of containers and images that are
gone, spools in ``/run`` of removed containers, layers nothing uses.  What cannot be
rebuilt (a container's config, a user network's record) is reported with the command
that removes it.  Things younger than ``GRACE_SECONDS`` may belong to a ``create`` or a
``load`` in progress and are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .broken import cid_of, reset_state
from .errors import RecordError
from .models import VolumeRecord
from .records import read_record, write_record

if TYPE_CHECKING:
    from .engine import Engine
    from .models import Container

GRACE_SECONDS = 60.0
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Problem:
    """One thing wrong, and what was (or can be) done about it."""

    kind: str  # container, name, image, tags, layer, network, volume, spool
    item: str
    detail: str
    fix: str  # what --repair did, or what the operator can do
    repaired: bool = False


def _young(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime < GRACE_SECONDS
    except OSError:
        return True  # going away as we look: somebody is at work on it


def check(engine: Engine, *, repair: bool = False) -> list[Problem]:
    """Look at (and with ``repair`` mend) every record kind of the engine's root."""
    containers, errors = engine.containers.list()
    problems = _containers(engine, errors, repair)
    problems += _names(engine, containers, repair)
    problems += _images(engine, containers, config_errors=any(
        Path(e.path).name == "config.json" for e in errors), repair=repair)
    problems += _networks(engine, repair)
    problems += _volumes(engine, repair)
    problems += _spools(engine, repair)
    return problems


# ---------------------------------------------------------------------------- containers


def _containers(engine: Engine, errors: list[RecordError], repair: bool) -> list[Problem]:
    from .cgroups import detect_driver
    from .supervisor.running import cgroup_rel

    store = engine.containers
    problems = []
    for error in errors:
        cid = cid_of(error)
        short = cid[:12]
        if error.detail == "missing" and _young(store.dir(cid)):
            continue  # a create in progress
        try:
            store.config(cid)
        except RecordError:
            problems.append(Problem("container", short, str(error),
                                    f"its config cannot be rebuilt: `tuibox rm -f {short}` "
                                    f"removes it"))
            continue
        rel = cgroup_rel(cid)
        if detect_driver().pids(rel):
            problems.append(Problem("container", short, str(error),
                                    f"it still runs: `tuibox rm -f {short}` kills and "
                                    f"removes it"))
        elif repair:
            store.write_state(cid, reset_state(store, cid, rel))
            problems.append(Problem("container", short, str(error),
                                    "its state was reset: it shows as dead", True))
        else:
            problems.append(Problem("container", short, str(error),
                                    "`tuibox system check --repair` resets its state (dead)"))
    return problems


def _names(engine: Engine, containers: list[Container], repair: bool) -> list[Problem]:
    """``names/<name>`` holds the id of the container that has the name, and only then."""
    paths = engine.paths
    owner = {c.config.name: c.id for c in containers}
    problems = []
    held: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry_ in os.scandir(paths.names):
            with contextlib.suppress(OSError):
                held[entry_.name] = _holder(Path(entry_.path))
    for name, cid in sorted(held.items()):
        entry = paths.names / name
        if owner.get(name) == cid or _young(entry):
            continue
        if HEX64.fullmatch(cid) and (paths.containers / cid).is_dir() and name not in owner:
            continue  # a container whose config cannot be read: reported above
        why = ("its container is gone" if not HEX64.fullmatch(cid)
               or not (paths.containers / cid).is_dir()
               else f"its container is named {_name_of(containers, cid)!r} now")
        if repair:
            with contextlib.suppress(FileNotFoundError):
                if _holder(entry) == cid:  # unchanged since we looked
                    entry.unlink()
            held.pop(name)
        problems.append(Problem("name", name, f"reserved for {cid[:12] or '?'}: {why}",
                                "released" if repair else
                                "`tuibox system check --repair` releases it", repair))
    for name, cid in sorted(owner.items()):
        if held.get(name) == cid:
            continue
        holder = held.get(name)
        if holder is not None:
            problems.append(Problem("name", name, f"both {cid[:12]} and {holder[:12]} are "
                                    f"named {name}", "remove one of them"))
            continue
        repaired = False
        if repair:
            repaired = engine.containers._claim(name, cid)
        problems.append(Problem("name", name, f"container {cid[:12]} has this name but the "
                                f"index lost it (another could take it)",
                                "reserved again" if repaired else
                                "`tuibox system check --repair` reserves it again", repaired))
    return problems


def _holder(entry: Path) -> str:
    with open(entry, "rb") as f:
        return f.read(100).decode("ascii", "replace").strip()


def _name_of(containers: list[Container], cid: str) -> str:
    return next((c.config.name for c in containers if c.id == cid), "?")


# -------------------------------------------------------------------------------- images


def _images(engine: Engine, containers: list[Container], *, config_errors: bool,
            repair: bool) -> list[Problem]:
    from .images.repair import check_images

    in_use = None if config_errors else {
        Path(d).parent.name for c in containers for d in c.config.layer_dirs}

    def users(image_id: str) -> list[str]:
        return [c.name for c in containers if c.config.image_id == image_id]

    return [Problem(p.kind, p.item, p.detail, p.fix, p.repaired)
            for p in check_images(engine.images, repair=repair, layers_in_use=in_use,
                                  containers_using=users)]


# ------------------------------------------------------------------------------ networks


def _networks(engine: Engine, repair: bool) -> list[Problem]:
    from .network.store import BUILTIN

    store = engine.networks
    problems = []
    for error in store.errors():
        name = Path(error.path).stem
        if name != BUILTIN:
            problems.append(Problem("network", name, str(error),
                                    f"its subnet and options cannot be rebuilt: "
                                    f"`tuibox network rm {name}` removes it"))
            continue
        on_it = [c.name for c in engine.list() if BUILTIN in c.config.networks]
        if on_it:
            problems.append(Problem("network", name, str(error),
                                    f"stop {', '.join(on_it)}, then `tuibox system check "
                                    f"--repair` makes it again"))
        elif repair:
            from .broken import remove_network

            remove_network(engine, name, error)
            problems.append(Problem("network", name, str(error),
                                    "removed: it is made again on first use", True))
        else:
            problems.append(Problem("network", name, str(error),
                                    "`tuibox system check --repair` makes it again"))
    for record in store.all():
        for cid, ep in sorted(record.endpoints.items()):
            if (engine.paths.containers / cid).is_dir():
                continue
            if repair:
                store.release(record.name, cid)
            problems.append(Problem("network", record.name,
                                    f"{ep.ip} is held for container {cid[:12]}, which is gone",
                                    "released" if repair else
                                    "`tuibox system check --repair` releases it", repair))
    return problems


# ------------------------------------------------------------------------------- volumes


def _volumes(engine: Engine, repair: bool) -> list[Problem]:
    from .volumes import NAME_RE

    base = engine.paths.volumes
    problems = []
    for entry in sorted(os.listdir(base)) if base.is_dir() else []:
        d = base / entry
        if not d.is_dir() or not NAME_RE.match(entry):
            continue
        try:
            read_record(d / "volume.json", VolumeRecord)
            continue
        except RecordError as exc:
            error = exc
        if error.detail == "missing" and _young(d):
            continue  # a create in progress
        if not (d / "_data").is_dir():
            problems.append(Problem("volume", entry, str(error),
                                    f"its data is gone too: `tuibox volume rm {entry}` "
                                    f"removes it"))
            continue
        if repair:
            created = datetime.fromtimestamp(os.stat(d / "_data").st_mtime, UTC)
            write_record(d / "volume.json", VolumeRecord(
                name=entry, created=created, anonymous=bool(HEX64.fullmatch(entry))))
        problems.append(Problem("volume", entry, str(error),
                                "record rebuilt from its directory (its labels are lost)"
                                if repair else "`tuibox system check --repair` rebuilds it",
                                repair))
    return problems


# -------------------------------------------------------------------------------- spools


def _spools(engine: Engine, repair: bool) -> list[Problem]:
    """Log spools and cursors in ``/run`` of containers that are gone."""
    spool = engine.paths.run / "spool"
    gone: dict[str, list[Path]] = {}
    for path in sorted(spool.iterdir()) if spool.is_dir() else []:
        cid = path.name.split(".", 1)[0]
        if HEX64.fullmatch(cid) and not (engine.paths.containers / cid).is_dir():
            gone.setdefault(cid, []).append(path)
    problems = []
    for cid, files in gone.items():
        if repair:
            for path in files:
                path.unlink(missing_ok=True)
        problems.append(Problem("spool", cid[:12], f"{len(files)} log spool file(s) of a "
                                f"removed container in {spool}",
                                "deleted" if repair else
                                "`tuibox system check --repair` deletes them", repair))
    return problems
