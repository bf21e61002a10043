"""run -i / -t, attach and the detach keys, driven through a real pty."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
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


class Terminal:
    """A command on a fresh pty, driven as a user would: type once it holds the terminal
    raw, wait for what it shows, wait until it has read what was typed."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.execvp(argv[0], argv)
        self.screen = b""
        self.status: int | None = None

    def _until(self, what: str, condition: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen: {self.screen!r}")
            self._read(0.02)

    def _read(self, wait: float) -> bool:
        """Collect output; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the command and everything on the terminal are gone
            return False
        self.screen += chunk
        return bool(chunk)

    def type(self, keys: bytes) -> None:
        self._until("raw mode", lambda: not termios.tcgetattr(self.master)[3] & termios.ICANON)
        os.write(self.master, keys)

    def expect(self, text: bytes) -> None:
        self._until(repr(text), lambda: text in self.screen)

    def read_by_command(self) -> None:
        """Until the command has read everything typed (the terminal's input queue)."""
        slave = os.open(os.readlink(f"/proc/{self.pid}/fd/0"), os.O_RDWR | os.O_NOCTTY)
        try:
            queued = array.array("i", [0])

            def empty() -> bool:
                fcntl.ioctl(slave, termios.FIONREAD, queued)
                return queued[0] == 0

            self._until("the command to read its input", empty)
        finally:
            os.close(slave)

    def exit_code(self, timeout: float = 30) -> int:
        def exited() -> bool:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
            return done != 0

        self._until("the command to exit", exited, timeout)
        while self._read(0.2):  # what it showed last
            pass
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def test_detach_keeps_running_and_attach_again(root: Path, engine: Engine) -> None:
    # Typed ahead, before the supervisor (let alone the container) is up: held here by
    # its start lock.  The keys keep their meaning because the terminal is raw already;
    # typed into a cooked terminal, its flow control would have eaten the ^Q.
    assert not engine.supervisor.running()
    engine.paths.ensure_run()
    lock = os.open(engine.paths.run / "start.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # `read` takes the typed-ahead line from the cooked pty; busybox's interactive line
        # editor would flush input that arrived before it set its own terminal mode.
        with Terminal(tuibox(root, "run", "-it", "--name", "det", "busybox", "sh", "-c",
                             'read line; echo "got:$line"; exec sh')) as term:
            term.type(b"echo before\r\x10\x11")
            assert os.waitpid(term.pid, os.WNOHANG)[0] == 0
            assert not any(engine.paths.containers.iterdir())  # nothing created yet
            os.close(lock)
            lock = -1
            assert term.exit_code() == 0
    finally:
        if lock >= 0:
            os.close(lock)
    cid = engine.resolve("det")
    assert engine.containers.state(cid).running  # detached, still running
    deadline = time.monotonic() + 30  # what was typed before the keys reached the shell
    while b"got:echo before\r\n" not in b"".join(e.data for e in engine.logs(cid)):
        assert time.monotonic() < deadline, "the line typed before detaching never ran"
        time.sleep(0.05)
    # The keys split across reads: ^P alone is held back (sent on, busybox's shell would
    # recall "echo again" and the "exit 3" below would not exit).
    with Terminal(tuibox(root, "attach", "det")) as term:
        term.type(b"echo again\r")
        term.expect(b"again\r\n")
        term.type(b"\x10")
        term.read_by_command()
        term.type(b"\x11")
        assert term.exit_code() == 0
    assert engine.containers.state(cid).running
    with Terminal(tuibox(root, "attach", "det")) as term:
        term.type(b"exit 3\r")
        assert term.exit_code() == 3
    assert not engine.containers.state(cid).running


def test_detach_keys_found_across_reads_and_only_whole() -> None:
    from tuibox.cli.attach import DetachKeys, parse_detach_keys

    keys = DetachKeys(parse_detach_keys("ctrl-p,ctrl-q"))
    assert keys.feed(b"ab\x10") == (b"ab", False)  # held: may begin the keys
    assert keys.feed(b"\x11xyz") == (b"", True)  # nothing of the keys or after them
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"\x10") == (b"", False)
    assert keys.feed(b"\x10x") == (b"\x10\x10x", False)  # broken: sent after all
    assert keys.feed(b"\x10\x10\x11") == (b"\x10", True)
    keys = DetachKeys(b"\x10")
    assert keys.feed(b"\x10") == (b"", True)
    keys = DetachKeys(b"")
    assert keys.feed(b"\x10\x11") == (b"\x10\x11", False)
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"x\x10") == (b"x", False) and keys.flush() == b"\x10"


def test_start_attach_streams_output(cli: Cli) -> None:
    cid = cli("create", "busybox", "sh", "-c", "echo started; exit 2").stdout.strip()
    proc = cli("start", "-a", cid, check=False)
    assert proc.returncode == 2 and proc.stdout == "started\n"


def test_signals_reach_a_foreground_container(root: Path, engine: Engine) -> None:
    proc = subprocess.Popen(tuibox(root, "run", "--rm", "--network", "none", "busybox", "sh",
                                   "-c", "trap 'echo got; exit 5' INT; echo ready; "
                                   "while true; do sleep 0.1; done"),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # "ready" is printed once the trap is set, and reaches us once our side forwards
        # signals (its handlers are in place before it streams any output).
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5 and "got" in out


def test_run_a_selects_streams(cli: Cli) -> None:
    proc = cli("run", "--rm", "-a", "stderr", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert proc.stdout == "" and proc.stderr == "err\n"
    proc = cli("run", "--rm", "-a", "stdin", "-a", "stdout", "busybox", "cat", input=b"in\n")
    assert proc.stdout == "in\n"
