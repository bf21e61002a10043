"""``exec`` brings nothing of the host into the container.

While ``exec`` joins a container, a process inside can look at every new process that
appears in its pid namespace.  A static C probe does that as fast as it can, reading
``/proc/<pid>/exe``, ``environ`` and ``fd/*`` of every process but itself, while the CLI
(with a secret in its environment and its stdio on host files) runs ``exec`` 30 times.
Nothing it reads may be the host's: no secret, no host binary, no host file.  The exec'd
processes themselves (their environment carries a mark) must be seen, or the probe proved
nothing.  Then: the exec'd process's stdio are pipes relayed by tuibox, not the caller's
descriptors, and nothing in the container holds the caller's stdin after ``exec`` ends.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tuibox.engine import Engine, RunOptions
from tuibox.engine.paths import StatePaths

Cli = Any

PROBE_C = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Log what /proc shows of every other process; one line per new finding. */
static FILE *out;
static unsigned long seen[1 << 16];

static unsigned long hash(const char *s, int n, int pid) {
    unsigned long h = 1469598103934665603UL ^ (unsigned long)pid;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211UL;
    return h;
}

static void report(int pid, const char *what, const char *data, int n) {
    unsigned long h = hash(data, n, pid) ^ hash(what, strlen(what), 0);
    if (seen[h & 0xffff] == h) return;
    seen[h & 0xffff] = h;
    fprintf(out, "%d %s ", pid, what);
    for (int i = 0; i < n; i++) fputc(data[i] ? data[i] : ' ', out);
    fputc('\n', out);
    fflush(out);
}

int main(int argc, char **argv) {
    char path[256], buf[65536];
    int self = getpid();
    out = fopen(argv[1], "a");
    for (;;) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, buf, sizeof buf);
            if (n > 0) report(pid, "exe", buf, n);
            snprintf(path, sizeof path, "/proc/%d/environ", pid);
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                n = read(fd, buf, sizeof buf);
                if (n > 0) report(pid, "environ", buf, n);
                close(fd);
            }
            snprintf(path, sizeof path, "/proc/%d/fd", pid);
            DIR *fds = opendir(path);
            if (fds) {
                struct dirent *f;
                while ((f = readdir(fds))) {
                    if (f->d_name[0] == '.') continue;
                    char link[300];
                    snprintf(link, sizeof link, "/proc/%d/fd/%s", pid, f->d_name);
                    n = readlink(link, buf, sizeof buf);
                    if (n > 0) report(pid, "fd", buf, n);
                    /* A host file on an fd could be read through the magic link. */
                    fd = open(link, O_RDONLY | O_NONBLOCK);
                    if (fd >= 0) {
                        n = read(fd, buf, sizeof buf);
                        if (n > 0) report(pid, "fd-content", buf, n);
                        close(fd);
                    }
                }
                closedir(fds);
            }
        }
        closedir(proc);
    }
}
"""


def _build_probe(tmp: Path) -> Path:
    (tmp / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp / "probe"), str(tmp / "probe.c")],
                   check=True)
    return tmp / "probe"


def _tuibox(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tuibox", "--root", str(root), *args]


def _upper(engine: Engine, cid: str) -> Path:
    return StatePaths(engine.paths.root).containers / cid / "upper"


def test_exec_helper_shows_the_container_nothing_of_the_host(
        engine: Engine, root: Path, tmp_path: Path) -> None:
    from tests.imagefixtures import busybox_rootfs

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "probe").write_bytes(_build_probe(tmp_path).read_bytes())
    (rootfs / "probe").chmod(0o755)
    engine.images.import_image(rootfs, ref="probe:1")
    cid = subprocess.run(_tuibox(root, "run", "-d", "--network", "none", "probe:1", "/probe",
                                 "/tmp/seen"), check=True, capture_output=True,
                         text=True).stdout.strip()
    secret = f"hunter2-{secrets.token_hex(8)}"
    # The operator's stdin is meant for the container (with -i); their output file is not.
    typed = tmp_path / f"HOSTSTDIO-{secrets.token_hex(4)}.in"
    typed.write_text("operator input\n")
    hostio = tmp_path / f"HOSTSTDIO-{secrets.token_hex(4)}.out"
    hostio.write_text(f"host file content {secret}\n")
    env = {**os.environ, "TUIBOX_TEST_SECRET": secret}
    for i in range(30):
        flags = [["-i"], [], ["-u", "nobody"]][i % 3]
        with open(typed, "rb") as stdin, open(hostio, "ab") as out:
            code = subprocess.run(_tuibox(root, "exec", *flags, "-e", "EXEC_MARK=1", cid,
                                          "sh", "-c", "sleep 0.1; exit 3"),
                                  stdin=stdin, stdout=out, stderr=out, env=env,
                                  timeout=60).returncode
        assert code == 3
    seen = (_upper(engine, cid) / "tmp" / "seen").read_text(errors="replace")
    marks = [line for line in seen.splitlines() if "environ" in line and "EXEC_MARK" in line]
    assert len(marks) >= 5, "the probe did not see the exec'd processes: it proves nothing"
    assert secret not in seen
    for line in seen.splitlines():
        _, what, data = [*line.split(" ", 2), "", ""][:3]
        if what == "exe":
            assert data == "/bin/busybox", line  # never python, never a memfd of ours
        if what == "fd":
            assert data.startswith(("pipe:", "/dev/null", "/tmp/seen", "/proc/")), line
        assert "HOSTSTDIO" not in line and "python" not in line and str(tmp_path) not in line
    assert len({line.split()[0] for line in marks}) >= 5


