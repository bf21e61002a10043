"""``LimitsDialog``: edit a running container's memory, cpus and pids limits (``update``)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from .sizes import parse_cpus, parse_memory, parse_pids


@dataclass(frozen=True)
class Limits:
    """What to change; ``None`` leaves a limit as it is."""

    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None


class LimitsDialog(ModalScreen[Limits | None]):
    """Three fields; empty means unchanged."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="limits.cancel")]

    def __init__(self, name: str, current: str = "") -> None:
        super().__init__()
        self.container_name = name
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f"[b]Limits of {self.container_name}[/] (empty: unchanged)")
            if self.current:
                yield Static(self.current, classes="hint")
            yield Label("memory (e.g. 256m, 1g)")
            yield Input(id="memory", placeholder="unchanged")
            yield Label("cpus (e.g. 0.5, 2)")
            yield Input(id="cpus", placeholder="unchanged")
            yield Label("pids limit (-1: none)")
            yield Input(id="pids", placeholder="unchanged")
            yield Static(id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#memory", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        try:
            limits = Limits(
                memory=parse_memory(self.query_one("#memory", Input).value),
                cpus=parse_cpus(self.query_one("#cpus", Input).value),
                pids_limit=parse_pids(self.query_one("#pids", Input).value))
        except ValueError as exc:
            self.query_one("#error", Static).update(str(exc))
            return
        self.dismiss(limits)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
