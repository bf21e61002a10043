"""Capabilities, no_new_privs and setuid, --privileged, and /sys on the host's network.

Docker's defaults, faithfully: 14 capabilities, no_new_privs off (a setuid binary in an
image works, bounded by the container's capabilities), ``--security-opt
no-new-privileges`` and a per-root default to turn it on; ``--privileged`` is everything
and says so in ``inspect``.  Every /sys probe here only creates a file (refused on a
read-only mount before anything else is checked) or reads /proc/self/mountinfo, so the
host's settings are never at risk even when a check fails.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.imagefixtures import TarEntry, layer_tar, write_docker_archive
from tests.test_container_runtime import run_output
from tuibox.engine import Engine, RunOptions
from tuibox.engine.runtime import capabilities

Cli = Any  # the conftest fixture: cli(*args, check=True) -> CompletedProcess
PROBE_SOURCE = Path(__file__).with_name("syscall_probe.c")
DEFAULT = capabilities.DEFAULT_MASK
OURS = capabilities.own_permitted()
SYS_ADMIN, NET_ADMIN = 1 << 21, 1 << 12


def status(engine: Engine, **opts: object) -> dict[str, str]:
    code, out, err = run_output(engine, "/bin/sh", "-c", "cat /proc/self/status",
                                network="none", **opts)
    assert code == 0, err
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def caps(fields: dict[str, str], name: str) -> int:
    return int(fields[name], 16)


@pytest.mark.parametrize(("opts", "effective", "bounding"), [
    ({}, DEFAULT, DEFAULT),
    ({"cap_drop": ["ALL"]}, 0, 0),
    ({"cap_add": ["NET_ADMIN"]}, DEFAULT | NET_ADMIN, DEFAULT | NET_ADMIN),
    ({"cap_add": ["cap_net_admin"], "cap_drop": ["chown", "CAP_MKNOD"]},
     (DEFAULT | NET_ADMIN) & ~(1 << 0 | 1 << 27), (DEFAULT | NET_ADMIN) & ~(1 << 0 | 1 << 27)),
    ({"cap_add": ["ALL"], "cap_drop": ["SYS_ADMIN"]}, OURS & ~SYS_ADMIN, OURS & ~SYS_ADMIN),
    ({"cap_add": ["NET_ADMIN"], "user": "1000"}, 0, DEFAULT | NET_ADMIN),
    ({"privileged": True}, OURS, OURS),
])
def test_capability_sets(engine: Engine, opts: dict[str, object], effective: int,
                         bounding: int) -> None:
    fields = status(engine, **opts)
    assert caps(fields, "CapEff") == effective
    assert caps(fields, "CapPrm") == effective
    assert caps(fields, "CapBnd") == bounding
    assert caps(fields, "CapInh") == 0 and caps(fields, "CapAmb") == 0


def test_no_new_privs_follows_docker(engine: Engine, root: Path) -> None:
    assert status(engine)["NoNewPrivs"] == "0"  # Docker's default
    for opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        assert status(engine, security_opt=[opt])["NoNewPrivs"] == "1"
    (root / "daemon.json").write_text(json.dumps({"no-new-privileges": True}))
    assert status(engine)["NoNewPrivs"] == "1"  # the root's default
    assert status(engine, security_opt=["no-new-privileges=false"])["NoNewPrivs"] == "0"


@pytest.fixture
def setuid_image(engine: Engine, tmp_path: Path) -> str:
    """An image whose only file is the probe, setuid root, as an image's ``su`` would be."""
    binary = tmp_path / "probe"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(PROBE_SOURCE)],
                   check=True, capture_output=True)
    layer = layer_tar([TarEntry("probe", data=binary.read_bytes(), mode=0o4755)])
    archive = tmp_path / "setuid.tar"
    write_docker_archive(archive, [([layer], ["setuid:latest"])], cmds=[["/probe", "id"]])
    engine.images.load(archive)
    return "setuid"


