"""Resource control on a pure cgroup v2 kernel (issue #19): one guest boot runs
tests/v2/test_resources_v2.py there, in three places of the tree (see that file).

Also here, on this host: how ``tuibox stats`` shows the v2 counters.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from tests import v2guest
from tuibox.cli.stats import row
from tuibox.engine.models import StatsSample

INNER = "tests/v2/test_resources_v2.py"
# Plugins the inner file never uses: textual's snapshot plugin alone costs ~30 s of
# emulated CPU to import.
LEAN = ("-p", "no:cacheprovider", "-p", "no:textual-snapshot", "-p", "no:syrupy",
        "-p", "no:anyio")
ONCE = "once is enough"


@pytest.mark.v2guest
@pytest.mark.skipif(bool(v2guest.unavailable()), reason=v2guest.unavailable() or "available")
@pytest.mark.timeout(1200)
def test_resource_control_in_the_v2_guest(busybox_archives: tuple[Path, Path]) -> None:
    rc, out, err = v2guest.run_in_guest(
        sys.executable, "-m", "pytest", "-q", "-rs", "--durations=5", *LEAN, INNER,
        modules=("loop",),  # loop: a block device for io.max
        env={"TUIBOX_V2_BUSYBOX": str(busybox_archives[0])})
    report = f"guest pytest exited {rc}:\n{out[-8000:]}\n{err[-3000:]}"
    assert rc == 0, report
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 20, report  # 8 tests × 3 places, less ONCE
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert all(ONCE in line for line in skips), skips  # nothing skipped for want of v2


def _render(samples: list[StatsSample], fmt: str | None = None) -> str:
    from tuibox.cli.stats import render_stats

    args = argparse.Namespace(all=False, no_trunc=False, format=fmt)
    return render_stats(None, {s.id: s for s in samples}, args, None)  # type: ignore[arg-type]


def test_stats_table_shows_v2_counters_only_where_the_kernel_has_them() -> None:
    v2 = StatsSample(id="a" * 64, name="v2", time_ns=1, oom_kills=2, psi_cpu=1.5,
                     psi_memory=0.25, psi_io=0.0)
    v1 = StatsSample(id="b" * 64, name="v1", time_ns=1, oom_kills=1)
    header, line = _render([v2]).splitlines()
    assert re.search(r"PIDS +OOM KILLS +PSI CPU / MEM / IO$", header), header
    assert re.search(r" 2 +1\.50% / 0\.25% / 0\.00%$", line), line
    header, _ = _render([v1]).splitlines()
    assert header.split()[-1] == "PIDS"  # docker's columns exactly, nothing to add
    assert row(v1, no_trunc=False)["PSI"] == "--"
    assert _render([v2], "{{.OOMKills}} {{.PSI}}") == "2 1.50% / 0.25% / 0.00%"
