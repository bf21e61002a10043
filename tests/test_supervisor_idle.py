"""The supervisor leaves once nothing needs it (issue 13 item 8): no running or restarting
container, no connected client, for ``supervisor-idle-timeout`` seconds of the root's
daemon.json.  Its keeper, bridge, nftables table and runtime dir go with it, and the
next verb brings a new one.  Each test runs real containers on its own root."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.waiting import alive, wait_for
from tuibox.engine import Engine, RunOptions
from tuibox.engine.network.nft import table_name

Cli = Any
TIMEOUT = 2.0


def idle_after(engine: Engine, seconds: float) -> None:
    """Set the root's idle timeout; a supervisor reads it when it starts."""
    (engine.paths.root / "daemon.json").write_text(
        json.dumps({"supervisor-idle-timeout": seconds}))


def processes(engine: Engine) -> tuple[int, int]:
    """(keeper, supervisor) of the test's root; the ping is a client that leaves at once."""
    keeper = int(engine.paths.keeper_pidfile.read_text())
    return keeper, int(engine.supervisor.request({"op": "ping"})["pid"])


def stays_alive(pids: tuple[int, ...], seconds: float) -> bool:
    """Whether every pid lives through ``seconds``: a claim about a span of time, so it
    can only be checked by watching for that long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not all(alive(p) for p in pids):
            return False
        time.sleep(0.1)
    return True


def bridge_of(engine: Engine) -> str:
    record = json.loads((engine.paths.root / "networks" / "bridge.json").read_text())
    return str(record["bridge"])


def has_table(engine: Engine) -> bool:
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout.split()
    return table_name(engine.paths.root) in tables


def test_idle_supervisor_leaves_with_keeper_bridge_and_table(engine: Engine, cli: Cli) -> None:
    idle_after(engine, TIMEOUT)
    cli("run", "--rm", "busybox", "true")  # the bridge network: a bridge and a table
    bridge = bridge_of(engine)
    assert Path(f"/sys/class/net/{bridge}").exists() and has_table(engine)
    keeper, supervisor = processes(engine)
    quiet_from = time.monotonic()

    wait_for("the supervisor and its keeper to leave",
             lambda: not alive(supervisor) and not alive(keeper))
    assert time.monotonic() - quiet_from >= TIMEOUT  # not before its quiet period
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert not has_table(engine)
    assert not engine.paths.run.exists()
    assert "(no container running, no client): leaving" in \
        engine.paths.supervisor_log.read_text()
    assert "not running" in cli("info").stdout

    # The next verb that needs one starts a new supervisor, which works as before.
    assert cli("run", "--rm", "--network", "none", "busybox", "echo", "again").stdout \
        == "again\n"
    assert processes(engine)[1] != supervisor


def test_a_running_container_keeps_it(engine: Engine, cli: Cli) -> None:
    idle_after(engine, TIMEOUT)
    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"], network="none")).id
    pids = processes(engine)
    assert stays_alive(pids, 3 * TIMEOUT)
    engine.pause(cid)  # a paused container runs too
    assert stays_alive(pids, 2 * TIMEOUT)
    cli("rm", "-f", cid)
    wait_for("the supervisor to leave once the container is gone",
             lambda: not any(alive(p) for p in pids))


def test_a_pending_restart_keeps_it(engine: Engine, cli: Cli) -> None:
    """Between two runs of a --restart container only its back-off timer is left (0.1 s,
    doubling): with a 1 s timeout, the waits of 1.6 s and 3.2 s are longer than the quiet
    period, and a supervisor that left then would never restart it again."""
    idle_after(engine, 1)
    cid = cli("run", "-d", "--restart", "always", "--network", "none", "busybox",
              "sh", "-c", "exit 3").stdout.strip()
    _, supervisor = processes(engine)
    wait_for("seven restarts", lambda: engine.containers.state(cid).restart_count >= 7,
             timeout=60)
    assert alive(supervisor)
    assert processes(engine)[1] == supervisor  # the same one all along
    cli("rm", "-f", cid)
    wait_for("the supervisor to leave", lambda: not alive(supervisor))


def test_a_connected_client_keeps_it(engine: Engine) -> None:
    idle_after(engine, TIMEOUT)
    engine.run(RunOptions(image="busybox", command=["true"], network="none", auto_remove=True))
    pids = processes(engine)
    conn = engine.supervisor.connect()  # a client that is still there, saying nothing yet
    try:
        assert stays_alive(pids, 3 * TIMEOUT)
        conn.send({"op": "ping"})
        assert conn.reply()["pid"] == pids[1]
    finally:
        conn.close()
    wait_for("the supervisor to leave once the client has", lambda: not alive(pids[1]))


def test_a_client_starting_a_supervisor_holds_it(engine: Engine) -> None:
    """A client between "is one alive?" and starting one holds the root's start lock; the
    supervisor must not leave under it (the client would then start a second one)."""
    idle_after(engine, TIMEOUT)
    engine.run(RunOptions(image="busybox", command=["true"], network="none", auto_remove=True))
    pids = processes(engine)
    lock = os.open(engine.paths.run / "start.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert stays_alive(pids, 3 * TIMEOUT)
    finally:
        os.close(lock)
    wait_for("the supervisor to leave once the lock is free", lambda: not alive(pids[1]))


def test_followers_are_not_cut_off(engine: Engine, cli: Cli, root: Path) -> None:
    """`events` and `logs -f` read the root's files, not the supervisor: they neither keep
    it nor lose anything when it leaves and a new one comes."""
    idle_after(engine, TIMEOUT)
    cid = engine.run(RunOptions(image="busybox", network="none", command=[
        "sh", "-c", "echo one; while [ ! -e /go ]; do sleep 0.1; done; echo two"])).id
    events = subprocess.Popen([sys.executable, "-m", "tuibox", "--root", str(root), "events",
                               "--format", "{{.action}} {{.name}}"],
                              stdout=subprocess.PIPE, text=True)
    logs = subprocess.Popen([sys.executable, "-m", "tuibox", "--root", str(root), "logs",
                             "-f", cid], stdout=subprocess.PIPE, text=True)
    try:
        assert logs.stdout is not None and logs.stdout.readline() == "one\n"
        _, supervisor = processes(engine)
        cli("exec", cid, "touch", "/go")
        assert logs.stdout.readline() == "two\n"
        assert logs.wait(timeout=30) == 0
        wait_for("the supervisor to leave", lambda: not alive(supervisor))
        cli("run", "--rm", "--name", "after-idle", "--network", "none", "busybox", "true")
        seen: list[str] = []
        assert events.stdout is not None
        while "destroy after-idle" not in seen:
            seen.append(events.stdout.readline().strip())
        assert {"create after-idle", "start after-idle", "die after-idle"} <= set(seen)
    finally:
        for proc in (events, logs):
            proc.kill()
            proc.wait()
