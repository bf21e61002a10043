"""The log view's line index: offsets only, lazy reads, rotation by inode (no containers)."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

from tuibox.widgets.log_index import LogIndex, LogScanner
from tuibox.widgets.log_view import entry_text

CID = "c" * 64


def write(path: Path, lines: range, stream: str = "stdout") -> None:
    with open(path, "a") as f:
        for i in lines:
            f.write(json.dumps({"log": f"line {i}\n", "stream": stream,
                                "time": "2026-01-02T03:04:05.123456789Z"}) + "\n")


def scan_all(scanner: LogScanner, index: LogIndex) -> int:
    dropped = 0
    while True:
        result = scanner.scan()
        if not result.deltas and not result.dropped:
            return dropped
        dropped += index.apply(result)


def test_index_follows_appends_and_partial_lines(tmp_path: Path) -> None:
    live = tmp_path / f"{CID}-json.log"
    write(live, range(10))
    scanner, index = LogScanner(tmp_path, CID), LogIndex()
    scan_all(scanner, index)
    assert len(index) == 10
    with open(live, "a") as f:
        f.write('{"log":"half')  # an incomplete line is not a line yet
    scan_all(scanner, index)
    assert len(index) == 10
    with open(live, "a") as f:
        f.write(' done\\n","stream":"stderr","time":"2026-01-02T03:04:05Z"}\n')
    scan_all(scanner, index)
    assert len(index) == 11
    assert entry_text(index.entry(10)) == "half done"
    assert index.entry(10).stream == "stderr"
    assert entry_text(index.entry(3)) == "line 3"


def test_index_survives_rotation_and_drops_deleted_files(tmp_path: Path) -> None:
    live = tmp_path / f"{CID}-json.log"
    write(live, range(10))
    scanner, index = LogScanner(tmp_path, CID), LogIndex()
    scan_all(scanner, index)
    assert entry_text(index.entry(9)) == "line 9"
    os.link(live, tmp_path / f"{live.name}.1")  # the engine's link-then-replace rotation
    write(tmp_path / ".new", range(10, 15))
    os.replace(tmp_path / ".new", live)
    scan_all(scanner, index)
    assert len(index) == 15
    assert [entry_text(index.entry(i)) for i in (0, 9, 10, 14)] == [
        "line 0", "line 9", "line 10", "line 14"]
    (tmp_path / f"{live.name}.1").unlink()
    assert scan_all(scanner, index) == 10
    assert len(index) == 5
    assert entry_text(index.entry(0)) == "line 10"
    index.close()


def test_index_memory_is_offsets_only(tmp_path: Path) -> None:
    live = tmp_path / f"{CID}-json.log"
    write(live, range(200_000))
    scanner, index = LogScanner(tmp_path, CID), LogIndex()
    tracemalloc.start()
    scan_all(scanner, index)
    for i in range(0, 200_000, 97):
        index.entry(i)  # scrolled end to end
    _, peak = tracemalloc.get_traced_memory()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = live.stat().st_size
    assert len(index) == 200_000
    assert current < 8 * 200_000 + 2_000_000  # offsets plus a bounded entry cache
    assert peak < size  # never the whole text
    index.close()
