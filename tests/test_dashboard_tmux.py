"""End to end: drive ``python -m tuibox --root ROOT`` in tmux as a person would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tuibox.engine import Engine, RunOptions

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture
def tmux(root: Path, engine: Engine, tmp_path: Path) -> Iterator[str]:
    session = f"tuibox-e2e-{tmp_path.name}"
    env = f"TUIBOX_CONFIG_FILE={tmp_path / 'none.toml'} TUIBOX_STOP_TIMEOUT=1"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45",
                    f"env {env} {sys.executable} -m tuibox --root {root}"], check=True)
    yield session
    subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], check=True,
                          capture_output=True, text=True).stdout


def keys(session: str, *names: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *names], check=True)


def wait_for(session: str, check: Callable[[str], bool], what: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if check(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")


def test_dashboard_in_tmux(engine: Engine, tmux: str) -> None:
    wait_for(tmux, lambda s: "0 containers" in s, "the empty dashboard")
    engine.run(RunOptions(image="busybox", name="e2e_job",
                          command=["sh", "-c", "while true; do echo Docker; sleep 0.3; done"]))
    text = wait_for(tmux, lambda s: "e2e_job" in s and "running" in s, "the new container")
    wait_for(tmux, lambda s: s.count("Docker") >= 2, "log lines")
    assert "following" in text or "following" in screen(tmux)
    keys(tmux, "s")
    wait_for(tmux, lambda s: "Stop e2e_job?" in s, "the confirm dialog")
    keys(tmux, "y")
    wait_for(tmux, lambda s: "exited" in s, "stopped", timeout=15)
    keys(tmux, "S")
    wait_for(tmux, lambda s: "e2e_job" in s and " running " in s, "started again")
    keys(tmux, "?")
    wait_for(tmux, lambda s: "every row marked with space" in s, "help")
    keys(tmux, "Escape")
    keys(tmux, "q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and subprocess.run(
            ["tmux", "has-session", "-t", tmux], capture_output=True).returncode == 0:
        time.sleep(0.1)
    # quitting never stops a container
    assert [c.state.running for c in engine.list(all=True)] == [True]
