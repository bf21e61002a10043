"""The cgroup v2 tests (issue #19): one boot of the pure v2 guest runs every file of
tests/v2 in one pytest process; each test here reports one of those files, naming each
inner test that failed with its traceback and output.

- tests/v2/test_devices_v2.py: the device escapes against the BPF device program;
- tests/v2/test_network_v2.py: bridge networking where nf_tables cannot be loaded;
- tests/v2/test_resources_v2.py: every resource flag in three places of the tree.

The boot runs only the files of the tests selected here (``-k devices`` boots for that
one alone).  Also here, on this host: how ``tuibox stats`` shows the v2 counters.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import v2guest
from tuibox.cli.stats import row
from tuibox.engine.models import StatsSample

# Run in this order: the network case switches module autoloading off for a while; the
# resource tests leave the process in a cgroup namespace of its own.
INNER = {
    "test_device_control_in_the_v2_guest": "tests/v2/test_devices_v2.py",
    "test_without_nf_tables_bridge_runs_fail_clearly_and_the_supervisor_lives":
        "tests/v2/test_network_v2.py",
    "test_resource_control_in_the_v2_guest": "tests/v2/test_resources_v2.py",
}
GUEST_TIMEOUT = 1200  # ~3 min at load 2; a busy host can make TCG 3× slower


def in_guest(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that reports an inner file: v2guest, skipped where the guest cannot
    boot (never on CI), and time for the boot (the first test waits for it)."""
    for mark in (pytest.mark.timeout(GUEST_TIMEOUT + 120),
                 pytest.mark.skipif(bool(v2guest.unavailable()),
                                    reason=v2guest.unavailable() or "available"),
                 pytest.mark.v2guest):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def guest(request: pytest.FixtureRequest,
          busybox_archives: tuple[Path, Path]) -> v2guest.GuestPytest:
    """The one boot, for the inner files of this module's selected tests."""
    selected = {item.name for item in request.session.items if item.path == request.path}
    files = [path for name, path in INNER.items() if name in selected]
    run = v2guest.pytest_in_guest(
        files, modules=("loop", "nfnetlink"),  # io.max and --device; the network case
        env={"TUIBOX_V2_BUSYBOX": str(busybox_archives[0])},  # built here: TCG is slow
        timeout=GUEST_TIMEOUT)
    print(run.summary(files))  # shown with -rA, or with the first test's failure
    return run


def _report(guest: v2guest.GuestPytest, test: str, *, allowed_skips: tuple[str, ...] = (),
            at_least: int = 1) -> None:
    """Fail naming every inner test of ``test``'s file that did not pass."""
    problems = guest.problems(INNER[test], allowed_skips=allowed_skips, at_least=at_least)
    if problems:
        pytest.fail(problems, pytrace=False)


@in_guest
def test_device_control_in_the_v2_guest(guest: v2guest.GuestPytest) -> None:
    """Every device escape refused by the BPF program, on v2's full container path."""
    _report(guest, "test_device_control_in_the_v2_guest", at_least=10)


@in_guest
def test_without_nf_tables_bridge_runs_fail_clearly_and_the_supervisor_lives(
        guest: v2guest.GuestPytest) -> None:
    _report(guest, "test_without_nf_tables_bridge_runs_fail_clearly_and_the_supervisor_lives")


@in_guest
def test_resource_control_in_the_v2_guest(guest: v2guest.GuestPytest) -> None:
    """8 tests × 3 places; the CLI's output is checked in one place only."""
    _report(guest, "test_resource_control_in_the_v2_guest", allowed_skips=("once is enough",),
            at_least=22)


# ---------------------------------------------------------------------- on this host


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