def test_exec_stdio_are_pipes_not_the_callers_files(engine: Engine, root: Path,
                                                    tmp_path: Path) -> None:
    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"], network="none")).id
    secret = f"host-only-{secrets.token_hex(8)}"
    out = tmp_path / "stdout"
    out.write_text(f"{secret}\n")  # what a process holding this file could read back
    err = tmp_path / "stderr"
    # Read fd 1 back first: later it would hold our own output, not yet relayed.
    script = ("timeout 1 head -c 200 /proc/self/fd/1 >&2; "
              "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done; "
              "ls /proc/self/fd | wc -l")
    with open(out, "ab") as stdout, open(err, "wb") as stderr:
        code = subprocess.run(_tuibox(root, "exec", cid, "sh", "-c", script),
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                              timeout=60).returncode
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == secret  # the file itself was only appended to, through our relay
    links = lines[1:4]
    assert links[0] == "/dev/null"
    assert links[1].startswith("pipe:[") and links[2].startswith("pipe:["), links
    assert lines[4].strip() == "4"  # 0, 1, 2 and the one ls opened: nothing else
    assert secret not in err.read_text()


def test_nothing_in_the_container_holds_the_callers_stdin(engine: Engine, root: Path) -> None:
    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"], network="none")).id
    r, w = os.pipe()
    caller_stdin = os.fstat(r).st_ino
    # A background process outlives exec and would keep reading its stdin.
    proc = subprocess.Popen(_tuibox(root, "exec", "-i", cid, "sh", "-c",
                                    "exec 3<&0; (sleep 30; cat <&3 >/tmp/late) "
                                    ">/dev/null 2>&1 & echo started"),
                            stdin=r, stdout=subprocess.PIPE, text=True)
    os.close(r)
    os.write(w, b"typed before\n")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "started\n"
    fds = subprocess.run(_tuibox(root, "exec", cid, "sh", "-c",
                                 "ls -l /proc/[0-9]*/fd/ 2>/dev/null"),
                         capture_output=True, text=True, timeout=60).stdout
    assert "pipe:[" in fds  # the scan sees pipes (its own), just not ours
    assert f"pipe:[{caller_stdin}]" not in fds
    # The operator keeps typing at the shell: no process anywhere reads it any more.
    with pytest.raises(BrokenPipeError):
        os.write(w, b"typed after exec ended\n")
    os.close(w)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_exec_exit_codes_and_signals_still_work(engine: Engine, root: Path, tty: bool) -> None:
    from tests.test_exec_volumes import in_pty

    cid = engine.run(RunOptions(image="busybox", command=["sleep", "600"], network="none")).id
    if tty:
        code, out = in_pty(_tuibox(root, "exec", "-it", cid, "sh", "-c",
                                   "tty; exit 7"))
        assert code == 7 and b"/dev/pts/" in out
        return
    proc = subprocess.run(_tuibox(root, "exec", "-i", cid, "sh", "-c",
                                  "cat; echo err >&2; exit 5"), input=b"x" * 300000,
                          capture_output=True, timeout=60)
    assert proc.returncode == 5 and len(proc.stdout) == 300000 and proc.stderr == b"err\n"


_TARGET = """
import os, sys
from tuibox.engine.runtime import capabilities, confine
# The exec'd command's state just before execve: a container's caps, still our process.
confine.Confinement.of(capabilities.DEFAULT_MASK, None).apply()
if sys.argv[1] == "hidden":
    confine.go_non_dumpable()
os.write(1, b"ready")
sys.stdin.read()
"""

_READER = """
import os, sys
from tuibox.engine.runtime import capabilities, confine
confine.Confinement.of(capabilities.DEFAULT_MASK, None).apply()  # a container's root
pid = sys.argv[1]
for what, read in (("environ", lambda: open(f"/proc/{pid}/environ", "rb").read()),
                   ("exe", lambda: os.readlink(f"/proc/{pid}/exe").encode()),
                   ("fd", lambda: " ".join(os.readlink(f"/proc/{pid}/fd/{n}")
                                           for n in os.listdir(f"/proc/{pid}/fd")).encode())):
    try:
        print(what, read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError as exc:
        print(what, "refused", exc.errno)
"""


def test_non_dumpable_hides_environ_exe_and_fds_from_a_containers_root() -> None:
    """The mechanism the helper relies on: a process with Docker's capabilities (uid 0,
    no CAP_SYS_PTRACE) reads the environ, exe and fds of another root process with the
    same capabilities (the command between dropping them and execve), unless that
    process made itself non-dumpable."""
    secret = f"s3cret-{secrets.token_hex(8)}"
    seen = {}
    for mode in ("shown", "hidden"):
        target = subprocess.Popen([sys.executable, "-c", _TARGET, mode],
                                  env={**os.environ, "TUIBOX_TEST_SECRET": secret},
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert target.stdout is not None and target.stdout.read(5) == b"ready"
            seen[mode] = subprocess.run([sys.executable, "-c", _READER, str(target.pid)],
                                        capture_output=True, text=True,
                                        timeout=30).stdout.splitlines()
        finally:
            target.communicate(timeout=30)
    shown, hidden = seen["shown"], seen["hidden"]
    assert secret in shown[0] and "python" in shown[1] and "pipe:[" in shown[2]
    assert hidden == ["environ refused 13", "exe refused 13", "fd refused 13"]
