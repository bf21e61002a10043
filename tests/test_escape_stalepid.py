"""Stale and reused PIDs: after the host lost its processes, nothing acts on a stranger.

Each test makes what a reboot (or ``kill -9`` of everything) leaves behind on a real root:
keeper, supervisor and containers killed at once, so every record still says "running".
The recorded pid is then handed to a *stranger*: a process this test owns, in its own UTS
and mount namespaces (its own hostname, a tmpfs over its ``/tmp``), so a verb that wrongly
entered it would show its hostname or write into its tmpfs — never into the host's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuibox.engine import Engine, RunOptions, TuiboxError
from tuibox.engine.cgroups import detect_driver
from tuibox.engine.containers import ContainerStore
from tuibox.engine.liveness import VANISHED, start_time
from tuibox.engine.models import ContainerState
from tuibox.engine.paths import StatePaths
from tuibox.engine.supervisor.client import SupervisorClient
from tuibox.engine.supervisor.running import cgroup_rel

Cli = Any


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaps (some sandboxes' PID 1 never do)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _wait_for(what: str, condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sleeper(engine: Engine, **opts: Any) -> str:
    # No network: these tests are about pids, and a busy host may have no free subnet.
    return engine.run(RunOptions(image="busybox", command=["sleep", "600"], network="none",
                                 **opts)).id


def lose_everything(engine: Engine, cids: list[str]) -> None:
    """What a reboot does to a root's processes: keeper, supervisor and every container die
    at once and nobody records anything.  Keeper first, so no new supervisor starts."""
    keeper = int(engine.paths.keeper_pidfile.read_text())
    supervisor = int(engine.supervisor.request({"op": "ping"})["pid"])
    raw = ContainerStore(engine.paths)
    pids = [raw.state(cid).pid for cid in cids]
    os.kill(keeper, signal.SIGKILL)
    os.kill(supervisor, signal.SIGKILL)
    _wait_for("keeper and supervisor to die", lambda: _gone(keeper) and _gone(supervisor))
    driver = detect_driver()
    for cid in cids:
        rel = cgroup_rel(cid)
        driver.kill_all(rel)
        if driver.frozen(rel):  # frozen tasks die only once thawed
            driver.thaw(rel)
    _wait_for("the containers to die", lambda: all(_gone(p) for p in pids))
    for cid in cids:
        assert raw.state(cid).running  # the records still say so: that is the point


@contextlib.contextmanager
def stranger() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process of ours that a recorded pid may now name, with its own hostname and a
    tmpfs over its /tmp holding ``marker``: (process, its hostname)."""
    name = f"stranger-{secrets.token_hex(4)}"
    script = ('hostname "$1" && mount -t tmpfs -o size=1m stranger /tmp && '
              'echo marker > /tmp/marker && echo ready && exec sleep 600')
    # No --fork: unshare(2) then exec, so the pid we get is the stranger's own.
    proc = subprocess.Popen(["unshare", "--uts", "--mount", "sh", "-c", script, "sh", name],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc, name
    finally:
        proc.kill()
        proc.wait()


def forge(engine: Engine, cid: str, pid: int, pid_start: int | None = None) -> None:
    """The record as the host left it, except that its pid now names ``pid``."""
    def reuse(st: ContainerState) -> None:
        st.pid = pid
        if pid_start is not None:
            st.pid_start = pid_start

    ContainerStore(engine.paths).update_state(cid, reuse)


def stranger_files(proc: subprocess.Popen[str]) -> set[str]:
    """What is in the stranger's private /tmp (seen through its root, in its namespace)."""
    return set(os.listdir(f"/proc/{proc.pid}/root/tmp"))


def ps_line(cli: Cli, cid: str) -> str:
    out = cli("ps", "-a", "--no-trunc").stdout
    return next(line for line in out.splitlines() if line.startswith(cid))


def test_reused_pid_is_never_acted_on(engine: Engine, cli: Cli, tmp_path: Path) -> None:
    cid = sleeper(engine, name="victim")
    lose_everything(engine, [cid])
    with stranger() as (other, other_name):
        forge(engine, cid, other.pid)

        # ps / inspect: exited with Docker's "cannot know" code, not Up.
        assert "Exited (255)" in ps_line(cli, cid)
        assert cid[:12] not in cli("ps", "-q").stdout
        state = json.loads(cli("inspect", "victim").stdout)[0]["State"]
        assert (state["Status"], state["Running"], state["Pid"]) == ("exited", False, 0)
        assert "gone" in state["Error"]

        # exec: refused, and it never ran in the stranger's namespaces.
        r = cli("exec", "victim", "hostname", check=False)
        assert r.returncode != 0 and "is not running" in r.stderr
        assert other_name not in r.stdout

        # cp: a stopped container's own files, never the stranger's.
        planted = tmp_path / "planted"
        planted.write_text("from the host\n")
        cli("cp", str(planted), "victim:/tmp/planted")
        assert stranger_files(other) == {"marker"}
        upper = engine.containers.dir(cid) / "upper" / "tmp" / "planted"
        assert upper.read_text() == "from the host\n"
        r = cli("cp", "victim:/tmp/marker", str(tmp_path / "stolen"), check=False)
        assert r.returncode != 0 and not (tmp_path / "stolen").exists()

        # stats / top / kill / pause: no counters of the stranger, no signal to it.
        assert cid not in engine.stats([cid])
        for verb in (["top", "victim"], ["kill", "victim"], ["pause", "victim"]):
            r = cli(*verb, check=False)
            assert r.returncode != 0 and "not running" in r.stderr, verb
        cli("stop", "-t", "0", "victim")
        assert engine.live_pid(cid) is None and engine.open_process(cid) is None

        # The supervisor that starts now adopts the record as exited, and leaves the
        # stranger alone.
        engine.supervisor.request({"op": "ping"})
        raw = ContainerStore(engine.paths).state(cid)
        assert (raw.running, raw.pid, raw.exit_code, raw.error) == (False, 0, 255, VANISHED)
        assert engine.wait(cid) == 255

        # start really starts it: a new process, in the container's own namespaces.
        cli("start", "victim")
        pid = engine.live_pid(cid)
        assert pid is not None and pid != other.pid
        assert cli("exec", "victim", "hostname").stdout.strip() == cid[:12]
        assert other.poll() is None  # every verb above left the stranger untouched
        assert stranger_files(other) == {"marker"}


def test_start_time_collision_is_still_not_ours(engine: Engine, cli: Cli) -> None:
    """Even a stranger with the recorded pid *and* start time (a clash across a reboot) is
    refused: it lives in the host's pid and mount namespaces, which no container has."""
    cid = sleeper(engine)
    lose_everything(engine, [cid])
    with stranger() as (other, other_name):
        forge(engine, cid, other.pid, pid_start=start_time(other.pid))
        assert engine.live_pid(cid) is None
        assert engine.open_process(cid, namespaces=("mnt", "uts")) is None
        assert "Exited (255)" in ps_line(cli, cid)
        r = cli("exec", cid[:12], "hostname", check=False)
        assert r.returncode != 0 and other_name not in r.stdout
        engine.supervisor.request({"op": "ping"})  # adoption: recorded exited, not adopted
        assert ContainerStore(engine.paths).state(cid).exit_code == 255
        cli("rm", cid[:12])
        assert other.poll() is None


def test_live_process_handle_is_the_container(engine: Engine) -> None:
    """The verified handle of a running container: its namespaces, not ours."""
    cid = sleeper(engine)
    proc = engine.open_process(cid, namespaces=("uts", "mnt", "net"))
    assert proc is not None
    with proc:
        assert proc.pid == engine.live_pid(cid) and proc.alive()
        for name, fd in proc.ns.items():
            assert os.fstat(fd).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino
    assert proc.pidfd == -1 and not proc.ns  # closed


def test_reboot_leaves_a_working_root(engine: Engine, cli: Cli) -> None:
    """Processes, container cgroups and the runtime dir gone, as after a reboot: every
    verb still answers promptly, running records become exited, and ``--restart always``
    comes back when the supervisor starts (Docker does the same at daemon start)."""
    plain = sleeper(engine)
    paused = sleeper(engine)
    engine.pause(paused)
    always = sleeper(engine, restart="always")
    lose_everything(engine, [plain, paused, always])
    driver = detect_driver()
    for cid in (plain, paused, always):
        assert driver.remove(cgroup_rel(cid))
    shutil.rmtree(engine.paths.run)

    started = time.monotonic()
    out = cli("ps", "-a", "--no-trunc", timeout=20).stdout
    for cid in (plain, paused, always):
        assert "Exited (255)" in next(ln for ln in out.splitlines() if ln.startswith(cid))
    assert cli("run", "--rm", "--network", "none", "busybox", "true", timeout=30).returncode == 0
    raw = ContainerStore(engine.paths)
    for cid in (plain, paused):
        st = raw.state(cid)
        assert (st.running, st.paused, st.exit_code, st.error) == (False, False, 255, VANISHED)
    _wait_for("--restart always to come back", lambda: engine.live_pid(always) is not None)
    cli("rm", "-f", plain, paused, always, timeout=30)
    assert cli("ps", "-aq").stdout.strip() == ""
    assert time.monotonic() - started < 30
    assert "Traceback" not in engine.paths.supervisor_log.read_text()


def test_reboot_with_its_bridge_and_table_gone(engine: Engine, cli: Cli) -> None:
    """The network half of a reboot: the root's bridge and nftables table are gone too.
    A published port, a new container and the old one started again all work."""
    from tuibox.engine.network.nft import table_name

    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"],
                                publish=["80"])).id
    bridges = {json.loads(p.read_text())["bridge"]
               for p in (engine.paths.root / "networks").glob("*.json")}
    assert bridges and all(Path(f"/sys/class/net/{b}").exists() for b in bridges)
    lose_everything(engine, [cid])
    assert detect_driver().remove(cgroup_rel(cid))
    shutil.rmtree(engine.paths.run)
    for bridge in bridges:  # only this root's own
        subprocess.run(["ip", "link", "del", bridge], check=True)
    subprocess.run(["nft", "delete", "table", "ip", table_name(engine.paths.root)], check=True)

    assert "Exited (255)" in ps_line(cli, cid)
    cli("run", "--rm", "-p", "80", "busybox", "true", timeout=30)
    cli("start", cid, timeout=30)
    address = engine.get(cid).state.network.networks["bridge"].ip  # from whichever pool
    assert f"inet {address}/" in cli("exec", cid, "ip", "-4", "addr", "show", "eth0").stdout
    assert engine.get(cid).state.network.ports  # published again
    cli("rm", "-f", cid, timeout=30)


