"""The benchmark's smoke mode: one iteration of every tuibox case, no peers, no hyperfine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_bench_smoke(tmp_path: Path, busybox_archives: tuple[Path, Path]) -> None:
    # The work dir is the leak check's root: any process left mentioning it fails the test.
    out = tmp_path / "out" / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--work", str(tmp_path / "root"),
         "--image", str(busybox_archives[0]), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    sys.path.insert(0, str(BENCH))
    try:
        from cases import CASES
    finally:
        sys.path.remove(str(BENCH))
    assert list(doc["cases"]) == [c.NAME for c in CASES]
    for name, case in doc["cases"].items():
        assert not any(n.startswith("FAILED") for n in case["notes"]), (name, case["notes"])
        assert case["measures"], f"{name}: nothing measured"
        for m in case["measures"]:
            assert not m["failed"] and m["values"], (name, m)
            assert all(math.isfinite(v) for v in m["values"]), (name, m)
            if not m["label"].startswith("system used"):  # a memory delta may be negative
                assert min(m["values"]) > 0, (name, m)
    text = out.read_text()
    assert "## 1. start→exit" in text and "tuibox CLI" in text
    assert not (tmp_path / "root").exists(), "the bench left its work dir"
