"""The engine's side of the supervisor socket: start it on demand, send requests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..errors import (
    Conflict,
    ContainerNotFound,
    InvalidArgument,
    SetupError,
    SupervisorError,
    TuiboxError,
)
from ..paths import StatePaths
from . import protocol

START_TIMEOUT = 10.0


class Connection:
    """One request/response exchange (or an attached stream) with the supervisor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = protocol.FrameReader()
        self.pending: list[tuple[int, bytes]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(protocol.encode_json(message))

    def frames(self) -> Iterator[tuple[int, bytes]]:
        while True:
            frame = protocol.recv_frame(self.sock, self.reader, self.pending)
            if frame is None:
                return
            yield frame

    def reply(self, *, raise_errors: bool = True) -> dict[str, Any]:
        """The next JSON frame; an error reply raises unless ``raise_errors`` is False."""
        import json

        for kind, payload in self.frames():
            if kind == protocol.KIND_JSON:
                message: dict[str, Any] = json.loads(payload)
                if raise_errors:
                    check(message)
                return message
        raise SupervisorError("the supervisor closed the connection without replying")

    def close(self) -> None:
        self.sock.close()


def check(message: dict[str, Any]) -> None:
    """Turn an error reply into the engine's exception."""
    if "error" not in message:
        return
    if "stage" in message:
        detail = message["error"]
        prefix = f"container setup failed at {message['stage']}: "
        raise SetupError(message["stage"], detail.removeprefix(prefix),
                         exit_code=message.get("exit_code", 125))
    kind = _KINDS.get(str(message.get("kind", "")), TuiboxError)  # e.g. Conflict
    err = kind(message["error"])
    err.exit_code = message.get("exit_code", 125)
    raise err


_KINDS: dict[str, type[TuiboxError]] = {
    cls.__name__: cls for cls in (Conflict, ContainerNotFound, InvalidArgument)}


class SupervisorClient:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    def connect(self) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(str(self.paths.supervisor_socket))
            return Connection(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        self._start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(str(self.paths.supervisor_socket))
        except OSError as exc:
            sock.close()
            raise SupervisorError(f"cannot reach the supervisor at "
                                  f"{self.paths.supervisor_socket}: {exc.strerror}; see "
                                  f"{self.paths.supervisor_log}") from exc
        return Connection(sock)

    def _start(self) -> None:
        """Start keeper + supervisor unless another process just did (under a lock)."""
        self.paths.ensure()
        lock_fd = self._start_lock()
        try:
            if self._alive():
                return
            proc = subprocess.run(
                [sys.executable, "-m", "tuibox.engine.supervisor", "--root",
                 str(self.paths.root)],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT,
                close_fds=True, check=False)
            if proc.returncode != 0:
                raise SupervisorError("cannot start the supervisor: "
                                      + proc.stderr.decode(errors="replace").strip())
        finally:
            os.close(lock_fd)

    def _start_lock(self) -> int:
        """The root's start lock, held.  A supervisor that leaves (idle, or its root gone)
        removes the runtime dir, lock file included: a lock won on a file no longer at its
        path guards nothing, so it is taken again on the one there now."""
        path = self.paths.run / "start.lock"
        for _ in range(100):
            self.paths.ensure_run()
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the runtime dir went between the two calls
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                now, held = os.stat(path), os.fstat(fd)
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    return fd
            os.close(fd)
        raise SupervisorError(f"cannot take the start lock {path}: it keeps being removed")

    def _alive(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(str(self.paths.supervisor_socket))
            return True
        except OSError:
            return False
        finally:
            sock.close()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        conn = self.connect()
        try:
            conn.send(message)
            return conn.reply()
        finally:
            conn.close()

    def running(self) -> bool:
        """Whether a supervisor answers, without starting one."""
        return self._alive()

    def status(self, *, timeout: float = 2.0) -> tuple[str, int]:
        """("running", its pid), ("not running", 0) or ("not answering: why", 0), asked
        with a ping and without starting one.  A socket that accepts is not enough: the
        keeper holds it even while no supervisor serves (``info`` used to say running)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(str(self.paths.supervisor_socket))
        except OSError:
            sock.close()
            return "not running", 0
        sock.settimeout(timeout)
        conn = Connection(sock)
        try:
            conn.send({"op": "ping"})
            reply = conn.reply(raise_errors=False)
        except (OSError, TuiboxError) as exc:
            why = f"no reply within {timeout:g}s" if isinstance(exc, TimeoutError) else str(exc)
            return f"not answering: {why}", 0
        finally:
            conn.close()
        if "error" in reply:
            return f"not answering: {reply['error']}", 0
        return "running", int(reply.get("pid", 0))

    def keeper_pid(self) -> int:
        """The keeper's pid while it lives, else 0 (a supervisor whose keeper was killed
        becomes the keeper as soon as no request is in flight: rekeep.py)."""
        try:
            pid = int(self.paths.keeper_pidfile.read_text())
        except (OSError, ValueError):
            return 0
        return pid if _alive_pid(pid) else 0

    def shutdown(self, *, force: bool = False, timeout: float = 10.0) -> None:
        """Stop the supervisor and keeper of this root (tests, uninstall)."""
        if not self._alive():
            return
        keeper_pid = 0
        with contextlib.suppress(OSError, ValueError):
            keeper_pid = int(self.paths.keeper_pidfile.read_text())
        self.request({"op": "shutdown", "force": force})
        deadline = time.monotonic() + timeout
        while keeper_pid and time.monotonic() < deadline and _alive_pid(keeper_pid):
            time.sleep(0.01)
        # The runtime dir (socket, pid file, spools) belongs to the stopped instance.
        shutil.rmtree(self.paths.run, ignore_errors=True)


def _alive_pid(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
