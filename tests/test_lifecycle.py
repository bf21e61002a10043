"""Lifecycle semantics against Docker's: start, stop, kill, restart policies, rm, wait."""

from __future__ import annotations

import time

import pytest

from tuibox.engine import Conflict, ContainerNotFound, Engine, InvalidArgument, RunOptions
from tuibox.engine.models import ZERO_TIME


def detached(engine: Engine, script: str, **opts: object) -> str:
    return engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script],
                                 **opts)).id


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_create_then_start(engine: Engine) -> None:
    config = engine.create(RunOptions(image="busybox", command=["sleep", "30"], name="c1"))
    st = engine.containers.state(config.id)
    assert st.status == "created" and st.started_at == ZERO_TIME and st.pid == 0
    pid = engine.start("c1")
    st = engine.containers.state(config.id)
    assert st.status == "running" and st.pid == pid
    assert engine.inspect("c1")["State"]["Running"] is True


def test_stop_uses_sigterm_then_sigkill(engine: Engine) -> None:
    # PID 1 without a TERM handler ignores SIGTERM: stop must fall back to SIGKILL.
    cid = detached(engine, "sleep 60")
    t0 = time.monotonic()
    assert engine.stop(cid, timeout=1) is True
    assert 0.9 < time.monotonic() - t0 < 5
    st = engine.containers.state(cid)
    assert st.status == "exited" and st.exit_code == 137 and st.pid == 0
    assert st.finished_at > st.started_at
    # A container that handles TERM exits with its own code at once.
    cid = detached(engine, "trap 'exit 3' TERM; while true; do sleep 0.1; done")
    time.sleep(0.3)
    t0 = time.monotonic()
    engine.stop(cid, timeout=10)
    assert time.monotonic() - t0 < 3
    assert engine.containers.state(cid).exit_code == 3


def test_stop_signal_option(engine: Engine) -> None:
    cid = detached(engine, "trap 'exit 5' USR1; while true; do sleep 0.1; done",
                   stop_signal="SIGUSR1")
    time.sleep(0.3)
    engine.stop(cid)
    assert engine.containers.state(cid).exit_code == 5


def test_stop_of_stopped_container_is_a_noop(engine: Engine) -> None:
    cid = detached(engine, "true")
    assert engine.wait(cid) == 0
    assert engine.stop(cid) is False


def test_kill_with_signal(engine: Engine) -> None:
    cid = detached(engine, "sleep 60")
    engine.kill(cid, signal_="KILL")
    assert engine.wait(cid) == 137
    with pytest.raises(Conflict):
        engine.kill(cid)


def test_restart_keeps_identity(engine: Engine) -> None:
    cid = detached(engine, "echo run; sleep 60", name="again")
    first = engine.containers.state(cid).pid
    engine.restart("again", timeout=0)
    st = engine.containers.state(cid)
    assert st.running and st.pid != first
    logs = [e.data for e in engine.logs(cid)]
    wait_for(lambda: len([e for e in engine.logs(cid)]) == 2)
    assert logs[0] == b"run\n"


def test_restart_policy_on_failure_with_count(engine: Engine) -> None:
    cid = detached(engine, "echo try; exit 2", restart="on-failure:2")
    wait_for(lambda: not engine.containers.state(cid).running, timeout=15)
    st = engine.containers.state(cid)
    assert st.restart_count == 2 and st.exit_code == 2
    assert [e.data for e in engine.logs(cid)] == [b"try\n"] * 3


def test_restart_always_shows_restarting_then_stop_ends_it(engine: Engine) -> None:
    cid = detached(engine, "exit 1", restart="always")
    wait_for(lambda: engine.containers.state(cid).restart_count >= 3, timeout=15)
    engine.stop(cid, timeout=0)
    count = engine.containers.state(cid).restart_count
    time.sleep(1)
    st = engine.containers.state(cid)
    assert not st.running and st.restart_count == count


def test_unless_stopped_is_suppressed_by_manual_stop(engine: Engine) -> None:
    cid = detached(engine, "sleep 60", restart="unless-stopped")
    engine.stop(cid, timeout=0)
    time.sleep(0.5)
    assert not engine.containers.state(cid).running


def test_auto_remove(engine: Engine) -> None:
    cid = detached(engine, "true", auto_remove=True)
    wait_for(lambda: not engine.containers.dir(cid).exists())
    with pytest.raises(ContainerNotFound):
        engine.resolve(cid)


