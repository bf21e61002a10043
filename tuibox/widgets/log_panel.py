"""``LogPanel``: the Logs tab — the log view, its search box and a status line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from .log_view import LogView, entry_text, stamp

if TYPE_CHECKING:
    from tuibox.engine import Engine


class LogPanel(Vertical):
    """The Logs tab."""

    BINDINGS = [
        Binding("slash,ctrl+f", "search", "search log", id="log.search"),
        Binding("ctrl+s", "export", "export log", id="log.export"),
    ]

    def compose(self) -> ComposeResult:
        yield LogView(id="log-view")
        yield Input(placeholder="search (regex) — enter: next, shift+enter/F3: more, esc: close",
                    id="log-search")
        yield Static(id="log-status")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.add_class("-open")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.view.search(event.value, 1)
        if error:
            self.notify(error, severity="error")

    def on_key(self, event: object) -> None:
        from textual.events import Key

        if not isinstance(event, Key):
            return
        box = self.query_one("#log-search", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.remove_class("-open")
            self.view.focus()
        elif event.key == "shift+enter" and box.has_focus:
            event.stop()
            self.view.search(box.value, -1)

    def on_log_view_state_changed(self, message: LogView.StateChanged) -> None:
        message.stop()
        view = message.log
        parts = [
            "[b green]● following[/]" if view.follow else "[b yellow]❚❚ paused[/] (end: follow)",
            f"{len(view.index):,} lines",
            f"timestamps {'on' if view.timestamps else 'off'} (t)",
            f"wrap {'on' if view.wrap else 'off'} (w)",
            "/ search  F3 next  ctrl+s export",
        ]
        if view.pattern is not None:
            where = f"line {view.current_match + 1}" if view.current_match is not None else "…"
            parts.insert(2, f"/{view.pattern.pattern}/ {where}")
        self.query_one("#log-status", Static).update("  │  ".join(parts))

    def action_export(self) -> None:
        view = self.view
        if view.cid is None:
            return
        engine: Engine = self.app.engine  # type: ignore[attr-defined]
        name = getattr(self.app, "container_name", lambda cid: cid[:12])(view.cid)
        target = Path.home() / f"tuibox-{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self._export(engine, view.cid, target, view.timestamps)

    @work(thread=True, group="log-export", exit_on_error=False)
    def _export(self, engine: Engine, cid: str, target: Path, timestamps: bool) -> None:
        from tuibox.engine.hostfiles import atomic_output

        try:
            # The dashboard runs as root and the name is predictable: a symlink planted at
            # it must not aim the write anywhere (atomic_output refuses it), and the log
            # may hold secrets (0600).
            with atomic_output(target) as out:
                for entry in engine.logs(cid):
                    prefix = stamp(entry.time_ns) if timestamps else ""
                    text = prefix + entry_text(entry) + ("\n" if not entry.partial else "")
                    out.write(text.encode())
        except Exception as exc:
            self.app.call_from_thread(self.notify, f"export failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"log saved to {target}")
