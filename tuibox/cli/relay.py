"""``exec`` without a TTY: our stdin to the command's pipe, its pipes to our stdout/stderr.

The command never holds our own descriptors (they may be the operator's terminal or a
file it could read back); it gets pipes and we copy.  When the command's process ends we
take what is already in the pipes and stop, even if something it started in the
background keeps them open; closing our ends then cuts it off from our stdin for good.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys

from ..engine.runtime.exec import ExecProcess

CHUNK = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _drain(fd: int, dest: int) -> None:
    """Copy what the pipe holds now, without waiting for more."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while data := os.read(fd, CHUNK):
            _write_all(dest, data)


def relay_pipes(proc: ExecProcess) -> int:
    """Relay until the helper exits; its wait status."""
    outputs = {proc.stdout: sys.stdout.fileno(), proc.stderr: sys.stderr.fileno()}
    in_fd = sys.stdin.fileno() if proc.stdin >= 0 else -1
    pending = b""
    exited = os.pidfd_open(proc.helper)
    if proc.stdin >= 0:
        os.set_blocking(proc.stdin, False)
    try:
        while True:
            reading = [*outputs, exited] + ([in_fd] if in_fd >= 0 and not pending else [])
            writing = [proc.stdin] if pending else []
            ready, can_write, _ = select.select(reading, writing, [])
            for fd in ready:
                if fd in outputs:
                    data = os.read(fd, CHUNK)
                    if data:
                        _write_all(outputs[fd], data)
                    else:
                        del outputs[fd]
                elif fd == in_fd:
                    pending = os.read(in_fd, CHUNK)
                    if not pending:  # our stdin ended: so does the command's
                        in_fd = -1
                        os.close(proc.stdin)
                        proc.stdin = -1
            if can_write:
                try:
                    pending = pending[os.write(proc.stdin, pending):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:  # it stopped reading: drop what it will never get
                    pending, in_fd = b"", -1
            if exited in ready:
                for fd, dest in outputs.items():
                    _drain(fd, dest)
                return os.waitpid(proc.helper, 0)[1]
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        proc.close()  # our reader left: the command's next write gets EPIPE too
        return os.waitpid(proc.helper, 0)[1]
    finally:
        os.close(exited)
        proc.close()
