"""The Inspect and Processes tabs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from tuibox.engine.models import ProcessInfo

from .format import human_bytes


class InspectView(VerticalScroll):
    """``inspect`` of the selected container as highlighted JSON."""

    @dataclass
    class Loaded(Message):
        cid: str
        data: dict[str, Any] | None
        error: str = ""

    shown = ""
    warning = ""

    def compose(self) -> ComposeResult:
        yield Static(id="inspect-warning")
        yield Static(id="inspect-body")

    def show(self, data: dict[str, Any] | None, error: str = "") -> None:
        body = self.query_one("#inspect-body", Static)
        # A privileged container says so above its JSON, in the error colour.
        warnings = [*((data or {}).get("Warnings") or []), *_log_loss(data)]
        self.warning = "\n".join(f"⚠ {w}" for w in warnings)
        banner = self.query_one("#inspect-warning", Static)
        banner.update(self.warning)
        banner.display = bool(self.warning)
        if data is None:
            body.update(error or "no container selected")
            return
        text = json.dumps(data, indent=2, default=str)
        self.shown = text
        body.update(Syntax(text, "json", theme="ansi_dark", word_wrap=True,
                           background_color="default"))


def _log_loss(data: dict[str, Any] | None) -> list[str]:
    """The banner line for output the container's log could not keep (a full disk)."""
    from tuibox.engine.logs.dropped import notice

    loss = ((data or {}).get("State") or {}).get("LogLoss") or {}
    line = notice(int(loss.get("Lines", 0)), str(loss.get("LastError", "")))
    return [f"{line} (last at {loss.get('LastAt', '?')})"] if line else []


class ProcessTable(DataTable[str]):
    """The container's processes (``top``)."""

    @dataclass
    class Loaded(Message):
        cid: str
        processes: tuple[ProcessInfo, ...]
        error: str = ""

    def on_mount(self) -> None:
        for key, title in (("pid", "PID"), ("ppid", "PPID"), ("user", "USER"), ("state", "S"),
                           ("cpu", "CPU TIME"), ("rss", "RSS"), ("cmd", "COMMAND")):
            self.add_column(title, key=key)
        self.cursor_type = "row"

    def show(self, processes: tuple[ProcessInfo, ...]) -> None:
        wanted = {str(p.pid): p for p in processes}
        with self.app.batch_update():
            for key in [r.key.value for r in self.ordered_rows if r.key.value not in wanted]:
                if key is not None:
                    self.remove_row(key)
            existing = {r.key.value for r in self.ordered_rows}
            for pid, p in wanted.items():
                cells = [pid, str(p.ppid), p.user, p.state, f"{p.cpu_seconds:.2f}s",
                         human_bytes(p.rss), p.command]
                if pid not in existing:
                    self.add_row(*cells, key=pid)
                else:
                    for col, cell in zip(("pid", "ppid", "user", "state", "cpu", "rss", "cmd"),
                                         cells, strict=True):
                        if self.get_cell(pid, col) != cell:
                            self.update_cell(pid, col, cell)
