"""The supervisor may be killed at any moment: nothing stops, nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import time

from tuibox.engine import Engine, RunOptions


def supervisor_pid(engine: Engine) -> int:
    return int(engine.supervisor.request({"op": "ping"})["pid"])


def kill_supervisor(engine: Engine) -> int:
    pid = supervisor_pid(engine)
    os.kill(pid, signal.SIGKILL)
    # Until the keeper has reaped it, a ping could still queue on the dead one's socket.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    time.sleep(0.01)
                    continue
        except OSError:
            break
        time.sleep(0.01)
    return pid


def test_kill_9_loses_no_log_line_and_adopts(engine: Engine) -> None:
    script = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done"
    cid = engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script])).id
    container_pid = engine.containers.state(cid).pid
    rng = random.Random(1)
    killed = set()
    for _ in range(8):
        time.sleep(rng.uniform(0.25, 0.5))
        killed.add(kill_supervisor(engine))
    new_pid = supervisor_pid(engine)  # the keeper has already started another
    assert new_pid not in killed
    st = engine.containers.state(cid)
    assert st.running and st.pid == container_pid  # the container never noticed
    time.sleep(0.3)
    assert engine.stop(cid, timeout=0)
    st = engine.containers.state(cid)
    assert st.exit_code == 137 and not st.running  # exit recorded after adoption
    numbers = [int(e.data) for e in engine.logs(cid)]
    assert numbers == list(range(len(numbers)))  # every number exactly once, in order
    assert len(numbers) > 100


def test_exit_while_adopted_is_recorded(engine: Engine) -> None:
    cid = engine.run(RunOptions(image="busybox",
                                command=["/bin/sh", "-c", "sleep 1; echo bye; exit 7"])).id
    kill_supervisor(engine)
    assert engine.wait(cid) == 7
    st = engine.containers.state(cid)
    assert st.status == "exited" and st.exit_code == 7
    assert [e.data for e in engine.logs(cid)] == [b"bye\n"]


def test_restart_policy_survives_supervisor_kill(engine: Engine) -> None:
    cid = engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", "sleep 0.5; exit 1"],
                                restart="on-failure:2")).id
    kill_supervisor(engine)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and engine.containers.state(cid).running:
        time.sleep(0.05)
    st = engine.containers.state(cid)
    assert not st.running and st.restart_count == 2 and st.exit_code == 1


def test_engine_restarts_a_missing_supervisor(engine: Engine) -> None:
    cid = engine.run(RunOptions(image="busybox", command=["sleep", "30"])).id
    engine.stop(cid, timeout=0)
    engine.shutdown()
    assert not engine.supervisor.running()
    engine.start(cid)  # starts keeper + supervisor on demand
    assert engine.containers.state(cid).running


def test_containers_outlive_the_client(engine: Engine, root: object) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), "run", "-d",
                          "busybox", "sleep", "30"], capture_output=True, text=True, check=True)
    cid = out.stdout.strip()
    time.sleep(0.2)
    assert engine.containers.state(cid).running


def test_kill_9_of_the_keeper_keeps_containers_logging(engine: Engine) -> None:
    script = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done"
    cid = engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script])).id
    keeper = int(engine.paths.keeper_pidfile.read_text())
    os.kill(keeper, signal.SIGKILL)
    time.sleep(0.5)
    before = len(list(engine.logs(cid)))
    time.sleep(0.5)
    assert len(list(engine.logs(cid))) > before  # still logging, no SIGPIPE
    assert engine.containers.state(cid).running
    engine.stop(cid, timeout=0)
    assert engine.containers.state(cid).exit_code == 137
    numbers = [int(e.data) for e in engine.logs(cid)]
    assert numbers == list(range(len(numbers)))


def test_rm_f_kills_a_container_no_supervisor_knows(engine: Engine) -> None:
    """Keeper and supervisor both killed: ``rm -f`` still kills what runs in the cgroup."""
    cid = engine.run(RunOptions(image="busybox", command=["sleep", "60"])).id
    pid = engine.containers.state(cid).pid
    keeper = int(engine.paths.keeper_pidfile.read_text())
    os.kill(keeper, signal.SIGKILL)
    kill_supervisor(engine)  # a new one starts on demand but holds nothing of it
    engine.remove(cid, force=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    from pathlib import Path

    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