def probe_id(engine: Engine, image: str, **opts: object) -> str:
    code, out, err = run_output(engine, "/probe", "id", image=image, network="none", **opts)
    assert code == 0, err
    return out.strip()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="gcc -static for x86_64")
def test_setuid_binary_in_an_image(engine: Engine, root: Path, setuid_image: str) -> None:
    # Without no_new_privs the setuid bit works, bounded by the container's capabilities.
    assert probe_id(engine, setuid_image, user="1000") == f"euid 0 CapEff {DEFAULT:016x}"
    assert probe_id(engine, setuid_image, user="1000", cap_drop=["ALL"]) == \
        "euid 0 CapEff 0000000000000000"
    # With it, the bit is ignored.
    assert probe_id(engine, setuid_image, user="1000",
                    security_opt=["no-new-privileges"]) == "euid 1000 CapEff 0000000000000000"
    (root / "daemon.json").write_text(json.dumps({"no-new-privileges": True}))
    assert probe_id(engine, setuid_image, user="1000").startswith("euid 1000 ")


def _mounts(engine: Engine, **opts: object) -> dict[str, tuple[str, str]]:
    """mount point → (its options, fs type), as the container sees them."""
    code, out, err = run_output(engine, "/bin/sh", "-c", "cat /proc/self/mountinfo", **opts)
    assert code == 0, err
    found = {}
    for line in out.splitlines():
        fields = line.split()
        sep = fields.index("-")
        found[fields[4]] = (fields[5], fields[sep + 1])
    return found


def test_privileged_has_no_masks_and_writable_sys(engine: Engine) -> None:
    plain = _mounts(engine, network="none")
    assert plain["/sys"][0].startswith("ro,") and plain["/proc/sys"][0].startswith("ro,")
    assert "/proc/keys" in plain and "/proc/timer_list" in plain  # masked
    priv = _mounts(engine, network="none", privileged=True)
    assert priv["/sys"][0].startswith("rw,")
    assert not [m for m in priv if m.startswith(("/proc/", "/sys/firmware"))], priv
    assert all(opts.startswith("rw,") for m, (opts, _) in priv.items()
               if m.startswith("/sys/fs/cgroup"))
    # systempaths=unconfined: no masks, but nothing else changes.
    unmasked = _mounts(engine, network="none", security_opt=["systempaths=unconfined"])
    assert "/proc/keys" not in unmasked and unmasked["/sys"][0].startswith("ro,")
    fields = status(engine, security_opt=["systempaths=unconfined"])
    assert caps(fields, "CapEff") == DEFAULT and fields["Seccomp"] == "2"


def test_privileged_shows_in_inspect(cli: Cli) -> None:
    plain = json.loads(cli("inspect", cli("create", "busybox").stdout.strip()).stdout)[0]
    assert plain["HostConfig"]["Privileged"] is False and "Warnings" not in plain
    cid = cli("create", "--privileged", "--cap-drop", "NET_RAW", "--security-opt",
              "no-new-privileges", "busybox").stdout.strip()
    info = json.loads(cli("inspect", cid).stdout)[0]
    assert info["HostConfig"]["Privileged"] is True
    assert info["HostConfig"]["CapDrop"] == ["CAP_NET_RAW"]
    assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    assert any("privileged" in w for w in info["Warnings"])


