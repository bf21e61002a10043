"""The device escapes and the BPF device program on a pure cgroup v2 kernel (issue #19).

One guest boot runs tests/test_escape_devices.py and tests/test_bpf_devices.py there:
on v2 they check the BPF program instead of devices.list, and the v2-only tests (one
program per container across update and restarts, the program freed with the cgroup,
a refused attach failing the start) run instead of being skipped.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests import v2guest

pytestmark = [pytest.mark.v2guest,
              pytest.mark.skipif(bool(v2guest.unavailable()),
                                 reason=v2guest.unavailable() or "available")]

FILES = ("tests/test_escape_devices.py", "tests/test_bpf_devices.py")
# What does not depend on the cgroup version stays on this host (TCG is slow).
NOT_CGROUP = "not gone_at_start and not userns"


@pytest.mark.timeout(900)
def test_device_control_in_the_v2_guest() -> None:
    rc, out, err = v2guest.run_in_guest(
        sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", NOT_CGROUP,
        *FILES,
        modules=("loop",),  # the loop device the tests set up over their own file
        env={"PYTHONPATH": str(v2guest.REPO)},  # the supervisor too: this checkout's code
        timeout=780)
    assert rc == 0, f"guest pytest exited {rc}:\n{out[-6000:]}\n{err[-3000:]}"
    assert re.search(r"\d+ passed", out), out[-6000:]
    # Only v1's own test may be skipped there: every v2 check ran.
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert all("cgroup v1" in line for line in skips), skips
