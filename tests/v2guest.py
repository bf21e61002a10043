"""Running a command on a pure cgroup v2 kernel, from this cgroup v1 host (issue #19).

``../shared/v2guest/run-in-v2-guest.sh`` boots a throw-away guest (2–4 s, Python there
2.5–3× slower) that sees this checkout read-only and runs one command as root: group
many checks into one run.  State roots and tmp dirs go to ``/scratch`` (TMPDIR there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(os.environ.get("TUIBOX_V2GUEST", REPO.parent / "shared" / "v2guest")) \
    / "run-in-v2-guest.sh"


def unavailable() -> str:
    """Why the guest cannot run here ("" when it can): a ``skipif`` reason.  Never on CI
    (``CI`` set, as .ci/run does): there a missing prerequisite is a failure."""
    if os.environ.get("CI"):
        return ""
    if not RUNNER.exists():
        return f"no guest runner at {RUNNER}"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86 is not installed (scripts/install.sh --test)"
    return ""


def run_in_guest(*command: str, modules: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 timeout: int = 600) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``command`` run in the guest, cwd = this checkout.
    125: the guest gave no result (its console log is in stderr); 124: timed out."""
    args = [str(RUNNER), "-b", os.environ.get("GUEST_BACKEND", "tcg"), "-t", str(timeout)]
    if modules:
        args += ["-M", ",".join(modules)]
    for name, value in (env or {}).items():
        args += ["-e", f"{name}={value}"]
    proc = subprocess.run([*args, *command], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout + 60)
    return proc.returncode, proc.stdout, proc.stderr
