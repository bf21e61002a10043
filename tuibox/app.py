"""``TuiboxApp``: the dashboard (``tuibox`` with no arguments)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tuibox.engine import Engine
from tuibox.settings import Settings

THEMES = {"dark": "textual-dark", "light": "textual-light"}


class TuiboxApp(App[int]):
    """Live containers, logs, stats and one-key lifecycle over one engine root."""

    CSS_PATH = "theme.tcss"
    TITLE = "tuibox"

    def __init__(self, engine: Engine | None = None, *, root: str | Path | None = None,
                 settings: Settings | None = None) -> None:
        super().__init__()
        self.engine = engine if engine is not None else Engine(root)
        self.settings = settings if settings is not None else Settings()
        self.sub_title = str(self.engine.paths.root)

    def on_mount(self) -> None:
        from tuibox.screens.dashboard import DashboardScreen

        self.theme = THEMES[self.settings.theme]
        self.set_keymap(self.settings.keys.model_dump())
        self.push_screen(DashboardScreen(self.engine, self.settings))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker becomes a notification (the app never crashes)."""
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.name}: {event.worker.error}", title="internal error",
                        severity="error", timeout=10)

    def container_name(self, cid: str) -> str:
        try:
            return self.engine.get(cid).name
        except Exception:
            return cid[:12]

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        from tuibox.screens.dashboard import KEYED_ACTIONS, DashboardScreen

        if isinstance(screen, DashboardScreen):
            for _bid, action, label, text in KEYED_ACTIONS:
                if action.startswith("app."):
                    continue
                yield SystemCommand(label.capitalize(), text,
                                    lambda a=action: screen.run_action_by_name(a))
        yield SystemCommand("Light/dark theme", "switch between the light and dark themes",
                            self._toggle_theme)

    def _toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]


def run_dashboard(root: str | None = None) -> int:
    """Open the dashboard on ``root`` (default: the engine's default root)."""
    import os
    import sys

    if os.geteuid() != 0:
        print("tuibox: the dashboard needs root (containers use namespaces and cgroups)",
              file=sys.stderr)
        return 1
    try:
        engine = Engine(root)
    except Exception as exc:
        print(f"tuibox: {exc}", file=sys.stderr)
        return 125
    result = TuiboxApp(engine).run()
    return int(result or 0)