def test_host_network_gets_a_fresh_read_only_sysfs(engine: Engine) -> None:
    script = ("cat /proc/self/mountinfo; echo ---; ls /sys/class/net; echo ---; "
              "touch /sys/tuibox-probe 2>&1; touch /sys/class/net/lo/tuibox-probe 2>&1; "
              "touch /sys/fs/cgroup/tuibox-probe 2>&1; true")
    code, out, err = run_output(engine, "/bin/sh", "-c", script, network="host")
    assert code == 0, err
    mountinfo, nets, writes = out.split("---\n")
    under_sys = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == "/sys" or fields[4].startswith("/sys/"):
            under_sys[fields[4]] = (fields[5], fields[fields.index("-") + 1])
    # Only the fresh sysfs and the container's own cgroup view: no host submount at all,
    # and every one of them read-only.
    assert under_sys["/sys"][1] == "sysfs"
    assert {fs for _, fs in under_sys.values()} <= {"sysfs", "tmpfs", "cgroup", "cgroup2"}
    assert all(opts.split(",")[0] == "ro" for opts, _ in under_sys.values()), under_sys
    host_sys_mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                       .splitlines() if line.split()[4].startswith("/sys/")]
    leaked = [m for m in host_sys_mounts if m in under_sys and not m.startswith("/sys/fs/cgroup")]
    assert not leaked, leaked
    # It is the host's network, so the host's devices show.
    assert set(nets.split()) == set(os.listdir("/sys/class/net"))
    assert writes.count("Read-only file system") == 3, writes


def test_cap_names_are_checked_at_create(engine: Engine) -> None:
    from tuibox.engine import InvalidArgument

    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_NOPE"'):
        engine.create(RunOptions(image="busybox", cap_add=["nope"]))
    with pytest.raises(InvalidArgument, match="security-opt"):
        engine.create(RunOptions(image="busybox", security_opt=["no-new-privileges=maybe"]))



def test_dashboard_inspect_warns_about_privileged(engine: Engine) -> None:
    from textual.pilot import Pilot

    from tests.test_app import drive, table, until
    from tuibox.app import TuiboxApp

    plain = engine.create(RunOptions(image="busybox", command=["true"], name="plain")).id
    priv = engine.create(RunOptions(image="busybox", command=["true"], name="priv",
                                    privileged=True)).id

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        view = app.screen.query_one("#inspect")
        app.screen.query_one("#detail").active = "tab-inspect"  # type: ignore[attr-defined]
        for cid, warned in ((priv, True), (plain, False), (priv, True)):
            await until(pilot, lambda c=cid: c in table(app).rows, what="the row")  # type: ignore[misc]
            table(app).move_cursor(row=table(app).get_row_index(cid))
            await until(pilot, lambda c=cid: c in view.shown, what="inspect")  # type: ignore[attr-defined,misc]
            banner = app.screen.query_one("#inspect-warning")
            assert banner.display is warned
            assert ("root on the host" in view.warning) is warned  # type: ignore[attr-defined]

    drive(engine, body)


def test_exec_gets_the_containers_confinement(cli: Cli, tmp_path: Path) -> None:
    """An exec'd process drops to what the container's PID 1 has, not to defaults."""
    def exec_status(cid: str, *flags: str) -> dict[str, str]:
        out = cli("exec", *flags, cid, "cat", "/proc/self/status").stdout
        return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)

    def start(*flags: str) -> str:
        return cli("run", "-d", "--network", "none", *flags, "busybox", "sleep", "60"
                   ).stdout.strip()

    added = exec_status(start("--cap-add", "NET_ADMIN", "--security-opt", "no-new-privileges"))
    assert caps(added, "CapEff") == DEFAULT | NET_ADMIN and added["NoNewPrivs"] == "1"
    dropped = exec_status(start("--cap-drop", "ALL"))
    assert caps(dropped, "CapEff") == 0 and caps(dropped, "CapBnd") == 0
    assert dropped["NoNewPrivs"] == "0" and dropped["Seccomp"] == "2"
    unconfined = start("--security-opt", "seccomp=unconfined")
    assert exec_status(unconfined)["Seccomp"] == "0"
    priv = exec_status(start("--privileged"))
    assert caps(priv, "CapEff") == OURS and priv["Seccomp"] == "0"
    # A user's profile: the exec'd shell is refused mkdir as PID 1 is.
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    cid = start("--security-opt", f"seccomp={profile}")
    out = cli("exec", cid, "sh", "-c", "mkdir /x 2>&1; echo $?", check=False).stdout
    assert "Operation not permitted" in out and out.endswith("1\n")
