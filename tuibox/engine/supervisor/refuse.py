"""A supervisor that could not start says why, to every client, instead of vanishing.

Clients queue on the keeper's listening socket.  A supervisor that died during start-up
left them waiting forever while the keeper started the next one, which died the same way.
Now it answers every queued and new request with the reason, then exits with
``STARTUP_FAILED`` once nobody has asked for a while; the keeper then stops (if it holds
no container) or retries later, so a broken root costs no loop and no hang.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

from . import protocol
from .keeper import STARTUP_FAILED

__all__ = ["STARTUP_FAILED", "refuse"]
IDLE_EXIT = 2.0  # seconds without a new client before giving up the socket
MAX_REFUSING = 60.0


def refuse(listen: socket.socket, reason: str) -> None:
    """Answer ``{"error": reason}`` to each client until none has come for ``IDLE_EXIT``."""
    frame = protocol.encode_json({"error": reason, "exit_code": 125})
    listen.setblocking(False)
    started = last = time.monotonic()
    while time.monotonic() - last < IDLE_EXIT and time.monotonic() - started < MAX_REFUSING:
        ready, _, _ = select.select([listen], [], [], IDLE_EXIT / 4)
        if not ready:
            continue
        try:
            sock, _ = listen.accept()
        except (BlockingIOError, InterruptedError):
            continue
        last = time.monotonic()
        with contextlib.suppress(OSError), sock:
            sock.settimeout(1.0)
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
