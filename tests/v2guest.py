"""Running a command on a pure cgroup v2 kernel, from this cgroup v1 host (issue #19).

``../shared/v2guest/run-in-v2-guest.sh`` boots a throw-away guest (2–4 s, Python there
2.5–3× slower) that sees this checkout read-only and runs one command as root: group
many checks into one run.  State roots and tmp dirs go to ``/scratch`` (TMPDIR there).

``pytest_in_guest`` runs test files there in one pytest process and hands back each
inner test's outcome (from its junit xml), so a failure names the inner test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    """The shared tree (guest runner, references): ``TUIBOX_SHARED``, else next to this
    checkout, else /work/shared -- a clone elsewhere (CI's /tmp clone) still finds it."""
    if os.environ.get("TUIBOX_SHARED"):
        return Path(os.environ["TUIBOX_SHARED"])
    beside = REPO.parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


RUNNER = Path(os.environ.get("TUIBOX_V2GUEST", _shared() / "v2guest")) / "run-in-v2-guest.sh"

# Plugin autoloading off, only pytest-timeout back: textual's snapshot plugin, syrupy,
# anyio and platformdirs cost ~15 s of emulated CPU to import and the guest uses none.
LEAN_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
LEAN = ("-p", "pytest_timeout", "-p", "no:cacheprovider")
JUNIT = "/scratch/inner-junit.xml"
JUNIT_MARK = "----- v2guest: inner junit xml -----"
WHY = {124: "the guest timed out (its pytest's output so far is below)",
       125: "the guest gave no result (its console log is in stderr below)"}


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
    if not RUNNER.exists():
        # On CI unavailable() does not skip: say what is missing, not a FileNotFoundError.
        pytest.fail(f"no v2 guest runner at {RUNNER} (set TUIBOX_SHARED or TUIBOX_V2GUEST "
                    "to where the shared tree is)", pytrace=False)
    args = [str(RUNNER), "-b", os.environ.get("GUEST_BACKEND", "tcg"), "-t", str(timeout)]
    if modules:
        args += ["-M", ",".join(modules)]
    for name, value in (env or {}).items():
        args += ["-e", f"{name}={value}"]
    proc = subprocess.run([*args, *command], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout + 60)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass(frozen=True)
class Case:
    """One inner test's outcome: passed, failed, error (setup/teardown, collection) or
    skipped; ``text`` is the traceback or skip reason, then its captured output."""

    nodeid: str
    outcome: str
    message: str
    text: str
    seconds: float


@dataclass(frozen=True)
class GuestPytest:
    """What one guest boot's pytest run gave."""

    rc: int
    out: str
    err: str
    cases: tuple[Case, ...]
    seconds: float

    def summary(self, files: Sequence[str]) -> str:
        """Where the boot's time went: each file's tests, the inner run's slowest tests
        and its last line."""
        per_file = ", ".join(f"{path} {sum(c.seconds for c in self.of(path)):.0f} s"
                             for path in files)
        at = self.out.find("slowest ")
        slowest = self.out[self.out.rfind("\n", 0, at) + 1:] if at >= 0 else _tail(self.out, 5)
        return f"v2 guest: {self.seconds:.0f} s, inner pytest exit {self.rc}; {per_file}\n" \
            + slowest

    def of(self, path: str) -> list[Case]:
        return [c for c in self.cases if c.nodeid.startswith(f"{path}::")]

    def problems(self, path: str, *, allowed_skips: Sequence[str] = (),
                 at_least: int = 1) -> str:
        """"" when every inner test of ``path`` passed (or was skipped for one of the
        ``allowed_skips`` reasons) and at least ``at_least`` passed; else a report naming
        each inner test that did not, with the tail of its traceback and output."""
        cases = self.of(path)
        bad = [c for c in cases if c.outcome in ("failed", "error") or (
            c.outcome == "skipped" and not any(a in c.message for a in allowed_skips))]
        passed = sum(c.outcome == "passed" for c in cases)
        if not bad and passed >= at_least:
            return ""
        lines = [f"{path} in the v2 guest: {passed} passed, "
                 f"{len(bad)} failed, errored or skipped unexpectedly (want ≥ {at_least} "
                 f"passed; guest pytest exit {self.rc}):"]
        lines += [f"  {c.outcome.upper()} {c.nodeid}: {' '.join(c.message.split())[:160]}"
                  for c in bad]
        for c in bad:
            lines += ["", f"===== {c.outcome.upper()} {c.nodeid}", _tail(c.text, 60)]
        if not cases or (self.rc != 0 and not bad):  # nothing to blame: the run itself
            lines += ["", WHY.get(self.rc, f"no result for {path} from the guest's pytest"),
                      "===== guest stdout (tail)", _tail(self.out, 80),
                      "===== guest stderr (tail)", _tail(self.err, 40)]
        return "\n".join(lines)


def pytest_in_guest(files: Sequence[str], *, env: dict[str, str] | None = None,
                    modules: tuple[str, ...] = (), timeout: int = 1200) -> GuestPytest:
    """Run ``files`` (paths from the checkout, run in this order) in one pytest process in
    the guest; every inner test's outcome comes back from its junit xml."""
    script = (f'"$0" -m pytest "$@"; rc=$?; echo "{JUNIT_MARK}"; cat {JUNIT} 2>/dev/null; '
              'exit $rc')
    start = time.monotonic()
    rc, out, err = run_in_guest(
        "bash", "-c", script, sys.executable, "-q", "-rfEs", "--durations=15", *LEAN,
        "--continue-on-collection-errors",  # one broken file hides no other's results
        f"--junitxml={JUNIT}", "-o", "junit_logging=all", *files,
        modules=modules, timeout=timeout,
        env={**LEAN_ENV, "PYTHONPATH": str(REPO), **(env or {})})  # this checkout's code
    seconds = time.monotonic() - start
    out, _, xml = out.partition(JUNIT_MARK)
    return GuestPytest(rc, out, err, _cases(xml), seconds)


def _cases(xml: str) -> tuple[Case, ...]:
    try:
        tree = ET.fromstring(xml.strip())
    except ET.ParseError:  # no xml: the run never finished (the caller reports its output)
        return ()
    cases = []
    for case in tree.iter("testcase"):
        module, name = case.get("classname", ""), case.get("name", "")
        # classname "tests.v2.test_x" (a collection error: "" and the module as name)
        nodeid = f"{(module or name).replace('.', '/')}.py::{name if module else ''}"
        outcome, message, text = "passed", "", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message, text = found.get("message", ""), found.text or ""
                break
        output = [f"--- {e.tag}\n{e.text}" for e in case if e.tag.startswith("system-")
                  and _said_something(e.text)]
        cases.append(Case(nodeid, outcome, message, "\n".join([text, *output]),
                          float(case.get("time", 0))))
    return tuple(cases)


def _said_something(captured: str | None) -> bool:
    """Captured output beyond pytest's empty "--- Captured Out ---" headers."""
    return any(line.strip() and not line.startswith("-----")
               for line in (captured or "").splitlines())


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
