"""Seccomp: Docker's default profile as an allow list, and users' own profiles.

Every probe is a real syscall made from inside a container by a small static C program
(``syscall_probe.c``, built here with ``gcc -static``); the numbers are x86_64's.  What
each call would do if the filter let it through is harmless (NULL arguments, a user
namespace for the probe alone), so a regression shows up as an answer, never as damage.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_container_runtime import run_output
from tuibox.engine import Engine, InvalidArgument, RunOptions
from tuibox.engine.runtime import capabilities, seccomp

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="the probes use x86_64 syscall numbers")
Cli = Any  # the conftest fixture: cli(*args, check=True) -> CompletedProcess
PROBE_SOURCE = Path(__file__).with_name("syscall_probe.c")

# name: (x86_64 number, arguments)
PERSONALITY, SOCKET, CLONE3, UNSHARE, MOUNT = 135, 41, 435, 272, 165
REFUSED = {  # Docker's default profile answers EPERM to each of these
    "personality(ADDR_NO_RANDOMIZE)": f"{PERSONALITY} 0x0040000",
    "personality(READ_IMPLIES_EXEC)": f"{PERSONALITY} 0x0400000",
    "set_mempolicy_home_node": "450 0 0 0 0",
    "keyctl": "250 0 0",
    "add_key": "248 0 0 0 0 0",
    "userfaultfd": "323 0",
    "unshare(CLONE_NEWUSER)": f"{UNSHARE} 0x10000000",
    "unshare(CLONE_NEWNS)": f"{UNSHARE} 0x20000",
    "clone(CLONE_NEWUSER)": "56 0x10000011",
    "mount": f"{MOUNT} 0 0 0 0 0",
    "bpf": "321 0 0 0",
    "io_uring_setup": "425 1 0",
    "socket(AF_VSOCK)": f"{SOCKET} 40 1 0",
    "socket(AF_ALG)": f"{SOCKET} 38 5 0",
    "kexec_load": "246 0 0 0 0",
    "open_by_handle_at": "304 0 0 0",
    "ptrace needs no cap but perf_event_open does": "298 0 0 0 0 0",
    "lsm_list_modules (CAP_SYS_ADMIN, newer than libseccomp)": "461 0 0 0",
}
ALLOWED = {  # and lets these through (to the kernel's own answer)
    "personality(query)": f"{PERSONALITY} 0xffffffff",
    "personality(PER_LINUX)": f"{PERSONALITY} 0",
    "socket(AF_INET)": f"{SOCKET} 2 2 0",
    "socket(AF_UNIX)": f"{SOCKET} 1 1 0",
    "mseal (newer than libseccomp)": "462 0 0 0",
    "listmount (newer than libseccomp)": "458 0 0 0 0",
    "getpid": "39",
}
NEWER = {  # numbers past the newest the profile names: ENOSYS, as runc's stub answers
    "clone3 (glibc falls back to clone)": f"{CLONE3} 0 0",
    "open_tree_attr (467)": "467 0 0 0 0 0",
    "syscall 470": "470",
    "syscall 1000": "1000",
}


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe")
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out / "probe"), str(PROBE_SOURCE)],
                   check=True, capture_output=True)
    return out


def probe_all(engine: Engine, probe_dir: Path, calls: dict[str, str],
              **opts: object) -> dict[str, str]:
    """Run every call in one container; {name: "ok N" | "err ERRNAME"}."""
    script = "; ".join(f"/p/probe {args}" for args in calls.values())
    code, out, err = run_output(engine, "/bin/sh", "-c", script, network="none",
                                volumes=[f"{probe_dir}:/p:ro"], **opts)
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(calls), out + err
    return dict(zip(calls, lines, strict=True))


def test_default_profile_is_dockers_allow_list(engine: Engine, probe_dir: Path) -> None:
    got = probe_all(engine, probe_dir, REFUSED | ALLOWED | NEWER)
    assert {k: got[k] for k in REFUSED} == dict.fromkeys(REFUSED, "err EPERM")
    for name in ALLOWED:
        assert got[name] not in ("err EPERM", "err ENOSYS"), (name, got[name])
    assert {k: got[k] for k in NEWER} == dict.fromkeys(NEWER, "err ENOSYS")


def test_normal_programs_work(engine: Engine) -> None:
    script = ("echo b a | tr ' ' '\\n' | sort | head -1; date >/dev/null; id -u; "
              "ps >/dev/null; (sleep 0.01 &); wait; mkdir -p /tmp/d && ln -s d /tmp/l && "
              "ls /tmp; nslookup localhost 127.0.0.1 >/dev/null 2>&1; "
              "grep Seccomp: /proc/self/status")
    code, out, err = run_output(engine, "/bin/sh", "-c", script, network="none")
    assert code == 0, err
    assert out.split() == ["a", "0", "d", "l", "Seccomp:", "2"]


def test_cap_add_sys_admin_opens_what_docker_opens(engine: Engine, probe_dir: Path) -> None:
    calls = {"unshare(CLONE_NEWUSER)": f"{UNSHARE} 0x10000000", "mount": f"{MOUNT} 0 0 0 0 0",
             "clone3": f"{CLONE3} 0 0", "keyctl": "250 0 0",
             "lsm_list_modules": "461 0 0 0"}
    got = probe_all(engine, probe_dir, calls, cap_add=["SYS_ADMIN"])
    assert got["unshare(CLONE_NEWUSER)"] == "ok 0"
    assert got["mount"] == "err EFAULT"  # the kernel's answer to a NULL target
    assert got["clone3"] == "err EINVAL"  # no longer ENOSYS: the flags are no one's concern
    assert got["lsm_list_modules"] not in ("err EPERM", "err ENOSYS")
    assert got["keyctl"] == "err EPERM"  # no capability opens keyrings
    code, out, _ = run_output(engine, "/bin/sh", "-c",
                              "mkdir -p /mnt/t && mount -t tmpfs x /mnt/t && echo mounted",
                              network="none", cap_add=["SYS_ADMIN"])
    assert out == "mounted\n"


def test_other_caps_open_their_syscalls(engine: Engine, probe_dir: Path) -> None:
    calls = {"set_mempolicy_home_node": "450 0 0 0 0", "kcmp": "312 1 1 0 0 0"}
    assert probe_all(engine, probe_dir, calls) == dict.fromkeys(calls, "err EPERM")
    got = probe_all(engine, probe_dir, calls, cap_add=["SYS_NICE", "SYS_PTRACE"])
    assert "err EPERM" not in got.values() and "err ENOSYS" not in got.values(), got


def test_user_profile_through_the_cli(cli: Cli, tmp_path: Path, probe_dir: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["listmount"], "action": "SCMP_ACT_ERRNO"},  # newer than libseccomp
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"},  # skipped, as by runc
    ]}
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    out = cli("run", "--rm", "--network", "none", "-v", f"{probe_dir}:/p:ro",
              "--security-opt", f"seccomp={path}", "busybox", "sh", "-c",
              "mkdir /x 2>&1; touch /y && echo touched; /p/probe 458 0 0 0 0; "
              "/p/probe 272 0x10000000; grep Seccomp: /proc/self/status").stdout
    assert out.splitlines() == ["mkdir: can't create directory '/x': Permission denied",
                                "touched", "err EPERM", "ok 0", "Seccomp:\t2"]


@pytest.mark.parametrize(("profile", "message"), [
    ("{not json", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"syscalls": []}', "defaultAction is missing"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown action 'SCMP_ACT_NOPE'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
     "syscalls[0].args[0].index: 9 is out of range"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "LIKE"}]}]}',
     "unknown operator 'LIKE'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_NOTIFY"}]}', "SCMP_ACT_NOTIFY needs a listener"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], '
     '"archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}', "cannot both be specified"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "six"}}]}',
     "invalid kernel version"),
])
def test_malformed_profile_is_one_line_at_create(cli: Cli, tmp_path: Path, profile: str,
                                                 message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(profile)
    proc = cli("create", "--security-opt", f"seccomp={path}", "busybox", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith("tuibox: invalid seccomp profile") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert cli("ps", "-aq").stdout == ""
    missing = cli("create", "--security-opt", f"seccomp={tmp_path / 'none.json'}", "busybox",
                  check=False)
    assert missing.returncode == 125 and "opening seccomp profile" in missing.stderr


def test_libseccomp_refusal_is_an_error_at_create(engine: Engine) -> None:
    # Valid JSON and Docker's schema, but two tests of one argument in one rule: libseccomp
    # (2.5) refuses it, so the profile fails at create rather than at every start.
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]})
    with pytest.raises(InvalidArgument, match="invalid seccomp profile: seccomp: rule for"):
        engine.create(RunOptions(image="busybox", security_opt=[f"seccomp={profile}"]))


def test_unconfined_and_privileged(engine: Engine, probe_dir: Path) -> None:
    calls = {"unshare(CLONE_NEWUSER)": f"{UNSHARE} 0x10000000", "personality":
             f"{PERSONALITY} 0x0040000"}
    for opts in ({"security_opt": ["seccomp=unconfined"]}, {"privileged": True}):
        assert probe_all(engine, probe_dir, calls, **opts) == dict.fromkeys(calls, "ok 0")
    # --privileged drops the default filter, not a profile the user asked for.
    profile = seccomp.DEFAULT_PROFILE
    got = probe_all(engine, probe_dir, calls, privileged=True,
                    security_opt=[f"seccomp={profile}"])
    assert got["personality"] == "err EPERM"
    assert got["unshare(CLONE_NEWUSER)"] == "ok 0"  # it has CAP_SYS_ADMIN, so the profile opens it


def test_filter_is_compiled_once_per_profile_and_caps() -> None:
    seccomp.compile_profile.cache_clear()
    first = seccomp.compile_profile(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT_MASK)
    again = seccomp.compile_profile(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT_MASK)
    admin = seccomp.compile_profile(seccomp.DEFAULT_PROFILE,
                                    capabilities.DEFAULT_MASK | 1 << 21)
    assert first is again and admin.code != first.code
    assert seccomp.compile_profile.cache_info().misses == 2
    assert len(first.code) % 8 == 0 and len(first.code) // 8 < 4096