def test_rm_refuses_running_unless_forced(engine: Engine) -> None:
    cid = detached(engine, "sleep 60", name="busy")
    with pytest.raises(Conflict, match="Stop the container"):
        engine.remove(cid)
    engine.remove("busy", force=True)
    with pytest.raises(ContainerNotFound):
        engine.resolve("busy")
    # The name is free again.
    engine.create(RunOptions(image="busybox", command=["true"], name="busy"))


def test_names_unique_and_prefix_match(engine: Engine) -> None:
    a = engine.create(RunOptions(image="busybox", command=["true"], name="alpha"))
    with pytest.raises(Conflict, match="already in use"):
        engine.create(RunOptions(image="busybox", command=["true"], name="alpha"))
    assert engine.resolve(a.id[:6]) == a.id
    assert engine.resolve("alpha") == a.id
    assert len(a.id) == 64
    with pytest.raises(ContainerNotFound):
        engine.resolve("nope")
    with pytest.raises(InvalidArgument):
        engine.create(RunOptions(image="busybox", command=["true"], name="bad name!"))


def test_bad_input_leaves_nothing(engine: Engine) -> None:
    from tuibox.engine import ImageNotFound
    from tuibox.engine.errors import NotFound

    with pytest.raises(ImageNotFound):
        engine.create(RunOptions(image="nosuchimage", command=["true"], name="x",
                                 pull="never"))  # no registry outside loopback
    with pytest.raises(InvalidArgument):
        engine.create(RunOptions(image="busybox", command=["true"], restart="sometimes"))
    with pytest.raises(NotFound):
        engine.create(RunOptions(image="busybox", command=["true"], network="nosuchnet"))
    with pytest.raises(InvalidArgument):
        engine.create(RunOptions(image="busybox", command=["true"], publish=["1:2:3:4"]))
    assert engine.list(all=True) == []
    assert not any(engine.paths.names.iterdir())


def test_wait_returns_exit_code(engine: Engine) -> None:
    cid = detached(engine, "sleep 0.3; exit 42")
    assert engine.wait(cid) == 42
    assert engine.wait(cid) == 42


def test_prune_removes_only_stopped(engine: Engine) -> None:
    keep = detached(engine, "sleep 60")
    gone = detached(engine, "true")
    engine.wait(gone)
    assert engine.prune() == [gone]
    assert [c.id for c in engine.list(all=True)] == [keep]


def test_events_are_recorded(engine: Engine) -> None:
    cid = detached(engine, "true", name="ev")
    engine.wait(cid)
    engine.remove(cid)
    actions = [e.action for e in engine.events(since="1m", follow=False) if e.id == cid]
    assert actions == ["create", "start", "die", "destroy"]


def test_corrupt_record_is_reported_and_skipped(engine: Engine) -> None:
    good = detached(engine, "sleep 60")
    bad = engine.create(RunOptions(image="busybox", command=["true"]))
    (engine.containers.dir(bad.id) / "state.json").write_text("{not json")
    found, errors = engine.list_with_errors()
    assert [c.id for c in found] == [good]
    assert len(errors) == 1 and bad.id in errors[0].path
    engine.containers.write_state(bad.id, engine.containers.state(good).__class__())


def test_log_rotation_through_a_container(engine: Engine) -> None:
    cid = detached(engine, "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done",
                   log_opts={"max-size": "10k", "max-file": "3"})
    assert engine.wait(cid) == 0
    directory = engine.containers.dir(cid)
    live = directory / f"{cid}-json.log"
    rotated = sorted(directory.glob(f"{cid}-json.log.*"))
    assert [p.name[-2:] for p in rotated] == [".1", ".2"]
    for path in [live, *rotated]:
        assert path.stat().st_size < 10_000 + 200  # may pass max-size by one entry
    lines = [e.data.decode() for e in engine.logs(cid)]
    numbers = [int(line.split("-")[1]) for line in lines]
    assert numbers == list(range(numbers[0], 3000))  # the newest, contiguous, oldest dropped
    assert numbers[0] > 0


def test_bad_log_opt_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="unknown log opt"):
        detached(engine, "true", log_opts={"max-bogus": "1"})
    with pytest.raises(InvalidArgument, match="invalid size"):
        detached(engine, "true", log_opts={"max-size": "lots"})
