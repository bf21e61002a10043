"""``StatsPanel``: the Stats tab — plots per metric with limits, and cgroup counters."""

from __future__ import annotations

from functools import cache

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .format import human_bytes
from .plot import Plot
from .stats_history import StatsHistory


@cache
def host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def _pct(v: float) -> str:
    return f"{v:.1f}%"


def _rate(v: float) -> str:
    return f"{human_bytes(v)}/s"


PLOTS: tuple[tuple[str, str, object], ...] = (
    ("cpu", "CPU % (100 = one core)", _pct),
    ("memory", "Memory", human_bytes),
    ("pids", "PIDs", lambda v: f"{v:.0f}"),
    ("net_rx", "Net RX", _rate),
    ("net_tx", "Net TX", _rate),
    ("block_read", "Block read", _rate),
    ("block_write", "Block write", _rate),
)


class StatsPanel(VerticalScroll):
    """Plots for the selected container; redrawn only while the tab is visible."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cid: str | None = None
        self.note = ""

    def compose(self) -> ComposeResult:
        yield Static(id="stats-counters")
        for key, title, fmt in PLOTS:
            yield Plot(title, fmt, id=f"plot-{key}")  # type: ignore[arg-type]

    def update_from(self, history: StatsHistory, cid: str | None, running: bool,
                    cpu_limit: float | None = None) -> None:
        self.cid = cid
        counters = self.query_one("#stats-counters", Static)
        sample = history.latest(cid) if cid else None
        if self.note:
            counters.update(self.note)
        elif cid is None:
            counters.update("no container selected")
        elif sample is None:
            counters.update("not running: no stats" if not running else "waiting for stats…")
        else:
            psi = "  ".join(f"{n} {v:.2f}" for n, v in (("cpu", sample.psi_cpu),
                            ("mem", sample.psi_memory), ("io", sample.psi_io)) if v is not None)
            counters.update(
                f"[b]OOM kills[/] {sample.oom_kills}   "
                f"[b]throttled[/] {sample.cpu_throttled_periods} periods / "
                f"{sample.cpu_throttled_ns / 1e9:.2f}s   "
                f"[b]PSI some avg10[/] {psi or 'n/a'}   "
                f"[b]pids[/] {sample.pids}/{sample.pids_limit or '∞'}")
        width = max(10, self.size.width - 2)
        for key, _, _ in PLOTS:
            plot = self.query_one(f"#plot-{key}", Plot)
            values = history.series(cid, key, width) if cid else []
            limit: float | None = None
            floor = 1.0
            if sample is not None and key == "memory":
                mem_limit = sample.memory_limit
                limit = float(mem_limit) if 0 < mem_limit < host_memory() else None
                floor = 1024.0 * 1024
            elif sample is not None and key == "pids" and sample.pids_limit:
                limit = float(sample.pids_limit)
            elif key == "cpu":
                floor, limit = 100.0, cpu_limit
            elif key.startswith(("net", "block")):
                floor = 1024.0
            plot.set_data(values, limit, floor)
