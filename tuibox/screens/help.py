"""``HelpScreen``: every key of the dashboard, as currently mapped."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

LOG_KEYS = [
    ("end", "follow the log's end (scrolling up pauses)"),
    ("home", "top of the log"),
    ("/ ctrl+f", "search the log (regex); enter next, shift+enter previous"),
    ("F3 / shift+F3", "next / previous match"),
    ("t", "timestamps on/off"),
    ("w", "wrap on/off"),
    ("ctrl+s", "export the log to ~/tuibox-<name>-<time>.log"),
]


class HelpScreen(ModalScreen[None]):
    """A list of keys; any of escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "close", id="help.close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        lines = ["[b]Containers[/] (the selected row, or every row marked with space)", ""]
        lines += [f"  [b reverse] {k} [/]  {d}" for k, d in self.rows]
        lines += ["", "[b]Logs tab[/] (when the log has focus; tab moves focus)", ""]
        lines += [f"  [b reverse] {k} [/]  {d}" for k, d in LOG_KEYS]
        lines += ["", "[b]Everywhere[/]", "",
                  "  [b reverse] tab [/]  next pane     [b reverse] ctrl+p [/]  command palette",
                  "  Keys are remapped in ~/.config/tuibox/config.toml ([keys] section)."]
        with VerticalScroll(id="dialog", classes="dialog help"):
            yield Static("\n".join(lines))

    def action_close(self) -> None:
        self.dismiss(None)
