"""Real containers: what the inside looks like (namespaces, caps, mounts, identity)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from tuibox.engine import Engine, RunOptions, SetupError
from tuibox.engine.runtime import capabilities


def run_output(engine: Engine, *command: str, **opts: object) -> tuple[int, str, str]:
    """Run a container in the foreground and collect its output and exit code."""
    from tuibox.engine.supervisor import protocol

    opts.setdefault("image", "busybox")
    config = engine.create(RunOptions(command=list(command), **opts))  # type: ignore[arg-type]
    conn = engine.start_attached(config.id)
    out, err, code = b"", b"", -1
    try:
        for kind, payload in conn.frames():
            if kind == protocol.KIND_STDOUT:
                out += payload
            elif kind == protocol.KIND_STDERR:
                err += payload
            else:
                import json

                code = json.loads(payload).get("exit", code)
    finally:
        conn.close()
    return code, out.decode(), err.decode()


def sh(engine: Engine, script: str, **opts: object) -> tuple[int, str, str]:
    return run_output(engine, "/bin/sh", "-c", script, **opts)


def test_pid1_is_the_command(engine: Engine) -> None:
    code, out, _ = sh(engine, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0
    pid, cmdline = out.splitlines()
    assert pid == "1"
    assert cmdline.startswith("/bin/sh -c")


def test_hostname_is_short_id_and_differs_from_host(engine: Engine) -> None:
    config = engine.create(RunOptions(image="busybox", command=["hostname"]))
    from tuibox.engine.logs import read_logs

    engine.start(config.id)
    assert engine.wait(config.id) == 0
    lines = [e.data for e in read_logs(engine.containers.dir(config.id), config.id)]
    assert lines == [config.id[:12].encode() + b"\n"]
    assert config.id[:12] != socket.gethostname()
    code, out, _ = sh(engine, "hostname; cat /etc/hostname", hostname="web1")
    assert out == "web1\nweb1\n"


def test_capabilities_and_no_new_privs(engine: Engine) -> None:
    code, out, _ = sh(engine, "grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs)' "
                              "/proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["CapEff"] == "00000000a80425fb"
    assert fields["CapBnd"] == "00000000a80425fb"
    assert fields["CapInh"] == "0000000000000000"
    assert fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "0"  # Docker's default (see test_escape_privileged)


def test_non_root_user_has_no_effective_caps(engine: Engine) -> None:
    code, out, _ = sh(engine, "id -u; id -g; grep CapEff /proc/self/status", user="nobody")
    assert out.splitlines()[:2] == ["65534", "65534"]
    assert out.splitlines()[2].endswith("0000000000000000")
    code, out, _ = sh(engine, "id -u; id -g", user="1234:99")
    assert out.splitlines() == ["1234", "99"]


def test_proc_protections(engine: Engine) -> None:
    code, out, err = sh(engine, "echo h > /proc/sysrq-trigger && echo WROTE; "
                                "echo 1 > /proc/sys/kernel/sysrq && echo WROTE2; "
                                "grep -c . /proc/timer_list 2>/dev/null || echo masked; true")
    assert "WROTE" not in out
    assert "masked" in out or out.strip().endswith("0")


def test_mounts_are_as_dockers(engine: Engine) -> None:
    code, out, _ = sh(engine, "cat /proc/mounts")
    mounts = {line.split()[1]: line.split() for line in out.splitlines()}
    assert mounts["/"][2] == "overlay"
    assert mounts["/proc"][2] == "proc"
    assert set(mounts["/proc"][3].split(",")) >= {"nosuid", "nodev", "noexec"}
    assert mounts["/dev"][2] == "tmpfs" and "size=65536k" in mounts["/dev"][3]
    assert mounts["/dev/pts"][2] == "devpts"
    assert mounts["/dev/shm"][2] == "tmpfs" and "size=65536k" in mounts["/dev/shm"][3]
    assert mounts["/dev/mqueue"][2] == "mqueue"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro")
    assert mounts["/proc/sys"][3].startswith("ro")
    for f in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert f in mounts
    code, out, _ = sh(engine, "ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom "
                              "/dev/tty | awk '{print $1, $5, $6}'")
    for line in out.splitlines():
        assert line.startswith("crw-rw-rw-")


def test_own_namespaces(engine: Engine) -> None:
    code, out, _ = sh(engine, "for n in mnt pid uts ipc net cgroup; do "
                              "readlink /proc/self/ns/$n; done")
    inside = out.split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "uts", "ipc", "net",
                                                         "cgroup")]
    for a, b in zip(inside, host, strict=True):
        assert a != b
    code, out, _ = sh(engine, "readlink /proc/self/ns/net", network="host")
    assert out.strip() == os.readlink("/proc/self/ns/net")


def test_network_none_has_only_loopback_up(engine: Engine) -> None:
    code, out, _ = sh(engine, "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo ok",
                      network="none")
    assert out.split() == ["lo", "ok"]


def test_env_workdir_and_entrypoint_rules(engine: Engine) -> None:
    code, out, _ = sh(engine, "echo $FOO $PATH $HOSTNAME; pwd", env=["FOO=bar"],
                      workdir="/tmp/made", hostname="h")
    assert out.splitlines() == [
        "bar /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin h", "/tmp/made"]
    code, out, _ = run_output(engine, "hello", entrypoint=["/bin/echo"])
    assert out == "hello\n"


def test_exit_codes(engine: Engine) -> None:
    assert sh(engine, "exit 7")[0] == 7
    assert sh(engine, "kill -TERM $$; sleep 5")[0] in (143, 0)  # PID 1 ignores unhandled TERM
    assert sh(engine, "sh -c 'kill -9 $$'; exit 3")[0] == 3


def test_command_not_found_is_127(engine: Engine) -> None:
    with pytest.raises(SetupError) as info:
        run_output(engine, "nonexistent-cmd")
    assert info.value.exit_code == 127
    assert "executable file not found" in info.value.message
    with pytest.raises(SetupError) as info:
        run_output(engine, "/etc/passwd")
    assert info.value.exit_code == 126


def test_ulimit_inherited_and_set(engine: Engine) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code, out, _ = sh(engine, "ulimit -n; ulimit -Hn")
    assert out.split() == [str(soft), str(hard)]
    code, out, _ = sh(engine, "ulimit -n; ulimit -Hn", ulimits=["nofile=512:1024"])
    assert out.split() == ["512", "1024"]


def test_ulimit_above_hard_limit_is_a_clear_error(engine: Engine) -> None:
    import resource

    from tuibox.engine import InvalidArgument

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with pytest.raises(InvalidArgument, match="CAP_SYS_RESOURCE"):
        engine.create(RunOptions(image="busybox", command=["true"],
                                 ulimits=[f"nofile={hard + 1}:{hard + 1}"]))
    assert engine.list(all=True) == []


def test_read_only_rootfs(engine: Engine) -> None:
    code, out, _ = sh(engine, "touch /x 2>/dev/null && echo wrote; touch /tmp/x && echo tmp",
                      read_only=True)
    assert "wrote" not in out


def test_writes_stay_in_the_container(engine: Engine) -> None:
    code, out, _ = sh(engine, "echo data > /root/file; cat /root/file")
    assert out == "data\n"
    code, out, _ = sh(engine, "cat /root/file 2>&1 || echo absent")
    assert "absent" in out


def test_seccomp_filter_blocks_new_namespaces(engine: Engine) -> None:
    code, out, _ = sh(engine, "grep Seccomp: /proc/self/status; "
                              "unshare -U true 2>/dev/null && echo USERNS || echo BLOCKED; "
                              "(true) && echo FORK-OK")
    assert out.split() == ["Seccomp:", "2", "BLOCKED", "FORK-OK"]
    code, out, _ = sh(engine, "grep Seccomp: /proc/self/status; unshare -U true && echo USERNS",
                      security_opt=["seccomp=unconfined"])
    assert out.split() == ["Seccomp:", "0", "USERNS"]
    from tuibox.engine import InvalidArgument

    with pytest.raises(InvalidArgument, match="security-opt"):
        engine.create(RunOptions(image="busybox", command=["true"],
                                 security_opt=["apparmor=x"]))


def test_exec_privileged_gets_our_caps_and_keeps_the_filter(cli: Any) -> None:
    cid = cli("run", "-d", "busybox", "sleep", "60").stdout.strip()
    plain = cli("exec", cid, "grep", "-E", "Seccomp:|CapEff", "/proc/self/status").stdout
    assert "a80425fb" in plain and "Seccomp:\t2" in plain
    # Docker: exec --privileged changes the capabilities only; the container's filter stays.
    priv = cli("exec", "--privileged", cid, "grep", "-E", "Seccomp:|CapEff",
               "/proc/self/status").stdout
    assert f"{capabilities.own_permitted():016x}" in priv and "Seccomp:\t2" in priv
