"""Bridge networking on a host where nf_tables cannot be loaded (issue #19), in the guest.

Module autoloading goes off as on hardened hosts (``/proc/sys/kernel/modprobe`` →
``/bin/false``), in two steps: first with nfnetlink loaded but nf_tables missing
(libnftables reports an error), then with nfnetlink unloaded too (libnftables calls
``exit()``: it once took the supervisor along).  Each time ``run --rm`` on the bridge
must fail with a clear error and leave nothing, ``--network none`` must keep working,
and the supervisor must be the same process.  Autoloading comes back on afterwards
(nfnetlink stays unloaded): tests/test_v2guest_suite.py runs this file in the same boot
as the others, after the device tests, before the resource tests (which leave the
process in a cgroup namespace of its own); the boot preloads nfnetlink and loop.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.v2 import busybox_archive, guest_only, processes_mentioning, wait_until
from tuibox.cli import main
from tuibox.engine import Engine

pytestmark = guest_only
MODPROBE = Path("/proc/sys/kernel/modprobe")


def _unload(module: str) -> None:
    """rmmod ``module`` and, first, every module that holds it."""
    holders = Path(f"/sys/module/{module}/holders")
    if not holders.parent.exists():
        return
    for holder in sorted(p.name for p in holders.iterdir()):
        _unload(holder)
    subprocess.run(["busybox", "rmmod", module], check=True)


@pytest.fixture
def no_autoload() -> Iterator[None]:
    """Autoloading off, nfnetlink loaded (the boot did), nf_tables not (unloaded if an
    earlier test had it loaded); autoloading back on afterwards."""
    assert Path("/sys/module/nfnetlink").exists(), "the guest boots with nfnetlink loaded"
    before = MODPROBE.read_text()
    MODPROBE.write_text("/bin/false\n")
    try:
        _unload("nf_tables")
        yield
    finally:
        MODPROBE.write_text(before)


def _supervisor(engine: Engine) -> int:
    """The pid of the supervisor that answers (it starts one if none runs)."""
    return int(engine.supervisor.request({"op": "ping"})["pid"])


def _step(engine: Engine, capfd: pytest.CaptureFixture[str]) -> dict[str, object]:
    root = str(engine.paths.root)
    before = _supervisor(engine)
    capfd.readouterr()
    bridge_rc = main(["--root", root, "run", "--rm", "busybox", "true"])
    bridge_err = capfd.readouterr().err
    none_rc = main(["--root", root, "run", "--rm", "--network", "none", "busybox",
                    "echo", "hi"])
    none_out = capfd.readouterr().out
    # `run` hears the exit before the supervisor removes the --rm container; any next
    # request is served after that, so ask first, then read the records.
    after = _supervisor(engine)
    return {"bridge_rc": bridge_rc, "bridge_err": bridge_err,
            "containers_left": [f"{c.name} {c.config.cmd}: {c.state.status}"
                                for c in engine.list(all=True)],
            "links": sorted(os.listdir("/sys/class/net")),
            "none_rc": none_rc, "none_out": none_out,
            "supervisor_before": before, "supervisor_after": after}


@pytest.mark.usefixtures("no_autoload")
def test_without_nf_tables_bridge_runs_fail_clearly_and_the_supervisor_lives(
        request: pytest.FixtureRequest, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    engine = Engine(tmp_path / "root")
    engine.images.load(busybox_archive(request))
    try:
        assert not Path("/sys/module/nf_tables").exists()
        nfnetlink_only = _step(engine, capfd)
        engine.shutdown()  # its nftables helper holds nfnetlink
        _unload("nfnetlink")
        no_nfnetlink = _step(engine, capfd)
    finally:
        engine.shutdown(force=True)
    for seen in (nfnetlink_only, no_nfnetlink):
        assert seen["bridge_rc"] == 125, seen
        assert "bridge networking is unavailable on this host: " in str(seen["bridge_err"]), seen
        assert "Traceback" not in str(seen["bridge_err"]), seen
        assert seen["containers_left"] == [], seen  # --rm took the Created one away
        assert seen["links"] == ["lo"], seen  # no bridge, no veth was built
        assert (seen["none_rc"], seen["none_out"]) == (0, "hi\n"), seen
        assert seen["supervisor_after"] == seen["supervisor_before"], seen  # the same one
    # What each failure says: the library's own error, then why its helper died.
    assert "nf_tables refused a read-only request" in str(nfnetlink_only["bridge_err"])
    assert "Unable to initialize Netlink socket" in str(no_nfnetlink["bridge_err"])
    assert "libnftables exited with status" in str(no_nfnetlink["bridge_err"])
    wait_until(lambda: not processes_mentioning(str(engine.paths.root)), "nothing left")
