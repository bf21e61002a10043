"""``tuibox system``: boot after a (simulated) reboot by Docker's restart rules, info
that tells a supervisor that does not answer, df's numbers, prune's prompt and effects,
and the aliases.  Real containers on the test's own root (issue 13 items 1 and 8)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from pathlib import Path
from typing import Any

from tests.test_escape_stalepid import lose_everything
from tests.waiting import alive, wait_for
from tuibox.engine import Engine
from tuibox.engine.cgroups import detect_driver
from tuibox.engine.supervisor.running import cgroup_rel

Cli = Any


def run_d(cli: Cli, name: str, *flags: str, command: str = "sleep 600") -> str:
    return str(cli("run", "-d", "--name", name, "--network", "none", *flags, "busybox",
                   *shlex.split(command)).stdout.strip())


def test_boot_after_a_reboot_follows_docker(engine: Engine, cli: Cli, tmp_path: Path) -> None:
    keep = run_d(cli, "keep", "--restart", "always")
    plain = run_d(cli, "plain")
    retry = run_d(cli, "retry", "--restart", "on-failure:3")
    forced = run_d(cli, "forced", "--restart", "always")
    held = run_d(cli, "held", "--restart", "unless-stopped")
    cli("stop", "-t", "1", "forced", "held")  # stopped by hand before the reboot
    never = cli("create", "--name", "never", "--network", "none", "--restart", "always",
                "busybox", "sleep", "600").stdout.strip()

    # The reboot: this root's processes, container cgroups and runtime dir are gone.
    lose_everything(engine, [keep, plain, retry])
    for cid in (keep, plain, retry):
        assert detect_driver().remove(cgroup_rel(cid))
    shutil.rmtree(engine.paths.run)
    assert "Supervisor: not running" in cli("info").stdout

    spare = tmp_path / "spare"  # a second root on the same command line
    try:
        out = cli("system", "boot", str(engine.paths.root), str(spare), timeout=60).stdout
        assert f"{spare}: supervisor running" in out
    finally:
        Engine(spare).shutdown()
    assert f"{engine.paths.root}: started forced ({forced[:12]}, restart policy always)" \
        in out
    for cid in (keep, retry, forced):  # always, on-failure after the 255, always by hand
        wait_for(f"{cid[:12]} to run again", lambda c=cid: engine.live_pid(c) is not None)
    st = engine.containers.state(plain)
    assert (st.running, st.exit_code) == (False, 255)  # --restart no: recorded, not started
    st = engine.containers.state(held)
    assert not st.running and st.manually_stopped  # unless-stopped, and it was
    assert engine.containers.state(never).status == "created"
    assert "Supervisor: running (pid" in cli("info").stdout
    cli("rm", "-f", keep, plain, retry, forced, held, never, timeout=60)


def test_boot_says_which_start_failed_and_goes_on(engine: Engine, cli: Cli,
                                                 tmp_path: Path) -> None:
    source = tmp_path / "on-a-tmpfs"  # a bind source a reboot takes away
    source.mkdir()
    good = run_d(cli, "good", "--restart", "always")
    bad = run_d(cli, "bad", "--restart", "always",
                "--mount", f"type=bind,source={source},target=/mnt")
    cli("stop", "-t", "0", good, bad)
    source.rmdir()
    proc = cli("system", "boot", check=False, timeout=60)
    assert proc.returncode == 1
    assert f"cannot start bad ({bad[:12]}): container setup failed at mount" in proc.stderr
    assert f"started good ({good[:12]}, restart policy always)" in proc.stdout
    assert engine.live_pid(good) is not None and engine.live_pid(bad) is None
    cli("rm", "-f", good, bad)


def test_info_tells_a_supervisor_that_does_not_answer(engine: Engine, cli: Cli) -> None:
    pid = int(engine.supervisor.request({"op": "ping"})["pid"])
    assert f"Supervisor: running (pid {pid})" in cli("info").stdout
    os.kill(pid, signal.SIGSTOP)  # its keeper still holds the socket: connects succeed
    try:
        out = cli("info").stdout
        assert "Supervisor: not answering: no reply within 2s" in out
        fmt = cli("system", "info", "--format", "{{.SupervisorRunning}}").stdout
        assert fmt.strip() == "false"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f"Supervisor: running (pid {pid})" in cli("info").stdout


def summary(cli: Cli) -> dict[str, dict[str, str]]:
    lines = cli("system", "df", "--format", "json").stdout.splitlines()
    return {row["Type"]: row for row in map(json.loads, lines)}


def test_df_shows_docker_columns_and_what_is_reclaimable(engine: Engine, cli: Cli) -> None:
    image_size = sum(engine.images.layer_store.size(c)
                     for c in engine.images.resolve("busybox").chain_ids)
    up = run_d(cli, "up", "-v", "data:/data", command="sh -c "
               "'dd if=/dev/zero of=/big bs=1000 count=500 && "
               "dd if=/dev/zero of=/data/v bs=1000 count=200 && sleep 600'")
    wait_for("the writes", lambda: (engine.containers.dir(up) / "upper" / "big").exists()
             and (engine.containers.dir(up) / "upper" / "big").stat().st_size == 500_000)
    cli("run", "--name", "done", "--network", "none", "busybox",
        "dd", "if=/dev/zero", "of=/small", "bs=1000", "count=300")
    cli("volume", "create", "spare")
    wait_for("the volume write", lambda: (engine.volumes.data("data") / "v").exists()
             and (engine.volumes.data("data") / "v").stat().st_size == 200_000)

    out = cli("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in out[1:]] == ["Images", "Containers", "Local", "Build"]
    rows = summary(cli)
    assert rows["Images"]["TotalCount"] == "1" and rows["Images"]["Active"] == "1"
    assert rows["Images"]["Reclaimable"] == "0B (0%)"
    assert rows["Images"]["Size"].endswith("MB") and image_size > 1_000_000
    assert rows["Containers"] == {"Type": "Containers", "TotalCount": "2", "Active": "1",
                                  "Size": "800kB", "Reclaimable": "300kB (37%)"}
    assert rows["Local Volumes"] == {"Type": "Local Volumes", "TotalCount": "2", "Active": "1",
                                     "Size": "200kB", "Reclaimable": "0B (0%)"}
    assert rows["Build Cache"]["Size"] == "0B"

    verbose = cli("system", "df", "-v").stdout
    for title in ("Images space usage:", "Containers space usage:",
                  "Local Volumes space usage:", "Build cache usage: 0B"):
        assert title in verbose
    assert any(line.split()[:2] == ["busybox", "latest"] and line.split()[-1] == "2"
               for line in verbose.splitlines())  # two containers use it
    assert any(line.startswith(up[:12]) and " 500kB " in line for line in verbose.splitlines())
    assert any(line.split() == ["data", "1", "200kB"] for line in verbose.splitlines())
    cli("rm", "-f", up, "done")


def test_prune_asks_then_removes_what_docker_does(engine: Engine, cli: Cli,
                                                  tmp_path: Path) -> None:
    up = run_d(cli, "up", "-v", "/anon-in-use")
    cli("run", "--name", "done", "--network", "none", "-v", "/anon", "busybox",
        "dd", "if=/dev/zero", "of=/f", "bs=1000", "count=300")
    cli("volume", "create", "named")
    cli("network", "create", "unused-net")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "file").write_bytes(b"x" * 4000)
    cli("import", str(rootfs), "junk:1")
    junk_user = cli("create", "--network", "none", "junk:1", "/file").stdout.strip()
    cli("rmi", "-f", "junk:1")  # untagged but kept: a container still uses it
    junk_id = engine.containers.config(junk_user).image_id

    # No: nothing goes.  Docker's prompt, word for word.
    proc = cli("system", "prune", "--volumes", input=b"n\n")
    assert proc.stdout == (
        "WARNING! This will remove:\n"
        "  - all stopped containers\n"
        "  - all networks not used by at least one container\n"
        "  - all anonymous volumes not used by at least one container\n"
        "  - all dangling images\n"
        "  - unused build cache\n\n"
        "Are you sure you want to continue? [y/N] ")
    assert len(engine.list(all=True)) == 3

    out = cli("system", "prune", "--volumes", input=b"y\n").stdout.split("[y/N] ", 1)[1]
    done = [c.id for c in engine.list(all=True) if c.name == "done"]
    assert not done and [c.id for c in engine.list(all=True)] == [up]
    section = out.split("\n\n")[0].splitlines()
    assert section[0] == "Deleted Containers:" and junk_user in section[1:] \
        and len(section) == 3  # `done` and the one made from junk:1
    assert "Deleted Networks:\nunused-net\n" in out
    assert f"deleted: {junk_id}" in out  # dangling once its container went
    volumes = {v.name for v in engine.volumes.list()}
    assert "named" in volumes and len(volumes) == 2  # named and the one `up` mounts
    reclaimed = out.splitlines()[-1]
    assert reclaimed.startswith("Total reclaimed space: ") and reclaimed != \
        "Total reclaimed space: 0B"
    assert cli("images", "-q").stdout.strip()  # busybox is tagged: only -a takes it

    cli("rm", "-f", up)
    out = cli("system", "prune", "-a", "-f").stdout
    assert "untagged: busybox:latest" in out
    assert cli("images", "-q").stdout.strip() == ""
    assert "named" in {v.name for v in engine.volumes.list()}  # no --volumes: kept


def test_system_aliases_and_help(engine: Engine, cli: Cli) -> None:
    cli("create", "--name", "aliased", "--network", "none", "busybox", "true")
    assert cli("system", "info").stdout.splitlines()[:2] == cli("info").stdout.splitlines()[:2]
    events = cli("system", "events", "--since", "0", "--until", "0s",
                 "--format", "{{.action}} {{.name}}").stdout
    assert "create aliased" in events.splitlines()
    helptext = cli("system", "--help").stdout
    for verb in ("boot", "df", "events", "info", "prune", "shutdown"):
        assert verb in helptext
    proc = cli("system", "nonsense", check=False)
    assert proc.returncode == 125 and "invalid choice" in proc.stderr
    cli("rm", "aliased")


def test_shutdown_refuses_while_containers_run(engine: Engine, cli: Cli) -> None:
    cid = run_d(cli, "busy")
    keeper = int(engine.paths.keeper_pidfile.read_text())
    proc = cli("system", "shutdown", check=False)
    assert proc.returncode == 125 and "1 containers are running" in proc.stderr
    cli("system", "shutdown", "-f")
    assert not engine.paths.run.exists()
    wait_for("the keeper to go", lambda: not alive(keeper))
    st = engine.containers.state(cid)
    assert not st.running and st.manually_stopped
    cli("rm", cid)
