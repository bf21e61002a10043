"""``LogView``: a container's json-file log as a line-API ScrollView (Toolong's approach).

Only line offsets are kept (``LogIndex``); the text of what is on screen is read on demand.
A follower thread scans for new lines every 50 ms and posts immutable ``Scanned`` deltas.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from tuibox.engine.logs import LogEntry

from .log_index import LogIndex, LogScanner, ScanResult

POLL_SECONDS = 0.05
STDERR_STYLE = Style(color="red")
MATCH_STYLE = Style(bgcolor="yellow", color="black")
CURRENT_STYLE = Style(bgcolor="dark_orange", color="black", bold=True)
TIME_STYLE = Style(dim=True)


def entry_text(entry: LogEntry) -> str:
    return entry.data.decode("utf-8", "replace").rstrip("\n").replace("\t", "    ")


def stamp(time_ns: int) -> str:
    dt = datetime.fromtimestamp(time_ns / 1e9)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{time_ns % 1_000_000_000 // 1_000_000:03d} "


class LogView(ScrollView, can_focus=True):
    """One container's log, following its end unless scrolled up."""

    BINDINGS = [
        Binding("end", "follow", "follow", id="log.follow"),
        Binding("home", "top", "top", show=False, id="log.top"),
        Binding("t", "toggle_timestamps", "timestamps", id="log.timestamps"),
        Binding("w", "toggle_wrap", "wrap", id="log.wrap"),
        Binding("f3", "find(1)", "next match", id="log.next"),
        Binding("shift+f3", "find(-1)", "previous match", id="log.previous"),
    ]

    follow: reactive[bool] = reactive(True)
    timestamps: reactive[bool] = reactive(False)
    wrap: reactive[bool] = reactive(False)

    @dataclass
    class Scanned(Message):
        """New lines (or dropped rotated files) of the log being shown."""

        generation: int
        result: ScanResult

        def can_replace(self, message: Message) -> bool:  # never drop offsets
            return False

    @dataclass
    class Found(Message):
        """A search ended: the matching line, or ``None``."""

        generation: int
        index: int | None
        pattern: str

    @dataclass
    class StateChanged(Message):
        """Follow, line count, search or toggles changed (for the status line)."""

        log: LogView

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index = LogIndex()
        self.cid: str | None = None
        self._dir: Path | None = None
        self._generation = 0
        self._width = 0
        self._rows_key: tuple[object, ...] = ()
        self._rows: list[tuple[int, Text]] = []
        self._programmatic = False
        self.pattern: re.Pattern[str] | None = None
        self.current_match: int | None = None
        self.last_line_at = 0.0

    # ------------------------------------------------------------------ source

    def show(self, cid: str | None, container_dir: Path | None) -> None:
        """Switch to another container's log (``None``: nothing)."""
        if cid == self.cid:
            return
        self.index.close()
        self._generation += 1
        self.cid, self._dir = cid, container_dir
        self.current_match = None
        self._width = 0
        self.follow = True
        self._resize()
        self.refresh()
        if cid is not None and container_dir is not None:
            self._follow_file(self._generation, container_dir, cid)
        else:
            self.workers.cancel_group(self, "log-follow")
        self.post_message(self.StateChanged(self))

    @work(thread=True, exclusive=True, group="log-follow", exit_on_error=False)
    def _follow_file(self, generation: int, container_dir: Path, cid: str) -> None:
        worker = get_current_worker()
        scanner = LogScanner(container_dir, cid)
        while not worker.is_cancelled:
            result = scanner.scan()
            if result.deltas or result.dropped:
                self.post_message(self.Scanned(generation, result))
                if scanner.pending():
                    continue
            time.sleep(POLL_SECONDS)

    def on_log_view_scanned(self, message: Scanned) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        before = len(self.index)
        dropped = self.index.apply(message.result)
        if dropped:
            self._programmatic = True
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
            self._programmatic = False
            if self.current_match is not None:
                self.current_match = self.current_match - dropped
                if self.current_match < 0:
                    self.current_match = None
        if len(self.index) != before or dropped:
            self.last_line_at = time.monotonic()
            self._resize()
            if self.follow:
                self._to_end()
            self.refresh()
            self.post_message(self.StateChanged(self))

    def on_unmount(self) -> None:
        self.index.close()

    # ------------------------------------------------------------------ geometry / follow

    def _resize(self) -> None:
        width = self._width if not self.wrap else 0
        self.virtual_size = Size(width, len(self.index))

    def _to_end(self) -> None:
        self._programmatic = True
        self.scroll_to(y=max(0, len(self.index) - self.scrollable_content_region.height),
                       animate=False, immediate=True)
        self._programmatic = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._programmatic and new_value < old_value and self.follow:
            self.follow = False

    def watch_follow(self, follow: bool) -> None:
        if follow and self.is_mounted:
            self._to_end()
        self.post_message(self.StateChanged(self))

    def watch_timestamps(self) -> None:
        self._width = 0
        self._resize()
        self.refresh()
        self.post_message(self.StateChanged(self))

    def watch_wrap(self) -> None:
        self._width = 0
        self.scroll_x = 0
        self._resize()
        self.refresh()
        self.post_message(self.StateChanged(self))

    def action_follow(self) -> None:
        self.follow = True
        self._to_end()

    def action_top(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False)

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    # ------------------------------------------------------------------ search

    def search(self, text: str, direction: int = 1) -> str | None:
        """Find the next (or previous) line matching ``text`` (a regex, case-insensitive)."""
        if not text:
            self.pattern, self.current_match = None, None
            self.refresh()
            return None
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            return f"bad pattern: {exc}"
        if self.pattern is None or self.pattern.pattern != pattern.pattern:
            self.pattern, self.current_match = pattern, None
        self.action_find(direction)
        return None

    def action_find(self, direction: int) -> None:
        if self.pattern is None or not len(self.index):
            return
        if self.current_match is not None:
            start = self.current_match + direction
        else:
            start = int(self.scroll_y) if direction > 0 else len(self.index) - 1
        self._find(self._generation, self.pattern, start, direction, len(self.index))

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _find(self, generation: int, pattern: re.Pattern[str], start: int, direction: int,
              count: int) -> None:
        # A private index over the same files: the main thread's index is never shared.
        worker = get_current_worker()
        if self._dir is None or self.cid is None:
            return
        scanner, index = LogScanner(self._dir, self.cid), LogIndex()
        try:
            while True:
                result = scanner.scan()
                if not result.deltas:
                    break
                index.apply(result)
            limit = min(count, len(index))
            start = max(0, min(start, limit - 1))
            # Search on from the start, then wrap around (as less and vim do).
            order = (chain(range(start, limit), range(0, start)) if direction > 0 else
                     chain(range(start, -1, -1), range(limit - 1, start, -1)))
            for n, i in enumerate(order):
                if n % 4096 == 0 and worker.is_cancelled:
                    return
                if pattern.search(entry_text(index.entry(i))):
                    self.post_message(self.Found(generation, i, pattern.pattern))
                    return
            self.post_message(self.Found(generation, None, pattern.pattern))
        finally:
            index.close()

    def on_log_view_found(self, message: Found) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        if message.index is None:
            self.notify(f"no more lines match {message.pattern!r}", severity="warning",
                        timeout=3)
            return
        self.current_match = message.index
        self.follow = False
        height = self.scrollable_content_region.height
        if not (self.scroll_y <= message.index < self.scroll_y + height):
            self.scroll_to(y=max(0, message.index - height // 2), animate=False)
        self.refresh()
        self.post_message(self.StateChanged(self))

    # ------------------------------------------------------------------ rendering

    def line_text(self, i: int) -> Text:
        entry = self.index.entry(i)
        body = entry_text(entry)
        text = Text(no_wrap=not self.wrap, end="")
        if self.timestamps and entry.time_ns:
            text.append(stamp(entry.time_ns), TIME_STYLE)
        text.append(body, STDERR_STYLE if entry.stream == "stderr" else None)
        if self.pattern is not None:
            offset = len(text) - len(body)
            style = CURRENT_STYLE if i == self.current_match else MATCH_STYLE
            for m in self.pattern.finditer(body):
                if m.end() > m.start():
                    text.stylize(style, offset + m.start(), offset + m.end())
        return text

    def _view_rows(self) -> list[tuple[int, Text]]:
        height = self.scrollable_content_region.height
        width = max(1, self.scrollable_content_region.width)
        top, count = int(self.scroll_y), len(self.index)
        key = (top, width, height, count, self.wrap, self.timestamps, self.current_match,
               self.pattern, self.follow, self._generation)
        if key == self._rows_key:
            return self._rows
        rows: list[tuple[int, Text]] = []
        if not self.wrap:
            for i in range(top, min(count, top + height)):
                text = self.line_text(i)
                self._width = max(self._width, text.cell_len)
                rows.append((i, text))
            if self.virtual_size.width < self._width:
                self.call_after_refresh(self._resize)
        elif self.follow and top + height >= count:
            i = count - 1  # anchored at the end: fill upwards
            while i >= 0 and len(rows) < height:
                wrapped = self.line_text(i).wrap(self.app.console, width)
                rows[:0] = [(i, t) for t in wrapped]
                i -= 1
            rows = rows[-height:]
        else:
            for i in range(top, count):
                rows.extend((i, t) for t in self.line_text(i).wrap(self.app.console, width))
                if len(rows) >= height:
                    break
        self._rows_key, self._rows = key, rows
        return rows

    def render_line(self, y: int) -> Strip:
        rows = self._view_rows()
        width = self.scrollable_content_region.width
        if y >= len(rows):
            return Strip.blank(width, self.rich_style)
        _, text = rows[y]
        segments = list(text.render(self.app.console))
        strip = Strip(segments, text.cell_len)
        if not self.wrap:
            strip = strip.crop(int(self.scroll_x), int(self.scroll_x) + width)
        return strip.extend_cell_length(width).apply_style(self.rich_style)
