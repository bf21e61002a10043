"""Docker's output shapes: human durations and sizes, tables, ``--format`` templates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def human_duration(seconds: float) -> str:
    """docker/go-units ``HumanDuration``."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(t: datetime) -> str:
    return human_duration((datetime.now(UTC) - t).total_seconds()) + " ago"


def human_size(size: float) -> str:
    """go-units ``HumanSizeWithPrecision(size, 3)``: decimal units."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, three spaces apart, like docker's tabwriter output."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell
                 for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


def render_template(template: str, obj: Any) -> str:
    """The subset of Go templates people use with docker: ``{{.A.B}}``, ``{{json .A}}``."""
    text = template.removeprefix("table ").replace("\\t", "\t").replace("\\n", "\n")

    def sub(m: re.Match[str]) -> str:
        value = _lookup(obj, m.group(2))
        if m.group(1):
            return json.dumps(value, separators=(",", ":"))
        if value is None:
            return "<no value>"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)

    return _FIELD.sub(sub, text)


def render_rows(rows: Sequence[dict[str, str]], fmt: str | None, headers: Sequence[str],
                keys: Sequence[str]) -> str:
    """docker's ``--format``: ``json`` (a line each), a template, or the default table."""
    if fmt == "json":
        return "\n".join(json.dumps(r) for r in rows)
    if fmt and fmt != "table":
        return "\n".join(render_template(fmt, r) for r in rows)
    return table(headers, [[r[k] for k in keys] for r in rows])
