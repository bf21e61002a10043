"""An attached session: container output to our stdout/stderr, our stdin to the
container, window-size changes forwarded, and the detach keys (ctrl-p ctrl-q)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..engine.errors import InvalidArgument, TuiboxError
from ..engine.supervisor import protocol
from .tty import raw_terminal, winsize

if TYPE_CHECKING:
    from ..engine.supervisor.client import Connection

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
DETACHED = -1


def parse_detach_keys(spec: str) -> bytes:
    """docker's ``--detach-keys``: ``ctrl-<c>`` or a single character, comma separated."""
    keys = bytearray()
    for part in filter(None, spec.split(",")):
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5]
            if c == "@":
                keys.append(0)
            elif c.isalpha():
                keys.append(ord(c.lower()) - ord("a") + 1)
            elif c in "[\\]^_":
                keys.append(ord(c) - ord("@"))
            else:
                raise InvalidArgument(f"invalid detach key: {part}")
        elif len(part) == 1:
            keys.append(ord(part))
        else:
            raise InvalidArgument(f"invalid detach key: {part}")
    return bytes(keys)


class DetachKeys:
    """Finds the detach keys in the typed stream, across reads, as docker's escape proxy
    does: bytes that may begin the keys are held back until the keys are complete (then
    they never reach the container) or broken (then they are sent after all)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what to send the container now, whether the keys were completed)."""
        pending, self.held = self.held + data, b""
        if not self.keys:
            return pending, False
        out = bytearray()
        for i in range(len(pending)):
            ahead = pending[i:i + len(self.keys)]
            if self.keys.startswith(ahead):
                if ahead == self.keys:
                    return bytes(out), True  # what follows the keys is dropped, as docker
                self.held = ahead  # the read ended inside what may be the keys
                break
            out.append(pending[i])
        return bytes(out), False

    def flush(self) -> bytes:
        held, self.held = self.held, b""
        return held


@contextlib.contextmanager
def early_raw(on: bool) -> Iterator[None]:
    """Raw mode from before the slow part (connecting, starting a supervisor, creating,
    starting) of an interactive TTY session.  Input typed meanwhile stays queued, but
    only bytes that arrive in raw mode keep their meaning: the terminal itself eats ^Q
    and ^S (flow control) and turns ^C into a signal while it is cooked, so detach keys
    typed ahead would be lost.  Restored before any error is printed."""
    if not on:
        yield
        return
    with raw_terminal(sys.stdin.fileno()):
        yield


SHOWN = {protocol.KIND_STDOUT, protocol.KIND_STDERR}  # `run -a` narrows it


def show_frame(kind: int, payload: bytes) -> int | None:
    """Write an output frame where it belongs; the exit code when the frame says exit."""
    if kind in SHOWN:
        stream = sys.stdout.buffer if kind == protocol.KIND_STDOUT else sys.stderr.buffer
        stream.write(payload)
        stream.flush()
    elif kind == protocol.KIND_JSON:
        message = json.loads(payload)
        if "exit" in message:
            return int(message["exit"])
    return None


def terminal_size() -> tuple[int, int] | None:
    raw = winsize(sys.stdin.fileno()) or winsize(sys.stdout.fileno())
    if not raw:
        return None
    rows, cols, _, _ = struct.unpack("HHHH", raw)
    return (rows, cols) if rows and cols else None


def session(conn: Connection, *, stdin: bool, tty: bool, detach_keys: bytes) -> int:
    """Relay until the container exits (its exit code) or the user detaches (DETACHED)."""
    sock = conn.sock
    in_fd = sys.stdin.fileno()
    reading_stdin = stdin
    detach = DetachKeys(detach_keys if tty else b"")

    def resize(*_: object) -> None:
        size = terminal_size()
        if size:
            with contextlib.suppress(OSError):
                conn.send({"op": "resize", "rows": size[0], "cols": size[1]})

    if tty and os.isatty(in_fd):
        signal.signal(signal.SIGWINCH, resize)
    with raw_terminal(in_fd) if (tty and stdin) else contextlib.nullcontext():
        while True:
            watch = [sock] + ([in_fd] if reading_stdin else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:
                    reading_stdin = False
                    held = detach.flush()  # a lone ^P at the end is the user's
                    if held:
                        sock.sendall(protocol.encode(protocol.KIND_STDIN, held))
                    conn.send({"op": "stdin_eof"})
                else:
                    data, detached = detach.feed(data)
                    if data:  # what came before the keys; the keys themselves stay
                        sock.sendall(protocol.encode(protocol.KIND_STDIN, data))
                    if detached:
                        return DETACHED
            if sock in ready:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return 0
                for kind, payload in conn.reader.feed(chunk):
                    code = show_frame(kind, payload)
                    if code is not None:
                        return code


def follow(conn: Connection, *, stdin: bool, tty: bool, detach_keys: bytes,
           kill: Callable[[str], None], wait: Callable[[], int]) -> int:
    """Stream an attached container to the end: its exit code (0 when the user detached)."""
    if stdin or tty:
        try:
            code = session(conn, stdin=stdin, tty=tty, detach_keys=detach_keys)
        finally:
            conn.close()
        return 0 if code == DETACHED else code

    def forward(signum: int, _frame: object) -> None:
        # Like docker's --sig-proxy: the container gets the signal, we keep streaming.
        with contextlib.suppress(TuiboxError):
            kill(str(signum))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    try:
        for kind, payload in conn.frames():
            exit_code = show_frame(kind, payload)
            if exit_code is not None:
                return exit_code
    finally:
        conn.close()
    return wait()
