"""The user's terminal side of a TTY session: raw mode, relay, window size."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator

TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def winsize(fd: int) -> bytes:
    """The terminal's struct winsize, or nothing if ``fd`` is not a terminal."""
    try:
        return fcntl.ioctl(fd, TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return b""


def copy_winsize(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst, TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode while inside, restored on any exit (the user's shell must come back sane)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH (the default) drops typed-ahead input
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay_pty(master: int, *, done: Callable[[], bool]) -> None:
    """Copy stdin → master and master → stdout until the session ends."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if os.isatty(stdin):
        copy_winsize(stdin, master)
        signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    watch = [master, stdin]
    with raw_terminal(stdin):
        while True:
            try:
                ready, _, _ = select.select(watch, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed
                    data = b""
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    watch = [master]  # our stdin ended; keep showing output
            if not ready and done():
                return
