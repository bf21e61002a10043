"""Named volumes: ``volumes/<name>/_data`` plus a record; kept after their containers."""

from __future__ import annotations

import builtins
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from .containers import now
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
            (d / "_data").mkdir(parents=True, exist_ok=True)
            os.chmod(d / "_data", 0o755)
            record = VolumeRecord(name=name, created=now(), labels=labels or {},
                                  anonymous=anonymous)
            write_record(d / "volume.json", record)
        return record

    def get(self, name: str) -> VolumeRecord:
        try:
            return read_record(self._dir(name) / "volume.json", VolumeRecord)
        except RecordError as exc:
            if exc.detail == "missing":
                raise VolumeNotFound(f"get {name}: no such volume") from None
            raise

    def list(self) -> list[VolumeRecord]:
        found = []
        for entry in sorted(os.listdir(self.paths.volumes)):
            if (self._dir(entry) / "volume.json").exists():
                try:
                    found.append(self.get(entry))
                except RecordError:
                    continue
        return found

    def remove(self, name: str, *, users: Callable[[str], builtins.list[str]],
               force: bool = False) -> None:
        self.get(name)
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
