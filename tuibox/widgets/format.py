"""Small text formatters shared by the widgets (no Textual here)."""

from __future__ import annotations

from datetime import UTC, datetime

from tuibox.engine.models import ZERO_TIME, Container


def human_bytes(n: float) -> str:
    """``1.5MiB``-style sizes, three significant digits."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1024
    return f"{value:.3g}TiB"  # pragma: no cover


def human_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h4m``, ``2d5h``."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def status_label(c: Container) -> str:
    """``running``, ``frozen``, ``exited (137)``, ``restarting``, … as the table shows it."""
    st = c.state.status
    if st == "paused":
        return "frozen"
    if st == "exited":
        return f"exited ({c.state.exit_code})"
    if c.state.running and c.state.output_lost:  # keeper and supervisor were killed
        lost = sum(gap.seconds(datetime.now(UTC)) for gap in c.state.output_lost)
        return f"{st}, output lost {human_duration(lost)}"
    return st


def uptime_seconds(c: Container, now: datetime | None = None) -> float | None:
    if not c.state.running or c.state.started_at == ZERO_TIME:
        return None
    now = now or datetime.now(UTC)
    return (now - c.state.started_at).total_seconds()


def short_command(c: Container) -> str:
    return " ".join(c.config.process.args)
