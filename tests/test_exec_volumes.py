"""exec (with a real pty), volumes, bind mounts, tmpfs and cp on real containers."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tuibox.engine import Conflict, Engine, InvalidArgument, RunOptions

Cli = Any


def run_d(engine: Engine, script: str, **opts: object) -> str:
    return engine.run(RunOptions(image="busybox", command=["/bin/sh", "-c", script],
                                 **opts)).id


def in_pty(argv: list[str], send: bytes = b"", rows: int = 30, cols: int = 100,
           timeout: float = 20) -> tuple[int, bytes]:
    """Run ``argv`` on a fresh pty of the given size, type ``send``, collect the screen."""
    import fcntl
    import struct
    import termios

    pid, master = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.execvp(argv[0], argv)
    out = b""
    deadline = time.monotonic() + timeout
    if send:
        # Type once the command holds the terminal raw: while it is cooked the terminal
        # itself would take keys such as ^Q (flow control), as for a real user.
        while termios.tcgetattr(master)[3] & termios.ICANON and time.monotonic() < deadline:
            time.sleep(0.01)
        os.write(master, send)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    done, status = os.waitpid(pid, 0 if time.monotonic() < deadline else os.WNOHANG)
    if not done:  # a failure in its own words, not a hang until pytest's timeout
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(master)
    assert done, f"{argv[5:]} still running after {timeout} s; screen: {out!r}"
    return os.waitstatus_to_exitcode(status), out


def tuibox(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tuibox", "--root", str(root), *args]


def test_exec_runs_in_the_container(cli: Cli) -> None:
    cli("run", "-d", "--name", "web", "busybox", "sleep", "60")
    out = cli("exec", "web", "sh", "-c", "hostname; tr '\\0' _ < /proc/1/cmdline; echo; "
                                        "id -u; grep CapEff /proc/self/status").stdout.split()
    assert out[1] == "sleep_60_" and out[2] == "0" and out[-1] == "00000000a80425fb"
    assert cli("exec", "web", "sh", "-c", "exit 9", check=False).returncode == 9
    missing = cli("exec", "web", "nope", check=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert cli("exec", "web", "/etc/passwd", check=False).returncode == 126
    assert cli("exec", "-u", "nobody", "-w", "/tmp", "-e", "A=1", "web", "sh", "-c",
               "id -u; pwd; echo $A").stdout.split() == ["65534", "/tmp", "1"]
    assert cli("exec", "-i", "web", "cat", input=b"piped\n").stdout == "piped\n"
    cli("exec", "-d", "web", "sh", "-c", "sleep 0.3; echo later > /tmp/later")
    deadline = time.monotonic() + 30  # -d returned at once; the command finishes later
    while (later := cli("exec", "web", "cat", "/tmp/later", check=False)).stdout != "later\n":
        assert time.monotonic() < deadline, later.stderr
        time.sleep(0.05)


def test_exec_tty_sees_container_and_terminal_size(engine: Engine, root: Path) -> None:
    cid = run_d(engine, "sleep 60")
    code, out = in_pty(tuibox(root, "exec", "-it", cid, "sh"),
                       send=b"stty size; ps | grep -c 'sleep 60'; tty; exit 4\r",
                       rows=33, cols=111)
    text = out.decode(errors="replace")
    assert code == 4
    assert "33 111" in text
    assert "/dev/pts/0" in text


def test_exec_in_paused_or_stopped_container_is_a_clear_error(engine: Engine) -> None:
    cid = run_d(engine, "sleep 60")
    engine.pause(cid)
    with pytest.raises(Conflict, match="paused"):
        engine.exec_plan(cid, ["true"])
    engine.unpause(cid)
    engine.stop(cid, timeout=0)
    with pytest.raises(Conflict, match="not running"):
        engine.exec_plan(cid, ["true"])


def test_volumes_binds_and_tmpfs(engine: Engine, cli: Cli, tmp_path: Path) -> None:
    host = tmp_path / "srv"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    out = cli("run", "--rm", "-v", f"{host}:/data:ro", "-v", "cache:/cache", "--tmpfs",
              "/run:size=1m", "busybox", "sh", "-c",
              "cat /data/in.txt; touch /data/x 2>/dev/null || echo RO; echo kept > "
              "/cache/f; grep -E ' /run ' /proc/mounts").stdout
    assert out.splitlines()[:2] == ["from host", "RO"]
    assert "tmpfs" in out and "size=1024k" in out
    assert not (host / "x").exists()
    # the named volume outlives its container and is shared with the next one
    assert cli("run", "--rm", "-v", "cache:/cache", "busybox", "cat", "/cache/f").stdout \
        == "kept\n"
    assert "cache" in cli("volume", "ls", "-q").stdout.split()
    busy = cli("run", "-d", "-v", "cache:/cache", "busybox", "sleep", "60").stdout.strip()
    refused = cli("volume", "rm", "cache", check=False)
    assert refused.returncode == 1 and "in use" in refused.stderr
    cli("rm", "-f", busy)
    cli("volume", "rm", "cache")
    # -v creates a missing host dir; --mount refuses it
    made = tmp_path / "made"
    cli("run", "--rm", "-v", f"{made}:/m", "busybox", "true")
    assert made.is_dir()
    bad = cli("run", "--rm", "--mount", f"type=bind,source={tmp_path}/absent,target=/m",
              "busybox", "true", check=False)
    assert bad.returncode == 125 and "does not exist" in bad.stderr


def test_anonymous_volumes_removed_with_rm_v(engine: Engine) -> None:
    cid = engine.create(RunOptions(image="busybox", command=["true"], volumes=["/scratch"])).id
    anon = engine.containers.config(cid).mounts[0].source
    assert anon in [v.name for v in engine.volumes.list()]
    engine.remove(cid, volumes=True)
    assert anon not in [v.name for v in engine.volumes.list()]


def test_read_only_rootfs_with_tmpfs(engine: Engine) -> None:
    from tests.test_container_runtime import sh

    code, out, _ = sh(engine, "touch /x 2>/dev/null || echo ROOT-RO; touch /tmp/ok && echo TMP",
                      read_only=True, tmpfs=["/tmp"])
    assert out.split() == ["ROOT-RO", "TMP"]


def test_image_symlink_cannot_aim_a_mount_at_the_host(engine: Engine, tmp_path: Path) -> None:
    """An image whose /data is a symlink to /etc gets the mount in its own /etc."""
    from tests.imagefixtures import busybox_rootfs

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "data").symlink_to("/etc")
    engine.images.import_image(rootfs, ref="linky:1")
    name = f"tuibox-canary-{os.getpid()}"
    host_canary = Path("/etc") / name
    from tests.test_container_runtime import run_output

    code, out, _ = run_output(engine, "/bin/sh", "-c", f"grep -c ' /etc/{name} ' /proc/mounts",
                              image="linky:1", volumes=[f"vol:/data/{name}"])
    assert out.strip() == "1"  # mounted on the container's /etc/<name> ...
    assert not host_canary.exists()  # ... and nothing was made on the host


def test_cp_both_ways_running_and_stopped(engine: Engine, cli: Cli, tmp_path: Path) -> None:
    cid = run_d(engine, "echo secret > /root/s; chmod 600 /root/s; sleep 60")
    time.sleep(0.3)
    src = tmp_path / "up.txt"
    src.write_text("upload\n")
    src.chmod(0o640)
    cli("cp", str(src), f"{cid}:/tmp/")
    assert cli("exec", cid, "stat", "-c", "%a %u", "/tmp/up.txt").stdout == "640 0\n"
    cli("cp", f"{cid}:/root/s", str(tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "secret\n"
    assert oct((tmp_path / "got").stat().st_mode & 0o777) == "0o600"
    d = tmp_path / "dir"
    d.mkdir()
    cli("cp", f"{cid}:/etc", str(d))
    assert (d / "etc" / "passwd").exists()
    engine.stop(cid, timeout=0)
    cli("cp", f"{cid}:/tmp/up.txt", str(tmp_path / "again"))  # stopped: still works
    assert (tmp_path / "again").read_text() == "upload\n"
    missing = cli("cp", f"{cid}:/nope", str(tmp_path), check=False)
    assert missing.returncode != 0 and "/nope" in missing.stderr


def test_cp_through_a_hostile_symlink_stays_inside(engine: Engine, cli: Cli,
                                                   tmp_path: Path) -> None:
    cid = run_d(engine, "ln -s / /escape; ln -s /etc/shadow-host /leak; sleep 60")
    time.sleep(0.3)
    payload = tmp_path / "evil"
    payload.write_text("pwned\n")
    target = Path("/tmp") / f"tuibox-escape-{os.getpid()}"
    cli("cp", str(payload), f"{cid}:/escape{target}", check=False)
    assert not target.exists()  # landed in the container's /tmp, not the host's
    assert cli("exec", cid, "cat", str(target)).stdout == "pwned\n"
    out = cli("cp", f"{cid}:/escape/etc/passwd", str(tmp_path / "p")).returncode
    assert out == 0 and "root:x:0:0" in (tmp_path / "p").read_text()
    assert (tmp_path / "p").read_text() != Path("/etc/passwd").read_text()


def test_bad_mount_specs(engine: Engine) -> None:
    for spec in (["rel:/x:bogus"], ["/a:relative"], ["/a:/"]):
        with pytest.raises(InvalidArgument):
            engine.create(RunOptions(image="busybox", command=["true"], volumes=spec))
    with pytest.raises(InvalidArgument, match="duplicate"):
        engine.create(RunOptions(image="busybox", command=["true"], volumes=["/a:/x"],
                                 tmpfs=["/x"]))
    assert engine.list(all=True) == []


def test_no_mounts_left_after_everything(engine: Engine) -> None:
    from tests.conftest import _mounts_under

    # Only this engine's state root and runtime dir: other roots on a busy host mount and
    # unmount their own things meanwhile.
    owned = (str(engine.paths.root), str(engine.paths.run))
    before = _mounts_under(owned)
    cid = run_d(engine, "sleep 60", volumes=["v1:/v"], tmpfs=["/t"])
    # the volume and the tmpfs were really mounted (in the container's namespace)
    inside = Path(f"/proc/{engine.containers.state(cid).pid}/mountinfo").read_text().split()
    assert "/v" in inside and "/t" in inside
    subprocess.run(["true"], check=True)
    engine.remove(cid, force=True)
    assert _mounts_under(owned) == before


def test_new_volume_gets_the_image_content(engine: Engine, tmp_path: Path) -> None:
    from tests.imagefixtures import busybox_rootfs
    from tests.test_container_runtime import run_output

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "data").mkdir()
    (rootfs / "data" / "seed.txt").write_text("from the image\n")
    (rootfs / "data").chmod(0o750)
    engine.images.import_image(rootfs, ref="seeded:1", changes=['VOLUME ["/data"]'])
    code, out, _ = run_output(engine, "/bin/sh", "-c", "cat /data/seed.txt; stat -c %a /data",
                              image="seeded:1")
    assert out.split("\n")[:2] == ["from the image", "750"]
    # a named volume is filled once, when new; later containers see their own changes
    run_output(engine, "/bin/sh", "-c", "echo changed > /data/seed.txt", image="seeded:1",
               volumes=["keep:/data"])
    code, out, _ = run_output(engine, "cat", "/data/seed.txt", image="seeded:1",
                              volumes=["keep:/data"])
    assert out == "changed\n"
