"""Per-container metric histories: fixed-size rings of 1 s samples (no Textual here)."""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from tuibox.engine.models import StatsSample

HISTORY_SECONDS = 3600
METRICS = ("cpu", "memory", "pids", "net_rx", "net_tx", "block_read", "block_write")


class Ring:
    """The last ``capacity`` floats; grows until full, then overwrites the oldest."""

    def __init__(self, capacity: int = HISTORY_SECONDS) -> None:
        self.capacity = capacity
        self._data: array[float] = array("f")
        self._head = 0  # next slot to overwrite once full

    def append(self, value: float) -> None:
        if len(self._data) < self.capacity:
            self._data.append(value)
        else:
            self._data[self._head] = value
            self._head = (self._head + 1) % self.capacity

    def __len__(self) -> int:
        return len(self._data)

    def last(self, n: int) -> list[float]:
        """The newest ``n`` values, oldest first."""
        data = self._data
        if len(data) < self.capacity:
            return list(data[-n:]) if n else []
        ordered = data[self._head:] + data[:self._head]
        return list(ordered[-n:]) if n else []


@dataclass
class _Series:
    rings: dict[str, Ring]
    last: StatsSample | None = None


class StatsHistory:
    """Histories of every container seen in a stats pass, and the newest sample of each."""

    def __init__(self, capacity: int = HISTORY_SECONDS) -> None:
        self.capacity = capacity
        self._series: dict[str, _Series] = {}

    def add(self, samples: Mapping[str, StatsSample]) -> None:
        for cid, s in samples.items():
            series = self._series.get(cid)
            if series is None:
                series = self._series[cid] = _Series({m: Ring(self.capacity) for m in METRICS})
            prev = series.last
            dt = (s.time_ns - prev.time_ns) / 1e9 if prev else 0.0

            def rate(now: int, before: int, dt: float = dt) -> float:
                return max(0.0, (now - before) / dt) if dt > 0 else 0.0

            r = series.rings
            r["cpu"].append(s.cpu_percent)
            r["memory"].append(float(s.memory_usage))
            r["pids"].append(float(s.pids))
            r["net_rx"].append(rate(s.net_rx, prev.net_rx) if prev else 0.0)
            r["net_tx"].append(rate(s.net_tx, prev.net_tx) if prev else 0.0)
            r["block_read"].append(rate(s.block_read, prev.block_read) if prev else 0.0)
            r["block_write"].append(rate(s.block_write, prev.block_write) if prev else 0.0)
            series.last = s

    def forget(self, keep: set[str]) -> None:
        """Drop the histories of removed containers."""
        for cid in [c for c in self._series if c not in keep]:
            del self._series[cid]

    def series(self, cid: str, metric: str, n: int) -> list[float]:
        s = self._series.get(cid)
        return s.rings[metric].last(n) if s else []

    def latest(self, cid: str) -> StatsSample | None:
        s = self._series.get(cid)
        return s.last if s else None
