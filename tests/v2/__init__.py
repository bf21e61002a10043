"""Tests that run inside the pure cgroup v2 guest (issue #19), never on this host.

``tests/test_v2guest_suite.py`` boots the guest once (``tests/v2guest.py``) and runs
these files there in one pytest process, in the order it names.  Elsewhere they are not
collected (``conftest.py``) and, named explicitly, skipped: they move the test process
around the cgroup tree and switch module autoloading off, which no real host should see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tuibox.engine.dropped import cgroup2_host

# ../shared/v2guest's stage 1 names the guest so; cgroup2_host(): its tree is pure v2.
IN_GUEST = os.uname().nodename == "v2guest" and cgroup2_host()
guest_only = pytest.mark.skipif(
    not IN_GUEST, reason="runs inside the cgroup v2 guest: tests/test_v2guest_suite.py")


def busybox_archive(request: pytest.FixtureRequest) -> Path:
    """The busybox image archive: the host's (building it here costs ~20 s of emulated
    CPU), or the session fixture's when run by hand in the guest."""
    archive = os.environ.get("TUIBOX_V2_BUSYBOX")
    if archive:
        return Path(archive)
    return Path(request.getfixturevalue("busybox_archives")[0])


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` (TCG and a loaded host: generous deadlines)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def processes_mentioning(text: str) -> list[int]:
    """Processes (other than this one) whose command line names ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found
