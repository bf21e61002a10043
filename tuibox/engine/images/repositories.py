"""``images/repositories.json``: familiar reference (``busybox:latest``) → image id.

This file is the one source of truth for tags; ``ImageRecord.repo_tags`` is a copy kept
in step for readers of the records.  Writers hold its lock and replace it atomically, so
readers need no lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from ..errors import ImageError, RecordError
from ..models import SCHEMA_VERSION, Record
from ..records import locked, read_record, write_record


class Repositories(Record):
    schema_version: int = SCHEMA_VERSION
    refs: dict[str, str] = Field(default_factory=dict)


class RepositoryIndex:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            return dict(read_record(self.path, Repositories).refs)
        except RecordError as exc:
            raise ImageError(f"the tag index is damaged: {exc} (`tuibox system check --repair` "
                             f"rebuilds it)") from exc

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, str]]:
        """Yield the refs to modify in place; written back atomically if the block succeeds."""
        with locked(self.path):
            refs = self.read()
            before = dict(refs)
            yield refs
            if refs != before:
                write_record(self.path, Repositories(refs=dict(sorted(refs.items()))))

    @staticmethod
    def tags_by_image(refs: dict[str, str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for ref, image_id in sorted(refs.items()):
            out.setdefault(image_id, []).append(ref)
        return out
