"""``ContainerTable``: the live container list, updated in place by key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from tuibox.engine.models import Container, StatsSample

from .format import human_bytes, human_duration, status_label, uptime_seconds

COLUMN_TITLES: dict[str, tuple[str, int]] = {
    "name": ("NAME", 20), "id": ("ID", 12), "image": ("IMAGE", 14), "status": ("STATUS", 12),
    "cpu": ("CPU %", 6), "memory": ("MEM / LIMIT", 17), "pids": ("PIDS", 5),
    "net": ("NET RX / TX", 16), "block": ("BLOCK R / W", 17), "uptime": ("UP", 7),
    "ports": ("PORTS", 14),
}

LOG_LOSS_MARK = "⚠"  # after the status: this container's log is missing output

STATUS_STYLES = {"running": "green", "frozen": "bold cyan", "restarting": "yellow",
                 "created": "dim", "removing": "dim", "dead": "red"}


class Cell(Text):
    """A table cell that knows its row and how it sorts."""

    def __init__(self, text: str, sort_key: float | str, cid: str, style: str = "") -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis")
        self.sort_key = sort_key
        self.cid = cid


@dataclass(frozen=True)
class _Row:
    container: Container
    sample: StatsSample | None


def _cells(row: _Row, columns: list[str], marked: bool, now: datetime) -> list[Cell]:
    c, s = row.container, row.sample
    cid = c.id
    running = c.state.running
    out: list[Cell] = []
    for col in columns:
        if col == "name":
            out.append(Cell(("● " if marked else "") + c.name, c.name, cid,
                            "bold reverse" if marked else ""))
        elif col == "id":
            out.append(Cell(cid[:12], cid, cid))
        elif col == "image":
            out.append(Cell(c.config.image, c.config.image, cid))
        elif col == "status":
            label = status_label(c)
            style = STATUS_STYLES.get(label, "")
            if label.startswith("exited"):
                style = "dim" if c.state.exit_code == 0 else "red"
            cell = Cell(label, label, cid, style)
            if c.state.log_loss.lines:  # its log lost output (a full disk): Inspect says more
                cell.append(f" {LOG_LOSS_MARK}", style="bold yellow")
            out.append(cell)
        elif col == "cpu":
            v = s.cpu_percent if s and running else -1.0
            out.append(Cell(f"{v:.1f}" if v >= 0 else "-", v, cid))
        elif col == "memory":
            if s and running:
                text = f"{human_bytes(s.memory_usage)} / {human_bytes(s.memory_limit)}"
                out.append(Cell(text, s.memory_usage, cid))
            else:
                out.append(Cell("-", -1, cid))
        elif col == "pids":
            out.append(Cell(str(s.pids) if s and running else "-",
                            s.pids if s and running else -1, cid))
        elif col in ("net", "block"):
            if s and running:
                a, b = (s.net_rx, s.net_tx) if col == "net" else (s.block_read, s.block_write)
                out.append(Cell(f"{human_bytes(a)} / {human_bytes(b)}", a + b, cid))
            else:
                out.append(Cell("-", -1, cid))
        elif col == "uptime":
            up = uptime_seconds(c, now)
            out.append(Cell(human_duration(up) if up is not None else "-",
                            up if up is not None else -1, cid))
        else:  # ports, compact: 8080->80/tcp
            text = ports_label(c)
            out.append(Cell(text, text, cid))
    return out


def ports_label(c: Container) -> str:
    """Published ports, short: ``8080->80/tcp``, or the host address when it is one."""
    return ", ".join(
        (f"{p.host_ip}:" if p.host_ip != "0.0.0.0" else "") + f"{p.host_port}->{p.key}"
        for p in c.state.network.ports)


def _sort_value(row: _Row, col: str, now: datetime) -> float | str:
    c, s = row.container, row.sample
    live = s is not None and c.state.running
    if col == "name":
        return c.name
    if col == "id":
        return c.id
    if col == "image":
        return c.config.image
    if col == "status":
        return status_label(c)
    if col == "ports":
        ports = c.state.network.ports
        return f"{ports[0].host_port:05d}" if ports else ""
    if col == "uptime":
        up = uptime_seconds(c, now)
        return up if up is not None else -1.0
    if not live or s is None:
        return -1.0
    values: dict[str, float] = {"cpu": s.cpu_percent, "memory": s.memory_usage, "pids": s.pids,
                                "net": s.net_rx + s.net_tx,
                                "block": s.block_read + s.block_write}
    return values.get(col, -1.0)


class ContainerTable(DataTable[Cell]):
    """Containers, one row each, keyed by full id; sortable, filterable, multi-select."""

    BINDINGS = [
        *(Binding(str(i), f"sort({i})", f"sort by column {i}", show=False, id=f"sort{i}")
          for i in range(1, 10)),
    ]

    @dataclass
    class Selected(Message):
        """The cursor moved to another container (``None``: the table is empty)."""

        cid: str | None

    def __init__(self, columns: list[str], *, show_all: bool = True,
                 id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.columns_shown = columns
        self.show_all = show_all
        self.marked: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._rows: dict[str, _Row] = {}
        self._order: list[str] = []  # the engine's order (newest first)
        self._shown: dict[str, tuple[str, ...]] = {}  # what each row shows now, by id
        self._shown_cells: dict[str, list[Cell]] = {}
        self._stale = False
        self._selected: str | None = None
        self._cell_cache: dict[
            str, tuple[Container, StatsSample | None, tuple[bool, int], list[Cell]]] = {}

    def on_mount(self) -> None:
        for col in self.columns_shown:
            title, width = COLUMN_TITLES[col]
            self.add_column(title, key=col, width=width)

    # ------------------------------------------------------------------ data in

    def set_containers(self, containers: Iterable[Container]) -> None:
        old = self._rows
        self._rows = {c.id: _Row(c, old[c.id].sample if c.id in old else None)
                      for c in containers}
        self._order = list(self._rows)
        self.marked &= set(self._rows)
        self.sync()

    def set_samples(self, samples: Mapping[str, StatsSample]) -> None:
        self._rows = {cid: _Row(r.container, samples.get(cid) if r.container.state.running
                                else None) for cid, r in self._rows.items()}
        self.sync()

    def container(self, cid: str) -> Container | None:
        row = self._rows.get(cid)
        return row.container if row else None

    @property
    def selected_id(self) -> str | None:
        return self._selected

    def targets(self) -> list[str]:
        """The marked rows if any, else the selected one."""
        if self.marked:
            return [cid for cid in self._order if cid in self.marked]
        return [self._selected] if self._selected else []

    # ------------------------------------------------------------------ view state

    def set_filter(self, text: str) -> str | None:
        """Filter by a regex on name, image and status; returns an error text if invalid."""
        if not text:
            self.pattern = None
        else:
            try:
                self.pattern = re.compile(text, re.IGNORECASE)
            except re.error as exc:
                return str(exc)
        self.sync()
        return None

    def toggle_mark(self) -> None:
        cid = self._selected
        if cid is None:
            return
        self.marked.symmetric_difference_update({cid})
        self.sync()
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def action_sort(self, index: int) -> None:
        if index > len(self.columns_shown):
            return
        col = self.columns_shown[index - 1]
        if self.sort_column == col:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = col, col in ("cpu", "memory", "pids", "net",
                                                                "block", "uptime")
        self.sync()

    def _visible(self, row: _Row) -> bool:
        c = row.container
        if not self.show_all and not c.state.running and c.id not in self.marked:
            return False
        if self.pattern is None:
            return True
        text = f"{c.name}\n{c.config.image}\n{status_label(c)}"
        return any(self.pattern.search(part) for part in text.split("\n"))

    # ------------------------------------------------------------------ the diff

    def sync(self) -> None:
        """Bring the rows in line with the data: remove, add, update changed cells, order.

        Cells are rebuilt only for rows on screen (and new rows); rows off screen keep their
        old cells until they are scrolled to, so 500 rows cost what 40 do.
        """
        if not self.is_mounted:
            return
        now = datetime.now(UTC)
        rows = {cid: r for cid, r in self._rows.items() if self._visible(r)}
        order = self._ordered(rows, now)
        keep = self._selected
        self._stale = False
        with self.app.batch_update():
            for cid in [k for k in self._shown if k not in rows]:
                self.remove_row(cid)
                del self._shown[cid]
                self._shown_cells.pop(cid, None)
                self._cell_cache.pop(cid, None)
            for cid in order:
                if cid not in self._shown:
                    self._show(cid, self._cells_for(cid, rows[cid], now))
            self._reorder(order)
            self._restore_cursor(keep)
            # The viewport now, and where the cursor will scroll it to.
            height = max(self.size.height, 10)
            window: set[str] = set()
            for top in (int(self.scroll_y), self.cursor_row - height):
                window.update(order[max(0, top - 5):max(0, top) + 2 * height + 5])
            for cid in order:
                if cid in window:
                    self._show(cid, self._cells_for(cid, rows[cid], now))
                else:
                    self._stale = True  # refreshed when scrolled into view

    def _show(self, cid: str, cells: list[Cell]) -> None:
        if self._shown_cells.get(cid) is cells:
            return  # the very cells already shown
        self._shown_cells[cid] = cells
        plain = tuple(f"{c.plain}\x00{c.style}" for c in cells)
        before = self._shown.get(cid)
        if before is None:
            self.add_row(*cells, key=cid)
        elif before != plain:
            for col, cell, old in zip(self.columns_shown, cells, before, strict=True):
                if f"{cell.plain}\x00{cell.style}" != old:
                    self.update_cell(cid, col, cell)
        self._shown[cid] = plain

    def _cells_for(self, cid: str, row: _Row, now: datetime) -> list[Cell]:
        # The same record and sample (and second, for uptimes) show the same cells.
        key = (cid in self.marked, int(now.timestamp()) if row.container.state.running else 0)
        cached = self._cell_cache.get(cid)
        if (cached is not None and cached[0] is row.container and cached[1] is row.sample
                and cached[2] == key):
            return cached[3]
        cells = _cells(row, self.columns_shown, cid in self.marked, now)
        self._cell_cache[cid] = (row.container, row.sample, key, cells)
        return cells

    def _ordered(self, rows: dict[str, _Row], now: datetime) -> list[str]:
        if self.sort_column is None:
            rank = {cid: i for i, cid in enumerate(self._order)}
            return sorted(rows, key=rank.__getitem__)
        col = self.sort_column
        return sorted(rows, key=lambda cid: (_sort_value(rows[cid], col, now), cid),
                      reverse=self.sort_reverse)

    def _reorder(self, order: list[str]) -> None:
        current = [row.key.value for row in self.ordered_rows]
        if current == order:
            return
        position = {cid: i for i, cid in enumerate(order)}
        self.sort(self.columns_shown[0], key=lambda cell: position[cell.cid])

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._stale and int(old_value) != int(new_value):
            self.call_after_refresh(self.sync)

    def _restore_cursor(self, keep: str | None) -> None:
        if self.row_count == 0:
            self._set_selected(None)
            return
        if keep is not None:
            try:
                index = self.get_row_index(keep)
            except RowDoesNotExist:
                index = min(self.cursor_row, self.row_count - 1)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        current = self.ordered_rows[min(self.cursor_row, self.row_count - 1)].key.value
        self._set_selected(current)

    def _set_selected(self, cid: str | None) -> None:
        if cid != self._selected:
            self._selected = cid
            self.post_message(self.Selected(cid))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._set_selected(event.row_key.value)
