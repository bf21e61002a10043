"""The log writer under SIGKILL: no byte lost, none repeated.

Two angles:

* random kills: a producer process writes numbered lines (and some 16 KiB+ lines) into two
  pipes while writer processes are SIGKILLed at random moments and replaced, as a restarted
  supervisor would be; the test holds the pipes' read ends meanwhile, as the keeper does.
* every crash point: a writer is killed just before its k-th state-changing system call (or
  in the middle of a log append), for every k, and its successor must leave files
  byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import mmap
import os
import random
import selectors
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.test_logs_helpers import all_entries, join_messages, log_files, make_pipe
from tuibox.engine.logs import LogWriter
from tuibox.engine.logs.cursor import Cursor

CID = "deadbeef"
T = 1714566896123456789


def _run_writer(cdir: Path, spool: Path, fds: dict[str, int], flag: mmap.mmap | None,
                **kw: Any) -> None:
    """The supervisor's loop for one container, until both pipes reach EOF."""
    w = LogWriter(cdir, CID, spool, **kw)
    w.recover()
    sel = selectors.DefaultSelector()
    for stream, fd in fds.items():
        sel.register(fd, selectors.EVENT_READ, stream)
    remaining = set(fds)
    while remaining:
        for key, _ in sel.select():
            if flag is not None:
                flag[0] = 1
            if not w.pump(key.data, key.fd):
                w.close_stream(key.data)
                sel.unregister(key.fd)
                remaining.discard(key.data)
            if flag is not None:
                flag[0] = 0
    w.close()


