"""Issue #12 item 8: tuibox (root) writes only where a regular file may be written.

``save -o`` onto a FIFO, a device node, a symlink, a directory, a setuid file, or through
a hard link; the dashboard's log export onto symlinks a local user planted at its
predictable names.  Every object here is the test's own, in its tmp dir; the device node
is a copy of 1:3 made with mknod there.
"""

from __future__ import annotations

import asyncio
import os
import stat
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tuibox.app import TuiboxApp
from tuibox.engine import Engine, InvalidArgument, RunOptions
from tuibox.engine.hostfiles import atomic_output
from tuibox.settings import Settings
from tuibox.widgets.log_panel import LogPanel
from tuibox.widgets.log_view import LogView

Cli = Any


def refused(cli: Cli, out: Path, reason: str) -> None:
    # A FIFO without a reader must not block the save: the timeout would fail the test.
    got = cli("save", "-o", str(out), "busybox", check=False, timeout=30)
    assert got.returncode == 125, got
    assert got.stderr == f"tuibox: invalid output path {out}: {reason}\n"
    assert not [p for p in out.parent.iterdir() if ".tuibox-" in p.name]  # no temp left


def test_save_refuses_a_fifo_a_device_a_symlink_and_a_directory(cli: Cli,
                                                                 tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(cli, fifo, "cannot write to a named pipe (FIFO)")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    null = tmp_path / "null"  # our own copy of /dev/null: the host's is never touched
    os.mknod(null, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    refused(cli, null, "cannot write to a character device file")
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)

    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    link = tmp_path / "stdout"  # what -o /dev/stdout did to the host's /dev/stdout
    link.symlink_to(victim)
    refused(cli, link, "cannot write to a symbolic link directly")
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert victim.read_text() == "keep me\n"

    directory = tmp_path / "dir"
    directory.mkdir()
    refused(cli, directory, "cannot write to a directory")
    assert list(directory.iterdir()) == []

    setuid = tmp_path / "suid"
    setuid.write_text("x")
    os.chmod(setuid, 0o4755)
    refused(cli, setuid, "cannot write to a setuid file")
    assert setuid.read_text() == "x"

    missing = cli("save", "-o", str(tmp_path / "no/such/out.tar"), "busybox", check=False)
    assert missing.returncode == 125 and "No such file or directory" in missing.stderr


def test_save_writes_a_new_file_and_replaces_a_regular_one(cli: Cli, tmp_path: Path) -> None:
    where = tmp_path / "out"
    where.mkdir()
    out = where / "new.tar"
    cli("save", "-o", str(out), "busybox")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600  # Docker's mode: images hold secrets
    with tarfile.open(out) as tf:
        assert "manifest.json" in tf.getnames()
    # An existing regular file is replaced by rename, never written into: another name
    # of its inode (a hard link somebody made) keeps its content.
    old = where / "old.tar"
    old.write_text("previous\n")
    other_name = where / "other-name"
    os.link(old, other_name)
    cli("save", "-o", str(old), "busybox")
    assert other_name.read_text() == "previous\n"
    assert old.read_bytes() == out.read_bytes()
    assert sorted(p.name for p in where.iterdir()) == ["new.tar", "old.tar", "other-name"]


def test_atomic_output_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("before\n")
    with pytest.raises(RuntimeError), atomic_output(out) as f:
        f.write(b"half")
        raise RuntimeError("the archive could not be finished")
    assert out.read_text() == "before\n" and [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(InvalidArgument, match="cannot write to a directory"), \
            atomic_output(Path("/")):
        pass


def test_log_export_does_not_follow_planted_symlinks(engine: Engine, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's name is ~/tuibox-<name>-<second>.log: guessable.  A local user plants
    symlinks at every name of the next minute, aimed at a file root can write."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TUIBOX_CONFIG_FILE", str(tmp_path / "none.toml"))
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    now = time.time()
    for second in range(60):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + second))
        (home / f"tuibox-exported-{stamp}.log").symlink_to(victim)
    engine.run(RunOptions(image="busybox", name="exported", network="none",
                          command=["sh", "-c", "echo secret-line; sleep 60"]))

    async def main() -> None:
        app = TuiboxApp(engine, settings=Settings(stop_timeout=1))
        async with app.run_test(size=(160, 45)) as pilot:
            view = app.screen.query_one(LogView)
            deadline = time.monotonic() + 10
            while not (view.cid and len(view.index) >= 1):
                assert time.monotonic() < deadline, "no log lines"
                await pilot.pause(0.05)
            app.screen.query_one(LogPanel).action_export()
            while not any("export failed" in str(n.message) for n in app._notifications):
                assert time.monotonic() < deadline + 10, "no refusal shown"
                await pilot.pause(0.05)
            message = next(str(n.message) for n in app._notifications
                           if "export failed" in str(n.message))
            assert "cannot write to a symbolic link directly" in message
            for link in home.iterdir():  # the user's links go; a real export works
                link.unlink()
            app.screen.query_one(LogPanel).action_export()
            while not any("log saved" in str(n.message) for n in app._notifications):
                assert time.monotonic() < deadline + 20, "no export"
                await pilot.pause(0.05)

    asyncio.run(main())
    assert victim.read_text() == "root's file\n"
    [exported] = list(home.iterdir())
    assert exported.read_text() == "secret-line\n"
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
