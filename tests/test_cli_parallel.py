"""Multi-container verbs act on every container at once, as the docker CLI does."""

from __future__ import annotations

import time
from typing import Any

Cli = Any


def test_stop_of_several_containers_runs_in_parallel(cli: Cli) -> None:
    names = ["par-a", "par-b", "par-c"]
    for name in names:  # ignore SIGTERM: each stop has to wait out its whole timeout
        cli("run", "-d", "--name", name, "busybox", "sh", "-c", "trap '' TERM; sleep 100")
    started = time.monotonic()
    out = cli("stop", "-t", "2", *names).stdout
    elapsed = time.monotonic() - started
    assert out.split() == names  # reported in the order given
    # One after another would take 3 × 2 s; together it takes one timeout.
    assert elapsed < 5, f"stop of three containers took {elapsed:.1f} s"
    states = cli("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert all(f"{n} Exited (137)" in states for n in names), states


def test_rm_of_several_reports_each_failure_in_order(cli: Cli) -> None:
    cli("create", "--name", "par-one", "busybox", "true")
    cli("create", "--name", "par-two", "busybox", "true")
    proc = cli("rm", "par-one", "no-such-par", "par-two", check=False)
    assert proc.returncode == 1
    assert proc.stdout.split() == ["par-one", "par-two"]
    assert proc.stderr.strip() == "tuibox: No such container: no-such-par"