def _fork(body: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# -- random kills ---------------------------------------------------------------------------

N = 6000
LONG_EVERY = 97


def _stdout_line(i: int) -> bytes:
    if i % LONG_EVERY == 5:
        return b"%d:" % i + b"x" * (16000 + 37 * i % 20000) + b"\n"
    return b"%d\n" % i


def _produce(out: int, err: int) -> NoReturn:
    for i in range(N):
        os.write(out, _stdout_line(i))  # blocking pipe writes are written whole
        os.write(err, b"e%d\n" % i)
        time.sleep(0.0002)
    os.write(out, b"no newline at the end")
    os._exit(0)


def _random_kills(tmp_path: Path, **kw: Any) -> tuple[list[bytes], list[bytes], Path, int]:
    cdir, spool = tmp_path / "c", tmp_path / "spool"
    cdir.mkdir()
    (out_r, out_w), (err_r, err_w) = make_pipe(), make_pipe()
    producer = os.fork()
    if producer == 0:
        os.close(out_r)
        os.close(err_r)
        _produce(out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    fds = {"stdout": out_r, "stderr": err_r}
    flag = mmap.mmap(-1, 1)  # shared with the children: 1 while a pump is running
    rng = random.Random(int(os.environ.get("TUIBOX_CRASH_SEED", "1234")))
    mid_pump = 0
    try:
        for _ in range(20):
            pid = _fork(lambda: _run_writer(cdir, spool, fds, flag, **kw))
            mode = rng.choice(["start-up", "any time", "mid-pump", "mid-pump"])
            if mode == "start-up":  # likely inside recover(), converting what was spooled
                time.sleep(rng.uniform(0, 0.003))
            else:
                time.sleep(rng.uniform(0.005, 0.08))
            if mode == "mid-pump":  # wait for the child to be inside pump(), then strike
                deadline = time.monotonic() + 0.5
                while flag[0] == 0 and time.monotonic() < deadline:
                    pass
            os.kill(pid, signal.SIGKILL)
            assert _wait(pid) == -signal.SIGKILL
            mid_pump += flag[0]
            flag[0] = 0
        final = _fork(lambda: _run_writer(cdir, spool, fds, None, **kw))
        assert _wait(producer) == 0
        assert _wait(final) == 0
    finally:
        os.close(out_r)
        os.close(err_r)
    entries = all_entries(cdir, CID)
    assert all(os.path.getsize(spool / f"{CID}.{s}.spool") == 0 for s in fds)
    cursor = Cursor.unpack((spool / f"{CID}.cursor").read_bytes(), spool)
    assert cursor.log_size == (cdir / f"{CID}-json.log").stat().st_size
    times = [e.time_ns for e in entries]
    assert times == sorted(times)
    return join_messages(entries, "stdout"), join_messages(entries, "stderr"), cdir, mid_pump


EXPECTED_OUT = [_stdout_line(i) for i in range(N)] + [b"no newline at the end"]
EXPECTED_ERR = [b"e%d\n" % i for i in range(N)]


def test_sigkill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    out, err, _, mid_pump = _random_kills(tmp_path)
    assert out == EXPECTED_OUT
    assert err == EXPECTED_ERR
    print(f"kills that landed mid-pump: {mid_pump}/20")


def test_sigkill_with_rotation(tmp_path: Path) -> None:
    out, err, cdir, _ = _random_kills(tmp_path, max_size=64 * 1024, max_file=1000)
    assert len(log_files(cdir, CID)) > 10
    assert out == EXPECTED_OUT
    assert err == EXPECTED_ERR


def test_sigkill_with_rotation_dropping_old_files(tmp_path: Path) -> None:
    out, err, cdir, _ = _random_kills(tmp_path, max_size=64 * 1024, max_file=3)
    assert len(log_files(cdir, CID)) == 3
    # What is kept is an unbroken run up to the end; its first message may be the tail end of
    # a long line whose first chunks went with a dropped file.
    assert out[1:] == EXPECTED_OUT[-len(out) + 1 :]
    assert EXPECTED_OUT[-len(out)].endswith(out[0])
    assert err[1:] == EXPECTED_ERR[-len(err) + 1 :]
    assert EXPECTED_ERR[-len(err)].endswith(err[0])


# -- every crash point ----------------------------------------------------------------------

_MUTATING = (
    "splice", "pwrite", "pwritev", "write", "ftruncate", "rename", "replace", "link", "unlink",
)


def _kill_at(k: int, *, torn: bool) -> None:
    """In this (child) process: SIGKILL just before the k-th state-changing call.

    With ``torn``, a k-th call that appends to the log (``pwritev``) writes half its bytes
    first.
    """
    count = 0

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if count == k:
                if torn and name == "pwritev":  # log appends; the cursor's pwrite can't tear
                    data = b"".join(args[1])
                    real(args[0], [data[: len(data) // 2]], args[2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        return call

    for name in _MUTATING:
        setattr(os, name, wrap(name, getattr(os, name)))


def _scenario(tmp: Path, kill: tuple[int, bool] | None, **kw: Any) -> dict[str, bytes] | None:
    """Feed fixed output to a writer killed at ``kill``, then to a successor; the files."""
    cdir, spool = tmp / "c", tmp / "spool"
    cdir.mkdir(parents=True)
    pipes = {"stdout": make_pipe(), "stderr": make_pipe()}
    rng = random.Random(5)
    out = b"".join(
        b"%d:%s\n" % (i, b"y" * (rng.choice([0, 1, 50, 20000]) if i % 17 == 3 else 0))
        for i in range(120)
    )
    os.write(pipes["stdout"][1], out + b"unterminated")
    os.write(pipes["stderr"][1], b"".join(b"e%d\n" % i for i in range(40)))
    for _, w in pipes.values():
        os.close(w)
    fds = {s: r for s, (r, _) in pipes.items()}
    kw.update(clock=lambda: T)  # fixed times: a crashed run must match byte for byte
    try:
        if kill is not None:

            def doomed() -> None:
                _kill_at(kill[0], torn=kill[1])
                _run_writer(cdir, spool, fds, None, **kw)

            code = _wait(_fork(doomed))
            if code == 0:
                return None  # k is past the last call: the run was never interrupted
            assert code == -signal.SIGKILL
        assert _wait(_fork(lambda: _run_writer(cdir, spool, fds, None, **kw))) == 0
    finally:
        for fd in fds.values():
            os.close(fd)
    assert not any(p.name.startswith(".") for p in cdir.iterdir())
    return {p.name: p.read_bytes() for p in log_files(cdir, CID)}


@pytest.mark.parametrize("max_file", [3, 100])
def test_every_crash_point(tmp_path: Path, max_file: int) -> None:
    kw = {"max_size": 1500, "max_file": max_file}
    reference = _scenario(tmp_path / "ref", None, **kw)
    assert reference is not None and len(reference) == min(max_file, len(reference)) > 2
    points = 0
    for torn in (False, True):
        for k in range(1, 10_000):
            got = _scenario(tmp_path / f"{torn}-{k}", (k, torn), **kw)
            if got is None:
                break
            assert got == reference, f"killed before state change #{k} (torn={torn})"
            points += 1
    assert points > 50
