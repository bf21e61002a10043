"""Docker-like pull/push progress on a terminal: one line per layer, redrawn in place.

Events come from download threads, so drawing is serialised by a lock.  On a terminal
each layer's line is rewritten with cursor movements (at most every 0.1 s per layer);
into a pipe or file only status changes are printed, one line each.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from ..engine.images.registry.progress import ProgressEvent, Status
from .format import human_size

BAR_WIDTH = 50
REDRAW_INTERVAL = 0.1
_BYTES_STATUSES = (Status.DOWNLOADING, Status.PUSHING)


def _bar(current: int, total: int) -> str:
    if total <= 0:
        return ""
    filled = min(BAR_WIDTH, current * BAR_WIDTH // total)
    arrow = ">" if filled < BAR_WIDTH else ""
    bar = "=" * max(0, filled - len(arrow)) + arrow
    return f"[{bar:<{BAR_WIDTH}}]  {human_size(current)}/{human_size(total)}"


class ProgressPrinter:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self._order: list[str] = []
        self._lines: dict[str, str] = {}
        self._status: dict[str, str] = {}
        self._drawn: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if not event.id:
                self._image_line(event)
            else:
                self._layer(event)

    def _image_line(self, event: ProgressEvent) -> None:
        if event.status == Status.DIGEST and not event.detail.startswith("sha256:"):
            self.out.write(f"{event.detail}\n")  # push: "tag: digest: … size: …"
        elif event.status in (Status.DIGEST, Status.DONE):
            self.out.write(f"{event.status}: {event.detail}\n")
        else:
            self.out.write(f"{event.detail}\n")
        self.out.flush()

    def _layer(self, event: ProgressEvent) -> None:
        text = f"{event.id}: {event.status}"
        if event.status in _BYTES_STATUSES:
            text += f" {_bar(event.current, event.total)}"
        first = event.id not in self._lines
        if first:
            self._order.append(event.id)
        changed = self._status.get(event.id) != event.status
        self._status[event.id] = event.status
        self._lines[event.id] = text
        if not self.tty:
            if changed:
                self.out.write(f"{event.id}: {event.status}\n")
                self.out.flush()
            return
        now = time.monotonic()
        done = event.current >= event.total > 0
        if not (first or changed or done or now - self._drawn.get(event.id, 0) > REDRAW_INTERVAL):
            return
        self._drawn[event.id] = now
        if first:
            self.out.write(f"{text}\n")
        else:
            up = len(self._order) - self._order.index(event.id)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
        self.out.flush()
