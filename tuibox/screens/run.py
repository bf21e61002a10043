"""``RunDialog``: the fields of ``tuibox run -d``, returning what to create."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from tuibox.engine.models import RunOptions

from .limits import Limits
from .sizes import parse_cpus, parse_memory, parse_pids

RESTART = ("no", "on-failure", "always", "unless-stopped")


@dataclass(frozen=True)
class RunRequest:
    """A container to run, and limits to set once it is running."""

    options: RunOptions
    limits: Limits


class RunDialog(ModalScreen[RunRequest | None]):
    """Image, command, name, env, restart policy, limits."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="run.cancel")]

    def __init__(self, images: list[str]) -> None:
        super().__init__()
        self.images = images or ["busybox:latest"]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="dialog run"):
            yield Static("[b]Run a new container[/] (detached)")
            yield Label("image")
            yield Select([(i, i) for i in self.images], value=self.images[0], allow_blank=False,
                         id="image")
            yield Label("command (shell words; empty: the image's)")
            yield Input(id="command", placeholder="/bin/sh -c 'while true; do date; sleep 1; done'")
            yield Label("name (empty: random)")
            yield Input(id="name")
            yield Label("env (KEY=value, space separated)")
            yield Input(id="env")
            yield Label("restart policy")
            yield Select([(r, r) for r in RESTART], value="no", allow_blank=False, id="restart")
            with Horizontal(classes="row"):
                yield Input(id="memory", placeholder="memory (256m)")
                yield Input(id="cpus", placeholder="cpus (0.5)")
                yield Input(id="pids", placeholder="pids limit")
            with Horizontal(classes="row"):
                yield Input(id="ports", placeholder="ports (8080:80 53:53/udp)")
                yield Input(id="network", placeholder="network (bridge)")
            yield Static(id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Run", variant="primary", id="run")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#command", Input).focus()

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    @on(Input.Submitted)
    @on(Button.Pressed, "#run")
    def _run(self) -> None:
        try:
            image = self.query_one("#image", Select).value
            restart = self.query_one("#restart", Select).value
            limits = Limits(parse_memory(self._value("memory")), parse_cpus(self._value("cpus")),
                            parse_pids(self._value("pids")))
            fields: dict[str, object] = {
                "image": str(image), "command": shlex.split(self._value("command")),
                "name": self._value("name") or None, "env": shlex.split(self._value("env")),
                "restart": str(restart), "publish": self._value("ports").split(),
                "network": self._value("network") or "bridge"}
            if "memory" in RunOptions.model_fields:  # engines with limits at create time
                fields.update(memory=limits.memory, cpus=limits.cpus,
                              pids_limit=limits.pids_limit)
                limits = Limits()
            options = RunOptions.model_validate(fields)
        except ValueError as exc:
            self.query_one("#error", Static).update(str(exc))
            return
        self.dismiss(RunRequest(options, limits))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
