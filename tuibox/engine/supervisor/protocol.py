"""The supervisor's wire format: framed messages on a unix stream socket.

A frame is ``kind (1 byte) | length (4 bytes, big endian) | payload``.  Kind 0 is a JSON
object (requests, replies, events); kinds 1 and 2 carry a container's stdout and stderr
bytes to an attached client, like Docker's multiplexed stream.  Stdlib only: the keeper
and the supervisor import this before anything heavy.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

KIND_JSON = 0
KIND_STDOUT = 1
KIND_STDERR = 2
KIND_STDIN = 3  # client → supervisor: bytes for an attached container's stdin
STREAM_KINDS = {"stdout": KIND_STDOUT, "stderr": KIND_STDERR}

_HEADER = struct.Struct(">BI")
MAX_FRAME = 64 << 20


def encode(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def encode_json(message: dict[str, Any]) -> bytes:
    return encode(KIND_JSON, json.dumps(message, separators=(",", ":")).encode())


class FrameReader:
    """Incremental decoder: feed bytes, take whole frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes is too large")
            end = _HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append((kind, bytes(self._buf[_HEADER.size:end])))
            del self._buf[:end]
        return frames


def recv_frame(sock: socket.socket, reader: FrameReader,
               pending: list[tuple[int, bytes]]) -> tuple[int, bytes] | None:
    """Blocking read of the next frame; None at end of stream."""
    while not pending:
        data = sock.recv(1 << 16)
        if not data:
            return None
        pending.extend(reader.feed(data))
    return pending.pop(0)
