"""Lifecycle verbs fired at one container at once (issue 13 item 3).

The supervisor runs them one at a time per container; ``rm -f`` always wins and leaves
nothing: no process, cgroup, mount or record of that container, and every other verb either
succeeds or fails with a one-line docker-like message (never an internal error).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tuibox.engine import Conflict, Engine, RunOptions, TuiboxError

CGROUP_ROOT = Path("/sys/fs/cgroup")
VERBS = [("stop", "-t", "1"), ("start",), ("restart", "-t", "1"), ("pause",), ("unpause",),
         ("rm", "-f")]
INTERNAL = ("Traceback", "FileNotFoundError", "internal error", "Errno")


def wait_for(predicate: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout}s")


def traces_of(cid: str) -> list[str]:
    """What of the container is still on the host: cgroups, processes in them, mounts."""
    found = [str(p) for p in [*CGROUP_ROOT.glob(f"*/tuibox/{cid}"),
                              *CGROUP_ROOT.glob(f"tuibox/{cid}")]]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"/tuibox/{cid}" in (entry / "cgroup").read_text():
                    found.append(f"process {entry.name}")
            except OSError:
                continue
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if cid in line]
    return found


def events_of(root: Path, cid: str) -> list[str]:
    actions = []
    for line in (root / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("id") == cid:
            actions.append(event["action"])
    return actions


def veths_of(engine: Engine) -> list[str]:
    """Interfaces still plugged into this root's bridges (a container's veth ends)."""
    found = []
    for record in engine.networks.all():
        brif = Path(f"/sys/class/net/{record.bridge}/brif")
        if brif.is_dir():
            found += [p.name for p in brif.iterdir()]
    return found


@pytest.mark.parametrize(("network", "rounds"), [("none", 24), ("bridge", 6)])
def test_verbs_fired_together_leave_nothing_behind(engine: Engine, root: Path, network: str,
                                                   rounds: int) -> None:
    rng = random.Random(13)
    replies: dict[str, int] = {}
    for _ in range(rounds):
        cid = engine.run(RunOptions(image="busybox", network=network,
                                    command=["sleep", "1000"])).id
        verbs = VERBS[:]
        rng.shuffle(verbs)
        procs = [(verb, subprocess.Popen(
            [sys.executable, "-m", "tuibox", "--root", str(root), *verb, cid],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for verb in verbs]
        for verb, proc in procs:
            out, err = proc.communicate(timeout=120)
            text = (out + err).strip()
            assert not any(word in text for word in INTERNAL), (verb, text)
            if proc.returncode:
                # A docker-like one-line error, e.g. "No such container", "is not running".
                assert proc.returncode == 1 and text.startswith("tuibox: "), (verb, text)
                assert "\n" not in text, (verb, text)
            else:
                assert text == cid, (verb, text)
            key = f"{verb[0]} {'ok' if not proc.returncode else text.split(':')[1].strip()}"
            replies[key[:60]] = replies.get(key[:60], 0) + 1
            if verb[0] == "rm":
                assert proc.returncode == 0, text  # rm -f always wins
        assert not (root / "containers" / cid).exists()
        assert not any(c.id == cid for c in engine.list(all=True))
        wait_for(lambda cid=cid: not traces_of(cid), what=f"{cid[:12]} gone")  # type: ignore[misc]
        assert events_of(root, cid)[-1] == "destroy"
        assert engine.networks.endpoints_of(cid) == []  # its address is free again
        wait_for(lambda: not veths_of(engine), what="its veth gone")
    print(json.dumps(replies, indent=1))  # what the verbs met: seen with -s


def test_rm_f_overrides_a_stop_in_flight(engine: Engine, root: Path) -> None:
    """A stop waiting 60 s for a PID 1 that ignores SIGTERM: rm -f kills at once, the stop
    returns as stopped, and a start queued behind finds no container."""
    cid = engine.run(RunOptions(image="busybox", network="none", command=["sleep", "1000"])).id
    results: dict[str, object] = {}

    def call(name: str, fn: object) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = fn()  # type: ignore[operator]
            except TuiboxError as exc:
                results[name] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    stopping = call("stop", lambda: Engine(root).stop(cid, timeout=60))
    wait_for(lambda: "kill" in events_of(root, cid), what="the stop's SIGTERM")
    # Straight to the supervisor: the engine's start returns at once for a live container.
    starting = call("start", lambda: Engine(root).supervisor.request({"op": "start",
                                                                      "id": cid}))
    began = time.monotonic()
    engine.remove(cid, force=True)
    stopping.join(30)
    starting.join(30)
    assert time.monotonic() - began < 20  # not the stop's 60 s
    assert results["stop"] is True
    assert isinstance(results["start"], TuiboxError)
    assert "No such container" in str(results["start"])
    assert not (root / "containers" / cid).exists()
    wait_for(lambda: not traces_of(cid), what="its cgroup and process gone")


def test_rm_f_during_a_restart_does_not_start_it_again(engine: Engine, root: Path) -> None:
    cid = engine.run(RunOptions(image="busybox", network="none", command=["sleep", "1000"])).id
    outcome: list[object] = []

    def restart() -> None:
        try:
            outcome.append(Engine(root).restart(cid, timeout=60))
        except TuiboxError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=restart)
    thread.start()
    wait_for(lambda: "kill" in events_of(root, cid), what="the restart's SIGTERM")
    engine.remove(cid, force=True)
    thread.join(30)
    assert isinstance(outcome[0], Conflict)
    assert str(outcome[0]) == "container is marked for removal and cannot be started"
    assert events_of(root, cid).count("start") == 1  # the run's own start, no other
    wait_for(lambda: not traces_of(cid), what="its cgroup and process gone")


def test_rm_f_twice_and_rm_of_a_running_container(engine: Engine) -> None:
    cid = engine.run(RunOptions(image="busybox", network="none", command=["sleep", "1000"])).id
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        engine.remove(cid)
    assert engine.containers.state(cid).running
    errors: list[str] = []

    def rm() -> None:
        try:
            Engine(engine.paths.root).remove(cid, force=True)
        except TuiboxError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=rm) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # One removes it; the others were told it was on its way or already gone.
    assert len(errors) <= 3, errors
    assert all("already in progress" in e or "No such container" in e for e in errors), errors
    wait_for(lambda: not traces_of(cid), what="its cgroup and process gone")


def test_restart_policy_never_shows_exited_between_runs(engine: Engine) -> None:
    """Between two runs of ``--restart on-failure:3`` a reader sees running or restarting,
    never exited, until the last failure (one write records the exit and the restart)."""
    cid = engine.run(RunOptions(image="busybox", network="none", restart="on-failure:3",
                                command=["sh", "-c", "sleep 0.2; exit 1"])).id
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = engine.containers.state(cid)
        seen.append((st.status, st.restart_count))
        if st.status == "exited":
            break
    assert seen[-1] == ("exited", 3), seen[-1]
    assert [s for s in seen[:-1] if s[0] == "exited"] == []
    assert {s for s, _ in seen[:-1]} <= {"running", "restarting"}
    assert os.path.exists(engine.containers.dir(cid))
