"""``ImagesScreen``: the local images; pull (with progress) and remove (with confirmation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from tuibox.widgets.format import human_bytes, human_duration

from .confirm import ConfirmDialog

if TYPE_CHECKING:
    from tuibox.engine import Engine
    from tuibox.engine.models import ImageRecord


class PullDialog(ModalScreen[str | None]):
    """Ask for an image reference; dismiss with it, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="pull.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="pull-dialog", classes="dialog"):
            yield Label("Pull image (e.g. busybox, localhost:5000/app:1):")
            yield Input(placeholder="reference", id="pull-ref")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ImagesScreen(Screen[None]):
    """A table of images."""

    BINDINGS = [
        Binding("escape,I", "app.pop_screen", "back", id="images.back"),
        Binding("d", "remove", "remove", id="images.remove"),
        Binding("P", "pull", "pull", id="images.pull"),
        Binding("ctrl+r", "reload", "reload", id="images.reload"),
    ]

    @dataclass
    class PullProgress(Message):
        """Coalesced progress of a pull: one line for the title bar."""

        text: str

    @dataclass
    class Listed(Message):
        images: tuple[ImageRecord, ...]
        users: dict[str, int]
        error: str = ""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("[b]Images[/]  d remove · P pull · esc back", id="images-title")
        yield DataTable(id="images-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, title in (("tag", "REPOSITORY:TAG"), ("id", "IMAGE ID"),
                           ("created", "CREATED"), ("size", "SIZE"), ("used", "CONTAINERS")):
            table.add_column(title, key=key)
        self.action_reload()

    def action_reload(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, group="images-list", exit_on_error=False)
    def _list(self) -> None:
        try:
            images = tuple(self.engine.images.list())
            users: dict[str, int] = {}
            for c in self.engine.list(all=True):
                users[c.config.image_id] = users.get(c.config.image_id, 0) + 1
            self.post_message(self.Listed(images, users))
        except Exception as exc:
            self.post_message(self.Listed((), {}, str(exc)))

    def on_images_screen_listed(self, message: Listed) -> None:
        if message.error:
            self.notify(message.error, severity="error")
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        now = datetime.now(UTC)
        for img in message.images:
            created = human_duration((now - img.created).total_seconds()) + " ago"
            table.add_row(", ".join(img.repo_tags) or "<none>", img.id.removeprefix("sha256:")[:12],
                          created, human_bytes(img.size), str(message.users.get(img.id, 0)),
                          key=img.id)
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))

    def action_pull(self) -> None:
        def chosen(ref: str | None) -> None:
            if ref:
                self._pull(ref)

        self.app.push_screen(PullDialog(), chosen)

    @work(thread=True, group="images-pull", exit_on_error=False)
    def _pull(self, ref: str) -> None:
        import time

        layers: dict[str, tuple[int, int, str]] = {}
        last = 0.0

        def progress(event: object) -> None:
            nonlocal last
            ev_id = getattr(event, "id", "")
            if ev_id:
                layers[ev_id] = (getattr(event, "current", 0), getattr(event, "total", 0),
                                 str(getattr(event, "status", "")))
            now = time.monotonic()
            if now - last < 0.1:  # at most ten redraws a second, however fast the layers go
                return
            last = now
            done = sum(c for c, _, _ in layers.values())
            total = sum(t for _, t, _ in layers.values())
            self.post_message(self.PullProgress(
                f"pulling {ref}: {len(layers)} layers, {human_bytes(done)} / {human_bytes(total)}"))

        try:
            image = self.engine.pull(ref, progress=progress)
        except Exception as exc:
            self.post_message(self.PullProgress(""))
            self.app.call_from_thread(self.notify, f"pull {ref}: {exc}", severity="error")
            return
        self.post_message(self.PullProgress(""))
        self.app.call_from_thread(self.notify, f"pulled {ref} ({image.id[:19]})")
        self.app.call_from_thread(self.action_reload)

    def on_images_screen_pull_progress(self, message: PullProgress) -> None:
        title = self.query_one("#images-title", Static)
        title.update(message.text or "[b]Images[/]  d remove · P pull · esc back")

    def action_remove(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        image_id = table.ordered_rows[table.cursor_row].key.value
        if image_id is None:
            return
        label = str(table.get_row(image_id)[0])

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(image_id, label)

        self.app.push_screen(ConfirmDialog(f"Remove image {label}?"), answered)

    @work(thread=True, group="images-remove", exit_on_error=False)
    def _remove(self, image_id: str, label: str) -> None:
        try:
            self.engine.images.remove(image_id, containers_using=self.engine.containers_using)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
        else:
            self.app.call_from_thread(self.notify, f"removed {label}")
        self.app.call_from_thread(self.action_reload)