def test_a_supervisor_that_cannot_start_says_why(tmp_path: Path) -> None:
    """A root whose start-up fails (here ``containers`` is a file) answers with the reason
    at once, instead of a client hanging on a supervisor that dies and restarts forever."""
    root = tmp_path / "root"
    paths = StatePaths(root)
    paths.ensure()
    shutil.rmtree(paths.containers)
    paths.containers.write_text("not a directory\n")
    client = SupervisorClient(paths)
    started = time.monotonic()
    try:
        with pytest.raises(TuiboxError, match=r"the supervisor cannot start: .*containers"):
            client.request({"op": "ping"})
        assert time.monotonic() - started < 10
        # It gives up the socket and, holding no container, the keeper leaves too: no loop.
        _wait_for("the keeper to leave", lambda: not _keeper_alive(paths), timeout=20)
        assert "Traceback" in paths.supervisor_log.read_text()
    finally:
        shutil.rmtree(paths.run, ignore_errors=True)


def _keeper_alive(paths: StatePaths) -> bool:
    try:
        return not _gone(int(paths.keeper_pidfile.read_text()))
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------- between the check and the use


def _run_plan(plan: Any) -> tuple[int, str, str]:
    """Start an ``exec`` plan as the CLI does and collect its output."""
    from tuibox.engine.runtime.exec import start_exec

    proc = start_exec(plan)
    try:
        out = err = b""
        while chunk := os.read(proc.stdout, 65536):
            out += chunk
        while chunk := os.read(proc.stderr, 65536):
            err += chunk
        _, status = os.waitpid(proc.helper, 0)
    finally:
        proc.close()
    return os.waitstatus_to_exitcode(status), out.decode(), err.decode()


