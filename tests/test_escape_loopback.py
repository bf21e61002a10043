"""Containment (issue #12, item 5): a container cannot reach what listens on the host's
loopback.

tuibox sets ``route_localnet`` on its bridges (ports published on 127.0.0.1 need it), so
the kernel no longer treats 127.0.0.0/8 arriving from a bridge as martian: a crafted frame
to the bridge's MAC with destination 127.0.0.1 reached host services that listen only on
loopback (CVE-2020-8558's class).  The attacker here sends such frames from a default
container's network namespace with a raw socket, as any container process holding
Docker's default CAP_NET_RAW can.  Traffic goes only to listeners this test starts and to
its own containers.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.test_network import free_port, http_get, web
from tuibox.engine import Engine, RunOptions
from tuibox.engine.network.nft import table_name

REPO = Path(__file__).resolve().parent.parent


class Attacker:
    """Raw frames from inside a running container's network namespace, to the bridge."""

    def __init__(self, engine: Engine, cid: str) -> None:
        state = engine.get(cid).state
        self.pid = state.pid
        net = state.network.networks["bridge"]
        self.ip, self.gateway = net.ip, net.gateway
        bridge = engine.networks.get("bridge").bridge
        self.bridge_mac = Path(f"/sys/class/net/{bridge}/address").read_text().strip()

    def _raw(self, *args: str) -> dict[str, object]:
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", sys.executable, "-m", "tests.rawpacket",
             *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, object] = json.loads(proc.stdout)
        return result

    def tcp_connect(self, dst: str, port: int, seconds: float) -> dict[str, object]:
        return self._raw("tcp-connect", "eth0", self.bridge_mac, self.ip, dst, str(port),
                         str(seconds), self.gateway)

    def udp(self, src: str, dst: str, port: int) -> None:
        self._raw("udp", "eth0", self.bridge_mac, src, dst, str(port))


def guard_drops(table: str) -> dict[str, int]:
    """Packets dropped by the loopback guard, by the address field its rule matches."""
    listing = subprocess.run(["nft", "-j", "list", "chain", "ip", table, "loopback_guard"],
                             capture_output=True, text=True, check=True).stdout
    drops = {}
    for item in json.loads(listing)["nftables"]:
        if "rule" not in item:
            continue
        exprs = item["rule"]["expr"]
        packets = sum(e["counter"]["packets"] for e in exprs if "counter" in e)
        for e in exprs:
            if "payload" in e.get("match", {}).get("left", {}):
                drops[e["match"]["left"]["payload"]["field"]] = packets
    return drops


def accepted(listener: socket.socket, seconds: float) -> str | None:
    """The peer address of a connection the listener got within ``seconds``, if any."""
    if not select.select([listener], [], [], seconds)[0]:
        return None
    conn, peer = listener.accept()
    conn.close()
    return str(peer[0])


def test_crafted_frames_to_host_loopback_are_dropped(root: Path, engine: Engine,
                                                      tmp_path: Path) -> None:
    table = table_name(root)
    with socket.socket() as listener:  # a host service on loopback only
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listening = listener.getsockname()[1]
        published = free_port()
        web(engine, tmp_path, publish=[f"127.0.0.1:{published}:80"])
        # A port published on 127.0.0.1 keeps answering the host.
        assert http_get(f"http://127.0.0.1:{published}/") == "hello from the container"
        attacker = Attacker(engine, engine.run(RunOptions(image="busybox",
                                                          command=["sleep", "1d"])).id)

        # Neither the loopback listener nor the loopback-published port answers a SYN.
        for port in (listening, published):
            assert attacker.tcp_connect("127.0.0.1", port, 2.0) == {"synack": False}
        assert accepted(listener, 0) is None
        assert guard_drops(table)["daddr"] >= 2  # the frames arrived and the guard took them

        # A forged loopback source is dropped as well (whatever the kernel would do next).
        before = guard_drops(table)["saddr"]
        attacker.udp("127.0.0.1", attacker.gateway, listening)
        deadline = time.monotonic() + 5
        while guard_drops(table)["saddr"] == before:
            assert time.monotonic() < deadline, "the forged-source frame was not dropped"
            time.sleep(0.05)

        # Control: without the guard's rules the same frames get through, so the checks
        # above can fail.  The test's own table, on its own bridge.
        subprocess.run(["nft", "flush", "chain", "ip", table, "loopback_guard"], check=True)
        got = attacker.tcp_connect("127.0.0.1", listening, 5.0)
        assert got == {"synack": True, "from": f"127.0.0.1:{listening}"}
        assert accepted(listener, 5.0) == attacker.ip  # a full connection, from the container
        assert attacker.tcp_connect("127.0.0.1", published, 5.0)["synack"] is True
