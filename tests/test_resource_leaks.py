"""Nothing outlives what it belongs to (issue #13 item 7): a network made again under its
old name and subnet, a state root deleted under its supervisor, a removed container's
log spools.  Traffic goes to loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import _processes_mentioning
from tests.test_network import free_port, http_get, links, web
from tests.test_supervisor import kill_supervisor
from tuibox.engine import Engine, RunOptions
from tuibox.engine.network.nft import table_name


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _wait_until(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def _table_exists(root: Path) -> bool:
    return subprocess.run(["nft", "list", "table", "ip", table_name(root)],
                          capture_output=True).returncode == 0


def _spool_files(engine: Engine, cid: str) -> list[str]:
    spool = engine.paths.run / "spool"
    return sorted(p.name for p in spool.glob(f"{cid}*")) if spool.is_dir() else []


def test_network_made_again_with_its_name_and_subnet_keeps_ports_answering(
        engine: Engine, tmp_path: Path) -> None:
    first = engine.network_create("again")
    port = free_port()
    cid = web(engine, tmp_path, "first", network="again", publish=[f"127.0.0.1:{port}:80"])
    assert http_get(f"http://127.0.0.1:{port}/") == "first"
    engine.remove(cid, force=True)
    assert first.bridge in links()  # kept idle for the next container …
    engine.network_remove("again")
    second = engine.network_create("again", subnet=first.subnet)
    assert second.bridge != first.bridge
    cid = web(engine, tmp_path, "second", network="again", publish=[f"127.0.0.1:{port}:80"])
    # … but not once its network is gone and another took its subnet: two bridges with
    # one subnet split the routes, and the published port stopped answering.
    assert first.bridge not in links()
    assert http_get(f"http://127.0.0.1:{port}/", timeout=10) == "second"
    engine.remove(cid, force=True)
    assert second.bridge in links()
    engine.shutdown()
    assert not {first.bridge, second.bridge} & links()  # shutdown took both along
    assert not _table_exists(engine.paths.root)


def test_removed_network_bridge_goes_with_the_idle_sweep(
        root: Path, busybox_archives: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUIBOX_IDLE_BRIDGE_SECONDS", "1")  # the supervisor inherits it
    engine = Engine(root)
    engine.images.load(busybox_archives[0])
    try:
        old = engine.network_create("swept")
        c = engine.run(RunOptions(image="busybox", command=["true"], network="swept"))
        engine.wait(c.id)
        engine.remove(c.id)
        engine.network_remove("swept")
        new = engine.network_create("swept", subnet=old.subnet)
        c = engine.run(RunOptions(image="busybox", command=["true"], network="swept"))
        engine.wait(c.id)
        engine.remove(c.id)
        # Both idle now; the sweep takes each by its network's id, the removed one too.
        assert _wait_until(lambda: not {old.bridge, new.bridge} & links())
        assert engine.supervisor.running()
    finally:
        for container in engine.list(all=True):
            engine.remove(container.id, force=True)
        engine.shutdown(force=True)


def test_deleted_root_takes_its_supervisor_bridges_and_table_along(
        root: Path, busybox_archives: tuple[Path, Path], tmp_path: Path) -> None:
    engine = Engine(root)
    engine.images.load(busybox_archives[0])
    engine.network_create("doomed")
    port = free_port()
    cid = web(engine, tmp_path, network="doomed", publish=[f"127.0.0.1:{port}:80"])
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from the container"
    exited = engine.run(RunOptions(image="busybox", command=["true"]))  # an idle bridge
    engine.wait(exited.id)
    paused = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="none"))
    engine.pause(paused.id)  # a frozen one must die too
    bridges = {record.bridge for record in engine.networks.all()}
    assert len(bridges) == 2 and bridges <= links()
    processes = _processes_mentioning(str(root))  # keeper and supervisor
    pids = [engine.containers.state(c).pid for c in (cid, paused.id)]
    cgroups = [p for c in (cid, paused.id) for p in Path("/sys/fs/cgroup").glob(f"*/tuibox/{c}")]
    assert processes and all(_alive(p) for p in pids) and cgroups
    run_dir = engine.paths.run

    shutil.rmtree(root)

    assert _wait_until(lambda: not any(_alive(p) for p in [*processes, *pids]))
    assert not bridges & links()
    assert not _table_exists(root)
    assert not [p for p in cgroups if p.exists()]
    assert not run_dir.exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the host port is free again

    # A new root at the same path gets a supervisor (and a bridge) of its own.
    engine = Engine(root)
    engine.images.load(busybox_archives[0])
    try:
        c = engine.run(RunOptions(image="busybox", command=["true"]))
        assert engine.wait(c.id) == 0
        assert engine.networks.get("bridge").bridge in links()
        assert not bridges & links()
    finally:
        for container in engine.list(all=True):
            engine.remove(container.id, force=True)
        engine.shutdown(force=True)


def test_replaced_root_is_let_go_as_well(root: Path,
                                         busybox_archives: tuple[Path, Path]) -> None:
    engine = Engine(root)
    engine.images.load(busybox_archives[0])
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="none"))
    pid = engine.containers.state(c.id).pid
    processes = _processes_mentioning(str(root))
    moved = root.with_name("moved-away")
    root.rename(moved)
    root.mkdir(mode=0o700)  # another directory at the same path: another root
    assert _wait_until(lambda: not any(_alive(p) for p in [*processes, pid]))
    assert not engine.paths.run.exists()
    shutil.rmtree(moved)


def test_spool_files_go_when_the_container_is_removed(engine: Engine) -> None:
    done = engine.run(RunOptions(image="busybox", command=["echo", "hi"], network="none"))
    engine.wait(done.id)
    engine.remove(done.id)
    assert _spool_files(engine, done.id) == []

    # Keeper and supervisor killed together: the next supervisor adopts the container
    # without its pipes, so no writer of its own ever deletes the old spools.
    c = engine.run(RunOptions(image="busybox", command=["sh", "-c", "echo hi; sleep 1d"],
                              network="none"))
    assert _wait_until(lambda: len(_spool_files(engine, c.id)) == 3)
    keeper = int(engine.paths.keeper_pidfile.read_text())
    os.kill(keeper, signal.SIGKILL)
    kill_supervisor(engine)
    engine.stop(c.id, timeout=0)
    # The next supervisor took the pipes back (supervisor/reclaim.py): its writer went on
    # from the killed one's spools and deleted them as the container stopped.
    engine.remove(c.id)
    assert _spool_files(engine, c.id) == []
