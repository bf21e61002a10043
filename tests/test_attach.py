"""run -i / -t, attach and the detach keys, driven through a real pty."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.test_exec_volumes import in_pty, tuibox
from tuibox.engine import Engine

Cli = Any


def test_run_i_pipes_stdin_and_closes_it(cli: Cli) -> None:
    out = cli("run", "-i", "--rm", "busybox", "sh", "-c", "wc -l; echo done",
              input=b"".join(b"%d\n" % i for i in range(50000)))
    assert out.stdout.split() == ["50000", "done"]


def test_run_it_interactive_shell_and_exit_code(root: Path, engine: Engine) -> None:
    code, out = in_pty(tuibox(root, "run", "-it", "--name", "tt", "busybox", "sh"),
                       send=b"stty size; tty; echo $TERM; exit 7\r", rows=27, cols=81)
    text = out.decode(errors="replace")
    assert code == 7
    assert "27 81" in text and "/dev/pts/0" in text and "xterm" in text
    # a TTY's output still reaches the log
    logged = b"".join(e.data for e in engine.logs("tt"))
    assert b"/dev/pts/0" in logged


def test_detach_keeps_running_and_attach_again(root: Path, engine: Engine) -> None:
    code, out = in_pty(tuibox(root, "run", "-it", "--name", "det", "busybox", "sh"),
                       send=b"echo before\r\x10\x11", timeout=8)
    assert code == 0
    assert engine.containers.state(engine.resolve("det")).running  # detached, still running
    code, out = in_pty(tuibox(root, "attach", "det"), send=b"echo again; exit 3\r")
    assert code == 3 and b"again" in out
    assert not engine.containers.state(engine.resolve("det")).running


def test_start_attach_streams_output(cli: Cli) -> None:
    cid = cli("create", "busybox", "sh", "-c", "echo started; exit 2").stdout.strip()
    proc = cli("start", "-a", cid, check=False)
    assert proc.returncode == 2 and proc.stdout == "started\n"


def test_signals_reach_a_foreground_container(root: Path, engine: Engine) -> None:
    proc = subprocess.Popen(tuibox(root, "run", "--rm", "busybox", "sh", "-c",
                                   "trap 'echo got; exit 5' INT; while true; do sleep 0.1; "
                                   "done"), stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(2)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 5 and "got" in out


def test_run_a_selects_streams(cli: Cli) -> None:
    proc = cli("run", "--rm", "-a", "stderr", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert proc.stdout == "" and proc.stderr == "err\n"
    proc = cli("run", "--rm", "-a", "stdin", "-a", "stdout", "busybox", "cat", input=b"in\n")
    assert proc.stdout == "in\n"
