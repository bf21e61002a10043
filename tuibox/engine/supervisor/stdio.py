"""The stdio side of running containers: pipes, the TTY relay, stdin with back-pressure,
attaching and resizing.  A mixin of ``Supervisor``, which provides the loop's state."""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import struct
import termios
from typing import TYPE_CHECKING, Any

from ..errors import TuiboxError
from ..runtime.spawn import F_SETPIPE_SZ, PIPE_SIZE
from .running import Client, Running


class StdioMixin:
    if TYPE_CHECKING:
        sel: selectors.BaseSelector
        running: dict[str, Running]

        def pump(self, cid: str, stream: str | None = None) -> None: ...

        def _keeper(self, message: dict[str, Any], fds: list[int] | None = None) -> None: ...

    def _attach_streams(self, run: Running, fds: dict[str, int]) -> None:
        """Wire a container's stdio into the loop (at start, and again on adoption)."""
        run.external = dict(fds)
        for stream, fd in fds.items():
            os.set_blocking(fd, False)
            if stream == "pty":
                run.pty = run.stdin = fd
                relay_r, run.relay_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(relay_r, F_SETPIPE_SZ, PIPE_SIZE)
                run.fds["stdout"] = relay_r
                self.sel.register(relay_r, selectors.EVENT_READ, (run.cid, "stdout"))
                self.sel.register(fd, selectors.EVENT_READ, (run.cid, "pty"))
            elif stream == "stdin":
                run.stdin = fd
            else:
                run.fds[stream] = fd
                self.sel.register(fd, selectors.EVENT_READ, (run.cid, stream))

    def _relay_pty(self, cid: str) -> None:
        """TTY output → the relay pipe → the log writer (which only splices from pipes)."""
        run = self.running[cid]
        try:
            data = os.read(run.pty, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave end closed, the container is gone
            data = b""
        if data:
            os.write(run.relay_w, data)  # the pump below drains it before it can fill
        else:
            self.sel.unregister(run.pty)
            os.close(run.relay_w)
            run.relay_w = -1
        self.pump(cid, "stdout")

    def _write_stdin(self, run: Running, data: bytes) -> None:
        if run.stdin < 0:
            return
        run.stdin_buf += data
        self._flush_stdin(run)

    def _flush_stdin(self, run: Running) -> None:
        while run.stdin_buf:
            try:
                n = os.write(run.stdin, run.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # the container closed its stdin: drop what is left
                run.stdin_buf.clear()
                break
            del run.stdin_buf[:n]
        if run.stdin_eof and not run.stdin_buf and run.stdin != run.pty:
            self._close_stdin(run)
            return
        # Wait for room only while something is queued (a full pipe is back-pressure).
        if run.stdin == run.pty:
            if run.pty in self.sel.get_map():
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if run.stdin_buf else 0)
                self.sel.modify(run.pty, events, (run.cid, "pty"))
            return
        registered = run.stdin in self.sel.get_map()
        if run.stdin_buf and not registered:
            self.sel.register(run.stdin, selectors.EVENT_WRITE, (run.cid, "stdin"))
        elif not run.stdin_buf and registered:
            self.sel.unregister(run.stdin)

    def op_attach(self, client: Client, msg: dict[str, Any]) -> None:
        cid = msg["id"]
        run = self.running.get(cid)
        if run is None or run.status is not None:
            raise TuiboxError(f"You cannot attach to a stopped container {cid[:12]}, start it "
                              f"first")
        run.attached.append(client)
        if msg.get("stdin"):
            client.attached_to = cid
        self._resize(run, msg)
        client.reply({"ok": True, "tty": run.pty >= 0})

    def op_resize(self, client: Client, msg: dict[str, Any]) -> None:
        run = self.running.get(client.attached_to or msg.get("id", ""))
        if run is not None:
            self._resize(run, msg)

    def _resize(self, run: Running, msg: dict[str, Any]) -> None:
        size = winsize_of(msg)
        if run.pty >= 0 and size:
            with contextlib.suppress(OSError):
                fcntl.ioctl(run.pty, termios.TIOCSWINSZ, size)

    def op_stdin_eof(self, client: Client, msg: dict[str, Any]) -> None:
        run = self.running.get(client.attached_to)
        if run is None or run.pty >= 0 or run.stdin < 0:
            return
        run.stdin_eof = True
        self._flush_stdin(run)  # closes it once everything queued has been written

    def _close_stdin(self, run: Running) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(run.stdin)
        os.close(run.stdin)
        run.stdin = -1
        run.external.pop("stdin", None)
        self._keeper({"op": "drop_stream", "cid": run.cid, "stream": "stdin"})


def winsize_of(msg: dict[str, Any]) -> bytes:
    rows, cols = msg.get("rows"), msg.get("cols")
    if not rows or not cols:
        return b""
    return struct.pack("HHHH", int(rows), int(cols), 0, 0)
