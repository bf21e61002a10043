"""``Plot``: a block-character chart of one metric, newest on the right, limit drawn in."""

from __future__ import annotations

from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
BAR = Style(color="green")
LIMIT = Style(color="red", bold=True)
TITLE = Style(bold=True)


class Plot(Widget):
    """One metric's history; the first row is a title with now / max / limit."""

    DEFAULT_CSS = """
    Plot { height: 6; }
    """

    def __init__(self, title: str, fmt: Callable[[float], str], *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.fmt = fmt
        self.values: list[float] = []
        self.limit: float | None = None
        self.floor_max = 1.0

    def set_data(self, values: list[float], limit: float | None = None,
                 floor_max: float = 1.0) -> None:
        if values == self.values and limit == self.limit:
            return
        self.values, self.limit, self.floor_max = values, limit, floor_max
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            now = self.fmt(self.values[-1]) if self.values else "-"
            peak = self.fmt(max(self.values)) if self.values else "-"
            text = f"{self.title}  now {now}  max {peak}"
            if self.limit:
                text += f"  limit {self.fmt(self.limit)}"
            return Strip([Segment(text[:width], TITLE)]).extend_cell_length(width)
        rows = self.size.height - 1
        values = self.values[-width:]
        top = max([*values, self.limit or 0.0, self.floor_max])
        # Row y (1 = top) covers the value band [lo, hi).
        level = rows - y  # 0 = bottom row
        lo, hi = top * level / rows, top * (level + 1) / rows
        limit_here = self.limit is not None and lo <= self.limit <= hi
        pad = width - len(values)
        segments = [Segment(("─" if limit_here else " ") * pad, LIMIT if limit_here else None)]
        chars: list[str] = []
        for v in values:
            if v >= hi:
                chars.append("█")
            elif v <= lo:
                chars.append("─" if limit_here else " ")
            else:
                chars.append(BLOCKS[max(1, round((v - lo) / (hi - lo) * 8))])
        text = "".join(chars)
        if limit_here:
            segments.extend(Segment(c, LIMIT if c == "─" else BAR) for c in text)
        else:
            segments.append(Segment(text, BAR))
        return Strip(segments, width)
