"""Bridge networking on a host where nf_tables cannot be loaded (issue #19), in the guest.

The guest (``../shared/v2guest``) switches module autoloading off as hardened hosts do
(``/proc/sys/kernel/modprobe`` → ``/bin/false``), in two steps of one boot: first with
nfnetlink loaded but nf_tables missing (libnftables reports an error), then with
nfnetlink unloaded too (libnftables calls ``exit()``: it once took the supervisor along).
Each time ``run --rm`` on the bridge must fail with a clear error and leave nothing,
``--network none`` must keep working, and the supervisor must be the same process.

This file is also the driver that runs inside the guest (``python -m
tests.test_v2guest_network ROOT``): it prints one JSON line of observations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import v2guest

MARK = "tuibox-v2guest-result: "

pytestmark = [pytest.mark.v2guest,
              pytest.mark.skipif(bool(v2guest.unavailable()),
                                 reason=v2guest.unavailable() or "available")]


@pytest.mark.timeout(900)  # one boot, ~2 min under QEMU's software CPU
def test_without_nf_tables_bridge_runs_fail_clearly_and_the_supervisor_lives() -> None:
    rc, out, err = v2guest.run_in_guest(sys.executable, "-m", "tests.test_v2guest_network",
                                        "/scratch/root", modules=("nfnetlink",), timeout=800)
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    assert rc == 0 and lines, f"guest run failed ({rc}):\n{out[-3000:]}\n{err[-3000:]}"
    got = json.loads(lines[-1][len(MARK):])
    assert got["nf_tables_loaded"] is False
    for step in ("nfnetlink_only", "no_nfnetlink"):
        seen = got[step]
        assert seen["bridge_rc"] == 125, seen
        assert "bridge networking is unavailable on this host: " in seen["bridge_err"], seen
        assert "Traceback" not in seen["bridge_err"], seen
        assert seen["containers_left"] == [], seen  # --rm took the Created one away
        assert seen["links"] == ["lo"], seen  # no bridge, no veth was built
        assert (seen["none_rc"], seen["none_out"]) == (0, "hi\n"), seen
        assert seen["supervisor_after"] == seen["supervisor_before"], seen  # the same one
    # What each failure says: the library's own error, then why its helper died.
    assert "nf_tables refused a read-only request" in got["nfnetlink_only"]["bridge_err"]
    assert "Unable to initialize Netlink socket" in got["no_nfnetlink"]["bridge_err"]
    assert "libnftables exited with status" in got["no_nfnetlink"]["bridge_err"]
    assert got["leftover_processes"] == [], got


# ---------------------------------------------------------------------- in the guest


def _tuibox(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


def _step(root: Path) -> dict[str, Any]:
    from tuibox.engine import Engine

    supervisor = _supervisor(root)
    bridge = _tuibox(root, "run", "--rm", "busybox", "true")
    none = _tuibox(root, "run", "--rm", "--network", "none", "busybox", "echo", "hi")
    return {
        "bridge_rc": bridge.returncode, "bridge_err": bridge.stderr,
        "containers_left": [c.name for c in Engine(root).list(all=True)],
        "links": sorted(os.listdir("/sys/class/net")),
        "none_rc": none.returncode, "none_out": none.stdout, "none_err": none.stderr,
        "supervisor_before": supervisor, "supervisor_after": _supervisor(root),
    }


def _supervisor(root: Path) -> int:
    """The pid of the supervisor that answers (it starts one if none runs)."""
    from tuibox.engine import Engine

    return int(Engine(root).supervisor.request({"op": "ping"})["pid"])


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def guest_main(root: Path) -> None:
    from tests.imagefixtures import busybox_rootfs
    from tuibox.engine import Engine

    engine = Engine(root)
    engine.images.import_image(busybox_rootfs(root.parent / "rootfs"), ref="busybox:latest",
                               changes=['CMD ["sh"]'])
    Path("/proc/sys/kernel/modprobe").write_text("/bin/false\n")
    result: dict[str, Any] = {"nf_tables_loaded": Path("/sys/module/nf_tables").exists()}
    result["nfnetlink_only"] = _step(root)
    engine.shutdown()  # its nftables helper holds nfnetlink
    subprocess.run(["busybox", "rmmod", "nfnetlink"], check=True)
    result["no_nfnetlink"] = _step(root)
    engine.shutdown()
    result["leftover_processes"] = [pid for pid in _pids() if pid != os.getpid()
                                    and str(root).encode() in _cmdline(pid)]
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    guest_main(Path(sys.argv[1]))
