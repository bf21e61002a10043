"""App-level messages: what thread workers post to the UI.  All payloads are immutable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from tuibox.engine.models import Container, StatsSample


@dataclass
class ContainersChanged(Message):
    """A fresh listing of every container, newest first."""

    containers: tuple[Container, ...]
    errors: tuple[str, ...] = ()


@dataclass
class StatsSampled(Message):
    """One stats pass over the running containers, keyed by full id."""

    samples: Mapping[str, StatsSample]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.samples = MappingProxyType(dict(self.samples))


@dataclass
class ActionDone(Message):
    """An engine action finished; ``error`` is set if the engine refused or failed."""

    action: str
    refs: tuple[str, ...]
    error: str = ""
