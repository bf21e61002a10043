"""Requests whose client has gone are not carried out.

Connections queue on the keeper's listening socket while the supervisor is busy, stopped or
being restarted; a client that gave up meanwhile (Ctrl-C, a killed script, a timeout) left
its request behind, and a ``run --rm`` abandoned minutes earlier would still start a
container nobody watches.  So the supervisor checks, when it takes a request and again just
before starting a container, that the client is still connected.

A closed peer shows as ``POLLHUP`` on a unix stream socket even while its request is still
unread.  ``POLLRDHUP`` alone is not "gone": a client may shut down its sending side and
still wait for the answer.
"""

from __future__ import annotations

import select
import socket
from typing import Final

from ..errors import TuiboxError

# Frames that steer a stream already running, not requests of their own.
STREAM_CONTROLS: Final = frozenset({"resize", "stdin_eof"})


class ClientGone(TuiboxError):
    """The client closed its connection before its request was carried out."""


def client_gone(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` has closed its end (or the connection broke)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)  # POLLHUP and POLLERR come regardless
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def ensure_client(sock: socket.socket, what: str) -> None:
    """Raise ``ClientGone`` before ``what`` is done for a client that is no longer there."""
    if client_gone(sock):
        raise ClientGone(f"not {what}: its client has disconnected")
