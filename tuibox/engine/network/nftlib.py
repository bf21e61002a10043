"""libnftables in a helper process of its own.

The library calls ``exit()`` when it cannot open its netlink socket (nf_tables cannot be
loaded: module autoloading switched off, as on hardened hosts), and a crash inside it
takes its caller along.  Neither may happen to the supervisor, so the library only ever
runs in a child forked the first time nftables is needed.  The child keeps one library
context, as ``nft -i`` does (a context per batch would cost a fresh netlink socket
each time, whose close waits ~15 ms in the kernel), and answers batches over a pipe.
When it dies, the batch in flight gets the reason it printed, and the next batch a new
child.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import re
import select
import signal
import time
from typing import NoReturn

from ..errors import SetupError
from ..runtime import _libc

BATCH_TIMEOUT = 30.0  # a batch takes milliseconds; a stuck kernel must not stick us
_ANSWER = b"\0tuibox-nft-answer\0"  # starts each answer: what comes before is noise
_LEN = 10  # digits of a frame's length


class NftUnavailable(SetupError):
    """This host cannot do bridge networking: nf_tables is missing or unreachable."""

    def __init__(self, reason: str) -> None:
        super().__init__("network", f"bridge networking is unavailable on this host: {reason}")


class Nft:
    """A libnftables context in a helper process; ``run`` a batch, ``close`` at the end."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)  # loading runs none of its code
        except OSError as exc:
            raise NftUnavailable(f"libnftables is not installed ({exc}); install the "
                                 f"nftables package") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.pid = 0  # the helper's, while one runs
        self._pidfd = self._to = self._from = -1
        self._buf = b""

    def probe(self) -> None:
        """``NftUnavailable`` unless nf_tables answers a read-only request."""
        rc, _, err = self._call("list tables ip\n")
        if rc != 0:
            raise NftUnavailable(f"nf_tables refused a read-only request ({err}); is the "
                                 f"nf_tables kernel module loadable?")

    def run(self, commands: str) -> str:
        """Run ``commands`` as one transaction; its output, or ``SetupError``."""
        rc, out, err = self._call(commands)
        if rc != 0:
            raise SetupError("network rules", f"nftables refused the rules: {err}")
        return out

    def close(self) -> None:
        """Let the helper go (it exits when its request pipe closes) and reap it."""
        if not self.pid:
            return
        os.close(self._to)
        self._to = -1
        if not select.select([self._pidfd], [], [], 5.0)[0]:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        self._reap()

    # ------------------------------------------------------------------ parent side

    def _call(self, commands: str) -> tuple[int, str, str]:
        request = commands.encode()
        request = b"%0*d" % (_LEN, len(request)) + request
        if self.pid:
            try:
                _write_all(self._to, request)
                return self._answer()
            except BrokenPipeError:  # it died while idle (killed?): a new one
                self._reap()
        self._start()
        try:
            _write_all(self._to, request)
        except BrokenPipeError:
            raise NftUnavailable(self._reap()) from None
        return self._answer()

    def _start(self) -> None:
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        ans_r, ans_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (req_r, req_w, ans_r, ans_w):
                os.close(fd)
            raise SetupError("network rules", f"cannot fork the nftables helper: "
                             f"{exc.strerror}") from None
        if pid == 0:
            _serve(self.lib, parent, req_r, ans_w)
        os.close(req_r)
        os.close(ans_w)
        self.pid, self._pidfd, self._to, self._from = pid, os.pidfd_open(pid), req_w, ans_r
        self._buf = b""

    def _answer(self) -> tuple[int, str, str]:
        deadline = time.monotonic() + BATCH_TIMEOUT
        while True:
            _, found, rest = self._buf.partition(_ANSWER)
            if found and len(rest) >= _LEN and len(rest) >= _LEN + int(rest[:_LEN]):
                end = _LEN + int(rest[:_LEN])
                self._buf = rest[end:]
                rc, out, err = json.loads(rest[_LEN:end])
                return int(rc), str(out), str(err).strip()
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                self._reap()
                raise SetupError("network rules", f"nftables did not answer within "
                                 f"{BATCH_TIMEOUT:.0f} s")
            chunk = os.read(self._from, 65536)
            if not chunk:  # it died mid-batch: exit() in the library, or a crash
                raise NftUnavailable(self._reap())
            self._buf += chunk

    def _reap(self) -> str:
        """Forget the (dead or dying) helper; why it died, from what it printed."""
        said = self._buf.partition(_ANSWER)[0].decode(errors="replace")
        status = -1
        # Through the pidfd: the supervisor's own reaper may have taken it already, and
        # its pid may belong to a container by now.
        with contextlib.suppress(ChildProcessError):
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
            if info is not None:
                status = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        for fd in (self._pidfd, self._to, self._from):
            if fd >= 0:
                os.close(fd)
        self.pid, self._pidfd, self._to, self._from, self._buf = 0, -1, -1, -1, b""
        return _death(said, status)


def _death(said: str, status: int) -> str:
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    # libnftables says "mnl.c:NN: Unable to initialize Netlink socket: <strerror>"
    reason = re.sub(r"^[\w./-]+:\d+: ", "", lines[-1]) if lines else ""
    if status == -1:
        how = "died"
    elif status < 0:
        how = f"was killed by signal {-status}"
    else:  # the library's own exit(): it found no way to the kernel's nf_tables
        how = f"exited with status {status}; is the nf_tables kernel module loadable?"
    return f"{reason} (libnftables {how})" if reason else f"libnftables {how}"


# ---------------------------------------------------------------------- the helper


def _serve(lib: ctypes.CDLL, parent: int, req: int, ans: int) -> NoReturn:
    """In the forked helper: answer batches until the request pipe closes."""
    code = 0
    try:
        gc.disable()  # no finaliser may close an fd the library has taken meanwhile
        _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(0)
        signal.set_wakeup_fd(-1)  # the supervisor's signals are not ours to relay
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.dup2(req, 0)
        os.dup2(ans, 1)
        os.dup2(ans, 2)  # what the library prints before an exit() is the reason
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # host ports, container pipes
        comm = ctypes.create_string_buffer(b"tuibox-nft")
        _libc.prctl(_libc.PR_SET_NAME, ctypes.addressof(comm))
        ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        while True:
            header = _read_exact(0, _LEN)
            if len(header) < _LEN:  # the supervisor closed the pipe: done
                break
            commands = _read_exact(0, int(header))
            rc = lib.nft_run_cmd_from_buffer(ctx, commands)
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            answer = json.dumps([rc, out, err]).encode()
            _write_all(1, _ANSWER + b"%0*d" % (_LEN, len(answer)) + answer)
    except BaseException as exc:  # told to the parent as the reason it died
        code = 1
        with contextlib.suppress(OSError):
            os.write(2, f"{exc!r}\n".encode())
    finally:
        os._exit(code)


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