def test_exec_joins_the_namespaces_it_verified_not_a_pid(engine: Engine) -> None:
    """exec's helper joins the namespace fds opened through the verified handle, never
    ``/proc/<pid>/ns``: here the pid is a stranger's by the time the helper starts (the
    handle's number and the record both name it, as after a reuse), and the command still
    runs in the container's own namespaces, not the stranger's."""
    cid = sleeper(engine)
    pid = engine.live_pid(cid)
    assert pid is not None
    ours = {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("mnt", "uts", "pid")}
    with stranger() as (other, other_name):
        theirs = {ns: os.readlink(f"/proc/{other.pid}/ns/{ns}") for ns in ours}
        plan = engine.exec_plan(cid, ["sh", "-c", "for n in mnt uts pid; do readlink "
                                      "/proc/self/ns/$n; done; hostname"])
        try:
            assert plan.process.pid == pid
            plan.process.pid = other.pid  # from here on the number names the stranger
            forge(engine, cid, other.pid, pid_start=start_time(other.pid))
            code, out, err = _run_plan(plan)
        finally:
            forge(engine, cid, pid, pid_start=start_time(pid))
        assert (code, err) == (0, "")
        mnt, uts, pidns, hostname = out.split()
        assert {"mnt": mnt, "uts": uts, "pid": pidns} == ours
        assert not {mnt, uts} & set(theirs.values())
        assert hostname == cid[:12] != other_name
        assert plan.process.pidfd == -1 and not plan.process.ns  # closed once passed on
        assert other.poll() is None and stranger_files(other) == {"marker"}


