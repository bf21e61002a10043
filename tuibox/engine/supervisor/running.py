"""What the supervisor keeps per connection and per running container."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..logs import LogWriter
from . import protocol

CLIENT_BUFFER_LIMIT = 64 << 20


def cgroup_rel(cid: str) -> str:
    return f"tuibox/{cid}"


def exit_code_of(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Client:
    """One connection: buffered, non-blocking writes so a slow reader never stalls us."""

    def __init__(self, sock: socket.socket, sel: selectors.BaseSelector) -> None:
        self.sock = sock
        self.sel = sel
        self.reader = protocol.FrameReader()
        self.out = bytearray()
        self.closed = False
        self.close_when_flushed = False
        self.attached_to = ""  # the container whose stdin this client feeds

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if len(self.out) > CLIENT_BUFFER_LIMIT:
            self.close()  # a reader that stopped reading loses its attach, not our memory
            return
        self.out += data
        self.flush()

    def reply(self, message: dict[str, Any], *, last: bool = False) -> None:
        self.send(protocol.encode_json(message))
        if last:
            self.close_when_flushed = True
            if not self.out:
                self.close()

    def flush(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            del self.out[:sent]
        if not self.closed:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
            self.sel.modify(self.sock, events, self)
            if not self.out and self.close_when_flushed:
                self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.sock)
        self.sock.close()


@dataclass
class Running:
    """What the supervisor holds for a container that has (or had) a live PID 1."""

    cid: str
    pid: int
    writer: LogWriter | None
    fds: dict[str, int] = field(default_factory=dict)
    status: int | None = None  # waitpid status once reaped
    attached: list[Client] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stop_timer: int = 0
    finish_timer: int = 0
    pidfd: int = -1  # signals go through it; adopted without pipes, it also tells the exit
    pty: int = -1  # TTY master; its output is relayed into a pipe the log writer reads
    relay_w: int = -1
    stdin: int = -1  # write end of the container's stdin (-i), or the pty master
    stdin_buf: bytearray = field(default_factory=bytearray)
    stdin_eof: bool = False  # the client's stdin ended: close ours once the queue drains
    external: dict[str, int] = field(default_factory=dict)  # what the keeper also holds
    spawned: bool = False  # our own child (started by this supervisor)
    # Nobody of tuibox is its parent (keeper and supervisor were killed while it ran): its
    # exit comes through the pidfd, its status from ``procfd`` or the signal we sent.
    orphan: bool = False
    procfd: int = -1  # its /proc/<pid> directory (orphans only)
    last_signal: int = 0  # the last terminating signal we sent it
    exit_error: str = ""  # what to record as its error when it has exited
