"""The command line end to end, as a user types it: the seed commands and docker's shapes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

Cli = Any


def test_seed_commands_end_to_end(cli: Cli, root: Path, busybox_archives: tuple[Path, Path],
                                  tmp_path: Path) -> None:
    info = cli("info").stdout
    assert "Cgroup Version: 1" in info and "Kernel Version:" in info
    assert f"Docker Root Dir: {root}" in info
    # load both archive kinds (the image is already there from the fixture: idempotent)
    assert "Loaded image: busybox:latest" in cli("load", "-i", str(busybox_archives[0])).stdout
    assert "busybox:latest" in cli("load", "-i", str(busybox_archives[1])).stdout

    hello = cli("run", "busybox", "/bin/echo", "Hello", "Docker")
    assert hello.stdout == "Hello Docker\n"

    sample_job = cli("run", "-d", "busybox", "/bin/sh", "-c",
                     "while true; do echo Docker; sleep 1; done").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", sample_job)

    follower = subprocess.Popen([sys.executable, "-m", "tuibox", "--root", str(root), "logs",
                                 "-f", "-t", sample_job], stdout=subprocess.PIPE, text=True)
    assert follower.stdout is not None
    lines = [follower.stdout.readline() for _ in range(3)]
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z Docker\n", line), line

    ps = cli("ps").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                             "PORTS", "NAMES"]
    assert sample_job[:12] in ps[1] and "Up " in ps[1]

    cli("stop", "-t", "1", sample_job)
    follower.wait(timeout=10)  # the follow ends when the container stops
    assert follower.returncode == 0
    ps_a = cli("ps", "-a").stdout
    assert re.search(r"Exited \(137\) .* ago", ps_a)
    assert cli("ps", "-q").stdout == ""
    assert cli("rm", sample_job).stdout.strip() == sample_job
    assert sample_job[:12] not in cli("ps", "-a").stdout


def test_run_exit_codes(cli: Cli) -> None:
    assert cli("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    missing = cli("run", "--rm", "busybox", "nonexistent", check=False)
    assert missing.returncode == 127
    assert 'exec: "nonexistent": executable file not found in $PATH' in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert cli("run", "--rm", "busybox", "/etc", check=False).returncode == 126
    # --pull never: a missing image must not send this test to a registry on the internet
    bad_image = cli("run", "--pull", "never", "nosuchimage", "true", check=False)
    assert bad_image.returncode == 125 and "No such image" in bad_image.stderr
    bad_flag = cli("run", "--bogus", "busybox", "true", check=False)
    assert bad_flag.returncode == 125
    assert cli("ps", "-aq").stdout == ""  # --rm cleaned up even the failed ones


def test_run_separates_stdout_and_stderr(cli: Cli) -> None:
    proc = cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert proc.stdout == "out\n" and proc.stderr == "err\n"


def test_name_conflict_and_unknown_container(cli: Cli) -> None:
    cli("create", "--name", "web", "busybox", "true")
    dup = cli("create", "--name", "web", "busybox", "true", check=False)
    assert dup.returncode == 125 and "already in use" in dup.stderr
    unknown = cli("stop", "nope", check=False)
    assert unknown.returncode == 1 and "No such container: nope" in unknown.stderr


def test_ps_formats(cli: Cli) -> None:
    cid = cli("run", "-d", "--name", "fmt", "-l", "a=b", "busybox", "sleep", "30").stdout.strip()
    rows = [json.loads(line) for line in cli("ps", "--format", "json").stdout.splitlines()]
    assert rows[0]["ID"] == cid[:12] and rows[0]["Names"] == "fmt"
    assert rows[0]["State"] == "running" and rows[0]["Labels"] == "a=b"
    assert cli("ps", "--no-trunc", "-q").stdout.strip() == cid
    assert cli("ps", "--format", "{{.Names}} {{.State}}").stdout == "fmt running\n"


def test_inspect_shape(cli: Cli) -> None:
    cid = cli("run", "-d", "--name", "ins", "--restart", "on-failure:3", "busybox",
              "sleep", "30").stdout.strip()
    data = json.loads(cli("inspect", "ins").stdout)[0]
    assert data["Id"] == cid and data["Name"] == "/ins"
    state = data["State"]
    for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Pid", "ExitCode",
                "StartedAt", "FinishedAt"):
        assert key in state
    assert state["Status"] == "running" and state["Pid"] > 0
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert data["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert data["Config"]["Cmd"] == ["sleep", "30"]
    assert data["Image"].startswith("sha256:")
    assert cli("inspect", "-f", "{{.State.Status}}", "ins").stdout == "running\n"
    image = json.loads(cli("inspect", "busybox").stdout)[0]
    assert image["RepoTags"] == ["busybox:latest"]


def test_logs_tail_since_and_streams(cli: Cli) -> None:
    cid = cli("run", "-d", "busybox", "sh", "-c",
              "for i in 1 2 3 4 5; do echo $i; done; echo oops >&2").stdout.strip()
    cli("wait", cid)
    logs = cli("logs", cid)
    assert logs.stdout == "1\n2\n3\n4\n5\n" and logs.stderr == "oops\n"
    assert cli("logs", "--tail", "2", cid).stdout == "5\n"
    assert cli("logs", "--since", "1h", cid).stdout == "1\n2\n3\n4\n5\n"
    assert cli("logs", "--until", "1h", cid).stdout == ""
    path = json.loads(cli("inspect", cid).stdout)[0]["LogPath"]
    first = json.loads(Path(path).read_text().splitlines()[0])
    assert list(first) == ["log", "stream", "time"]
    assert first["log"] == "1\n" and first["stream"] == "stdout"


def test_wait_kill_restart_and_prune(cli: Cli) -> None:
    cid = cli("run", "-d", "busybox", "sleep", "60").stdout.strip()
    cli("kill", "-s", "TERM", cid)  # PID 1 ignores an unhandled TERM
    time.sleep(0.3)
    assert "Up " in cli("ps").stdout
    cli("kill", cid)
    assert cli("wait", cid).stdout == "137\n"
    cli("restart", "-t", "0", cid)
    assert "Up " in cli("ps").stdout
    cli("rm", "-f", cid)
    done = cli("run", "-d", "busybox", "true").stdout.strip()
    cli("wait", done)
    out = cli("container", "prune", "-f").stdout
    assert done in out


def test_events_command(cli: Cli) -> None:
    cid = cli("run", "-d", "--name", "evt", "busybox", "true").stdout.strip()
    cli("wait", cid)
    out = cli("events", "--since", "1m", "--until", "0s").stdout
    assert f"container create {cid} (image=busybox, name=evt)" in out
    assert f"container die {cid} (exitCode=0, name=evt)" in out


def test_images_tag_rmi(cli: Cli) -> None:
    out = cli("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    cli("tag", "busybox", "mine:1")
    cid = cli("create", "mine:1", "true").stdout.strip()
    refused = cli("rmi", "busybox", check=False)
    assert refused.returncode == 0  # only an untag: mine:1 still holds the image
    assert "Untagged: busybox:latest" in refused.stdout
    in_use = cli("rmi", "mine:1", check=False)
    assert in_use.returncode == 1 and cid[:12] in in_use.stderr
    cli("rm", cid)
    assert "Deleted: sha256:" in cli("rmi", "mine:1").stdout
    assert cli("images", "-q").stdout == ""


def test_import_and_save(cli: Cli, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "hello.txt").write_text("from a dir\n")
    cli("import", "-c", 'CMD ["/bin/sh", "-c", "cat /hello.txt"]', str(rootfs), "mine:dir")
    assert cli("run", "--rm", "mine:dir").stdout == "from a dir\n"
    out = tmp_path / "saved.tar"
    cli("save", "-o", str(out), "mine:dir")
    cli("rmi", "mine:dir")
    assert "Loaded image: mine:dir" in cli("load", "-i", str(out)).stdout


@pytest.mark.parametrize("count", [20])
def test_concurrent_runs_from_separate_processes(cli: Cli, root: Path, count: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "tuibox", "--root", str(root), "run", "-d",
                               "busybox", "sleep", "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == count
    rows = [json.loads(line) for line in cli("ps", "--format", "json").stdout.splitlines()]
    assert len(rows) == count
    assert len({r["Names"] for r in rows}) == count


def test_resource_verbs(cli: Cli) -> None:
    cid = cli("run", "-d", "--name", "lim", "-m", "64m", "--cpus", "0.5", "--pids-limit", "99",
              "busybox", "sh", "-c", "while true; do :; done").stdout.strip()
    stats = cli("stats", "--no-stream").stdout.splitlines()
    assert stats[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    assert "lim" in stats[1] and "64MiB" in stats[1]
    row = json.loads(cli("stats", "--no-stream", "--format", "json", "lim").stdout)
    assert row["Name"] == "lim" and row["PIDs"] == "1"
    cli("update", "--memory", "128m", "--pids-limit", "200", "lim")
    assert "128MiB" in cli("stats", "--no-stream", "lim").stdout
    cli("pause", "lim")
    assert "(Paused)" in cli("ps").stdout
    assert cli("inspect", "-f", "{{.State.Status}}", "lim").stdout == "paused\n"
    cli("unpause", "lim")
    cli("freeze", "lim")
    cli("thaw", "lim")
    top = cli("top", "lim").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "while true" in top[1]
    km = cli("run", "--kernel-memory", "10m", "busybox", "true", check=False)
    assert km.returncode == 125 and "--kernel-memory is not supported" in km.stderr
    nothing = cli("update", "lim", check=False)
    assert nothing.returncode == 125
    cli("rm", "-f", cid)