def test_exec_after_the_container_died_fails_and_enters_nothing_else(engine: Engine) -> None:
    """The container dies between exec's check and the helper's start (its pid free for
    anyone): the helper holds the dead container's namespaces, not a pid, so the exec
    fails with a clear error instead of running anywhere."""
    from tuibox.engine.errors import SetupError

    cid = sleeper(engine)
    plan = engine.exec_plan(cid, ["hostname"])
    try:
        pid = plan.process.pid
        detect_driver().kill_all(cgroup_rel(cid))
        _wait_for("the container to die", lambda: _gone(pid))
        with pytest.raises(SetupError, match="process is gone"):
            _run_plan(plan)
    finally:
        plan.process.close()
    assert engine.wait(cid) == 137


def test_cp_never_enters_a_stranger_named_by_a_running_record(engine: Engine, cli: Cli,
                                                              tmp_path: Path) -> None:
    """cp against a record that says running but names a stranger: while the container's
    own processes still run, its overlay is not mounted a second time either, so cp is
    refused and writes nowhere.  Once nothing of the container runs (its supervisor has
    not recorded that yet: it is stopped here), the record is stale and cp writes the
    container's own upper directory, as for a stopped container."""
    cid = sleeper(engine, name="victim")
    pid = engine.live_pid(cid)
    assert pid is not None
    upper = engine.containers.dir(cid) / "upper" / "tmp"
    planted = tmp_path / "planted"
    planted.write_text("from the host\n")
    supervisor = int(engine.supervisor.request({"op": "ping"})["pid"])
    with stranger() as (other, _):
        forge(engine, cid, other.pid, pid_start=start_time(other.pid))
        try:
            r = cli("cp", str(planted), "victim:/tmp/planted", check=False)
            assert r.returncode == 125 and "between processes" in r.stderr, r.stderr
            r = cli("cp", "victim:/tmp/marker", str(tmp_path / "stolen"), check=False)
            assert r.returncode == 125 and not (tmp_path / "stolen").exists()
            assert not (upper / "planted").exists()

            os.kill(supervisor, signal.SIGSTOP)  # it listens, but records nothing
            try:
                detect_driver().kill_all(cgroup_rel(cid))
                _wait_for("the container to die",
                          lambda: _gone(pid) and not detect_driver().pids(cgroup_rel(cid)))
                assert engine.containers.state(cid).running  # the record still says so
                cli("cp", str(planted), "victim:/tmp/planted")
                r = cli("cp", "victim:/tmp/marker", str(tmp_path / "stolen"), check=False)
                assert r.returncode == 125 and "Could not find" in r.stderr
            finally:
                forge(engine, cid, pid, pid_start=start_time(pid))
                os.kill(supervisor, signal.SIGCONT)
        finally:
            forge(engine, cid, pid)
        assert (upper / "planted").read_text() == "from the host\n"
        assert other.poll() is None and stranger_files(other) == {"marker"}
    assert engine.wait(cid) == 137
