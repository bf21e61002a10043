"""Named volumes: ``volumes/<name>/_data`` plus a record; kept after their containers."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from .containers import now
from .diskfull import reports_no_space, state_root
from .errors import Conflict, InvalidArgument, NotFound, RecordError
from .models import VolumeRecord
from .paths import StatePaths
from .records import locked, read_record, write_record

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class VolumeNotFound(NotFound):
    """No volume of that name."""


class VolumeStore:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    def _dir(self, name: str) -> Path:
        return self.paths.volumes / name

    def data(self, name: str) -> Path:
        return self._dir(name) / "_data"

    @reports_no_space(state_root)
    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               anonymous: bool = False) -> VolumeRecord:
        """Create (or return the existing) volume; ``docker volume create`` is idempotent."""
        if name is None:
            name, anonymous = secrets.token_hex(32), True
        if not NAME_RE.match(name):
            raise InvalidArgument(f'"{name}" includes invalid characters for a local volume '
                                  f'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        d = self._dir(name)
        with locked(self.paths.volumes / "volumes.json"):
            if (d / "volume.json").exists():
                return self.get(name)
            # Only root reaches a volume's files from the host (a container's root may
            # leave setuid files or world-writable dirs in it: CVE-2021-41091's class).
            made = not d.exists()  # else a volume whose record was lost: keep its data
            d.mkdir(mode=0o700, exist_ok=True)
            try:
                (d / "_data").mkdir(exist_ok=True)
                os.chmod(d / "_data", 0o755)
                record = VolumeRecord(name=name, created=now(), labels=labels or {},
                                      anonymous=anonymous)
                write_record(d / "volume.json", record)
            except OSError:  # a full disk: no half-made volume left behind
                if made:
                    shutil.rmtree(d, ignore_errors=True)
                raise
        return record

    def get(self, name: str) -> VolumeRecord:
        try:
            return read_record(self._dir(name) / "volume.json", VolumeRecord)
        except RecordError as exc:
            if exc.detail == "missing":
                raise VolumeNotFound(f"get {name}: no such volume") from None
            raise

    def list(self) -> list[VolumeRecord]:
        return self.list_with_errors()[0]

    def list_with_errors(
        self,
    ) -> tuple[builtins.list[VolumeRecord], builtins.list[RecordError]]:
        """Every volume, and an error for each directory whose record cannot be read."""
        found, errors = [], []
        for entry in sorted(os.listdir(self.paths.volumes)):
            if not NAME_RE.match(entry) or not self._dir(entry).is_dir():
                continue
            try:
                found.append(read_record(self._dir(entry) / "volume.json", VolumeRecord))
            except RecordError as exc:
                errors.append(exc)
        return found, errors

    def remove(self, name: str, *, users: Callable[[str], builtins.list[str]],
               force: bool = False) -> None:
        if not NAME_RE.match(name) or not self._dir(name).is_dir():
            raise VolumeNotFound(f"get {name}: no such volume")
        # A volume whose record cannot be read is removed all the same.
        using = users(name)
        if using and not force:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(using)}]")
        with locked(self.paths.volumes / "volumes.json"):
            doomed = self.paths.tmp / f"volume-{name}-{secrets.token_hex(4)}"
            os.rename(self._dir(name), doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def prune(self, *, users: Callable[[str], builtins.list[str]],
              all: bool = False) -> builtins.list[str]:
        """Remove unused volumes: anonymous ones, or every unused one with ``all``."""
        removed: builtins.list[str] = []
        for v in self.list():
            if (v.anonymous or all) and not users(v.name):
                self.remove(v.name, users=users)
                removed.append(v.name)
        return removed


def copy_up(layer_dirs: list[Path], target: str, dest: Path) -> None:
    """Fill a new volume with what the image has at its mount point, as Docker does.

    The image's layers are merged bottom to top: whiteouts (0/0 char devices) delete,
    opaque directories start empty.  A mount point that passes through a symlink in a
    layer is not followed (it could lead out of the layer): nothing is copied then.
    """
    rel = target.strip("/")
    for layer in layer_dirs:
        src = layer / rel
        if not os.path.lexists(src) or not _inside(layer, rel):
            continue
        if not os.path.isdir(src) or os.path.islink(src):
            continue
        _merge_dir(src, dest, top=True)


def _inside(layer: Path, rel: str) -> bool:
    """True when ``layer/rel`` resolves to itself: no symlink on the way."""
    base = os.path.realpath(layer)
    return os.path.realpath(os.path.join(base, rel)) == os.path.join(base, rel)


def _is_whiteout(st: os.stat_result) -> bool:
    import stat as st_mod

    return st_mod.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _merge_dir(src: Path, dest: Path, *, top: bool = False) -> None:
    import stat as st_mod

    with contextlib.suppress(OSError):
        if os.getxattr(src, "trusted.overlay.opaque") == b"y" and not top:
            shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(exist_ok=True)
    st = os.lstat(src)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, st_mod.S_IMODE(st.st_mode))
    for entry in os.scandir(src):
        s_path, d_path = Path(entry.path), dest / entry.name
        est = entry.stat(follow_symlinks=False)
        if _is_whiteout(est):
            if d_path.is_dir() and not d_path.is_symlink():
                shutil.rmtree(d_path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    d_path.unlink()
            continue
        if entry.is_dir(follow_symlinks=False):
            if d_path.is_symlink() or (d_path.exists() and not d_path.is_dir()):
                d_path.unlink()
            _merge_dir(s_path, d_path)
            continue
        if d_path.is_dir() and not d_path.is_symlink():
            shutil.rmtree(d_path)
        elif os.path.lexists(d_path):
            d_path.unlink()
        if entry.is_symlink():
            os.symlink(os.readlink(s_path), d_path)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(s_path, d_path, follow_symlinks=False)
            os.chmod(d_path, st_mod.S_IMODE(est.st_mode))
        else:
            continue  # devices and fifos stay in the image, as in Docker's copy
        os.lchown(d_path, est.st_uid, est.st_gid)
