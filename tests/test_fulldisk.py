"""A full disk (issue 13 item 2), on a real small filesystem: a 64 MB tmpfs that each test
mounts as its state root.

A container that logs as fast as it can fills it; the supervisor keeps serving (same pid),
counts and reports what its logs lost, and writes again once ``rm -f`` freed space.  ``load``
onto a full disk is one line and leaves nothing behind, and a request whose client gave up
while the supervisor was stopped is never carried out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imagefixtures import TarEntry, layer_tar, write_docker_archive
from tuibox.engine import Engine
from tuibox.engine.logs.dropped import LOG_RESERVE

CLI = Callable[..., subprocess.CompletedProcess[str]]
FILLER = "while :; do echo 'filling the disk with lines of some eighty characters, again'; done"
TICKER = "i=0; while :; do i=$((i+1)); echo tick $i; usleep 20000; done"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The state root on its own 64 MB tmpfs (mounted here, unmounted at teardown)."""
    mnt = tmp_path / "root"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    yield mnt
    deadline = time.monotonic() + 30  # the engine fixture's clean-up ran: nothing holds it
    while subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, f"cannot unmount {mnt}"
        time.sleep(0.1)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def free(root: Path) -> int:
    st = os.statvfs(root)
    return st.f_bfree * st.f_frsize


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has not one byte left."""
    chunk = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while f.write(chunk[:size]):
                    pass
    assert free(path.parent) == 0


def supervisor_pid(engine: Engine) -> int:
    return int(engine.supervisor.request({"op": "ping"})["pid"])


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuibox: "), proc.stderr
    return lines[0]


def ticks(engine: Engine, cid: str) -> list[int]:
    return [int(m.group(1)) for e in engine.logs(cid)
            if (m := re.fullmatch(rb"tick (\d+)\n", e.data))]


def test_full_disk_keeps_the_supervisor_serving(engine: Engine, cli: CLI, root: Path) -> None:
    try:
        _full_disk_keeps_the_supervisor_serving(engine, cli, root)
    finally:
        (root / "ballast").unlink(missing_ok=True)  # room for the clean-up, even on failure


def _full_disk_keeps_the_supervisor_serving(engine: Engine, cli: CLI, root: Path) -> None:
    run = ("run", "-d", "--network", "none")
    cli(*run, "--name", "sleeper", "busybox", "sleep", "1000")
    cli(*run, "--name", "ticker", "busybox", "sh", "-c", TICKER)
    pid = supervisor_pid(engine)
    cli(*run, "--name", "filler", "--log-opt", "max-size=1g", "busybox", "sh", "-c", FILLER)

    # The logs stop LOG_RESERVE short of full: from then on both lose lines, counted.
    wait_for(lambda: engine.get("ticker").state.log_loss.lines > 0, "the ticker to lose lines")
    assert 0 < free(root) < 2 * LOG_RESERVE
    fill(root / "ballast")  # the rest, as anything else on the disk could: now nothing is left
    last_kept = ticks(engine, "ticker")[-1]

    # Everything still answers, at once, from the same supervisor.
    started = time.monotonic()
    ps = cli("ps", timeout=30).stdout
    assert "filler" in ps and "ticker" in ps and "sleeper" in ps
    cli("stop", "-t", "1", "sleeper", timeout=30)
    # Its exit cannot reach state.json yet; ps shows it all the same, with its real code.
    assert re.search(r"Exited \(137\).*sleeper", cli("ps", "-a").stdout)
    assert engine.get("sleeper").state.exit_code == 137
    assert time.monotonic() - started < 30
    line = one_line_error(cli(*run, "--rm", "busybox", "true", check=False))
    assert line.startswith("tuibox: no space left on device: ") and "prune" in line
    assert supervisor_pid(engine) == pid

    # inspect and logs say what was lost.
    loss = json.loads(cli("inspect", "-f", "{{json .State.LogLoss}}", "filler").stdout)
    assert loss["Lines"] > 0 and loss["Bytes"] > loss["Lines"]
    assert loss["LastError"] == "No space left on device"
    logs = cli("logs", "--tail", "1", "ticker")
    assert re.search(r"^tuibox: \d+ log lines were lost while the disk was full$",
                     logs.stderr, re.M), logs.stderr

    # A supervisor killed now recovers its spools on the full disk and serves on.
    os.kill(pid, signal.SIGKILL)
    pid = wait_for(lambda: _other_pid(engine, pid), "a new supervisor", 30)
    assert "ticker" in cli("ps", timeout=30).stdout

    # rm -f on the full disk frees the space; the ticker's log resumes, the gap counted.
    cli("rm", "-f", "filler", timeout=30)
    assert free(root) > 32 << 20
    wait_for(lambda: ticks(engine, "ticker")[-1] > last_kept + 10, "the log to resume")
    assert supervisor_pid(engine) == pid

    def gap_is_counted() -> bool:
        kept = ticks(engine, "ticker")
        missing = kept[-1] - len(kept)  # numbered from 1, consecutive: what is not there
        return missing > 0 and engine.get("ticker").state.log_loss.lines == missing

    wait_for(gap_is_counted, "the loss recorded to match the gap in the log", 30)
    assert json.loads(cli("inspect", "sleeper").stdout)[0]["State"]["ExitCode"] == 137


def _other_pid(engine: Engine, old: int) -> int | None:
    with contextlib.suppress(Exception):
        pid = supervisor_pid(engine)
        return pid if pid != old else None
    return None


def _store_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for d in ("images", "layers", "tmp")
            for p in (root / d).rglob("*")}


@pytest.mark.parametrize("left", [0, 1 << 20], ids=["full", "almost-full"])
def test_load_onto_a_full_disk_is_one_line_and_leaves_nothing(
        engine: Engine, cli: CLI, root: Path, tmp_path: Path, left: int) -> None:
    archive = tmp_path / "big.tar"
    blob = layer_tar([TarEntry("big.bin", data=os.urandom(3 << 20))])
    write_docker_archive(archive, [([blob], ["big:1"])])
    before = _store_files(root)
    ballast = root / "ballast"
    if left:
        subprocess.run(["fallocate", "-l", str(free(root) - left), str(ballast)], check=True)
    else:
        fill(ballast)

    line = one_line_error(cli("load", "-i", str(archive), check=False))
    assert line.startswith("tuibox: no space left on device: "), line
    assert _store_files(root) == before  # no blob, layer, record or temp file of it
    assert "big" not in cli("images").stdout
    ballast.unlink()
    assert "Loaded image: big:1" in cli("load", "-i", str(archive)).stdout


def _records(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for d in ("containers", "names", "networks", "volumes")
            for p in (root / d).rglob("*") if not p.name.endswith(".lock")}


def test_verbs_on_a_full_disk_say_so_in_one_line_and_leave_nothing(
        engine: Engine, cli: CLI, root: Path, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "data").write_bytes(os.urandom(1 << 20))
    cli("run", "-d", "--network", "none", "--name", "box", "busybox", "sleep", "600")
    before = _records(root)
    fill(root / "ballast")
    try:
        for verb in (["create", "--network", "none", "busybox", "true"],
                     ["run", "--rm", "--network", "none", "busybox", "true"],
                     ["network", "create", "full-net"], ["volume", "create", "full-vol"],
                     ["import", str(rootfs), "imported:1"]):
            line = one_line_error(cli(*verb, check=False))
            assert line.startswith("tuibox: no space left on device: "), (verb, line)
        line = one_line_error(cli("cp", str(rootfs / "etc" / "data"), "box:/data", check=False))
        assert "No space left on device" in line
        assert _records(root) == before
        assert "imported" not in cli("images").stdout
    finally:
        (root / "ballast").unlink()
    with small_fs(tmp_path / "small", "1m") as small:  # save's own output disk is full
        line = one_line_error(cli("save", "-o", str(small / "out.tar"), "busybox", check=False))
        assert line == (f"tuibox: no space left on device: {small / 'out.tar'} (free some "
                        f"space: tuibox system prune / rm)")
        assert list(small.iterdir()) == []


def test_request_of_a_client_that_left_is_not_carried_out(engine: Engine, root: Path) -> None:
    pid = supervisor_pid(engine)
    log = root / "supervisor.log"
    os.kill(pid, signal.SIGSTOP)
    try:
        client = subprocess.Popen(
            [sys.executable, "-m", "tuibox", "--root", str(root), "run", "--rm", "--network",
             "none", "--name", "ghost", "busybox", "echo", "should not run"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Blocked reading the answer: its request is queued on the supervisor's socket.
            wait_for(lambda: _waiting_for_reply(client.pid), "the request to be sent", 30)
        finally:
            client.kill()
            client.wait()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: "dropped a create request" in log.read_text(), "the request dropped", 30)
    assert supervisor_pid(engine) == pid
    assert [c.name for c in engine.list(all=True)] == []
    events = root / "events.jsonl"
    assert not events.exists() or "ghost" not in events.read_text()


def test_a_start_queued_behind_a_stop_is_dropped_when_its_client_left(
        engine: Engine, cli: CLI, root: Path) -> None:
    """The second check: a start that waited in the container's queue (behind a slow stop)
    is not carried out once its client has gone."""
    cid = cli("run", "-d", "--network", "none", "--name", "slow", "busybox", "sleep",
              "600").stdout.strip()
    stop = subprocess.Popen([sys.executable, "-m", "tuibox", "--root", str(root), "stop", "-t",
                             "5", "slow"], stdout=subprocess.DEVNULL)  # PID 1 ignores TERM
    events = root / "events.jsonl"
    wait_for(lambda: '"kill"' in events.read_text(), "the stop to begin", 30)
    script = ("import sys; from pathlib import Path; from tuibox.engine.paths import StatePaths;"
              " from tuibox.engine.supervisor.client import SupervisorClient;"
              " SupervisorClient(StatePaths(Path(sys.argv[1]))).request("
              "{'op': 'start', 'id': sys.argv[2]})")
    client = subprocess.Popen([sys.executable, "-c", script, str(root), cid])
    try:
        wait_for(lambda: _waiting_for_reply(client.pid), "the start to be queued", 30)
    finally:
        client.kill()
        client.wait()
    assert stop.wait(timeout=60) == 0
    cli("stop", "slow")  # queued after the start: once it answers, the start was handled
    assert not engine.get("slow").state.running
    assert events.read_text().count('"action":"start"') == 1  # only the run's


def _waiting_for_reply(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "unix_stream_read_generic"
    except OSError:
        return False


def test_dashboard_marks_a_container_whose_log_lost_output(engine: Engine) -> None:
    from textual.pilot import Pilot
    from textual.widgets import TabbedContent

    from tests.test_app import drive, table, until
    from tuibox.app import TuiboxApp
    from tuibox.engine import RunOptions
    from tuibox.widgets.container_table import LOG_LOSS_MARK
    from tuibox.widgets.detail import InspectView

    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"], name="lossy",
                                network="none")).id

    def lost(st: Any) -> None:  # as the supervisor records it (see test_full_disk_...)
        st.log_loss.lines, st.log_loss.bytes = 1234, 98765
        st.log_loss.error = "No space left on device"

    engine.containers.update_state(cid, lost)

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: str(table(app).get_cell(cid, "status")) ==
                    f"running {LOG_LOSS_MARK}", what="the status marker")
        app.screen.query_one(TabbedContent).active = "tab-inspect"
        view = app.screen.query_one(InspectView)
        await until(pilot, lambda: "1234 log lines were lost while the disk was full"
                    in view.warning, what="the inspect banner")

    drive(engine, body)


# -- the log writer alone, on a 4 MB tmpfs of its own ----------------------------------------

@contextlib.contextmanager
def small_fs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _numbered(start: int, count: int) -> bytes:
    return b"".join(b"%07d %s\n" % (n, b"x" * 90) for n in range(start, start + count))


def _kept(cdir: Path) -> list[int]:
    from tests.test_logs_helpers import all_entries

    return [int(e.data[:7]) for e in all_entries(cdir, "c1")]


def test_writer_drops_what_a_full_disk_refuses_counts_it_and_resumes(tmp_path: Path) -> None:
    from tests.test_logs_helpers import feed
    from tuibox.engine.logs import LogWriter

    spool = tmp_path / "spool"
    with small_fs(tmp_path / "logs", "4m") as cdir:
        ballast = cdir / "ballast"
        ballast.write_bytes(b"\0" * (1 << 20))
        writer = LogWriter(cdir, "c1", spool)
        writer.recover()
        total = 40_000  # 4 MB of lines for a 4 MB disk that also holds the ballast
        for start in range(1, total + 1, 2000):
            feed(writer, "stdout", _numbered(start, 2000))  # drained all the same
        kept = _kept(cdir)
        assert kept == list(range(1, len(kept) + 1))  # a whole prefix, then nothing
        assert writer.dropped.lines == total - len(kept) > 0
        assert writer.dropped.size == (total - len(kept)) * 99
        assert writer.dropped.error == "No space left on device"
        assert 0 < free(cdir) < 2 * LOG_RESERVE
        writer.close()

        # A writer killed and started again knows the exact count (it is in the cursor).
        writer = LogWriter(cdir, "c1", spool)
        writer.recover()
        assert writer.dropped.lines == total - len(kept)
        ballast.unlink()  # space comes back: the next lines are written again
        feed(writer, "stdout", _numbered(total + 1, 100))
        after = _kept(cdir)
        assert after[len(kept):] == list(range(total + 1, total + 101))
        assert writer.dropped.lines == total - len(kept)
        writer.remove_spool()
        writer.close()


def test_a_cursor_from_before_the_counts_still_reads(tmp_path: Path) -> None:
    import struct
    import zlib

    from tuibox.engine.logs.cursor import Cursor, CursorFile

    body = struct.pack("<QQQQ", 5, 6, 7, 8)
    path = tmp_path / "old.cursor"
    path.write_bytes(struct.pack("<8s32sI4x", b"TBXLOGC1", body, zlib.crc32(body)))
    opened = CursorFile.open(path)
    assert opened is not None and opened.cursor == Cursor(5, 6, 7, 8)
    opened.commit(Cursor(5, 6, 9, 8, dropped_lines=3, dropped_bytes=30))
    opened.close()
    reopened = CursorFile.open(path)
    assert reopened is not None
    assert reopened.cursor == Cursor(5, 6, 9, 8, dropped_lines=3, dropped_bytes=30)
    reopened.close()


def test_writer_drains_the_pipe_when_its_spool_disk_is_full(tmp_path: Path) -> None:
    """The spools live on /run's tmpfs: full too, the container must still not block."""
    from tests.test_logs_helpers import feed
    from tuibox.engine.logs import LogWriter

    cdir = tmp_path / "cdir"
    cdir.mkdir()
    with small_fs(tmp_path / "spool", "1m") as spool:
        writer = LogWriter(cdir, "c1", spool)
        writer.recover()
        fill(spool / "ballast")
        feed(writer, "stdout", _numbered(1, 5000))  # read from the pipe and counted
        assert writer.dropped.lines == 5000 and writer.dropped.size == 5000 * 99
        assert _kept(cdir) == []
        (spool / "ballast").unlink()
        feed(writer, "stdout", _numbered(5001, 10))
        assert _kept(cdir) == list(range(5001, 5011))
        writer.remove_spool()
